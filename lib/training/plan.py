"""What a rank needs to train: the ``TrainPlan`` (model, settings, materialized files) built on the driver.
How its columns become a model batch is lib/training/batch.py."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass

from liftlake.lib.artifacts.feature_specs import load_spec
from liftlake.lib.cli.runner import InputError
from liftlake.lib.config import Config, model_params, warehouse_path
from liftlake.lib.days import window_days
from liftlake.lib.features.spec import FeatureSpec
from liftlake.lib.training.batch import batch_columns
from liftlake.lib.training.trainset import TrainSet, materialize

logger = logging.getLogger(__name__)


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, a rank that failed); the message says where."""


# -- what a rank needs -------------------------------------------------------------------------------
@dataclass
class TrainPlan:
    model_name: str
    model_params: dict
    field_dims: list[int]
    task: str                              # cvr | coupon | multi_treatment
    feature_columns: list[str]
    train_files: list[str]                 # sorted; petastorm deals row groups j to rank j % n
    train_rowgroup_rows: list[int]         # rows of each row group, in file then group order
    valid_files: list[str]
    learning_rate: float
    weight_decay: float
    optimizer: str
    batch_size: int
    epochs: int
    seed: int
    early_stopping_patience: int
    checkpoint_every_steps: int
    log_every_steps: int
    checkpoint_dir: str
    num_responses: int = 2
    num_treatments: int = 2
    cf_label_column: str | None = None
    use_gpu: bool = False
    embedding_allreduce: str = "dense"  # dense | touched_rows (lib/training/comms.py)
    same_host_allreduce: str = "shared_memory"  # shared_memory | launcher (lib/training/shared_memory.py)
    # A step budget: at least this many optimizer steps, in whole epochs (0: just ``epochs``). A
    # small world is a few steps an epoch, where a fixed epoch count leaves a model at its start.
    min_steps: int = 0
    # Fault injection for the resume test: stop after this many optimizer steps (0: never).
    stop_after_steps: int = 0


PRIMARY_METRIC = {"cvr": "ctcvr_auc", "coupon": "auc_outcome", "multi_treatment": "fit_r2"}


def model_task(name: str, params: dict) -> str:
    """cvr | coupon | multi_treatment: which rows and batch keys the model learns from."""
    from liftlake.models.registry import get_entry, resolve_params

    entry = get_entry(name)
    if entry.family == "cvr":
        return "cvr"
    resolved = resolve_params(name, params)
    return str(getattr(resolved, "task", None) or getattr(entry.cls, "task", "coupon"))


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
               checkpoint_dir: str | None = None) -> tuple[TrainPlan, TrainSet, FeatureSpec]:
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
    shape = config.data
    probe = TrainPlan(model_name=name, model_params=params, field_dims=spec.field_dims(level), task=task,
                      feature_columns=spec.columns(level), train_files=[], train_rowgroup_rows=[], valid_files=[],
                      learning_rate=config.train.learning_rate, weight_decay=config.train.weight_decay,
                      optimizer=config.train.optimizer, batch_size=config.train.batch_size,
                      epochs=config.train.epochs, seed=config.train.seed,
                      early_stopping_patience=config.train.early_stopping_patience,
                      checkpoint_every_steps=config.train.checkpoint_every_steps,
                      log_every_steps=config.train.log_every_steps, checkpoint_dir="",
                      num_responses=shape.num_responses, num_treatments=shape.num_treatments,
                      cf_label_column="cf_label" if cf_label_column else None, use_gpu=config.train.use_gpu,
                      embedding_allreduce=config.train.embedding_allreduce,
                      same_host_allreduce=config.train.same_host_allreduce, min_steps=config.train.min_steps)
    columns = [c for c in batch_columns(probe) if c not in ("row_id", "cf_label")]
    if task == "cvr":
        columns = ["exposure_id"] + columns if cf_label_column else columns
    ranks = 1 if config.train.launcher == "local" else config.train.num_processes
    if config.train.split_by == "day" and len(days) < 2:
        raise InputError(f"table {table}: train.split_by=day tests on the window's last day and trains on the "
                         f"earlier ones, but the {config.train.window_days} day(s) ending {ds} hold only {days} "
                         f"(rule: a window of at least 2 days; or train.split_by=user)")
    trainset = materialize(store, warehouse, level, days, versions, columns, files_per_split=4 * ranks,
                           cf_label_column=cf_label_column, cf_label_rate=params.get("label_rate"),
                           split_by=config.train.split_by, log=logger.info)
    # Checkpoints resume a killed run of the SAME training: everything that shapes the run is in
    # the key, so a re-run with another learning rate, batch size, epoch count or model parameter
    # starts fresh instead of resuming (and returning) the earlier run's weights.
    run_src = json.dumps({"params": params, "optimizer": probe.optimizer, "lr": probe.learning_rate,
                          "weight_decay": probe.weight_decay, "batch": probe.batch_size, "epochs": probe.epochs,
                          "min_steps": probe.min_steps,
                          "patience": probe.early_stopping_patience, "seed": probe.seed,
                          "launcher": config.train.launcher, "ranks": ranks}, sort_keys=True, default=str)
    run_key = f"{name}-{trainset.key}-{hashlib.sha256(run_src.encode()).hexdigest()[:12]}"
    plan = dataclasses.replace(
        probe, train_files=trainset.files["train"], train_rowgroup_rows=trainset.rowgroup_rows["train"],
        valid_files=trainset.files["valid"],
        checkpoint_dir=checkpoint_dir or os.path.join(warehouse, "_models", name, "_checkpoints", run_key))
    return plan, trainset, spec
