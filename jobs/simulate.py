"""spark-submit jobs/simulate.py --ds 2026-11-20 [--start D --end D] [--set simulator.exposures=N]

Writes the simulator's raw logs and ground truth for each day (partition overwrite: re-running a
day replaces it)."""
import sys

from liftlake.lib.cli.runner import run_job
from liftlake.lib.pipelines.simulate import simulate_days


def main(argv=None) -> int:
    def body(ctx):
        simulate_days(ctx)

    return run_job("simulate", __doc__, body, argv, default_days_from_quickstart=True)


if __name__ == "__main__":
    sys.exit(main())
