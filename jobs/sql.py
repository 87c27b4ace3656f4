"""liftlake sql "select ... from features.samples where ds = '2026-11-20'" [--json]"""
import sys

from liftlake.lib.cli.runner import run_job
from liftlake.lib.pipelines.sql import print_query


def main(argv=None) -> int:
    def extend(parser):
        parser.add_argument("query", help="Spark SQL over the warehouse; tables by namespace.table")
        parser.add_argument("--limit", type=int, default=100)

    def body(ctx):
        print_query(ctx.store, ctx.args.query, ctx.args.json, ctx.args.limit)

    return run_job("sql", __doc__, body, argv, days=False, extend_parser=extend)


if __name__ == "__main__":
    sys.exit(main())
