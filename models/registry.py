"""The model registry: every trainable model by its public name.

A model class registers itself with ``@register("name", family=...)`` and declares its
hyper-parameters as a dataclass ``Params`` (defaults from its paper). ``build_model`` checks
the configured parameters against that dataclass, so a typo or a wrong type fails before any
training starts, naming the model, the key and the rule.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Sequence

FAMILIES = ("cvr", "uplift")

# Modules whose import registers models; kept here so the registry is complete without the
# caller knowing which file holds which model.
_MODEL_MODULES = ("liftlake.models.esmm", "liftlake.models.escm2", "liftlake.models.dcmt", "liftlake.models.escim",
                  "liftlake.models.meta_learners", "liftlake.models.representation", "liftlake.models.dose_response",
                  "liftlake.models.interaction",
                  "liftlake.models.unimvt", "liftlake.models.hmum")


class ModelConfigError(ValueError):
    """A model name or parameter that cannot be used."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    cls: Any  # a LiftlakeModel subclass with its ``Params`` dataclass


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, family: str, **fixed: Any):
    """Class decorator. ``fixed`` are constructor keywords that tell variants apart
    (``escm2_ips`` and ``escm2_dr`` are one class with ``estimator='ips' | 'dr'``)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")

    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        if not dataclasses.is_dataclass(getattr(cls, "Params", None)):
            raise TypeError(f"{cls.__name__} must define a dataclass Params")
        entry_cls = cls
        if fixed:
            entry_cls = type(cls.__name__, (cls,), {"_fixed": dict(fixed), "__module__": cls.__module__})
        _REGISTRY[name] = ModelEntry(name, family, entry_cls)
        return cls

    return deco


def _load_all() -> None:
    for mod in _MODEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:  # a family not written yet must not hide the others
            if exc.name != mod:
                raise


def list_models() -> list[ModelEntry]:
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda e: (e.family, e.name))


def get_entry(name: str) -> ModelEntry:
    _load_all()
    if name not in _REGISTRY:
        raise ModelConfigError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def resolve_params(name: str, params: dict[str, Any] | None) -> Any:
    """Check ``params`` against the model's Params dataclass and return the filled instance."""
    entry = get_entry(name)
    params = dict(params or {})
    fields = {f.name: f for f in dataclasses.fields(entry.cls.Params)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise ModelConfigError(
            f"model {name!r}: unknown parameter(s) {unknown}; allowed: {sorted(fields)}")
    for key, value in params.items():
        default = getattr(entry.cls.Params(), key)
        if isinstance(default, bool) != isinstance(value, bool) or (
                isinstance(default, (int, float)) and not isinstance(value, (int, float))) or (
                isinstance(default, str) and not isinstance(value, str)) or (
                isinstance(default, (list, tuple)) and not isinstance(value, (list, tuple))):
            raise ModelConfigError(
                f"model {name!r}: parameter {key!r} must be of type {type(default).__name__}, got {value!r}")
    try:
        return entry.cls.Params(**params)
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(f"model {name!r}: {exc}") from exc


def build_model(name: str, field_dims: Sequence[int], params: dict[str, Any] | None = None):
    entry = get_entry(name)
    resolved = resolve_params(name, params)
    return entry.cls(list(field_dims), resolved, **getattr(entry.cls, "_fixed", {}))
