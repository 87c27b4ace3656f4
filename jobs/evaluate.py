"""spark-submit jobs/evaluate.py --ds 2026-11-20 --model dcmt [--version v0001]

Evaluates a model version (default: CURRENT) on its test split against the truth -> ops.model_metrics."""
import json
import sys

from liftlake.lib.runner import run_job


def main(argv=None) -> int:
    def extend(parser):
        parser.add_argument("--version", help="model version (default: the CURRENT one)")

    def body(ctx):
        from liftlake.lib.config import warehouse_path
        from liftlake.lib.evaluation import evaluate_version
        from liftlake.lib.model_store import ArtifactError, current_version

        name = ctx.config.model.name
        version = ctx.args.version or current_version(warehouse_path(ctx.config), name)
        if version is None:
            raise ArtifactError(f"model {name} has no CURRENT version; train it first or pass --version")
        metrics = evaluate_version(ctx, name, version, ctx.days[-1])
        if ctx.args.json:
            print(json.dumps(metrics, default=float))

    return run_job("evaluate", __doc__, body, argv, extend_parser=extend, default_days_from_quickstart=True)


if __name__ == "__main__":
    sys.exit(main())
