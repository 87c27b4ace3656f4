"""Train one model from the warehouse into the model store (the body of ``liftlake train``)."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import os

from liftlake.lib.config import Config, model_params, warehouse_path
from liftlake.lib.features import FeatureSpec, load_spec, window_days
from liftlake.lib.pipeline import log
from liftlake.lib.runner import InputError
from liftlake.lib.training import TrainPlan, batch_columns, launch
from liftlake.lib.trainset import materialize


PRIMARY_METRIC = {"cvr": "ctcvr_auc", "coupon": "auc_outcome", "multi_treatment": "fit_r2"}


def model_task(name: str, params: dict) -> str:
    """cvr | coupon | multi_treatment: which rows and batch keys the model learns from."""
    from liftlake.models.registry import get_entry, resolve_params

    entry = get_entry(name)
    if entry.family == "cvr":
        return "cvr"
    resolved = resolve_params(name, params)
    return getattr(resolved, "task", None) or getattr(entry.cls, "task", "coupon")


def pinned_versions(store, task: str, cf_label_column: str | None) -> dict[str, int]:
    table = "features.samples" if task == "cvr" else "features.user_samples"
    if not store.exists(table):
        raise InputError(f"table {table} does not exist; run `liftlake build-features` first")
    versions = {table: store.version(table)}
    if cf_label_column:
        if not store.exists("labels.escim_counterfactual"):
            raise InputError("table labels.escim_counterfactual does not exist; run `liftlake escim-labels` first")
        versions["labels.escim_counterfactual"] = store.version("labels.escim_counterfactual")
    return versions


def build_plan(store, config: Config, ds: str, versions: dict[str, int] | None = None,
               checkpoint_dir: str | None = None) -> tuple[TrainPlan, object, FeatureSpec]:
    from liftlake.models.registry import get_entry

    name = config.model.name
    entry = get_entry(name)
    params = model_params(config, entry)
    task = model_task(name, params)
    cf_label_column = getattr(entry.cls, "cf_label_column", None)
    warehouse = warehouse_path(config)
    versions = versions or pinned_versions(store, task, cf_label_column)
    table = "features.samples" if task == "cvr" else "features.user_samples"
    have = store.partition_counts(table, versions[table])
    days = [d for d in window_days(ds, config.train.window_days) if d in have]
    if not days:
        raise InputError(f"table {table} has no partition in the {config.train.window_days} day(s) ending {ds}")
    spec_version = store.read(table, version=versions[table], partitions=[days[-1]]) \
        .select("feature_spec_version").limit(1).collect()[0][0]
    spec = load_spec(warehouse, spec_version)
    level = "exposure" if task == "cvr" else "user"
    sim = config.simulator
    probe = TrainPlan(model_name=name, model_params=params, field_dims=spec.field_dims(level), task=task,
                      feature_columns=spec.columns(level), train_files=[], train_rowgroup_rows=[], valid_files=[],
                      learning_rate=config.train.learning_rate, weight_decay=config.train.weight_decay,
                      optimizer=config.train.optimizer, batch_size=config.train.batch_size,
                      epochs=config.train.epochs, seed=config.train.seed,
                      early_stopping_patience=config.train.early_stopping_patience,
                      checkpoint_every_steps=config.train.checkpoint_every_steps,
                      log_every_steps=config.train.log_every_steps, checkpoint_dir="",
                      num_responses=sim.num_responses, num_treatments=sim.num_treatments,
                      cf_label_column="cf_label" if cf_label_column else None, use_gpu=config.train.use_gpu)
    columns = [c for c in batch_columns(probe) if c not in ("row_id", "cf_label")]
    if task == "cvr":
        columns = ["exposure_id"] + columns if cf_label_column else columns
    ranks = 1 if config.train.launcher == "local" else config.train.num_processes
    trainset = materialize(store, warehouse, level, days, versions, columns, files_per_split=4 * ranks,
                           cf_label_column=cf_label_column, cf_label_rate=params.get("label_rate"), log=log)
    # Checkpoints resume a killed run of the SAME training: everything that shapes the run is in
    # the key, so a re-run with another learning rate, batch size, epoch count or model parameter
    # starts fresh instead of resuming (and returning) the earlier run's weights.
    run_src = json.dumps({"params": params, "optimizer": probe.optimizer, "lr": probe.learning_rate,
                          "weight_decay": probe.weight_decay, "batch": probe.batch_size, "epochs": probe.epochs,
                          "patience": probe.early_stopping_patience, "seed": probe.seed,
                          "launcher": config.train.launcher, "ranks": ranks}, sort_keys=True, default=str)
    run_key = f"{name}-{trainset.key}-{hashlib.sha256(run_src.encode()).hexdigest()[:12]}"
    plan = dataclasses.replace(
        probe, train_files=trainset.files["train"], train_rowgroup_rows=trainset.rowgroup_rows["train"],
        valid_files=trainset.files["valid"],
        checkpoint_dir=checkpoint_dir or os.path.join(warehouse, "_models", name, "_checkpoints", run_key))
    return plan, trainset, spec


def train(ctx, ds: str) -> dict:
    """Train, save the artifact, evaluate, move CURRENT through the gate. Returns a summary."""
    from liftlake.lib import model_store
    from liftlake.lib.evaluation import evaluate_version
    from liftlake.models.registry import get_entry

    config = ctx.config
    plan, trainset, spec = build_plan(ctx.store, config, ds)
    result = launch(plan, config.train.launcher, config.train.num_processes, ctx.spark)
    warehouse = warehouse_path(config)
    entry = get_entry(plan.model_name)
    version = model_store.save_artifact(
        warehouse, plan.model_name, entry.family, plan.task, plan.field_dims, plan.model_params, result["weights"],
        config.to_dict(), spec.to_json(),
        {"table_versions": trainset.table_versions, "days": trainset.days, "trainset": trainset.key,
         "rows": trainset.rows, "launcher": config.train.launcher, "ranks": result["world_size"]},
        {"history": result["state"]["history"], "best_epoch": result["state"]["best_epoch"],
         "best_valid_score": result["state"]["best_score"]})
    log(f"saved {plan.model_name} {version}")
    metrics = evaluate_version(ctx, plan.model_name, version, ds)
    gate_metric = PRIMARY_METRIC[plan.task]
    gate_min = getattr(config.train, f"gate_min_{plan.task}")
    gate_value = metrics.get(gate_metric)
    passed = gate_value is not None and gate_value >= gate_min
    if passed:
        model_store.set_current(warehouse, plan.model_name, version)
    log(f"gate {gate_metric} >= {gate_min}: "
        f"{gate_value if gate_value is None else round(gate_value, 4)} -> "
        f"{'CURRENT moved to ' + version if passed else 'CURRENT unchanged'}")
    return {"model": plan.model_name, "version": version, "gate_passed": passed, "metrics": metrics,
            "result": {k: v for k, v in result.items() if k != "weights"}}



