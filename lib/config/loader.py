"""Configuration: YAML layers in conf/, validated on load, overridable from the command line.

Layers, later wins: ``conf/base.yaml`` -> ``conf/models/<model.name>.yaml`` -> each ``--conf FILE`` -> each ``--set key.path=value``. Every leaf remembers the layer that set it,
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
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, get_args, get_origin

import yaml

from liftlake.lib.sim.settings import SimulatorConfig


class ConfigError(ValueError):
    """A configuration that cannot be used. ``str(err)`` is the one line a user sees."""


def check(predicate, rule: str, **kw):
    return field(metadata={"check": (predicate, rule)}, **kw)


def positive(default):
    return check(lambda v: v > 0, "must be > 0", default=default)


@dataclass
class WarehouseConf:
    path: str = "warehouse"
    backend: Literal["auto", "delta-rs", "delta-spark"] = "auto"


@dataclass
class SparkConf:
    master: str = "local[*]"
    app_name: str = "liftlake"
    conf: dict[str, str] = field(default_factory=lambda: {
        "spark.sql.shuffle.partitions": "8",
        "spark.driver.memory": "4g",
    })


@dataclass
class LimitsConf:
    """Bounds on what one run may ask for: past them a job exits 2 before it starts (a typo such as
    simulator.exposures=10000000000000 would otherwise run until killed)."""
    max_exposures_per_day: int = check(lambda v: v >= 1, "must be an integer >= 1", default=100_000_000)
    max_days_per_run: int = check(lambda v: v >= 1, "must be an integer >= 1", default=366)


@dataclass
class DataConf:
    """The shape of the data every job reads (the raw-log contract, liftlake.lib.features.raw_logs):
    K strategies (treatments) and R continuous responses per user-day."""
    num_treatments: int = check(lambda v: 1 <= v <= 8, "must be an integer in [1, 8]", default=2)
    num_responses: int = check(lambda v: 1 <= v <= 8, "must be an integer in [1, 8]", default=2)


@dataclass
class FeaturesConf:
    # Vocabularies and numeric buckets are fitted on the days [ds - fit_window_days + 1, ds].
    fit_window_days: int = check(lambda v: v >= 1, "must be an integer >= 1", default=7)
    # Ids seen fewer times than this in the fit window go to the out-of-vocabulary bucket (0).
    min_count: int = check(lambda v: v >= 1, "must be an integer >= 1", default=5)
    max_vocab: int = check(lambda v: v >= 2, "must be an integer >= 2", default=10_000)
    numeric_buckets: int = check(lambda v: 2 <= v <= 1000, "must be in [2, 1000]", default=16)
    # Share of each day's users whose rows are held out for validation / test (hash of user_id).
    valid_share: float = check(lambda v: 0 <= v < 0.5, "must be in [0, 0.5)", default=0.1)
    test_share: float = check(lambda v: 0 <= v < 0.5, "must be in [0, 0.5)", default=0.1)


@dataclass
class ModelConf:
    name: str = "escm2_dr"
    backbone: Literal["mlp", "deepfm", "autoint", "dcnv2"] = "mlp"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConf:
    launcher: Literal["local", "horovod", "torch-distributor"] = "local"
    num_processes: int = check(lambda v: 1 <= v <= 64, "must be an integer in [1, 64]", default=2)
    use_gpu: bool = False
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = positive(0.001)
    weight_decay: float = check(lambda v: v >= 0, "must be >= 0", default=0.0)
    batch_size: int = check(lambda v: v >= 1, "must be an integer >= 1", default=1024)
    epochs: int = check(lambda v: v >= 1, "must be an integer >= 1", default=3)
    seed: int = 2026
    early_stopping_patience: int = check(lambda v: v >= 0, "must be an integer >= 0", default=2)
    checkpoint_every_steps: int = check(lambda v: v >= 1, "must be an integer >= 1", default=200)
    # Days of features.samples (ending at --ds) the model trains on.
    window_days: int = check(lambda v: v >= 1, "must be an integer >= 1", default=7)
    # Evaluation gate: a new version becomes ``current`` only if its primary test metric reaches
    # the bound of its task (cvr: ctcvr_auc, coupon: auc_outcome, multi_treatment: fit_r2).
    gate_min_cvr: float = check(lambda v: 0 <= v <= 1, "must be in [0, 1]", default=0.5)
    gate_min_coupon: float = check(lambda v: 0 <= v <= 1, "must be in [0, 1]", default=0.5)
    gate_min_multi_treatment: float = check(lambda v: v <= 1, "must be <= 1", default=0.0)
    # Rows of the test split the evaluation reads into the driver (a sample bound, not the logs).
    eval_max_rows: int = check(lambda v: v >= 100, "must be an integer >= 100", default=300_000)
    log_every_steps: int = check(lambda v: v >= 1, "must be an integer >= 1", default=50)


@dataclass
class ScoreConf:
    models: list[str] = field(default_factory=list)  # empty: every model with a current version
    batch_size: int = check(lambda v: v >= 1, "must be an integer >= 1", default=4096)
    # UniMVT decision: coupon values offered and the cost of one unit of face value.
    coupon_grid: list[float] = check(lambda v: len(v) > 0 and all(x > 0 for x in v),
                                     "must be a non-empty list of values > 0",
                                     default_factory=lambda: [1.0, 2.0, 3.0, 5.0, 8.0, 10.0])
    coupon_cost_per_unit: float = check(lambda v: v >= 0, "must be >= 0", default=0.01)
    # a coupon is offered only where its expected extra outcomes pay for it (ratio 1 = break-even)
    coupon_min_ratio: float = check(lambda v: v >= 0, "must be >= 0", default=1.0)


@dataclass
class SqlConf:
    """``liftlake sql``: the engine (duckdb: in-process, no JVM; spark: Spark SQL) and the most rows
    one query may print (the driver holds them all)."""
    engine: Literal["duckdb", "spark"] = "duckdb"
    max_rows: int = check(lambda v: 1 <= v <= 1_000_000, "must be an integer in [1, 1000000]", default=100_000)


@dataclass
class EscimLabelsConf:
    # The labeler learns from a sample of the window (it is pre-training, not scoring): at most
    # this many rows reach the driver; labels are then computed for every row on the executors.
    max_fit_rows: int = check(lambda v: v >= 100, "must be an integer >= 100", default=500_000)
    window_days: int = check(lambda v: v >= 1, "must be an integer >= 1", default=7)
    params: dict[str, Any] = field(default_factory=lambda: {"pretrain_epochs": 3, "vae_epochs": 3})


@dataclass
class ReportConf:
    """The evidence report (liftlake report): each paper's claim checked on the simulator."""
    seeds: list[int] = check(lambda v: len(v) >= 1, "must list at least one seed",
                             default_factory=lambda: [1, 2, 3, 4, 5])
    exposures: int = check(lambda v: v >= 1000, "must be an integer >= 1000", default=50_000)
    days: int = check(lambda v: 1 <= v <= 14, "must be an integer in [1, 14]", default=2)
    epochs: int = check(lambda v: v >= 1, "must be an integer >= 1", default=3)
    cvr_models: list[str] = field(default_factory=lambda: [
        "naive", "esmm", "mtl_ips", "mtl_dr", "escm2_ips", "escm2_dr", "dcmt", "dcmt_pd", "dcmt_cf",
        "escim_max", "escim_ratio"])
    coupon_presets: list[str] = field(default_factory=lambda: ["syn1", "syn2", "syn3"])
    coupon_models: list[str] = field(default_factory=lambda: [
        "unimvt", "s_learner", "t_learner", "tarnet", "cfrnet", "descn", "drnet", "vcnet", "efin"])
    multi_models: list[str] = field(default_factory=lambda: ["hmum", "hum_no_kl", "s_learner", "t_learner",
                                                              "tarnet", "efin", "m3tn"])
    # A second run of the CVR and multi-treatment models with one optimizer for all (Adam at this
    # learning rate and batch size, report.epochs): the papers' settings (e.g. lr 1e-4 with batch
    # 512 or 8192) were chosen for tens of millions of rows and barely move on a report-sized world.
    common_learning_rate: float = check(lambda v: 0 < v < 1, "must be in (0, 1)", default=1e-3)
    common_batch_size: int = check(lambda v: v >= 1, "must be an integer >= 1", default=1024)
    common_optimizer: bool = True
    # ESCIM Fig. 3: ESCIM trained at fixed counterfactual label rates (share of non-clicked rows
    # labelled 1), with the common optimizer, on the first sweep_seeds seeds; [] skips the sweep.
    escim_label_rates: list[float] = check(lambda v: all(0 < x < 1 for x in v), "must hold rates in (0, 1)",
                                           default_factory=lambda: [0.001, 0.003, 0.01, 0.03, 0.1])
    sweep_seeds: int = check(lambda v: v >= 1, "must be an integer >= 1", default=3)
    out: str = "reports"


