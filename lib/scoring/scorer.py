"""Batch scoring: a model version over a day's rows, into Delta tables.

The artifact is loaded once per Python worker (cached by path; the driver uses the copy it checked)
and applied to Arrow batches themselves: their columns go to numpy without copies and the outputs
back to Arrow, with no pandas frame on either side (that round trip was 46 % over the bare forward
passes at 1M rows). On the embedded default the day's feature files are read and the score files
written with pyarrow (``stage_scores``; delta-rs commits them), so no row goes through the JVM: by the
driver itself for a day of at most ``score.driver_max_rows`` rows, else by the Python workers; on
delta-spark the rows go through ``mapInArrow`` and Spark's writer. The day's rows are the feature
table's, checked against the artifact's feature spec; a missing column stops the job before anything
is written.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import TYPE_CHECKING, Iterator, Mapping

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql import types as T

from liftlake.lib.cli.runner import InputError
from liftlake.lib.features.spec import FeatureSpec, require_day_spec
from liftlake.lib.storage.store import partition_dir, probability_checks

if TYPE_CHECKING:
    from liftlake.lib.training.batch import BatchLayout

CVR_SCHEMA = T.StructType([
    T.StructField("exposure_id", T.StringType(), False),
    T.StructField("user_id", T.LongType(), True),
    T.StructField("ctr", T.DoubleType(), True),
    T.StructField("cvr", T.DoubleType(), True),
    T.StructField("ctcvr", T.DoubleType(), True),
    T.StructField("model", T.StringType(), False),
    T.StructField("version", T.StringType(), False),
    T.StructField("ds", T.StringType(), False),
])
CVR_COMMENTS = {"ctr": "P(click | exposure)", "cvr": "P(conversion | click, exposure) over the whole exposure space",
                "ctcvr": "P(click and conversion | exposure)", "model": "registry name", "version": "model version"}


def uplift_schema(num_responses: int, num_treatments: int) -> T.StructType:
    rk = [(r, k) for r in range(1, num_responses + 1) for k in range(1, num_treatments + 1)]
    fields = [T.StructField("user_id", T.LongType(), False),
              T.StructField("p0", T.DoubleType(), True),
              T.StructField("unit_uplift", T.DoubleType(), True),
              T.StructField("coupon_value", T.DoubleType(), True),
              T.StructField("expected_gain", T.DoubleType(), True)]
    fields += [T.StructField(f"tau_r{r}_k{k}", T.DoubleType(), True) for r, k in rk]
    fields += [T.StructField(f"delta_r{r}_k{k}", T.DoubleType(), True) for r, k in rk]
    fields += [T.StructField(f"w_r{r}", T.DoubleType(), True) for r in range(1, num_responses + 1)]
    fields += [T.StructField(f"phi_k{k}", T.DoubleType(), True) for k in range(1, num_treatments + 1)]
    fields += [T.StructField(f"decision_k{k}", T.IntegerType(), True) for k in range(1, num_treatments + 1)]
    fields += [T.StructField("model", T.StringType(), False), T.StructField("version", T.StringType(), False),
               T.StructField("ds", T.StringType(), False)]
    return T.StructType(fields)


UPLIFT_COMMENTS = {
    "p0": "UniMVT / coupon models: base outcome probability without a coupon",
    "unit_uplift": "eta: outcome uplift per unit of coupon face value (negative: a coupon is predicted to hurt)",
    "coupon_value": "chosen coupon face value from the configured grid, 0 = no coupon",
    "expected_gain": "expected extra outcome probability of the chosen coupon",
    "model": "registry name", "version": "model version",
}

_MODEL_CACHE: dict[str, object] = {}


def _cached_model(warehouse: str, name: str, version: str):
    key = f"{warehouse}|{name}|{version}"
    if key not in _MODEL_CACHE:
        from liftlake.lib.artifacts.model_store import load_artifact

        _MODEL_CACHE[key] = load_artifact(warehouse, name, version)
    return _MODEL_CACHE[key]


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` (at most the cores) for the block, then put back: the
    process may outlive the job (a warm driver scoring a small day itself runs later steps)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def scoring_device(setting: str):
    """The torch device of ``score.device`` in this process; BadScoresError (one line, through Spark
    too) when torch sees no such device here."""
    import torch

    device = torch.device(setting)
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise BadScoresError(f"{BAD_SCORES} score.device={setting}: torch sees {torch.cuda.device_count()} CUDA "
                             "device(s) in this process (rule: a device of the process that scores; cpu runs anywhere)")
    return device


def score_batches(batches: Iterator[pa.RecordBatch], plan: DayScoring, score_conf: dict, schema: pa.Schema,
                  threads: int = 1, art=None) -> Iterator[pa.RecordBatch]:
    """The forward passes over each Arrow batch's columns on ``score.device``, the batches of ``schema``
    out (the plan's label columns, which scoring does not read, as zeros). ``threads``: torch's in this
    process while it scores (a worker per Spark task, a task per core: one each, unless there are fewer
    tasks than cores); ``art``: the artifact, else the worker's cached one."""
    device = scoring_device(score_conf["device"])
    art = art if art is not None else _cached_model(plan.warehouse, plan.name, plan.version)
    art.model.to(device)  # in place: the cached artifact stays there for the next day
    with torch_threads(threads):
        for batch in batches:
            if batch.num_rows:
                yield score_batch(batch, plan, art, score_conf, schema)


def score_batch(batch: pa.RecordBatch, plan: DayScoring, art, score_conf: dict, schema: pa.Schema) -> pa.RecordBatch:
    """One Arrow batch's scores as a batch of ``schema``, checked (``check_scores``)."""
    from liftlake.lib.training.batch import predict_frame

    name, version, layout, n = plan.name, plan.version, plan.layout, batch.num_rows
    cols = {c: batch.column(c).to_numpy(zero_copy_only=False) for c in layout.feature_columns}
    cols.update({c: np.zeros(n, dtype=np.float32) for c in plan.zero_columns})
    pred = predict_frame(art.model, layout, cols, batch_size=score_conf["batch_size"])
    out: dict[str, np.ndarray] = {}
    if layout.task == "cvr":
        out.update({k: pred[k].astype(np.float64) for k in ("ctr", "cvr", "ctcvr")})
    else:
        out.update({k: v.astype(np.int32) if k.startswith("decision_") else v.astype(np.float64)
                    for k, v in pred.items() if k in schema.names})
        if layout.task == "coupon":
            from liftlake.models.unimvt import coupon_decision

            value, gain = coupon_decision(pred["p0"], pred["unit_uplift"], score_conf["coupon_grid"],
                                          max(score_conf["coupon_cost_per_unit"], 1e-12),
                                          score_conf["coupon_min_ratio"])
            out["coupon_value"], out["expected_gain"] = value.numpy(), gain.numpy()
    check_scores(out, layout.task, name, version, score_conf["coupon_grid"])
    constants = {"model": name, "version": version, "ds": plan.ds}
    arrays = [batch.column(f.name).cast(f.type) if f.name in ("exposure_id", "user_id")
              else pa.repeat(pa.scalar(constants[f.name], f.type), n) if f.name in constants
              else pa.array(out[f.name], type=f.type) if f.name in out
              else pa.nulls(n, f.type)  # an output this model does not make (another task's column)
              for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# A score that breaks a rule stops the job before anything is committed. The check runs where the
# rows are made (a Python worker), so the message crosses Spark with this marker and the driver
# turns it back into one line (``bad_scores_message``).
BAD_SCORES = "LIFTLAKE_BAD_SCORES"
PROBABILITY_COLUMNS = ("ctr", "cvr", "ctcvr", "p0")


def check_scores(out: Mapping, task: str, name: str, version: str, coupon_grid) -> None:
    """Finite outputs, probabilities in [0, 1], decisions in their allowed set; else BadScoresError.
    ``out``: a batch's score columns by name (numpy arrays, or a pandas frame)."""
    broken: dict[str, int] = {}
    names = list(out.keys())
    rows = len(out[names[0]]) if names else 0
    for col in names:
        if col in ("exposure_id", "user_id", "model", "version", "ds"):
            continue
        values = np.asarray(out[col], dtype=np.float64)
        bad = ~np.isfinite(values)
        if col in PROBABILITY_COLUMNS:
            bad |= (values < 0) | (values > 1)
        if col.startswith("decision_"):
            bad |= ~np.isin(values, (0, 1))
        if col == "coupon_value":
            bad |= ~np.isin(values, [0.0, *[float(v) for v in coupon_grid]])
        if bad.any():
            broken[col] = int(bad.sum())
    if broken:
        worst = ", ".join(f"{col}: {n}" for col, n in sorted(broken.items()))
        raise BadScoresError(f"{BAD_SCORES} model {name} version {version}: {max(broken.values())} of {rows} "
                             f"rows of a batch break the score rules ({worst}; rule: finite, probabilities in "
                             f"[0, 1], decisions in the allowed set)")


class BadScoresError(ValueError):
    """Scores that must not (or cannot) reach a table (raised in the process that makes them)."""


def bad_scores_message(exc: BaseException) -> str | None:
    """The one-line rule violation inside a failed Spark write, when check_scores caused it."""
    text = str(exc)
    start = text.find(BAD_SCORES)
    if start < 0:
        return None
    line = text[start + len(BAD_SCORES):].splitlines()[0].strip()
    return f"scores refused, nothing written: {line}"


def check_day(store, spec: FeatureSpec, level: str, ds: str) -> tuple[str, int]:
    """(the feature table whose day ``ds`` is encoded for ``spec``, the day's rows); refused (InputError)
    when the day is missing, lacks a column of the spec or was encoded with another spec (from the
    Delta log; the day's rows only when its file statistics cannot say)."""
    table = "features.samples" if level == "exposure" else "features.user_samples"
    rows = store.partition_counts(table).get(ds) if store.exists(table) else None
    if rows is None:
        raise InputError(f"table {table}: partition ds={ds} is missing (run build-features for the day first)")
    columns = store.spark_schema(table).fieldNames()
    missing = [c for c in spec.columns(level) if c not in columns]
    if missing:
        raise InputError(f"table {table}: column(s) {missing} of the model's feature spec {spec.version} "
                         f"are missing on ds={ds}")
    require_day_spec(store, table, ds, spec.version, "the model")
    return table, rows


@dataclasses.dataclass(frozen=True)
class DayScoring:
    """What scoring one model version on one day needs, checked on the driver before any work: the
    artifact loads, the day exists and is encoded with the artifact's feature spec."""
    warehouse: str
    name: str
    version: str
    ds: str
    layout: BatchLayout
    table: str  # the scores table
    schema: T.StructType  # its columns
    source: str  # the feature table read
    rows: int  # the day's rows in it (the Delta log's count)
    keys: list[str]
    zero_columns: list[str]  # label columns of the layout, which scoring does not read

    @property
    def read_columns(self) -> list[str]:
        return [*self.keys, *self.layout.feature_columns]


def plan_day(store, warehouse: str, name: str, version: str, ds: str,
             num_responses: int, num_treatments: int):
    """(what scoring one model version on one day reads and writes, its day checked; the artifact)."""
    from liftlake.lib.artifacts.model_store import load_artifact
    from liftlake.lib.evaluation.evaluate import layout_for
    from liftlake.lib.training.batch import batch_columns

    art = load_artifact(warehouse, name, version)  # fail here, on the driver, before any work
    spec = FeatureSpec.from_json(art.feature_spec_json)
    layout = layout_for(art.info, spec, art.config)
    level = "exposure" if layout.task == "cvr" else "user"
    source, rows = check_day(store, spec, level, ds)
    # Scoring reads only features; labels may not exist yet for today: the batches fill them with zeros.
    zero_columns = [c for c in batch_columns(layout) if c not in ("row_id", "cf_label")
                    and c not in layout.feature_columns]
    if layout.task == "cvr":
        table, schema = "scores.cvr", CVR_SCHEMA
    else:
        table, schema = "scores.uplift_user", uplift_schema(num_responses, num_treatments)
    return DayScoring(warehouse, name, version, ds, layout, table, schema, source, rows,
                      ["exposure_id", "user_id"] if level == "exposure" else ["user_id"], zero_columns), art


def score_model_day(store, warehouse: str, name: str, version: str, ds: str, score_conf: dict,
                    num_responses: int, num_treatments: int) -> tuple[str, DataFrame]:
    """(table, scores DataFrame) of one model version on one day; nothing is written here."""
    plan, _ = plan_day(store, warehouse, name, version, ds, num_responses, num_treatments)
    out_schema = to_arrow_schema(plan.schema)
    scored = store.read(plan.source, partitions=[ds]).select(*plan.read_columns).mapInArrow(
        lambda it: score_batches(iter(it), plan, score_conf, out_schema), schema=plan.schema)
    return plan.table, scored


# Rows read (and written: a row group of the score file) at a time: 16 forward passes of the default
# score.batch_size, ~10 MB of feature columns.
READ_BATCH_ROWS = 65_536
# Score columns with a few values (the version, a decision, a coupon value from the grid): dictionary
# encoded. The rest are per-row values, where pyarrow's dictionary attempt only costs (it was 60 % of
# the file's write time at 1M rows).
FEW_VALUES = ("version", "coupon_value", "decision_")


def write_score_file(plan: DayScoring, uris: list[str], score_conf: dict, folder: str, index: int, attempt: int,
                     threads: int, art=None) -> int:
    """Score ``uris`` (feature files of the day) into ``folder``/part-``index``.parquet: rows written.
    The file appears whole or not at all: it is written as the attempt's own partial file and renamed,
    so a retried (or speculative) attempt never writes into another's; no rows, no file (as Spark's
    writer). A batch is written while the next is scored (the writer releases the GIL). ``art``: the
    artifact, when the caller holds it (the driver); else the worker's cached one."""
    from concurrent.futures import Future, ThreadPoolExecutor

    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    file_schema = to_arrow_schema(T.StructType([f for f in plan.schema if f.name not in SCORE_PARTITIONS]))

    def batches() -> Iterator[pa.RecordBatch]:
        for uri in uris:
            fs, path = pafs.FileSystem.from_uri(uri)
            with fs.open_input_file(path) as source:
                yield from pq.ParquetFile(source).iter_batches(batch_size=READ_BATCH_ROWS, columns=plan.read_columns)

    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, f"part-{index:05d}.parquet")
    partial = os.path.join(folder, f".part-{index:05d}-{attempt}.partial")
    rows = 0
    dictionary = [f.name for f in file_schema if f.name.startswith(FEW_VALUES)]
    with pq.ParquetWriter(partial, file_schema, use_dictionary=dictionary) as writer, \
            ThreadPoolExecutor(1, thread_name_prefix="score-writer") as io:
        written: Future | None = None
        for out in score_batches(batches(), plan, score_conf, file_schema, threads, art):
            if written is not None:
                written.result()
            written = io.submit(writer.write_batch, out)
            rows += out.num_rows
        if written is not None:
            written.result()
    if rows:
        os.replace(partial, target)
    else:
        os.remove(partial)
    return rows


def stage_scores(spark, plan: DayScoring, uris: list[str], score_conf: dict, staging: str, art=None) -> None:
    """The day's scores as Parquet files in ``staging``'s (ds, model) folder, written with pyarrow
    straight from the day's feature files: no row crosses the JVM (its row <-> Arrow conversions and
    Parquet writer were half the CPU of the mapInArrow job at 1M rows). A day of at most
    ``score.driver_max_rows`` rows is scored here, in the driver, with ``art`` (plan_day loaded it) and
    every core's threads: starting Python workers and their torch import (2.7 s on 2 cores) costs more
    than such a day's forward passes. A larger day goes to Spark tasks, one per core, each scoring its
    share of the files into one file."""
    folder = os.path.join(staging, partition_dir(dict(zip(SCORE_PARTITIONS, (plan.ds, plan.name)))))
    cores = spark.sparkContext.defaultParallelism
    if plan.rows <= score_conf["driver_max_rows"]:
        write_score_file(plan, uris, score_conf, folder, 0, 0, cores, art)
        return
    tasks = max(1, min(len(uris), cores))
    shares = [uris[i::tasks] for i in range(tasks)]
    threads = max(1, cores // tasks)

    def score_share(index: int, share: Iterator[list[str]]) -> Iterator[int]:
        from pyspark import TaskContext

        task = TaskContext.get()
        yield write_score_file(plan, [u for files in share for u in files], score_conf, folder, index,
                               task.attemptNumber() if task else 0, threads)

    spark.sparkContext.parallelize(shares, tasks).mapPartitionsWithIndex(score_share).collect()


def score_and_write(store, warehouse: str, name: str, version: str, ds: str, score_conf: dict,
                    num_responses: int, num_treatments: int):
    """Score one model version on one day and write it (``write_scores``' partitions and rules): on the
    embedded default (delta-rs) the Parquet files are read and written with pyarrow, by the driver for
    a small day, else by the Python workers (``stage_scores``); on delta-spark the rows go through
    Spark's DataFrame writer."""
    if not hasattr(store, "write_staged"):
        table, frame = score_model_day(store, warehouse, name, version, ds, score_conf, num_responses, num_treatments)
        return write_scores(store, table, frame, name, ds)
    plan, art = plan_day(store, warehouse, name, version, ds, num_responses, num_treatments)
    uris = store.file_uris(plan.source, partitions=[ds])
    return store.write_staged(plan.table, plan.schema, lambda staging: stage_scores(
        store.spark, plan, uris, score_conf, staging, art), **_score_write_args(plan.table, name, ds))


# Score tables nest the model inside the day: a job replaces its own model's rows of the day and
# nothing else, without reading the day first, so two jobs scoring one day with different models
# cannot drop each other's rows.
SCORE_PARTITIONS = ("ds", "model")


def _score_write_args(table: str, model: str, ds: str) -> dict:
    return dict(mode="overwrite_partitions", partition_values=[ds], partition_by=SCORE_PARTITIONS,
                sub_partition_values={"model": [model]},
                comment="per-exposure CTR / CVR / CTCVR scores" if table == "scores.cvr"
                else "per-user uplift scores and coupon / treatment decisions",
                column_comments=CVR_COMMENTS if table == "scores.cvr" else UPLIFT_COMMENTS)


def write_scores(store, table: str, scored: DataFrame, model: str, ds: str):
    """Replace ``model``'s rows of the day ``ds`` in ``table`` (partition (ds, model))."""
    return store.write(scored, table, **_score_write_args(table, model, ds),
                       checks=probability_checks(*[c for c in PROBABILITY_COLUMNS if c in scored.columns]))
