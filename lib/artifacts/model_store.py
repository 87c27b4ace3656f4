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

from liftlake.lib.artifacts.publish import new_staging, publish_next_version, versions_in, write_text_atomic

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


def versions(warehouse: str, name: str) -> list[str]:
    folder = os.path.join(models_root(warehouse), name)
    return [v for v in versions_in(folder) if os.path.exists(os.path.join(folder, v, "model.json"))]


def save_artifact(warehouse: str, name: str, family: str, task: str, field_dims: list[int], params: dict,
                  weights: dict, config: dict, feature_spec_json: str, data: dict, metrics: dict) -> str:
    """Write a new version; the folder appears complete or not at all, under a number no other job
    claimed (``publish_next_version``). model.json does not name its version: the folder does."""
    from liftlake.models.registry import get_entry

    folder = os.path.join(models_root(warehouse), name)
    staging = new_staging(folder)
    entry = get_entry(name)
    info = {"name": name, "family": family, "task": task, "class": entry.cls.__name__,
            "field_dims": field_dims, "params": params, "created_unix": time.time()}
    files = {"model.json": json.dumps(info, indent=1, default=str),
             "config.yaml": yaml.safe_dump(config, sort_keys=False), "feature_spec.json": feature_spec_json,
             "data.json": json.dumps(data, indent=1), "metrics.json": json.dumps(metrics, indent=1, default=float)}
    torch.save(weights, os.path.join(staging, "weights.pt"))
    for file_name, text in files.items():
        with open(os.path.join(staging, file_name), "w", encoding="utf-8") as fh:
            fh.write(text)
    return publish_next_version(folder, staging)


def current_version(warehouse: str, name: str) -> str | None:
    pointer = os.path.join(models_root(warehouse), name, "CURRENT")
    if not os.path.exists(pointer):
        return None
    with open(pointer, encoding="utf-8") as fh:
        return fh.read().strip() or None


def set_current(warehouse: str, name: str, version: str) -> None:
    if version not in versions(warehouse, name):
        raise ArtifactError(f"model {name} has no version {version}")
    write_text_atomic(os.path.join(models_root(warehouse), name, "CURRENT"), version)


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
    info["version"] = version  # the folder names the version (it is claimed at publish time)
    return Artifact(name, version, path, model, info, config, spec_json, data, metrics)