@dataclass
class QuickstartConf:
    days: int = check(lambda v: 1 <= v <= 60, "must be an integer in [1, 60]", default=3)
    end: str = "2026-11-20"
    # one model per family, trained under a launcher with 2 processes, then scored
    models: list[str] = field(default_factory=lambda: ["dcmt", "unimvt"])
    launcher: Literal["local", "horovod", "torch-distributor"] = "torch-distributor"
    num_processes: int = check(lambda v: 1 <= v <= 8, "must be an integer in [1, 8]", default=2)
    epochs: int = check(lambda v: v >= 1, "must be an integer >= 1", default=2)


@dataclass
class Config:
    warehouse: WarehouseConf = field(default_factory=WarehouseConf)
    spark: SparkConf = field(default_factory=SparkConf)
    limits: LimitsConf = field(default_factory=LimitsConf)
    data: DataConf = field(default_factory=DataConf)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    features: FeaturesConf = field(default_factory=FeaturesConf)
    model: ModelConf = field(default_factory=ModelConf)
    train: TrainConf = field(default_factory=TrainConf)
    score: ScoreConf = field(default_factory=ScoreConf)
    escim_labels: EscimLabelsConf = field(default_factory=EscimLabelsConf)
    sql: SqlConf = field(default_factory=SqlConf)
    report: ReportConf = field(default_factory=ReportConf)
    quickstart: QuickstartConf = field(default_factory=QuickstartConf)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=110)


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


def _parse_scalar(text: str) -> Any:
    value = yaml.safe_load(text)
    return value


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
    return key, _parse_scalar(text)


def load_config(
    conf_files: list[str] | None = None,
    overrides: list[str] | None = None,
    env: typing.Mapping[str, str] | None = None,
    check_model: bool = True,
) -> Config:
    """Merge the layers, apply ``LIFTLAKE_WAREHOUSE`` and validate. Raises ConfigError.

    ``check_model`` validates ``model.*`` against the model registry, which imports torch; jobs that
    use no model (tables, sql, simulate, build-features, models) skip it and start without torch."""
    environ = os.environ if env is None else env
    base_dir = conf_dir()
    tree: dict = {}
    sources: dict = {}
    _merge(tree, _read_yaml(os.path.join(base_dir, "base.yaml")), sources, os.path.join("conf", "base.yaml"))

    user_layers = [(path, _read_yaml(path)) for path in conf_files or []]
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
