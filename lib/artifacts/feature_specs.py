"""Feature specs published under ``<warehouse>/_features/spec``: save (content-addressed), load (CURRENT or
a version), and the lock that lets only one job fit a fresh warehouse's first spec."""
from __future__ import annotations

import os
from typing import overload

from liftlake.lib.artifacts.publish import exclusive_lock, write_text_atomic
from liftlake.lib.cli.runner import InputError
from liftlake.lib.features.spec import FeatureSpec


# -- the spec store ---------------------------------------------------------------------------
def spec_dir(warehouse: str) -> str:
    return os.path.join(warehouse, "_features", "spec")


def save_spec(warehouse: str, spec: FeatureSpec) -> str:
    """Write the spec (content-addressed, so re-fitting the same window is the same version)."""
    folder = spec_dir(warehouse)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{spec.version}.json")
    if not os.path.exists(path):
        write_text_atomic(path, spec.to_json())
    write_text_atomic(os.path.join(folder, "CURRENT"), spec.version)
    return path


def spec_fit_lock(warehouse: str):
    """Held while a job loads-or-fits the CURRENT spec: the first days of a backfill start at once
    on a fresh warehouse, and each fitting its own spec would encode neighbouring days differently.
    An flock on the warehouse's local folder (the embedded default)."""
    return exclusive_lock(os.path.join(spec_dir(warehouse), ".fit.lock"))


@overload
def load_spec(warehouse: str) -> FeatureSpec | None: ...
@overload
def load_spec(warehouse: str, version: str) -> FeatureSpec: ...


def load_spec(warehouse: str, version: str | None = None) -> FeatureSpec | None:
    """The named spec (InputError when it does not exist), or without a version the CURRENT one
    (None on a warehouse that has none yet)."""
    folder = spec_dir(warehouse)
    if version is None:
        pointer = os.path.join(folder, "CURRENT")
        if not os.path.exists(pointer):
            return None
        with open(pointer, encoding="utf-8") as fh:
            version = fh.read().strip()
    path = os.path.join(folder, f"{version}.json")
    if not os.path.exists(path):
        raise InputError(f"feature spec {version} not found under {folder}")
    with open(path, encoding="utf-8") as fh:
        return FeatureSpec.from_json(fh.read())
