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


def test_current_holding_anything_but_a_version_name_is_refused(saved, tmp_path):
    warehouse, version, path = saved
    outside = tmp_path / "elsewhere"
    shutil.copytree(path, outside)
    pointer = os.path.join(warehouse, "_models", "esmm", "CURRENT")
    for text in (str(outside), "../../elsewhere", "v0001/../../x", "v1"):
        with open(pointer, "w", encoding="utf-8") as fh:
            fh.write(text)
        with pytest.raises(ArtifactError, match=r"CURRENT: .* is not a model version \(rule: vNNNN"):
            load_artifact(warehouse, "esmm")


@pytest.mark.parametrize("version", ["../../../x", "/etc", "v0001/../v0001", "current", ""])
def test_a_version_that_is_not_a_store_version_is_refused(saved, version):
    warehouse, _, _ = saved
    with pytest.raises(ArtifactError, match="not a model version|no current version"):
        load_artifact(warehouse, "esmm", version)


def test_a_version_folder_that_is_a_symlink_out_of_the_store_is_refused(saved, tmp_path):
    warehouse, _, path = saved
    outside = tmp_path / "planted"
    shutil.copytree(path, outside)
    os.symlink(outside, os.path.join(warehouse, "_models", "esmm", "v0009"))
    with pytest.raises(ArtifactError, match="is a link or lies outside the model store"):
        load_artifact(warehouse, "esmm", "v0009")


def test_non_finite_weights_are_refused(saved):
    warehouse, version, path = saved
    weights = torch.load(os.path.join(path, "weights.pt"), weights_only=True)
    first = next(k for k, v in weights.items() if torch.is_floating_point(v))
    weights[first] = torch.full_like(weights[first], float("nan"))
    torch.save(weights, os.path.join(path, "weights.pt"))
    with pytest.raises(ArtifactError, match=r"non-finite values in \['" + first.replace(".", r"\.")):
        load_artifact(warehouse, "esmm", version)


@pytest.mark.parametrize("file_name, text", [("weights.pt", ""), ("model.json", "{not json"),
                                             ("model.json", "[1, 2]"), ("config.yaml", "a: [1,"),
                                             ("data.json", "\xff")])
def test_empty_or_malformed_artifact_files_are_refused_naming_the_file(saved, file_name, text):
    warehouse, version, path = saved
    with open(os.path.join(path, file_name), "w", encoding="latin-1") as fh:
        fh.write(text)
    with pytest.raises(ArtifactError, match=file_name.replace(".", r"\.")):
        load_artifact(warehouse, "esmm", version)
