"""ESCIM's counterfactual-label stage as a batch job (ESCIM III, Alg. 1-3).

The labeler (f(x, z) and the abduction VAE) is fitted on a bounded sample of the window, saved in
the model store as ``_escim_labeler/<version>``, then applied to every exposure of the day on the
executors (``mapInArrow``): pcvr_cf = f(x, z) under do(C = 1). The two label transforms are
applied in Spark over the whole day, not per batch: label_max = pcvr_cf >= the largest factual pCVR
(Alg. 2); label_ratio = the top ceil(|V||N|/|C|) pcvr_cf of the non-clicked rows (Alg. 3), found
with a quantile of the day. One INFO line per day says how the labels look: the share of the
non-clicked rows each transform labels and, on a simulated world (sim.truth), the true CVR of the
labelled rows over that of all non-clicked rows (lift).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import torch
from pyspark.sql import functions as F
from pyspark.sql import types as T

from liftlake.lib.artifacts.escim_labeler import _load_labeler, fit_and_save_labeler
from liftlake.lib.artifacts.feature_specs import load_spec
from liftlake.lib.config import warehouse_path
from liftlake.lib.features.spec import require_day_spec
from liftlake.lib.log import log_commits
from liftlake.lib.training.trainset import top_share_label
from liftlake.lib.storage.store import probability_checks

logger = logging.getLogger(__name__)

LABEL_COMMENTS = {
    "pcvr_cf": "counterfactual CVR under do(click=1) from the ESCIM labeler",
    "label_max": "1 if pcvr_cf reaches the largest factual pCVR (ESCIM Alg. 2); 0 on clicked rows",
    "label_ratio": "1 for the top pcvr_cf so that non-clicks convert at the click rate (Alg. 3); 0 on clicked rows",
    "labeler_version": "version of _models/_escim_labeler that made the labels",
}


def _pcvr_batches(batches: Iterator[pa.RecordBatch], warehouse: str, version: str, cols: list[str]):
    """The labeler over each Arrow batch's columns (no pandas frame either way)."""
    from liftlake.models.escim_labeler import label_counterfactuals

    labeler = _load_labeler(warehouse, version)
    for batch in batches:
        if batch.num_rows == 0:
            continue
        x = torch.from_numpy(np.stack([batch.column(c).to_numpy(zero_copy_only=False).astype(np.int64)
                                       for c in cols], axis=1))
        click = batch.column("click")
        with torch.no_grad():
            out = label_counterfactuals(labeler, x, torch.from_numpy(
                click.to_numpy(zero_copy_only=False).astype(np.float32)))
        yield pa.RecordBatch.from_arrays([batch.column("exposure_id"), click,
                                          pa.array(out["pcvr_cf"].numpy().astype(np.float64))],
                                         names=["exposure_id", "click", "pcvr_cf"])


def label_day(store, config, ds: str, version: str, labeler, spec_version: str) -> object:
    warehouse = warehouse_path(config)
    spec = load_spec(warehouse, spec_version)
    cols = spec.columns("exposure")
    rows = store.read("features.samples", partitions=[ds])
    require_day_spec(store, "features.samples", ds, spec.version, f"the ESCIM labeler {version}")
    day = rows.select("exposure_id", *cols, "click")
    schema = T.StructType([T.StructField("exposure_id", T.StringType()), T.StructField("click", T.IntegerType()),
                           T.StructField("pcvr_cf", T.DoubleType())])
    scored = day.mapInArrow(lambda it: _pcvr_batches(it, warehouse, version, cols), schema=schema).cache()
    nonclicked = scored.where(F.col("click") == 0)
    n = nonclicked.count()
    k = min(n, -(-int(labeler.num_conversions) * n // max(int(labeler.num_clicks), 1)))
    labelled = top_share_label(scored, k / n if n else 0.0, "label_ratio").select(
        "exposure_id", "click", "pcvr_cf",
        F.when(F.col("click") == 1, 0).when(F.col("pcvr_cf") >= float(labeler.factual_pcvr_max), 1)
        .otherwise(0).cast("int").alias("label_max"),
        "label_ratio")
    labels = labelled.select("exposure_id", "pcvr_cf", "label_max", "label_ratio",
                             F.lit(version).alias("labeler_version"), F.lit(ds).alias("ds"))
    res = store.write(labels, "labels.escim_counterfactual", mode="overwrite_partitions", partition_values=[ds],
                      comment="ESCIM counterfactual conversion labels per exposure", column_comments=LABEL_COMMENTS,
                      checks=probability_checks("pcvr_cf"))
    logger.info(f"escim-labels {ds}: labels.escim_counterfactual rows={res.rows} staged "
        f"(ratio: top {k} of {n} non-clicked; max cut-off "
        f"{float(labeler.factual_pcvr_max):.4g})")
    logger.info(quality_line(ds, label_quality(store, labelled, ds)))
    scored.unpersist()
    return res


def label_quality(store, labelled, ds: str) -> dict[str, float]:
    """How the day's labels look on its non-clicked rows: their number, mean pcvr_cf, the share each
    transform labels 1 and, where sim.truth holds the day (a simulated world), the mean true CVR
    under do(click = 1) of all of them (the base rate) and of the rows each transform labels."""
    rows = labelled.where(F.col("click") == 0)
    aggs = [F.count(F.lit(1)).alias("nonclicked"), F.avg("pcvr_cf").alias("mean_pcvr_cf"),
            F.avg("label_max").alias("share_max"), F.avg("label_ratio").alias("share_ratio")]
    has_truth = store.exists("sim.truth") and ds in store.partition_counts("sim.truth")
    if has_truth:
        truth = store.read("sim.truth", partitions=[ds]).select("exposure_id", F.col("cvr_do_click_true").alias("_q"))
        rows = rows.join(truth, "exposure_id", "left")
        aggs += [F.count("_q").alias("with_truth"), F.avg("_q").alias("base_rate"),
                 *(F.avg(F.when(F.col(f"label_{t}") == 1, F.col("_q"))).alias(f"true_rate_{t}") for t in ("max", "ratio"))]
    return {key: (math.nan if value is None else float(value)) for key, value in rows.agg(*aggs).first().asDict().items()}


def quality_line(ds: str, q: dict[str, float]) -> str:
    """One log line from ``label_quality``: lift = true CVR of the labelled rows / base rate (1: no
    better than labelling at random; nan where a transform labels nothing)."""
    line = (f"escim-labels {ds}: label quality on {int(q['nonclicked'])} non-clicked rows: "
            f"label_max share {q['share_max']:.4%}, label_ratio share {q['share_ratio']:.4%}, "
            f"mean pcvr_cf {q['mean_pcvr_cf']:.4f}")
    if "base_rate" not in q:
        return line + " (no sim.truth for the day: no lift)"
    lift = {t: q[f"true_rate_{t}"] / q["base_rate"] if q["base_rate"] > 0 else math.nan for t in ("max", "ratio")}
    return (line + f" vs true {q['base_rate']:.4f} ({int(q['with_truth'])} rows with truth); true CVR of the "
            f"labelled: max {q['true_rate_max']:.4f} (lift {lift['max']:.2f}), "
            f"ratio {q['true_rate_ratio']:.4f} (lift {lift['ratio']:.2f})")


def escim_labels(ctx) -> None:
    version, labeler, spec_version = fit_and_save_labeler(ctx.store, ctx.config, ctx.days[-1])
    with ctx.store.commit_together() as batch:
        for ds in ctx.days:
            label_day(ctx.store, ctx.config, ds, version, labeler, spec_version)
    log_commits(logger, "escim-labels", batch.results)
