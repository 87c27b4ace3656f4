"""MLflow tracking of saved versions: a run with the version's params, metrics, curve and lineage,
and a version of the registered model whose source is the artifact; none records nothing; a store
that cannot be written is a warning, not a failed training."""
from __future__ import annotations

import logging
import os

from liftlake.lib.artifacts import model_store, tracking
from liftlake.lib.artifacts.model_store import save_artifact
from liftlake.models.registry import build_model

FIELDS = [10, 5, 3]


def saved(warehouse: str):
    model = build_model("esmm", FIELDS, {"embed_dim": 8})
    version = save_artifact(warehouse, "esmm", "cvr", "cvr", FIELDS, {"embed_dim": 8}, model.state_dict(),
                            {"model": {}}, '{"version": "spec123"}',
                            {"table_versions": {"features.samples": 4}, "days": ["2026-11-19", "2026-11-20"],
                             "rows": 900, "run_key": "rk1", "launcher": "local"},
                            {"history": [{"epoch": 0, "loss": 0.5, "score": -0.3, "samples": 900},
                                         {"epoch": 1, "loss": 0.4, "score": -0.25, "samples": 900}]})
    return model_store.load_artifact(warehouse, "esmm", version)


def test_a_version_is_a_run_and_a_registered_model_version(tmp_path):
    from mlflow import MlflowClient

    warehouse = str(tmp_path)
    art = saved(warehouse)
    metrics = {"ctcvr_auc": 0.71, "cvr_auc": float("nan"), "ref_oracle__cvr_true_auc": 0.9}
    out = tracking.record_version(warehouse, "", art, metrics, {"learning_rate": 0.001, "epochs": 2},
                                  {"metric": "ctcvr_auc", "value": 0.71, "passed": True})
    uri = f"sqlite:///{os.path.join(warehouse, '_mlflow', 'mlflow.db')}"
    assert out is not None and out["uri"] == uri and out["model_version"] == "1"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(out["run_id"])
    assert run.data.metrics == {"ctcvr_auc": 0.71, "epoch_loss": 0.4, "epoch_score": -0.25}  # last step of the curve
    assert [m.value for m in client.get_metric_history(out["run_id"], "epoch_loss")] == [0.5, 0.4]
    assert run.data.params["model.embed_dim"] == "8" and run.data.params["train.learning_rate"] == "0.001"
    tags = run.data.tags
    assert (tags["liftlake.version"], tags["liftlake.run_key"], tags["liftlake.feature_spec"]) == (art.version, "rk1", "spec123")
    assert tags["liftlake.days"] == "2026-11-19,2026-11-20" and '"features.samples": 4' in tags["liftlake.table_versions"]
    assert tags["liftlake.run_id"] == art.info["run_id"] and '"passed": true' in tags["liftlake.gate"]
    assert client.get_experiment(run.info.experiment_id).name == "liftlake/esmm"
    version = client.get_model_version("liftlake.esmm", "1")
    assert version.source == art.path and version.run_id == out["run_id"] and version.tags["liftlake.version"] == art.version
    # a second version of the model is the registered model's version 2, in the same experiment
    again = tracking.record_version(warehouse, "", saved(warehouse), {"ctcvr_auc": 0.72}, {}, {})
    assert again["model_version"] == "2" and client.get_run(again["run_id"]).info.experiment_id == run.info.experiment_id


def test_none_records_nothing_and_an_unwritable_store_is_a_warning(tmp_path, caplog):
    warehouse = str(tmp_path)
    art = saved(warehouse)
    assert tracking.record_version(warehouse, "none", art, {"ctcvr_auc": 0.7}, {}, {}) is None
    assert not os.path.exists(os.path.join(warehouse, "_mlflow"))
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="liftlake.lib.artifacts.tracking"):
        assert tracking.record_version(warehouse, f"sqlite:///{blocked}/mlflow.db", art, {}, {}, {}) is None
    assert any(f"mlflow: esmm {art.version} not recorded in sqlite:///{blocked}/mlflow.db" in r.message
               for r in caplog.records)
