"""The model store: ``<warehouse>/_models/<name>/<version>/`` and the registry's aliases per name.

An artifact holds the weights (a plain state_dict, loaded with ``weights_only=True``: loading never
runs code from the artifact), the resolved config, the feature spec, the table versions it read and
its metrics.

Aliases: ``champion`` (the file ``CURRENT``: the version scoring uses) and ``challenger`` (the file
``CHALLENGER``: the newest version that went through the gate). The champion moves by the training
gate (a challenger at least as good as the champion on the same test split, and above the floor),
by ``liftlake promote`` and by ``liftlake rollback``; every move is a line of ``promotions.jsonl``.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass

import torch
import yaml

from liftlake.lib.artifacts.publish import (
    VERSION,
    exclusive_lock,
    new_staging,
    publish_next_version,
    versions_in,
    write_text_atomic,
)

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
            "field_dims": field_dims, "params": params, "created_unix": time.time(),
            "run_id": uuid.uuid4().hex, "code": code_version()}
    files = {"model.json": json.dumps(info, indent=1, default=str),
             "config.yaml": yaml.safe_dump(config, sort_keys=False), "feature_spec.json": feature_spec_json,
             "data.json": json.dumps(data, indent=1), "metrics.json": json.dumps(metrics, indent=1, default=float)}
    torch.save(weights, os.path.join(staging, "weights.pt"))
    for file_name, text in files.items():
        with open(os.path.join(staging, file_name), "w", encoding="utf-8") as fh:
            fh.write(text)
    return publish_next_version(folder, staging)


def code_version() -> dict:
    """What code made an artifact: the package version and, from a git checkout, the commit (with
    ``dirty``: uncommitted changes to tracked files); git None elsewhere (an installed wheel)."""
    import subprocess

    import liftlake

    here = os.path.dirname(os.path.abspath(liftlake.__file__))
    out: dict = {"liftlake": liftlake.__version__, "git": None, "dirty": None}
    try:
        sha = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if sha.returncode == 0:
            changed = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                                     capture_output=True, text=True, timeout=10)
            out.update(git=sha.stdout.strip(), dirty=bool(changed.stdout.strip()) if changed.returncode == 0 else None)
    except (OSError, subprocess.TimeoutExpired):
        pass
    return out


def version_with_run_key(warehouse: str, name: str, run_key: str) -> str | None:
    """The version a finished training run of this key saved (its data.json names the key), if any."""
    for version in reversed(versions(warehouse, name)):
        try:
            with open(os.path.join(models_root(warehouse), name, version, "data.json"), encoding="utf-8") as fh:
                if json.load(fh).get("run_key") == run_key:
                    return version
        except (OSError, ValueError):
            continue
    return None


ALIAS_FILES = {"champion": "CURRENT", "challenger": "CHALLENGER"}
HISTORY_FILE = "promotions.jsonl"


def alias_version(warehouse: str, name: str, alias: str) -> str | None:
    """The version an alias names, or None when it names none yet. The alias file is read as hostile
    input: it must hold one version name (``vNNNN``), nothing else (no path)."""
    pointer = os.path.join(models_root(warehouse), name, ALIAS_FILES[alias])
    if not os.path.exists(pointer):
        return None
    try:
        with open(pointer, encoding="utf-8") as fh:
            text = fh.read(64).strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"file {pointer}: cannot be read ({type(exc).__name__})") from None
    if not text:
        return None
    check_version_name(text, pointer)
    return text


def current_version(warehouse: str, name: str) -> str | None:
    """The champion: the version scoring uses (``CURRENT``)."""
    return alias_version(warehouse, name, "champion")


def check_version_name(version: str, source: str) -> None:
    if not VERSION.match(version):
        raise ArtifactError(f"{source}: {version[:60]!r} is not a model version (rule: vNNNN, a version "
                            f"folder of the model store)")


def version_folder(warehouse: str, name: str, version: str, source: str = "--version") -> str:
    """The real folder of a model version, which must lie inside the store: no path in the name, no
    symlink out of it."""
    check_version_name(version, source)
    base = os.path.realpath(os.path.join(models_root(warehouse), name))
    path = os.path.join(models_root(warehouse), name, version)
    if os.path.islink(path) or os.path.commonpath([os.path.realpath(path), base]) != base:
        raise ArtifactError(f"model {name} version {version}: {path} is a link or lies outside the model store "
                            f"(rule: artifacts are loaded from the store only)")
    return path


def set_alias(warehouse: str, name: str, alias: str, version: str, by: str, **detail) -> None:
    """Point ``alias`` at ``version`` and append the move to the promotion history (``by``: gate,
    promote, rollback; ``detail``: the gate's values), both under the model's registry lock."""
    if version not in versions(warehouse, name):
        raise ArtifactError(f"model {name} has no version {version} (versions: {versions(warehouse, name)})")
    folder = os.path.join(models_root(warehouse), name)
    with exclusive_lock(os.path.join(folder, ".registry.lock")):
        before = alias_version(warehouse, name, alias)
        write_text_atomic(os.path.join(folder, ALIAS_FILES[alias]), version)
        entry = {"unix": round(time.time(), 3), "alias": alias, "from": before, "to": version, "by": by, **detail}
        with open(os.path.join(folder, HISTORY_FILE), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, default=float) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def set_current(warehouse: str, name: str, version: str, by: str = "promote", **detail) -> None:
    """Make ``version`` the champion."""
    set_alias(warehouse, name, "champion", version, by, **detail)


def promotion_history(warehouse: str, name: str) -> list[dict]:
    """Every alias move of the model, oldest first (``promotions.jsonl``, read as hostile input)."""
    path = os.path.join(models_root(warehouse), name, HISTORY_FILE)
    if not os.path.exists(path):
        return []
    entries = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not (isinstance(entry, dict) and entry.get("alias") in ALIAS_FILES
                    and isinstance(entry.get("to"), str) and VERSION.match(entry["to"])
                    and (entry.get("from") is None or (isinstance(entry["from"], str) and VERSION.match(entry["from"])))):
                raise ArtifactError(f"file {path}: line {number} is not a promotion record (rule: JSON with "
                                    f"alias champion / challenger, from and to vNNNN)")
            entries.append(entry)
    return entries


def rollback_target(warehouse: str, name: str) -> str:
    """The version that was champion before the current champion was promoted (by the gate or by
    hand; a rollback is not a promotion, so rolling back twice steps back twice)."""
    champion = current_version(warehouse, name)
    if champion is None:
        raise ArtifactError(f"model {name} has no champion to roll back")
    for entry in reversed(promotion_history(warehouse, name)):
        if entry["alias"] == "champion" and entry["to"] == champion and entry["by"] != "rollback":
            if entry["from"] is None:
                break
            return entry["from"]
    raise ArtifactError(f"model {name}: champion {champion} has no earlier champion in "
                        f"{os.path.join(models_root(warehouse), name, HISTORY_FILE)} to roll back to")


def flush_subnormal_weights(model) -> int:
    """Set the model's subnormal weights (nonzero, below the dtype's smallest normal: ~1.2e-38 in float32)
    to zero; how many there were. Weight decay drives the weights of units that stop getting a gradient
    (a dead ReLU's row) toward zero until they are subnormal, and a CPU multiplies subnormals 20-60x
    slower: a DCMT trained one epoch on a 10M-exposure day (a third of one tower layer's weights
    subnormal) scored 8,192 rows in 0.66 s instead of 0.034 s, on 1 or 2 threads, with the same scores
    to the bit once flushed (torch.set_flush_denormal covers only the calling thread, not torch's
    intra-op threads)."""
    flushed = 0
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                subnormal = (tensor != 0) & (tensor.abs() < torch.finfo(tensor.dtype).tiny)
                flushed += int(subnormal.sum())
                tensor.masked_fill_(subnormal, 0.0)
    return flushed


def load_artifact(warehouse: str, name: str, version: str | None = None) -> Artifact:
    from liftlake.models.registry import build_model, get_entry

    version = version or current_version(warehouse, name)
    if version is None:
        raise ArtifactError(f"model {name} has no current version under {models_root(warehouse)}")
    path = version_folder(warehouse, name, version)
    if not os.path.isdir(path):
        raise ArtifactError(f"model {name} version {version}: folder {path} does not exist")
    missing = [f for f in ARTIFACT_FILES if not os.path.exists(os.path.join(path, f))]
    if missing:
        raise ArtifactError(f"artifact {path} is missing {missing}")
    info = read_file(path, "model.json", json.loads)
    if not isinstance(info, dict) or not {"name", "class", "field_dims", "params"} <= set(info):
        raise ArtifactError(f"artifact {path}: model.json lacks name / class / field_dims / params")
    entry = get_entry(info["name"])
    if info["name"] != name or info["class"] != entry.cls.__name__:
        raise ArtifactError(f"artifact {path} was saved by model class {info['class']} ({info['name']}), "
                            f"not {entry.cls.__name__} ({name})")
    model = build_model(name, info["field_dims"], info["params"])
    try:
        weights = torch.load(os.path.join(path, "weights.pt"), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, or a pickle that is not plain tensors
        raise ArtifactError(f"artifact {path}: weights.pt cannot be loaded safely ({type(exc).__name__}: "
                            f"{_first_line(exc)})") from None
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"artifact {path}: weights.pt does not fit model {name} "
                            f"({_first_line(exc)})") from None
    bad = sorted(key for key, tensor in weights.items()
                 if torch.is_floating_point(tensor) and not bool(torch.isfinite(tensor).all()))
    if bad:
        raise ArtifactError(f"artifact {path}: weights.pt holds non-finite values in {bad[:5]} "
                            f"(rule: every weight finite)")
    flush_subnormal_weights(model)
    model.eval()
    config = read_file(path, "config.yaml", yaml.safe_load)
    spec_json = read_file(path, "feature_spec.json", lambda text: text)
    data = read_file(path, "data.json", json.loads)
    metrics = read_file(path, "metrics.json", json.loads)
    info["version"] = version  # the folder names the version (it is claimed at publish time)
    return Artifact(name, version, path, model, info, config, spec_json, data, metrics)


def read_file(folder: str, file_name: str, parse):
    """A file of an artifact, parsed; anything unreadable or malformed is an ArtifactError naming it."""
    try:
        with open(os.path.join(folder, file_name), encoding="utf-8") as fh:
            return parse(fh.read())
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ArtifactError(f"artifact {folder}: {file_name} cannot be read ({type(exc).__name__}: "
                            f"{_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
