"""liftlake quickstart: the embedded default end to end on a few simulated days.

simulate -> build features -> ESCIM labels -> train one model per family -> score, then print the
tables it wrote and two SQL queries over the scores. Days (3 ending at 2026-11-20), models (dcmt,
unimvt), launcher (torch-distributor x2) and epochs: the ``quickstart.*`` settings (--set
quickstart.days=N, --set quickstart.models=[dcmt] ...)."""
import sys

from liftlake.lib.cli.runner import run_job
from liftlake.lib.pipelines.quickstart import run_quickstart


def main(argv=None) -> int:
    return run_job("quickstart", __doc__, run_quickstart, argv, default_days_from_quickstart=True, uses_model=True)


if __name__ == "__main__":
    sys.exit(main())
