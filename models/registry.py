"""The model registry: every trainable model by its public name.

A model is listed in models/catalog.py (name, module, family); its class registers itself with
``@register("name")`` and declares its hyper-parameters as a dataclass ``Params`` (defaults from
its paper). ``get_entry`` imports only the module of the model asked for. ``build_model`` checks
the configured parameters against that dataclass, so a typo or a wrong type fails before any
training starts, naming the model, the key and the rule.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Sequence

from liftlake.models.catalog import MODELS


class ModelConfigError(ValueError):
    """A model name or parameter that cannot be used."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    cls: Any  # a LiftlakeModel subclass with its ``Params`` dataclass


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, **fixed: Any):
    """Class decorator for a model named in models/catalog.py (which gives its family). ``fixed``
    are constructor keywords that tell variants apart (``escm2_ips`` and ``escm2_dr`` are one class
    with ``estimator='ips' | 'dr'``)."""
    if name not in MODELS:
        raise ValueError(f"model {name!r} is not in models/catalog.py; add it there with its module and family")

    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        if not dataclasses.is_dataclass(getattr(cls, "Params", None)):
            raise TypeError(f"{cls.__name__} must define a dataclass Params")
        module, family = MODELS[name]
        if cls.__module__ != f"liftlake.models.{module}" or getattr(cls, "family", family) != family:
            raise ValueError(f"model {name!r} ({cls.__module__}, family {getattr(cls, 'family', None)}) does not "
                             f"match models/catalog.py ({module}, {family})")
        entry_cls = cls
        if fixed:
            entry_cls = type(cls.__name__, (cls,), {"_fixed": dict(fixed), "__module__": cls.__module__})
        _REGISTRY[name] = ModelEntry(name, family, entry_cls)
        return cls

    return deco


def _load(names) -> None:
    """Import the modules that register ``names`` (once each)."""
    for module in sorted({MODELS[n][0] for n in names if n in MODELS}):
        importlib.import_module(f"liftlake.models.{module}")


def list_models() -> list[ModelEntry]:
    _load(MODELS)
    missing = sorted(set(MODELS) - set(_REGISTRY))
    if missing:
        raise ValueError(f"models/catalog.py names {missing}, which their modules do not register")
    return sorted(_REGISTRY.values(), key=lambda e: (e.family, e.name))


def get_entry(name: str) -> ModelEntry:
    _load([name])
    if name not in _REGISTRY:
        raise ModelConfigError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
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
