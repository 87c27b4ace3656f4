"""ESCIM's counterfactual-label stage as a batch job (ESCIM III, Alg. 1-3).

The labeler (f(x, z) and the abduction VAE) is fitted on a bounded sample of the window, saved in
the model store as ``_escim_labeler/<version>``, then applied to every exposure of the day on the
executors (``mapInPandas``): pcvr_cf = f(x, z) under do(C = 1). The two label transforms are
applied in Spark over the whole day, not per batch: label_max = pcvr_cf >= the largest factual pCVR
(Alg. 2); label_ratio = the top ceil(|V||N|/|C|) pcvr_cf of the non-clicked rows (Alg. 3), found
with a quantile of the day.
"""
from __future__ import annotations

import dataclasses
import json
import os
import uuid
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from pyspark.sql import functions as F
from pyspark.sql import types as T

from liftlake.lib.config import warehouse_path
from liftlake.lib.features import load_spec, require_day_spec, spec_versions_by_day, window_days
from liftlake.lib.pipeline import log, log_commits
from liftlake.lib.runner import InputError
from liftlake.lib.trainset import top_share_label

LABEL_COMMENTS = {
    "pcvr_cf": "counterfactual CVR under do(click=1) from the ESCIM labeler",
    "label_max": "1 if pcvr_cf reaches the largest factual pCVR (ESCIM Alg. 2); 0 on clicked rows",
    "label_ratio": "1 for the top pcvr_cf so that non-clicks convert at the click rate (Alg. 3); 0 on clicked rows",
    "labeler_version": "version of _models/_escim_labeler that made the labels",
}
_LABELER_CACHE: dict[str, object] = {}


def labeler_dir(warehouse: str) -> str:
    return os.path.join(warehouse, "_models", "_escim_labeler")


def claim_version(folder: str, staging: str) -> str:
    """Publish the complete ``staging`` folder as the next free ``vNNNN`` under ``folder``: the rename
    fails when another job took that number first (a version folder is never empty), and the
    next number is tried."""
    while True:
        existing = sorted(v for v in os.listdir(folder) if v.startswith("v"))
        version = f"v{(int(existing[-1][1:]) + 1) if existing else 1:04d}"
        try:
            os.rename(staging, os.path.join(folder, version))
            return version
        except OSError:
            if not os.path.isdir(os.path.join(folder, version)):
                raise


def fit_and_save_labeler(store, config, ds: str) -> tuple[str, object, str]:
    """(labeler version, labeler, feature spec version): fitted on the window's days encoded with the
    spec of its last day (the labeler's embeddings index that spec's vocabularies)."""
    from liftlake.models.escim import EscimLabelParams, fit_counterfactual_labeler

    warehouse = warehouse_path(config)
    have = store.partition_counts("features.samples")
    days = [d for d in window_days(ds, config.escim_labels.window_days) if d in have]
    if not days:
        raise InputError(f"table features.samples has no partition in the window ending {ds}")
    version_read = store.version("features.samples")
    window = store.read("features.samples", version=version_read, partitions=days)
    specs = spec_versions_by_day(window)
    if len(specs[days[-1]]) != 1:
        raise InputError(f"table features.samples: ds={days[-1]} mixes feature specs {sorted(specs[days[-1]])} "
                         f"(rule: one spec per day; rebuild the day's features)")
    spec = load_spec(warehouse, next(iter(specs[days[-1]])))
    other = [d for d in days if specs[d] != {spec.version}]
    if other:
        log(f"escim labeler: leaving out {other}: encoded with another feature spec than {spec.version}")
        days = [d for d in days if d not in other]
    cols = spec.columns("exposure")
    df = window.where(F.col("ds").isin(days) & (F.col("split") == "train"))
    total = sum(have[d] for d in days)
    fraction = min(1.0, config.escim_labels.max_fit_rows / max(total, 1))
    pdf = df.sample(fraction=fraction, seed=config.train.seed).select(*cols, "click", "conversion") \
        .limit(config.escim_labels.max_fit_rows).toPandas()
    params = EscimLabelParams(**config.escim_labels.params)
    x = torch.from_numpy(np.stack([pdf[c].to_numpy(np.int64) for c in cols], axis=1))
    labeler = fit_counterfactual_labeler(x, torch.from_numpy(pdf["click"].to_numpy(np.float32)),
                                         torch.from_numpy(pdf["conversion"].to_numpy(np.float32)),
                                         spec.field_dims("exposure"), params, log=log)
    folder = labeler_dir(warehouse)
    os.makedirs(folder, exist_ok=True)
    # a staging folder of this job's own: two jobs fitting at once never write into each other's
    staging = os.path.join(folder, f"_staging-{uuid.uuid4().hex[:12]}")
    os.makedirs(staging)
    torch.save(labeler.state_dict(), os.path.join(staging, "weights.pt"))
    with open(os.path.join(staging, "labeler.json"), "w", encoding="utf-8") as fh:
        json.dump({"params": dataclasses.asdict(params), "field_dims": spec.field_dims("exposure"),
                   "feature_spec": spec.version, "fit_days": days, "fit_rows": len(pdf),
                   "features.samples version": version_read}, fh, indent=1)
    version = claim_version(folder, staging)
    log(f"escim labeler {version} fitted on {len(pdf)} sampled rows of {days[0]}..{days[-1]} "
        f"(feature spec {spec.version})")
    return version, labeler, spec.version


