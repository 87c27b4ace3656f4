"""Batch scoring: a model version over a day's rows with ``mapInArrow``, into Delta tables.

The artifact is loaded once per Python worker (cached by path) and applied to the Arrow batches
themselves: their columns go to numpy without copies and the outputs back to Arrow, with no pandas
frame on either side (that round trip was 46 % over the bare forward passes at 1M rows). The day's
rows are the feature table's, checked against the artifact's feature spec; a missing column stops
the job before anything is written.
"""
from __future__ import annotations

from typing import Iterator, Mapping

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql import types as T

from liftlake.lib.cli.runner import InputError
from liftlake.lib.features.spec import FeatureSpec, require_day_spec
from liftlake.lib.storage.store import probability_checks

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
        import torch

        from liftlake.lib.artifacts.model_store import load_artifact

        torch.set_num_threads(1)  # one thread per Spark task; Spark runs one task per core
        _MODEL_CACHE[key] = load_artifact(warehouse, name, version)
    return _MODEL_CACHE[key]


def score_batches(batches: Iterator[pa.RecordBatch], warehouse: str, name: str, version: str, layout,
                  score_conf: dict, schema: pa.Schema, ds: str, zero_columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The mapInArrow body: one artifact per worker, the forward passes over each Arrow batch's columns
    (``zero_columns``: the label columns the layout names, which scoring does not read, as zeros)."""
    from liftlake.lib.evaluation.evaluate import predict_frame

    art = _cached_model(warehouse, name, version)
    for batch in batches:
        n = batch.num_rows
        if n == 0:
            continue
        cols = {c: batch.column(c).to_numpy(zero_copy_only=False) for c in layout.feature_columns}
        cols.update({c: np.zeros(n, dtype=np.float32) for c in zero_columns})
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
        constants = {"model": name, "version": version, "ds": ds}
        arrays = [batch.column(f.name).cast(f.type) if f.name in ("exposure_id", "user_id")
                  else pa.repeat(pa.scalar(constants[f.name], f.type), n) if f.name in constants
                  else pa.array(out[f.name], type=f.type) if f.name in out
                  else pa.nulls(n, f.type)  # an output this model does not make (another task's column)
                  for f in schema]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


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
    """Scores that must not reach a table (raised in the Python worker that made them)."""


def bad_scores_message(exc: BaseException) -> str | None:
    """The one-line rule violation inside a failed Spark write, when check_scores caused it."""
    text = str(exc)
    start = text.find(BAD_SCORES)
    if start < 0:
        return None
    line = text[start + len(BAD_SCORES):].splitlines()[0].strip()
    return f"scores refused, nothing written: {line}"


def day_rows(store, spec: FeatureSpec, level: str, ds: str) -> DataFrame:
    """The day's encoded rows for ``spec``: the feature table when its encoding matches."""
    table = "features.samples" if level == "exposure" else "features.user_samples"
    if not store.exists(table) or ds not in store.partition_counts(table):
        raise InputError(f"table {table}: partition ds={ds} is missing (run build-features for the day first)")
    df = store.read(table, partitions=[ds])
    missing = [c for c in spec.columns(level) if c not in df.columns]
    if missing:
        raise InputError(f"table {table}: column(s) {missing} of the model's feature spec {spec.version} "
                         f"are missing on ds={ds}")
    require_day_spec(store, df, table, ds, spec.version, "the model")
    return df


def score_model_day(store, warehouse: str, name: str, version: str, ds: str, score_conf: dict,
                    num_responses: int, num_treatments: int) -> tuple[str, DataFrame]:
    """(table, scores DataFrame) of one model version on one day; nothing is written here."""
    from liftlake.lib.artifacts.model_store import load_artifact
    from liftlake.lib.evaluation.evaluate import layout_for
    from liftlake.lib.training.plan import batch_columns

    art = load_artifact(warehouse, name, version)  # fail here, on the driver, before any work
    spec = FeatureSpec.from_json(art.feature_spec_json)
    layout = layout_for(art.info, spec, art.config)
    level = "exposure" if layout.task == "cvr" else "user"
    rows = day_rows(store, spec, level, ds)
    label_cols = [c for c in batch_columns(layout) if c not in ("row_id", "cf_label")
                  and c not in layout.feature_columns]
    keys = ["exposure_id", "user_id"] if level == "exposure" else ["user_id"]
    # Scoring reads only features; labels may not exist yet for today: the batches fill them with zeros.
    rows = rows.select(*keys, *layout.feature_columns)
    if layout.task == "cvr":
        table, schema = "scores.cvr", CVR_SCHEMA
    else:
        table, schema = "scores.uplift_user", uplift_schema(num_responses, num_treatments)
    out_schema = to_arrow_schema(schema)
    scored = rows.mapInArrow(
        lambda it: score_batches(iter(it), warehouse, name, version, layout, score_conf, out_schema, ds, label_cols),
        schema=schema)
    return table, scored


# Score tables nest the model inside the day: a job replaces its own model's rows of the day and
# nothing else, without reading the day first, so two jobs scoring one day with different models
# cannot drop each other's rows.
SCORE_PARTITIONS = ("ds", "model")


def write_scores(store, table: str, scored: DataFrame, model: str, ds: str):
    """Replace ``model``'s rows of the day ``ds`` in ``table`` (partition (ds, model))."""
    comments = CVR_COMMENTS if table == "scores.cvr" else UPLIFT_COMMENTS
    return store.write(scored, table, mode="overwrite_partitions", partition_values=[ds],
                       partition_by=SCORE_PARTITIONS, sub_partition_values={"model": [model]},
                       comment="per-exposure CTR / CVR / CTCVR scores" if table == "scores.cvr"
                       else "per-user uplift scores and coupon / treatment decisions",
                       column_comments=comments,
                       checks=probability_checks(*[c for c in PROBABILITY_COLUMNS if c in scored.columns]))
