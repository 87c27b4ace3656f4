"""The model store: ``<warehouse>/_models/<name>/<version>/`` and a ``CURRENT`` pointer per name.

An artifact holds the weights (a plain state_dict, loaded with ``weights_only=True``: loading never
runs code from the artifact), the resolved config, the feature spec, the table versions it read and
its metrics. ``CURRENT`` moves only when the evaluation gate passes.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import torch
import yaml

ARTIFACT_FILES = ("model.json", "weights.pt", "config.yaml", "feature_spec.json", "data.json", "metrics.json")


class ArtifactError(ValueError):
    """An artifact that cannot be loaded; the message names the folder, the file and why."""


@dataclass
class Artifact:
    name: str
    version: str
    path: str
    model: object
    info: dict
    config: dict
    feature_spec_json: str
    data: dict
    metrics: dict


def models_root(warehouse: str) -> str:
    return os.path.join(warehouse, "_models")


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def versions(warehouse: str, name: str) -> list[str]:
    folder = os.path.join(models_root(warehouse), name)
    if not os.path.isdir(folder):
        return []
    return sorted(v for v in os.listdir(folder) if v.startswith("v") and os.path.exists(
        os.path.join(folder, v, "model.json")))


def save_artifact(warehouse: str, name: str, family: str, task: str, field_dims: list[int], params: dict,
                  weights: dict, config: dict, feature_spec_json: str, data: dict, metrics: dict) -> str:
    """Write a new version; the folder appears complete or not at all (rename of a staging dir)."""
    folder = os.path.join(models_root(warehouse), name)
    os.makedirs(folder, exist_ok=True)
    existing = versions(warehouse, name)
    version = f"v{(int(existing[-1][1:]) + 1) if existing else 1:04d}"
    staging = os.path.join(folder, f"_staging-{version}-{os.getpid()}")
    os.makedirs(staging)
    from liftlake.models.registry import get_entry

    entry = get_entry(name)
    info = {"name": name, "family": family, "task": task, "class": entry.cls.__name__, "version": version,
            "field_dims": field_dims, "params": params, "created_unix": time.time()}
    torch.save(weights, os.path.join(staging, "weights.pt"))
    _write_atomic(os.path.join(staging, "model.json"), json.dumps(info, indent=1, default=str))
    _write_atomic(os.path.join(staging, "config.yaml"), yaml.safe_dump(config, sort_keys=False))
    _write_atomic(os.path.join(staging, "feature_spec.json"), feature_spec_json)
    _write_atomic(os.path.join(staging, "data.json"), json.dumps(data, indent=1))
    _write_atomic(os.path.join(staging, "metrics.json"), json.dumps(metrics, indent=1, default=float))
    os.rename(staging, os.path.join(folder, version))
    return version


def current_version(warehouse: str, name: str) -> str | None:
    pointer = os.path.join(models_root(warehouse), name, "CURRENT")
    if not os.path.exists(pointer):
        return None
    with open(pointer, encoding="utf-8") as fh:
        return fh.read().strip() or None


def set_current(warehouse: str, name: str, version: str) -> None:
    if version not in versions(warehouse, name):
        raise ArtifactError(f"model {name} has no version {version}")
    _write_atomic(os.path.join(models_root(warehouse), name, "CURRENT"), version)


def load_artifact(warehouse: str, name: str, version: str | None = None) -> Artifact:
    from liftlake.models.registry import build_model, get_entry

    version = version or current_version(warehouse, name)
    if version is None:
        raise ArtifactError(f"model {name} has no current version under {models_root(warehouse)}")
    path = os.path.join(models_root(warehouse), name, version)
    if not os.path.isdir(path):
        raise ArtifactError(f"model {name} version {version}: folder {path} does not exist")
    missing = [f for f in ARTIFACT_FILES if not os.path.exists(os.path.join(path, f))]
    if missing:
        raise ArtifactError(f"artifact {path} is missing {missing}")
    with open(os.path.join(path, "model.json"), encoding="utf-8") as fh:
        info = json.load(fh)
    entry = get_entry(info["name"])
    if info["name"] != name or info["class"] != entry.cls.__name__:
        raise ArtifactError(f"artifact {path} was saved by model class {info['class']} ({info['name']}), "
                            f"not {entry.cls.__name__} ({name})")
    model = build_model(name, info["field_dims"], info["params"])
    try:
        weights = torch.load(os.path.join(path, "weights.pt"), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, or a pickle that is not plain tensors
        raise ArtifactError(f"artifact {path}: weights.pt cannot be loaded safely ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200]})") from None
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"artifact {path}: weights.pt does not fit model {name} "
                            f"({str(exc).splitlines()[0][:200]})") from None
    model.eval()
    with open(os.path.join(path, "config.yaml"), encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    with open(os.path.join(path, "feature_spec.json"), encoding="utf-8") as fh:
        spec_json = fh.read()
    with open(os.path.join(path, "data.json"), encoding="utf-8") as fh:
        data = json.load(fh)
    with open(os.path.join(path, "metrics.json"), encoding="utf-8") as fh:
        metrics = json.load(fh)
    return Artifact(name, version, path, model, info, config, spec_json, data, metrics)
