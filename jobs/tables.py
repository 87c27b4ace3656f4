"""liftlake tables [--json]: every table in the warehouse with its version and rows per partition.

On the delta-rs backend the answer comes from the Delta logs alone, so no Spark session is started."""
import sys

from liftlake.lib.pipeline import print_tables
from liftlake.lib.runner import run_job


def main(argv=None) -> int:
    def body(ctx):
        from liftlake.lib.config import warehouse_path
        from liftlake.lib.store import DeltaRsStore

        store = ctx.store if ctx.config.warehouse.backend == "delta-spark" else \
            DeltaRsStore(None, warehouse_path(ctx.config))
        print_tables(store, ctx.args.json)

    return run_job("tables", __doc__, body, argv, days=False)


if __name__ == "__main__":
    sys.exit(main())
