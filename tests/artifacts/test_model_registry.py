"""The registry's aliases (champion = CURRENT, challenger), their history and rollback, on saved
versions of a real model; the CLI's listing, promote and rollback."""
from __future__ import annotations

import json
import os

import pytest

from liftlake.lib.artifacts import model_store
from liftlake.lib.artifacts.model_store import ArtifactError, save_artifact
from liftlake.models.registry import build_model

FIELDS = [10, 5, 3]


def save(warehouse: str, days=("2026-11-19", "2026-11-20")) -> str:
    model = build_model("esmm", FIELDS, {})
    return save_artifact(warehouse, "esmm", "cvr", "cvr", FIELDS, {}, model.state_dict(), {"model": {}}, "{}",
                         {"table_versions": {}, "days": list(days), "rows": 1234, "run_key": "k"}, {"history": []})


@pytest.fixture()
def three(tmp_path):
    warehouse = str(tmp_path)
    return warehouse, [save(warehouse) for _ in range(3)]


def test_moves_are_recorded_and_rollback_steps_back_through_promotions(three):
    warehouse, (v1, v2, v3) = three
    model_store.set_alias(warehouse, "esmm", "challenger", v1, "train", metric="ctcvr_auc", value=0.7)
    model_store.set_current(warehouse, "esmm", v1, by="gate", metric="ctcvr_auc", value=0.7)
    model_store.set_current(warehouse, "esmm", v2, by="gate")
    model_store.set_current(warehouse, "esmm", v3)  # by hand
    assert model_store.current_version(warehouse, "esmm") == v3
    history = model_store.promotion_history(warehouse, "esmm")
    assert [(e["alias"], e["from"], e["to"], e["by"]) for e in history] == [
        ("challenger", None, v1, "train"), ("champion", None, v1, "gate"), ("champion", v1, v2, "gate"),
        ("champion", v2, v3, "promote")]
    assert history[0]["value"] == 0.7
    # rollback: the champion before the current one was promoted; twice steps back twice
    assert model_store.rollback_target(warehouse, "esmm") == v2
    model_store.set_current(warehouse, "esmm", v2, by="rollback")
    assert model_store.rollback_target(warehouse, "esmm") == v1
    model_store.set_current(warehouse, "esmm", v1, by="rollback")
    with pytest.raises(ArtifactError, match=f"champion {v1} has no earlier champion"):
        model_store.rollback_target(warehouse, "esmm")


def test_an_alias_names_only_a_saved_version(three):
    warehouse, _ = three
    with pytest.raises(ArtifactError, match="model esmm has no version v0009"):
        model_store.set_current(warehouse, "esmm", "v0009")
    assert model_store.current_version(warehouse, "esmm") is None
    assert model_store.promotion_history(warehouse, "esmm") == []
    with pytest.raises(ArtifactError, match="model esmm has no champion to roll back"):
        model_store.rollback_target(warehouse, "esmm")


@pytest.mark.reliability
@pytest.mark.parametrize("line", ['{"alias": "champion", "from": null, "to": "../../etc"}', "not json",
                                  '{"alias": "owner", "from": null, "to": "v0001"}', '["v0001"]'])
def test_a_hostile_history_line_is_refused_naming_file_and_line(three, line):
    warehouse, (v1, _, _) = three
    model_store.set_current(warehouse, "esmm", v1)
    path = os.path.join(warehouse, "_models", "esmm", "promotions.jsonl")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    with pytest.raises(ArtifactError, match=rf"file {path}: line 2 is not a promotion record"):
        model_store.promotion_history(warehouse, "esmm")


