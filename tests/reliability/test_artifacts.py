"""Artifacts that cannot be trusted are refused with a message naming the folder, file and why;
loading never runs code from the artifact."""
from __future__ import annotations

import os
import pickle
import shutil

import pytest
import torch

from liftlake.lib.artifacts import model_store
from liftlake.lib.artifacts.model_store import ArtifactError, load_artifact, save_artifact
from liftlake.models.registry import build_model

FIELDS = [10, 5, 3]


@pytest.fixture()
def saved(tmp_path):
    warehouse = str(tmp_path)
    model = build_model("esmm", FIELDS, {})
    version = save_artifact(warehouse, "esmm", "cvr", "cvr", FIELDS, {}, model.state_dict(), {"model": {}},
                            "{}", {"table_versions": {}}, {"history": []})
    return warehouse, version, os.path.join(warehouse, "_models", "esmm", version)


def test_round_trip_and_current_pointer(saved):
    warehouse, version, _ = saved
    art = load_artifact(warehouse, "esmm", version)
    x = torch.zeros(4, 3, dtype=torch.long)
    assert set(art.model.predict({"x": x})) == {"ctr", "cvr", "ctcvr"}
    assert model_store.current_version(warehouse, "esmm") is None
    model_store.set_current(warehouse, "esmm", version)
    assert load_artifact(warehouse, "esmm").version == version


def test_missing_file(saved):
    warehouse, version, path = saved
    os.remove(os.path.join(path, "feature_spec.json"))
    with pytest.raises(ArtifactError, match=r"missing \['feature_spec.json'\]"):
        load_artifact(warehouse, "esmm", version)


def test_truncated_weights(saved):
    warehouse, version, path = saved
    weights = os.path.join(path, "weights.pt")
    with open(weights, "r+b") as fh:
        fh.truncate(os.path.getsize(weights) // 2)
    with pytest.raises(ArtifactError, match="weights.pt cannot be loaded safely"):
        load_artifact(warehouse, "esmm", version)


class Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/liftlake-artifact-code-ran",))


def test_pickled_code_is_not_executed(saved):
    warehouse, version, path = saved
    marker = "/tmp/liftlake-artifact-code-ran"
    if os.path.exists(marker):
        os.remove(marker)
    with open(os.path.join(path, "weights.pt"), "wb") as fh:
        pickle.dump({"w": Boom()}, fh)
    with pytest.raises(ArtifactError, match="cannot be loaded safely"):
        load_artifact(warehouse, "esmm", version)
    assert not os.path.exists(marker)


def test_artifact_of_another_model_class(saved, tmp_path):
    warehouse, version, path = saved
    target = os.path.join(warehouse, "_models", "naive", version)
    shutil.copytree(path, target)
    with pytest.raises(ArtifactError, match="saved by model class"):
        load_artifact(warehouse, "naive", version)


def test_weights_that_do_not_fit(saved):
    warehouse, version, path = saved
    other = build_model("esmm", [11, 5, 3], {}).state_dict()
    torch.save(other, os.path.join(path, "weights.pt"))
    with pytest.raises(ArtifactError, match="does not fit model esmm"):
        load_artifact(warehouse, "esmm", version)


def test_unknown_version_and_no_current(saved):
    warehouse, _, _ = saved
    with pytest.raises(ArtifactError, match="has no current version"):
        load_artifact(warehouse, "esmm")
    with pytest.raises(ArtifactError, match="version v9999"):
        load_artifact(warehouse, "esmm", "v9999")