def _load_labeler(warehouse: str, version: str):
    key = f"{warehouse}|{version}"
    if key not in _LABELER_CACHE:
        from liftlake.models.escim import CounterfactualLabeler, EscimLabelParams

        torch.set_num_threads(1)
        folder = os.path.join(labeler_dir(warehouse), version)
        with open(os.path.join(folder, "labeler.json"), encoding="utf-8") as fh:
            meta = json.load(fh)
        params = meta["params"]
        for k, v in params.items():
            if isinstance(v, list):
                params[k] = tuple(v)
        labeler = CounterfactualLabeler(meta["field_dims"], EscimLabelParams(**params))
        labeler.load_state_dict(torch.load(os.path.join(folder, "weights.pt"), map_location="cpu", weights_only=True))
        labeler.eval()
        _LABELER_CACHE[key] = labeler
    return _LABELER_CACHE[key]


def _pcvr_batches(batches: Iterator[pd.DataFrame], warehouse: str, version: str, cols: list[str]):
    from liftlake.models.escim import label_counterfactuals

    labeler = _load_labeler(warehouse, version)
    for pdf in batches:
        if pdf.empty:
            continue
        x = torch.from_numpy(np.stack([pdf[c].to_numpy(np.int64) for c in cols], axis=1))
        with torch.no_grad():
            out = label_counterfactuals(labeler, x, torch.from_numpy(pdf["click"].to_numpy(np.float32)))
        yield pd.DataFrame({"exposure_id": pdf["exposure_id"], "click": pdf["click"],
                            "pcvr_cf": out["pcvr_cf"].numpy().astype(np.float64)})


def label_day(store, config, ds: str, version: str, labeler, spec_version: str) -> object:
    warehouse = warehouse_path(config)
    spec = load_spec(warehouse, spec_version)
    cols = spec.columns("exposure")
    rows = store.read("features.samples", partitions=[ds])
    require_day_spec(rows, "features.samples", ds, spec.version, f"the ESCIM labeler {version}")
    day = rows.select("exposure_id", *cols, "click")
    schema = T.StructType([T.StructField("exposure_id", T.StringType()), T.StructField("click", T.IntegerType()),
                           T.StructField("pcvr_cf", T.DoubleType())])
    scored = day.mapInPandas(lambda it: _pcvr_batches(it, warehouse, version, cols), schema=schema).cache()
    nonclicked = scored.where(F.col("click") == 0)
    n = nonclicked.count()
    k = min(n, -(-int(labeler.num_conversions) * n // max(int(labeler.num_clicks), 1)))
    labels = top_share_label(scored, k / n if n else 0.0, "label_ratio").select(
        "exposure_id", "pcvr_cf",
        F.when(F.col("click") == 1, 0).when(F.col("pcvr_cf") >= float(labeler.factual_pcvr_max), 1)
        .otherwise(0).cast("int").alias("label_max"),
        "label_ratio", F.lit(version).alias("labeler_version"), F.lit(ds).alias("ds"))
    res = store.write(labels, "labels.escim_counterfactual", mode="overwrite_partitions", partition_values=[ds],
                      comment="ESCIM counterfactual conversion labels per exposure", column_comments=LABEL_COMMENTS)
    scored.unpersist()
    log(f"escim-labels {ds}: labels.escim_counterfactual rows={res.rows} staged "
        f"(ratio: top {k} of {n} non-clicked; max cut-off "
        f"{float(labeler.factual_pcvr_max):.4g})")
    return res


def escim_labels(ctx) -> None:
    version, labeler, spec_version = fit_and_save_labeler(ctx.store, ctx.config, ctx.days[-1])
    with ctx.store.commit_together() as batch:
        for ds in ctx.days:
            label_day(ctx.store, ctx.config, ds, version, labeler, spec_version)
    log_commits("escim-labels", batch.results)
