"""liftlake tables [--json]: every table in the warehouse with its version and rows per partition.

On the delta-rs backend the answer comes from the Delta logs alone, so no Spark session is started."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def body(ctx):
        from liftlake.lib.pipelines import tables

        tables.run(ctx)

    return run_job("tables", __doc__, body, argv, days=False, json_output=True)


if __name__ == "__main__":
    sys.exit(main())
