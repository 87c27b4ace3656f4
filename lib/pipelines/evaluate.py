"""The body of ``liftlake evaluate``: a model version (default: CURRENT) on its test split -> ops.model_metrics."""
from __future__ import annotations

import json

from liftlake.lib.artifacts.model_store import ArtifactError, current_version
from liftlake.lib.config import warehouse_path
from liftlake.lib.evaluation.evaluate import evaluate_version


def run(ctx, version: str | None = None) -> dict[str, float]:
    name = ctx.config.model.name
    version = version or current_version(warehouse_path(ctx.config), name)
    if version is None:
        raise ArtifactError(f"model {name} has no CURRENT version; train it first or pass --version")
    metrics = evaluate_version(ctx, name, version, ctx.days[-1])
    if ctx.args.json:
        print(json.dumps(metrics, default=float))
    return metrics
