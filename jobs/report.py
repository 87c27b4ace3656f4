"""liftlake report [--set report.seeds=[1,2,3,4,5]] [--set report.exposures=50000]

Checks each paper's headline claim on the simulator against its truth (mean +- std over seeds) and
writes reports/report.md with PNG figures. Benchmarks (speed) are `python -m bench.run`."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def body(ctx):
        from liftlake.lib.pipelines.report import run_report

        print(run_report(ctx))

    return run_job("report", __doc__, body, argv, uses_model=True)


if __name__ == "__main__":
    sys.exit(main())
