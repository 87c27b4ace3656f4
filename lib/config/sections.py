"""The configuration's sections: one dataclass per top-level key of conf/base.yaml, each field with its
default and, in ``metadata["check"]``, its range rule (stated once, next to the default)."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from liftlake.lib.sim.settings import SimulatorConfig


def one_line(text: str) -> str:
    """``text`` with control characters (newlines, tabs, escapes) written as Python escapes: a value
    echoed back from a file or a flag cannot break the one-line error or forge a second line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ConfigError(ValueError):
    """A configuration that cannot be used. ``str(err)`` is the one line a user sees."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(str(message)))


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
    # Raw ids and strings longer than this are quarantined (oversized_id / oversized_value).
    max_id_chars: int = check(lambda v: 1 <= v <= 100_000, "must be an integer in [1, 100000]", default=128)


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
    # How ranks average the embedding tables' gradients each step: "dense" all-reduces whole tables with
    # the other parameters (fewest sync points: on one 2-core machine an all-reduce costs 1-2 ms from 1k
    # to 1M floats, so the count of syncs, not their bytes, is the cost); "touched_rows" exchanges only
    # the rows some rank looked up, at two more syncs a step (for tables of millions of rows on a network).
    embedding_allreduce: Literal["dense", "touched_rows"] = "dense"
    # Ranks on one host (CPU) average the gradients through shared memory, "launcher" through the
    # launcher's collective (Gloo / Horovod): on 2 busy cores a collective's thread hand-offs cost
    # 2.5-4 ms a step, the shared segment 0.6 ms (lib/training/shared_memory.py). A host where it cannot
    # (not x86-64, /dev/shm missing or full, ranks on several hosts) falls back to the launcher's.
    same_host_allreduce: Literal["shared_memory", "launcher"] = "shared_memory"
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    learning_rate: float = positive(0.001)
    weight_decay: float = check(lambda v: v >= 0, "must be >= 0", default=0.0)
    batch_size: int = check(lambda v: v >= 1, "must be an integer >= 1", default=1024)
    epochs: int = check(lambda v: v >= 1, "must be an integer >= 1", default=3)
    # A step budget: train at least this many optimizer steps (whole epochs; early stopping still
    # applies). 0 keeps the epoch count alone.
    min_steps: int = check(lambda v: 0 <= v <= 10_000_000, "must be an integer in [0, 10000000]", default=0)
    seed: int = 2026
    early_stopping_patience: int = check(lambda v: v >= 0, "must be an integer >= 0", default=2)
    checkpoint_every_steps: int = check(lambda v: v >= 1, "must be an integer >= 1", default=200)
    # Days of features.samples (ending at --ds) the model trains on.
    window_days: int = check(lambda v: v >= 1, "must be an integer >= 1", default=7)
    # How the window's rows split into train / valid / test (lib/training/trainset.py, window_split):
    # "user" by a hash of the user (every day alike); "day" chronologically, as the CVR papers split
    # their logs: test on the window's last day, train (and validate by user hash) on the earlier ones.
    split_by: Literal["user", "day"] = "user"
    # Evaluation gate: a new version (the challenger) becomes the champion (CURRENT) only if its
    # primary test metric (cvr: ctcvr_auc, coupon: auc_outcome, multi_treatment: fit_r2) reaches
    # the floor of its task and, with a champion, the champion's on the same test rows less
    # gate_tolerance.
    gate_min_cvr: float = check(lambda v: 0 <= v <= 1, "must be in [0, 1]", default=0.5)
    gate_min_coupon: float = check(lambda v: 0 <= v <= 1, "must be in [0, 1]", default=0.5)
    gate_min_multi_treatment: float = check(lambda v: v <= 1, "must be <= 1", default=0.0)
    gate_tolerance: float = check(lambda v: v >= 0, "must be >= 0", default=0.0)
    # MLflow tracking of every trained version (a run with its params, metrics and lineage, and a
    # version of the registered model liftlake.<name>): "" is a SQLite store under the warehouse
    # (<warehouse>/_mlflow/mlflow.db), "none" records nothing, else an MLflow server's http(s) URL or
    # a sqlite:/// database.
    mlflow_uri: str = check(lambda v: v in ("", "none") or bool(re.fullmatch(r"(https?://[A-Za-z0-9.\-]+(:[0-9]+)?(/[^\s]*)?|sqlite:///[^\s;]+)", v)),
                            "must be '', 'none', an http(s):// URL or a sqlite:/// path", default="")
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
    # A day scored before is scored again with the version that scored it (recorded in the scores'
    # version column), so a re-run reproduces it after a promotion; current: with CURRENT. --version
    # names one version for every day.
    rescore: Literal["recorded", "current"] = "recorded"
    # On the embedded default a day of at most this many rows is scored in the driver process: Python
    # workers' start and torch import (2.7 s on 2 cores) cost more than its forward passes. 0: always
    # Spark tasks. delta-spark always scores in Spark tasks.
    driver_max_rows: int = check(lambda v: v >= 0, "must be an integer >= 0", default=2_000_000)
    # Where the forward passes run, in whichever process scores (the driver or a Python worker): the
    # CPU, or a GPU that torch sees there. A device the process lacks stops the job before any write.
    device: str = check(lambda v: re.fullmatch(r"cpu|cuda(:\d+)?", v) is not None,
                        "must be cpu, cuda or cuda:<index>", default="cpu")


@dataclass
class SqlConf:
    """``liftlake sql``: the engine (duckdb: in-process, no JVM; spark: Spark SQL) and the most rows
    one query may print (the driver holds them all)."""
    engine: Literal["duckdb", "spark"] = "duckdb"
    max_rows: int = check(lambda v: 1 <= v <= 1_000_000, "must be an integer in [1, 1000000]", default=100_000)


@dataclass
class SqlServerConf:
    """``liftlake sql-server``: Spark's Thrift JDBC/ODBC server on a loopback port (the endpoint has no
    authentication: it never listens beyond this machine; reach it from elsewhere through an SSH tunnel)."""
    host: Literal["127.0.0.1", "localhost", "::1"] = "127.0.0.1"
    port: int = check(lambda v: 1024 <= v <= 65535, "must be an integer in [1024, 65535]", default=10000)


@dataclass
class HousekeepingConf:
    """``liftlake housekeeping``: tables are compacted (``compact``), and what a killed or finished job
    leaves behind goes after this long.
    Delta data files no table version references (vacuum), train caches unused, training
    checkpoints untouched for ``retention_hours``; staging folders of writes that never published
    after ``staging_grace_hours`` (longer than any job runs). Model versions are never removed."""
    retention_hours: int = check(lambda v: 1 <= v <= 24 * 365, "must be an integer in [1, 8760]", default=168)
    staging_grace_hours: int = check(lambda v: 1 <= v <= 24 * 365, "must be an integer in [1, 8760]", default=24)
    # OPTIMIZE first: a partition's data files under compact_target_mb are rewritten as fewer larger ones
    compact: bool = True
    compact_target_mb: int = check(lambda v: 1 <= v <= 4096, "must be an integer in [1, 4096]", default=128)


@dataclass
class EscimLabelsConf:
    # The labeler learns from a sample of the window (it is pre-training, not scoring): at most
    # this many rows reach the driver; labels are then computed for every row on the executors.
    max_fit_rows: int = check(lambda v: v >= 100, "must be an integer >= 100", default=500_000)
    window_days: int = check(lambda v: v >= 1, "must be an integer >= 1", default=7)
    # EscimLabelParams overrides; none by default: its own defaults (a step budget and early
    # stopping, models/escim_labeler.py) are sized for a window's sample of any size.
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReportConf:
    """The evidence report (liftlake report): each paper's claim checked on the simulator."""
    seeds: list[int] = check(lambda v: len(v) >= 1, "must list at least one seed",
                             default_factory=lambda: [1, 2, 3, 4, 5])
    exposures: int = check(lambda v: v >= 1000, "must be an integer >= 1000", default=50_000)
    # Three days: the CVR world trains on two (report.cvr_split_by=day) and is tested on the last.
    days: int = check(lambda v: 1 <= v <= 14, "must be an integer in [1, 14]", default=3)
    epochs: int = check(lambda v: v >= 1, "must be an integer >= 1", default=3)
    # Every model's step budget (train.min_steps, in whole epochs; early stopping still applies): a
    # user-level world has a few batches an epoch, and "did not train" must not decide a claim.
    min_steps: int = check(lambda v: v >= 0, "must be an integer >= 0", default=300)
    # The user-level worlds (coupon presets, multi-treatment) have their own size: the user population
    # (simulator.users; 0: the simulator's exposures / 20) and the randomized shares, which set how
    # many RCT test users the papers' metrics get.
    # Measured (3 seeds, RCT share 0.5): at 20,000 users the oracle's CS-AUUC / CS-Qini lead over
    # the constant did not resolve on syn1, nor Qini / AUUC r1 t1 on the multi-treatment world; at
    # 60,000 every multi-treatment metric resolves, the coupon worlds' CS-AUUC still not (syn1: gap
    # 0.0035, detectable 0.0050); the default five seeds bring that to about 0.0026 (estimated from
    # the same spread). The truth-based metrics resolve at either size.
    uplift_users: int = check(lambda v: v >= 0, "must be an integer >= 0", default=60_000)
    coupon_rct_share: float = check(lambda v: 0 < v <= 1, "must be in (0, 1]", default=0.5)
    treatment_rct_share: float = check(lambda v: 0 < v <= 1, "must be in (0, 1]", default=0.5)
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
    # CausalML's S / T / X-learners with LightGBM and its uplift random forest, fitted on the same rows
    # as the uplift models and scored by the same code (rows "CausalML ... (external)"; the [report] extra)
    causalml: bool = True
    # With fewer than 3 seeds a claim's interval comes from this many bootstrap resamples of each world's
    # test rows (every model scored on the same resamples; 0: off, the claims then read n/a with one seed).
    bootstrap_replicates: int = check(lambda v: v == 0 or v >= 40, "must be 0 (off) or an integer >= 40",
                                      default=200)
    # The CVR world's train / test split (train.split_by): "day" as the CVR papers split their logs
    # (DCMT, ESCIM: chronologically), tested on the last of report.days; "user" by a hash of the user.
    cvr_split_by: Literal["user", "day"] = "day"
    out: str = "reports"

    def __post_init__(self) -> None:
        if self.cvr_models and self.cvr_split_by == "day" and self.days < 2:
            raise ValueError(f"days {self.days} with cvr_split_by=day: the CVR world is tested on its last day "
                             "and trained on the earlier ones (rule: days >= 2, or cvr_split_by=user)")


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
    sql_server: SqlServerConf = field(default_factory=SqlServerConf)
    housekeeping: HousekeepingConf = field(default_factory=HousekeepingConf)
    report: ReportConf = field(default_factory=ReportConf)
    quickstart: QuickstartConf = field(default_factory=QuickstartConf)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=110)
