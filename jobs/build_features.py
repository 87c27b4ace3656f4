"""spark-submit jobs/build_features.py --ds 2026-11-20 [--refit]

Raw logs -> features.samples, features.user_samples and ops.quarantine for each day."""
import sys

from liftlake.lib.cli.runner import run_job
from liftlake.lib.pipelines.build_features import build_features_days


def main(argv=None) -> int:
    def extend(parser):
        parser.add_argument("--refit", action="store_true", help="fit a new feature spec on the window")

    def body(ctx):
        build_features_days(ctx, refit=ctx.args.refit)

    return run_job("build-features", __doc__, body, argv, extend_parser=extend, default_days_from_quickstart=True)


if __name__ == "__main__":
    sys.exit(main())
