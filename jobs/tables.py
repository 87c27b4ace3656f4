"""liftlake tables [--json]: every table in the warehouse with its version and rows per partition."""
import sys

from liftlake.lib.pipeline import print_tables
from liftlake.lib.runner import run_job


def main(argv=None) -> int:
    def body(ctx):
        print_tables(ctx.store, ctx.args.json)

    return run_job("tables", __doc__, body, argv, days=False)


if __name__ == "__main__":
    sys.exit(main())
