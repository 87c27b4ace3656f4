"""spark-submit jobs/score.py --ds 2026-11-20 [--model dcmt] [--version v0002]

Scores the day with every model that has a CURRENT version (or the one named), writing
scores.cvr and scores.uplift_user with a partition overwrite of the day."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def extend(parser):
        parser.add_argument("--version", help="score with this version instead of CURRENT (needs --model)")

    def body(ctx):
        from liftlake.lib.pipelines.score import score_days

        score_days(ctx, only_model=ctx.args.model, version=ctx.args.version)

    return run_job("score", __doc__, body, argv, extend_parser=extend, default_days_from_quickstart=True, uses_model=True,
                   model_flag=True)


if __name__ == "__main__":
    sys.exit(main())
