"""liftlake sql-server [--set sql_server.port=10000]

Spark's Thrift JDBC/ODBC server (HiveServer2 protocol) over the warehouse's tables on a loopback port:
BI tools and JDBC clients (beeline, PyHive, DBeaver, Tableau's Spark SQL connector) query
namespace.table with Spark SQL, VERSION AS OF included. Read-only: each statement is checked as
`liftlake sql --engine spark` checks it, before Spark parses it. Runs until Ctrl-C or SIGTERM.
Needs the Delta jars and the guard jar of `make setup`."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def body(ctx):
        from liftlake.lib.pipelines import sql_server

        sql_server.run(ctx)

    return run_job("sql-server", __doc__, body, argv, days=False)


if __name__ == "__main__":
    sys.exit(main())
