"""MLflow tracking of the model store's versions: each trained version becomes an MLflow run of the
experiment ``liftlake/<name>`` (its params, test metrics, per-epoch validation scores and lineage:
days, table versions, feature spec, run key, code version) and a version of the registered model
``liftlake.<name>`` whose source is the artifact's folder.

The model store stays the home of the weights and of the aliases (champion = CURRENT, challenger);
MLflow gets the record of each run and the lineage a reader browses or compares in MLflow's UI or
client, not a second copy of the aliases. The store is a SQLite database under the warehouse by
default (``train.mlflow_uri``), so nothing has to run beside the platform.
"""
from __future__ import annotations

import json
import logging
import math
import os

logger = logging.getLogger(__name__)

MLFLOW_DIR = "_mlflow"
MAX_TAG = 5000  # MLflow's tag values hold at most 8000 characters; params 6000


def tracking_uri(warehouse: str, configured: str) -> str | None:
    """The MLflow store to record in: None when tracking is off."""
    if configured == "none":
        return None
    if configured:
        return configured
    folder = os.path.join(os.path.abspath(warehouse), MLFLOW_DIR)
    os.makedirs(folder, exist_ok=True)
    return f"sqlite:///{os.path.join(folder, 'mlflow.db')}"


def _flat(prefix: str, value, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = json.dumps(value, default=str) if isinstance(value, (list, tuple)) else str(value)


def run_record(art, metrics: dict[str, float], train_settings: dict, gate: dict) -> dict:
    """(params, metrics, tags) of one saved version: what MLflow is told, built from the artifact."""
    params: dict[str, str] = {}
    _flat("model", art.info.get("params") or {}, params)
    _flat("train", train_settings, params)
    values = {k: float(v) for k, v in metrics.items()
              if not k.startswith("ref_") and isinstance(v, (int, float)) and math.isfinite(float(v))}
    code = art.info.get("code") or {}
    data = art.data
    spec = json.loads(art.feature_spec_json or "{}").get("version") if art.feature_spec_json else None
    tags = {"liftlake.model": art.name, "liftlake.version": art.version, "liftlake.artifact": art.path,
            "liftlake.run_id": str(art.info.get("run_id")), "liftlake.run_key": str(data.get("run_key")),
            "liftlake.days": ",".join(data.get("days") or []), "liftlake.rows": str(data.get("rows")),
            "liftlake.launcher": str(data.get("launcher")), "liftlake.feature_spec": str(spec),
            "liftlake.table_versions": json.dumps(data.get("table_versions") or {}, sort_keys=True)[:MAX_TAG],
            "liftlake.gate": json.dumps(gate, default=str)[:MAX_TAG],
            "liftlake.code.version": str(code.get("liftlake")), "mlflow.runName": art.version}
    if code.get("git"):
        tags["mlflow.source.git.commit"] = code["git"]
        tags["liftlake.code.dirty"] = str(code.get("dirty"))
    return {"params": {k: v[:6000] for k, v in params.items()}, "metrics": values, "tags": tags}


def record_version(warehouse: str, configured_uri: str, art, metrics: dict[str, float], train_settings: dict,
                   gate: dict) -> dict | None:
    """Record the saved version ``art`` in MLflow; {"run_id", "model_version", "uri"} or None when
    tracking is off. A store that cannot be reached is a warning, not a failed training: the
    version is saved and gated already, and MLflow holds only its record."""
    uri = tracking_uri(warehouse, configured_uri)
    if uri is None:
        return None
    try:
        return _record(uri, art, metrics, train_settings, gate)
    except Exception as exc:  # noqa: BLE001 - any MLflow failure: the training itself stands
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        logger.warning(f"mlflow: {art.name} {art.version} not recorded in {uri}: {type(exc).__name__}: {first}")
        return None


def _record(uri: str, art, metrics: dict[str, float], train_settings: dict, gate: dict) -> dict:
    import time

    logging.getLogger("alembic").setLevel(logging.WARNING)  # the first use of a store migrates it
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    record = run_record(art, metrics, train_settings, gate)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_name = f"liftlake/{art.name}"
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
    run = client.create_run(experiment_id, run_name=art.version)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    history = [Metric(f"epoch_{key}", float(value), now, int(h["epoch"]))  # the training curve, step = epoch
               for h in (art.metrics.get("history") or []) if isinstance(h, dict) and isinstance(h.get("epoch"), int)
               for key, value in h.items() if key not in ("epoch", "samples")
               and isinstance(value, (int, float)) and math.isfinite(float(value))]
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in record["metrics"].items()] + history,
                     params=[Param(k, v) for k, v in record["params"].items()],
                     tags=[RunTag(k, v) for k, v in record["tags"].items()])
    client.set_terminated(run_id)
    registered = f"liftlake.{art.name}"
    if not client.search_registered_models(filter_string=f"name = '{registered}'"):
        client.create_registered_model(registered, description=f"liftlake model {art.name} (model store: {art.path})")
    version = client.create_model_version(registered, source=art.path, run_id=run_id,
                                          tags={"liftlake.version": art.version}, description=f"liftlake {art.version}")
    logger.info(f"mlflow: {art.name} {art.version} is run {run_id} of experiment {experiment_name} and version "
                f"{version.version} of {registered} ({uri})")
    return {"run_id": run_id, "model_version": str(version.version), "uri": uri}
