"""liftlake sql "select ... from scores.cvr where ds = '2026-11-20'" [--json] [--as-of VERSION] [--engine spark]

One read-only query (SELECT / WITH / SHOW / DESCRIBE / EXPLAIN) over the warehouse's tables, named
namespace.table. The default engine is an in-memory DuckDB locked against file access; --engine spark
checks Spark's parsed plan, names the tables in Spark's catalog (Delta tables: needs the Delta jars of
`make setup`) and runs the statement as given (time travel: VERSION AS OF N in the query). Anything
else exits 2 naming the rule."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def extend(parser):
        parser.add_argument("query", help="one read-only SQL statement; tables by namespace.table")
        parser.add_argument("--limit", type=int, default=100, help="print at most this many rows (<= sql.max_rows)")
        parser.add_argument("--engine", choices=("duckdb", "spark"), help="default: sql.engine (duckdb)")
        parser.add_argument("--as-of", action="append", default=[], metavar="VERSION|TABLE=VERSION",
                            help="read every table (or the one named) as of a Delta version (repeatable; duckdb engine, "
                                 "on spark write VERSION AS OF N after the table name)")

    def body(ctx):
        from liftlake.lib.pipelines import sql

        sql.run(ctx)

    return run_job("sql", __doc__, body, argv, days=False, extend_parser=extend, json_output=True)


if __name__ == "__main__":
    sys.exit(main())
