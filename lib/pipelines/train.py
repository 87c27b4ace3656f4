"""Train one model from the warehouse into the model store (the body of ``liftlake train``)."""
from __future__ import annotations

import logging
import os

from liftlake.lib.artifacts.publish import exclusive_lock
from liftlake.lib.config import warehouse_path
from liftlake.lib.training.launchers import launch, require_gpu
from liftlake.lib.training.plan import PRIMARY_METRIC, build_plan

logger = logging.getLogger(__name__)


def train(ctx, ds: str) -> dict:
    """Train, save the artifact, evaluate, move the champion (CURRENT) through the gate. Returns a summary."""
    from liftlake.lib.artifacts import model_store
    from liftlake.lib.evaluation.evaluate import evaluate_version
    from liftlake.models.registry import get_entry

    config = ctx.config
    require_gpu(config.train.launcher, config.train.use_gpu, config.spark.master)
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
                {"table_versions": trainset.table_versions, "days": trainset.days, "split_by": trainset.split_by,
                 "trainset": trainset.key,
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
    passed, gate_detail = gate(ctx, plan.model_name, version, plan.task, metrics)
    tracked = track(ctx, plan.model_name, version, metrics, {**gate_detail, "passed": passed})
    return {"model": plan.model_name, "version": version, "reused": False, "gate_passed": passed, "metrics": metrics,
            "mlflow": tracked, "result": {k: v for k, v in result.items() if k != "weights"}}


TRACKED_TRAIN_SETTINGS = ("launcher", "num_processes", "optimizer", "learning_rate", "weight_decay", "batch_size",
                          "epochs", "min_steps", "seed", "early_stopping_patience", "window_days")


def track(ctx, name: str, version: str, metrics: dict[str, float], gate: dict) -> dict | None:
    """The version's record in MLflow (lib/artifacts/tracking.py); None when train.mlflow_uri is none."""
    from liftlake.lib.artifacts import model_store, tracking

    config = ctx.config
    warehouse = warehouse_path(config)
    art = model_store.load_artifact(warehouse, name, version)
    settings = {key: getattr(config.train, key) for key in TRACKED_TRAIN_SETTINGS}
    return tracking.record_version(warehouse, config.train.mlflow_uri, art, metrics, settings, gate)


def gate(ctx, name: str, version: str, task: str, metrics: dict[str, float]) -> tuple[bool, dict]:
    """The new version becomes the challenger; it replaces the champion when its primary test metric
    reaches the task's floor and, with a champion, the champion's on the same test rows less
    train.gate_tolerance. Both values go into the promotion history. Returns (passed, those values)."""
    from liftlake.lib.artifacts import model_store
    from liftlake.lib.evaluation.evaluate import metrics_on_rows_of

    config = ctx.config
    warehouse = warehouse_path(config)
    metric = PRIMARY_METRIC[task]
    floor = getattr(config.train, f"gate_min_{task}")
    value = metrics.get(metric)
    champion = model_store.current_version(warehouse, name)
    champion_value = None
    if champion is not None and champion != version:
        on_same_rows = metrics_on_rows_of(ctx, name, champion, rows_of=version)
        if on_same_rows is None:
            logger.info(f"gate: champion {champion} reads another feature spec than {version}; "
                        "the challenger is judged by the floor alone")
        else:
            champion_value = on_same_rows.get(metric)
    passed = value is not None and value >= floor
    if passed and champion_value is not None:
        passed = value >= champion_value - config.train.gate_tolerance
    detail = {"metric": metric, "value": value, "floor": floor, "champion": champion,
              "champion_value": champion_value, "tolerance": config.train.gate_tolerance}
    model_store.set_alias(warehouse, name, "challenger", version, "train", **detail)
    if passed:
        model_store.set_current(warehouse, name, version, by="gate", **detail)
    shown = "n/a" if value is None else f"{value:.4f}"
    against = f"floor {floor}" + ("" if champion_value is None else
                                  f", champion {champion} {champion_value:.4f} on the same rows")
    logger.info(f"gate {metric}: challenger {version} {shown} vs. {against} -> "
                f"{'champion (CURRENT) is now ' + version if passed else 'champion unchanged'}")
    return passed, detail
