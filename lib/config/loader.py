"""Configuration: YAML layers in conf/, validated on load, overridable from the command line.

Layers, later wins: ``conf/base.yaml`` -> ``conf/models/<model.name>.yaml`` -> each ``--conf FILE`` ->
each ``--set key.path=value``. Every leaf remembers the layer that set it,
so an error names the file (or ``--set``), the key and the rule it breaks. Sections are dataclasses;
a field's ``metadata["check"] = (predicate, rule)`` states its range rule once, next to its default.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import typing
from importlib import resources
from typing import Any, Literal, get_args, get_origin

import yaml

from liftlake.lib.config.sections import Config, ConfigError


# ---------------------------------------------------------------------------------------------
def conf_dir() -> str:
    """The folder holding base.yaml (the repository's conf/, installed as liftlake.conf)."""
    return str(resources.files("liftlake.conf"))


def _read_yaml(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (rule: config files are UTF-8 YAML)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def _parse_scalar(text: str, item: str) -> Any:
    """A --set value is YAML (``1``, ``.inf``, ``[a, b]``); text YAML cannot read is refused."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ConfigError(f"--set {item}: the value is not YAML ({problem})") from None


def _set_path(tree: dict, dotted: str, value: Any, sources: dict, source: str) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[keys[-1]] = value
    _mark(sources, dotted, value, source)


def _mark(sources: dict, prefix: str, value: Any, source: str) -> None:
    sources[prefix] = source
    if isinstance(value, dict):
        for k, v in value.items():
            _mark(sources, f"{prefix}.{k}", v, source)


def _merge(tree: dict, layer: dict, sources: dict, source: str, prefix: str = "") -> None:
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        # model.params is replaced whole by a later layer that sets it: params of one model are
        # meaningless for another.
        if isinstance(value, dict) and isinstance(tree.get(key), dict) and dotted != "model.params":
            _merge(tree[key], value, sources, source, prefix=f"{dotted}.")
        else:
            tree[key] = copy.deepcopy(value)
            _mark(sources, dotted, value, source)


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = get_origin(annotation)
    if annotation is Any:
        return True
    if origin is Literal:
        return value in get_args(annotation)
    if origin in (list, tuple):
        (inner, *_) = get_args(annotation) or (Any,)
        return isinstance(value, (list, tuple)) and all(_type_ok(v, inner) for v in value)
    if origin is dict:
        key_t, val_t = get_args(annotation) or (Any, Any)
        return isinstance(value, dict) and all(_type_ok(k, key_t) and _type_ok(v, val_t) for k, v in value.items())
    if origin is typing.Union or str(origin) == "types.UnionType":
        return any(_type_ok(value, a) for a in get_args(annotation))
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:  # finite: inf and NaN pass no range rule a user means
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    if annotation is type(None):
        return value is None
    return isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + " | ".join(str(a) for a in get_args(annotation))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _build(cls, data: dict, prefix: str, sources: dict):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}

    def where(key: str) -> str:
        return sources.get(key, "defaults")

    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(f"{where(key)}: {key}: unknown key (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        annotation = hints[name]
        if name not in data:
            continue
        value = data[name]
        if dataclasses.is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"{where(key)}: {key}: must be a mapping")
            kwargs[name] = _build(annotation, value, f"{key}.", sources)
            continue
        if annotation is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if get_origin(annotation) in (list, tuple) and get_args(annotation) and get_args(annotation)[0] is float \
                and isinstance(value, list):
            value = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        if not _type_ok(value, annotation):
            raise ConfigError(f"{where(key)}: {key}: must be {_describe(annotation)} (got {value!r})")
        rule = f.metadata.get("check")
        if rule is not None:
            predicate, text = rule
            if not predicate(value):
                raise ConfigError(f"{where(key)}: {key}: {text} (got {value!r})")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a section's own checks (__post_init__): blame the layer of the field it names
        named = [n for n in fields if re.search(rf"\b{re.escape(n)}\b", str(exc))]
        key = f"{prefix}{named[0]}" if named else prefix.rstrip(".")
        raise ConfigError(f"{where(key)}: {key}: {exc}") from None


def parse_set(item: str) -> tuple[str, Any]:
    key, sep, text = item.partition("=")
    if not sep or not key or not all(part.isidentifier() for part in key.split(".")):
        raise ConfigError(f"--set {item}: expected key.path=value")
    return key, _parse_scalar(text, item)


def load_config(
    conf_files: list[str] | None = None,
    overrides: list[str] | None = None,
    env: typing.Mapping[str, str] | None = None,
    check_model: bool = True,
    check_labeler: bool | None = None,
) -> Config:
    """Merge the layers (conf/base.yaml, conf/models/<name>.yaml, ``LIFTLAKE_CONF``, ``--conf``,
    ``LIFTLAKE_WAREHOUSE``, ``--set``: later wins) and validate. Raises ConfigError.

    ``check_model`` validates ``model.*`` against the model registry, which imports torch; jobs that
    use no model (tables, sql, simulate, build-features, models) skip it and start without torch.
    ``check_labeler`` (default: as ``check_model``) validates ``escim_labels.params`` against the ESCIM
    labeler's parameters, so that a bad one stops a job before its Spark session starts."""
    environ = os.environ if env is None else env
    base_dir = conf_dir()
    tree: dict = {}
    sources: dict = {}
    _merge(tree, _read_yaml(os.path.join(base_dir, "base.yaml")), sources, os.path.join("conf", "base.yaml"))

    # LIFTLAKE_CONF (files separated by os.pathsep) comes first, then each --conf; a file named by
    # both is read once (the DAGs pass their LIFTLAKE_CONF on as --conf too)
    env_files = [p for p in environ.get("LIFTLAKE_CONF", "").split(os.pathsep) if p.strip()]
    files = env_files + [p for p in conf_files or [] if p not in env_files]
    user_layers = [(path, _read_yaml(path)) for path in files]
    set_items = [parse_set(item) for item in overrides or []]

    # The model file depends on the model name, which any later layer may choose.
    model_name = tree.get("model", {}).get("name")
    for _, layer in user_layers:
        model_name = (layer.get("model") or {}).get("name", model_name)
    for key, value in set_items:
        if key == "model.name":
            model_name = value
    if isinstance(model_name, str):
        model_file = os.path.join(base_dir, "models", f"{model_name}.yaml")
        if os.path.exists(model_file):
            _merge(tree, _read_yaml(model_file), sources, os.path.join("conf", "models", f"{model_name}.yaml"))
    for path, layer in user_layers:
        _merge(tree, layer, sources, path)
    warehouse = environ.get("LIFTLAKE_WAREHOUSE")
    if warehouse:
        _set_path(tree, "warehouse.path", warehouse, sources, "LIFTLAKE_WAREHOUSE")
    for key, value in set_items:
        _set_path(tree, key, value, sources, "--set")

    config = _build(Config, tree, "", sources)
    if config.simulator.exposures > config.limits.max_exposures_per_day:
        key = "simulator.exposures"
        raise ConfigError(f"{sources.get(key, 'defaults')}: {key}: {config.simulator.exposures} is past "
                          f"limits.max_exposures_per_day ({config.limits.max_exposures_per_day})")
    if config.simulator.items < config.data.num_responses:
        key = "simulator.items"
        raise ConfigError(f"{sources.get(key, 'defaults')}: {key}: must be >= data.num_responses "
                          f"({config.data.num_responses}): every response type needs an item")
    if check_model:
        _check_model(config, sources)
    if check_labeler is None:
        check_labeler = check_model
    if check_labeler:
        from liftlake.lib.artifacts.escim_labeler import labeler_params

        labeler_params(config)
    return config


def _check_model(config: Config, sources: dict) -> None:
    from liftlake.models.registry import ModelConfigError, get_entry, resolve_params

    try:
        entry = get_entry(config.model.name)
        params = model_params(config, entry)
        resolve_params(config.model.name, params)
    except ModelConfigError as exc:
        key = "model.params" if "parameter" in str(exc) else "model.name"
        # blame the layer that set the parameter the error names (a --set, not the model's file)
        named = [f"model.params.{n}" for n in re.findall(r"'([A-Za-z_][A-Za-z0-9_]*)'", str(exc))]
        source = next((sources[k] for k in named if k in sources), sources.get(key, "defaults"))
        raise ConfigError(f"{source}: {key}: {exc}") from None


def model_params(config: Config, entry=None) -> dict:
    """The model's parameters with ``model.backbone`` and the data shape (``data.num_treatments`` /
    ``data.num_responses``) folded in where the model has such parameters."""
    from liftlake.models.registry import get_entry

    entry = entry or get_entry(config.model.name)
    params = dict(config.model.params)
    accepted = {f.name for f in dataclasses.fields(entry.cls.Params)}
    if "backbone" in accepted:
        params["backbone"] = config.model.backbone
    for key in ("num_treatments", "num_responses"):
        if key in accepted:
            params[key] = getattr(config.data, key)
    return params


def warehouse_path(config: Config) -> str:
    return os.path.abspath(config.warehouse.path)
