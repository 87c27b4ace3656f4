"""The scoring section of bench.run: rows/s of the Spark scoring job on a day against in-process torch
inference on the same rows, with the peak memory of the process tree and of its largest Python worker."""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from bench.run.common import PeakRSS, job_context


def bench_scoring(spark, warehouse: str, ds: str, model: str, version: str) -> dict:
    from liftlake.lib.artifacts.model_store import load_artifact
    from liftlake.lib.config import warehouse_path
    from liftlake.lib.evaluation.evaluate import layout_for, predict_frame
    from liftlake.lib.features.spec import FeatureSpec
    from liftlake.lib.scoring.scorer import score_model_day, write_scores
    from liftlake.lib.training.plan import batch_columns

    ctx = job_context(warehouse, [], [ds], spark)
    art = load_artifact(warehouse_path(ctx.config), model, version)
    spec = FeatureSpec.from_json(art.feature_spec_json)
    layout = layout_for(art.info, spec, art.config)
    table = "features.samples" if layout.task == "cvr" else "features.user_samples"
    rows = ctx.store.partition_counts(table)[ds]
    out: dict = {"model": model, "rows": rows}
    with PeakRSS() as mem:
        start = time.perf_counter()
        out_table, frame = score_model_day(ctx.store, warehouse, model, version, ds,
                                           dataclasses.asdict(ctx.config.score), 2, 2)
        write_scores(ctx.store, out_table, frame, model, ds)
        out["spark_s"] = time.perf_counter() - start
    out["spark_rows_per_s"] = rows / out["spark_s"]
    out["peak_rss_mib"] = round(mem.peak)
    out["worker_peak_rss_mib"] = round(mem.worker_peak)
    # in-process: the same rows as numpy, the same model, no Spark
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = [c for c in batch_columns(layout) if c not in ("row_id", "cf_label")]
    uris = [u.removeprefix("file://") for u in __import__("deltalake").DeltaTable(ctx.store.path(table)).file_uris(
        partition_filters=[("ds", "=", ds)])]
    data = pa.concat_tables([pq.read_table(u, columns=[c for c in cols if c in layout.feature_columns])
                             for u in uris])
    columns = {c: data.column(c).to_numpy() for c in data.column_names}
    for c in cols:
        columns.setdefault(c, np.zeros(rows, dtype=np.float32))
    import torch

    torch.set_num_threads(os.cpu_count() or 2)
    start = time.perf_counter()
    predict_frame(art.model, layout, columns, batch_size=ctx.config.score.batch_size)
    out["inprocess_s"] = time.perf_counter() - start
    out["inprocess_rows_per_s"] = rows / out["inprocess_s"]
    out["ratio_vs_inprocess"] = out["spark_rows_per_s"] / out["inprocess_rows_per_s"]
    return out
