"""spark-submit jobs/evaluate.py --ds 2026-11-20 --model dcmt [--version v0001]

Evaluates a model version (default: CURRENT) on its test split against the truth -> ops.model_metrics."""
import sys

from liftlake.lib.cli.runner import run_job


def main(argv=None) -> int:
    def extend(parser):
        parser.add_argument("--version", help="model version (default: the CURRENT one)")

    def body(ctx):
        from liftlake.lib.pipelines import evaluate

        evaluate.run(ctx, ctx.args.version)

    return run_job("evaluate", __doc__, body, argv, extend_parser=extend, default_days_from_quickstart=True, uses_model=True,
                   model_flag=True, json_output=True)


if __name__ == "__main__":
    sys.exit(main())