def run_cli(job, *args, warehouse, capsys):
    import importlib

    module = importlib.import_module(f"liftlake.jobs.{job}")
    code = module.main([*args, "--set", f"warehouse.path={warehouse}", "--quiet-config"])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_lists_versions_promotes_and_rolls_back(three, capsys):
    warehouse, (v1, v2, v3) = three
    model_store.set_alias(warehouse, "esmm", "challenger", v2, "train", metric="ctcvr_auc", value=0.61)
    code, out, _ = run_cli("promote", "--model", "esmm", "--version", v1, warehouse=warehouse, capsys=capsys)
    assert code == 0 and out.strip() == f"esmm: champion - -> {v1}"
    assert run_cli("promote", "--model", "esmm", "--version", v3, warehouse=warehouse, capsys=capsys)[1].strip() \
        == f"esmm: champion {v1} -> {v3}"
    code, out, _ = run_cli("models", "--versions", "--model", "esmm", "--json", warehouse=warehouse, capsys=capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["version"], r["aliases"]) for r in rows] == [(v1, []), (v2, ["challenger"]), (v3, ["champion"])]
    assert rows[1]["gate_value"] == 0.61 and rows[0]["days"] == "2026-11-19..2026-11-20" and rows[0]["rows"] == 1234
    assert len({r["run_id"] for r in rows}) == 3  # each saved version is its own run
    with open(os.path.join(warehouse, "_models", "esmm", v1, "model.json"), encoding="utf-8") as fh:
        info = json.load(fh)
    assert info["code"]["liftlake"] and (info["code"]["git"] is None or len(info["code"]["git"]) == 40)
    code, out, _ = run_cli("rollback", "--model", "esmm", warehouse=warehouse, capsys=capsys)
    assert code == 0 and out.strip() == f"esmm: champion {v3} -> {v1} (rolled back)"
    assert model_store.current_version(warehouse, "esmm") == v1
    code, out, _ = run_cli("models", "--history", "--model", "esmm", warehouse=warehouse, capsys=capsys)
    moves = [" ".join(line.split()[2:9]) for line in out.splitlines()]
    assert moves == [f"esmm challenger - -> {v2} by train", f"esmm champion - -> {v1} by promote",
                     f"esmm champion {v1} -> {v3} by promote", f"esmm champion {v3} -> {v1} by rollback"]
    assert out.splitlines()[0].endswith("ctcvr_auc 0.6100")
    # bad input: exit 2, one line naming the rule
    code, _, err = run_cli("rollback", "--model", "esmm", warehouse=warehouse, capsys=capsys)
    assert code == 2 and f"champion {v1} has no earlier champion" in err
    code, _, err = run_cli("promote", "--model", "esmm", "--version", "../v0001", warehouse=warehouse, capsys=capsys)
    assert code == 2 and "is not a model version (rule: vNNNN" in err
    code, _, err = run_cli("promote", "--model", "nope", "--version", v1, warehouse=warehouse, capsys=capsys)
    assert code == 2 and "nope" in err
    code, _, err = run_cli("rollback", warehouse=warehouse, capsys=capsys)
    assert code == 2 and "rollback needs --model NAME" in err


def test_a_loaded_model_has_its_subnormal_weights_flushed_to_zero_and_the_rest_kept(tmp_path):
    import torch

    model = build_model("esmm", FIELDS, {})
    weights = model.state_dict()
    layer = next(k for k, v in weights.items() if k.endswith("weight") and v.dim() == 2 and "embedding" not in k)
    original = weights[layer].clone()
    weights[layer][0, :3] = torch.tensor([1e-40, -3e-39, 2e-38])  # two subnormal, one the smallest normals' order
    version = save_artifact(str(tmp_path), "esmm", "cvr", "cvr", FIELDS, {}, weights, {"model": {}}, "{}",
                            {"table_versions": {}, "days": ["2026-11-20"], "rows": 1, "run_key": "k"}, {"history": []})
    loaded = model_store.load_artifact(str(tmp_path), "esmm", version).model.state_dict()[layer]
    assert loaded[0, :3].tolist() == [0.0, 0.0, torch.tensor(2e-38).item()]
    assert torch.equal(loaded[1:], original[1:]) and torch.equal(loaded[0, 3:], original[0, 3:])
