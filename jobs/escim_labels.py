"""spark-submit jobs/escim_labels.py --ds 2026-11-20

Fits the ESCIM labeler on the window ending at the last day and writes
labels.escim_counterfactual for each day (partition overwrite)."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def body(ctx):
        from liftlake.lib.pipelines.escim_labels import escim_labels

        escim_labels(ctx)

    return run_job("escim-labels", __doc__, body, argv, default_days_from_quickstart=True, uses_labeler=True)


if __name__ == "__main__":
    sys.exit(main())
