"""Train one model from the warehouse into the model store (the body of ``liftlake train``)."""
from __future__ import annotations

import logging
import os

from liftlake.lib.artifacts.publish import exclusive_lock
from liftlake.lib.config import warehouse_path
from liftlake.lib.training.launchers import launch
from liftlake.lib.training.plan import PRIMARY_METRIC, build_plan

logger = logging.getLogger(__name__)


def train(ctx, ds: str) -> dict:
    """Train, save the artifact, evaluate, move CURRENT through the gate. Returns a summary."""
    from liftlake.lib.artifacts import model_store
    from liftlake.lib.evaluation.evaluate import evaluate_version
    from liftlake.models.registry import get_entry

    config = ctx.config
    plan, trainset, spec = build_plan(ctx.store, config, ds)
    warehouse = warehouse_path(config)
    # the run key names everything that shapes the run (rows, settings): a finished run of the same
    # key is the same model, so a re-run returns that version instead of adding a copy of it. The
    # run's lock makes that hold for two starts at once too: the second waits for the first (they
    # would also share one checkpoint folder) and then finds its version
    run_key = os.path.basename(plan.checkpoint_dir)
    with exclusive_lock(os.path.join(plan.checkpoint_dir, ".run.lock"),
                        waiting=f"{plan.model_name}: run {run_key} is being trained by another job; waiting for it"):
        existing = model_store.version_with_run_key(warehouse, plan.model_name, run_key)
        if existing is None:
            result = launch(plan, config.train.launcher, config.train.num_processes, ctx.spark)
            entry = get_entry(plan.model_name)
            version = model_store.save_artifact(
                warehouse, plan.model_name, entry.family, plan.task, plan.field_dims, plan.model_params,
                result["weights"], config.to_dict(), spec.to_json(),
                {"table_versions": trainset.table_versions, "days": trainset.days, "trainset": trainset.key,
                 "run_key": run_key, "rows": trainset.rows, "launcher": config.train.launcher,
                 "ranks": result["world_size"]},
                {"history": result["state"]["history"], "best_epoch": result["state"]["best_epoch"],
                 "best_valid_score": result["state"]["best_score"]})
    if existing is not None:
        logger.info(f"{plan.model_name}: run {run_key} is version {existing} already; not training it again")
        metrics = evaluate_version(ctx, plan.model_name, existing, ds)
        return {"model": plan.model_name, "version": existing, "reused": True,
                "gate_passed": model_store.current_version(warehouse, plan.model_name) == existing,
                "metrics": metrics, "result": {}}
    logger.info(f"saved {plan.model_name} {version}")
    metrics = evaluate_version(ctx, plan.model_name, version, ds)
    gate_metric = PRIMARY_METRIC[plan.task]
    gate_min = getattr(config.train, f"gate_min_{plan.task}")
    gate_value = metrics.get(gate_metric)
    passed = gate_value is not None and gate_value >= gate_min
    if passed:
        model_store.set_current(warehouse, plan.model_name, version)
    logger.info(f"gate {gate_metric} >= {gate_min}: "
        f"{gate_value if gate_value is None else round(gate_value, 4)} -> "
        f"{'CURRENT moved to ' + version if passed else 'CURRENT unchanged'}")
    return {"model": plan.model_name, "version": version, "reused": False, "gate_passed": passed, "metrics": metrics,
            "result": {k: v for k, v in result.items() if k != "weights"}}


