"""The scoring sections of bench.run: rows/s of the Spark scoring job on a day against in-process torch
inference on the same rows (the floor: the forward passes alone over arrays already in memory, every
core's threads).

* ``bench_scoring`` (the full bench): the job in the bench's own session, with the peak memory of the
  process tree and of its largest Python worker.
* ``bench_scoring_cold`` (``python -m bench.run --only scoring``, its own section of the report, issue
  20's target): DCMT on one simulated day per size, the job cold (``liftlake score``'s work in a fresh
  driver process: its session start apart, then the job with a JIT-cold JVM and Python workers not yet
  started) and warm (in this run's session after a warm-up, best of ``repeats``), CPU seconds of the
  process tree beside wall seconds, and the floor measured in the same run.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

import numpy as np

from bench.run.common import PeakRSS, Target, TreeCPU, day_files, job_context, own_cpu, target_rows
from liftlake.lib.config.sections import ScoreConf

DS = "2026-11-20"
MODEL = "dcmt"  # exposure-level: its rows grow with the day
TARGET_VS_INPROCESS = 0.6
BEGIN, END = "<!-- bench.run scoring: begin -->", "<!-- bench.run scoring: end -->"
DRIVER_MAX_ROWS = ScoreConf().driver_max_rows  # the default, which the bench runs with


def score_day(spark, warehouse: str, model: str, version: str) -> int:
    """The scoring job's work for one model on the day (read, forward passes, write, commit): rows."""
    from liftlake.lib.scoring.scorer import score_and_write

    ctx = job_context(warehouse, [], [DS], spark)
    return score_and_write(ctx.store, warehouse, model, version, DS, dataclasses.asdict(ctx.config.score), 2, 2).rows


def inprocess(warehouse: str, model: str, version: str, spark=None) -> dict:
    """The floor: the day's feature columns read into numpy, then timed: the model's forward passes
    over them in this process with every core's threads (no Spark, no write)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from liftlake.lib.artifacts.model_store import load_artifact
    from liftlake.lib.config import warehouse_path
    from liftlake.lib.evaluation.evaluate import layout_for
    from liftlake.lib.training.batch import predict_frame
    from liftlake.lib.features.spec import FeatureSpec
    from liftlake.lib.training.batch import batch_columns

    ctx = job_context(warehouse, [], [DS], spark)
    art = load_artifact(warehouse_path(ctx.config), model, version)
    layout = layout_for(art.info, FeatureSpec.from_json(art.feature_spec_json), art.config)
    table = "features.samples" if layout.task == "cvr" else "features.user_samples"
    data = pa.concat_tables([pq.read_table(u, columns=list(layout.feature_columns))
                             for u in day_files(ctx.store.path(table), DS)])
    columns = {c: data.column(c).to_numpy() for c in data.column_names}
    for c in batch_columns(layout):
        if c not in ("row_id", "cf_label"):
            columns.setdefault(c, np.zeros(data.num_rows, dtype=np.float32))
    torch.set_num_threads(os.cpu_count() or 2)
    # one batch first: the floor is the forward passes, not torch's first-call set-up
    predict_frame(art.model, layout, {c: v[:ctx.config.score.batch_size] for c, v in columns.items()})
    cpu0, start = own_cpu(), time.perf_counter()
    predict_frame(art.model, layout, columns, batch_size=ctx.config.score.batch_size)
    return {"rows": data.num_rows, "wall_s": time.perf_counter() - start, "cpu_s": own_cpu() - cpu0}


def bench_scoring(spark, warehouse: str, ds: str, model: str, version: str) -> dict:
    """The full bench's scoring row: the job in this session (with its peak memory) and the floor."""
    assert ds == DS, ds
    with PeakRSS() as mem:
        start = time.perf_counter()
        rows = score_day(spark, warehouse, model, version)
        spark_s = time.perf_counter() - start
    floor = inprocess(warehouse, model, version, spark)
    return {"model": model, "rows": rows, "spark_s": spark_s, "spark_rows_per_s": rows / spark_s,
            "peak_rss_mib": round(mem.peak), "worker_peak_rss_mib": round(mem.worker_peak),
            "inprocess_s": floor["wall_s"], "inprocess_rows_per_s": rows / floor["wall_s"],
            "ratio_vs_inprocess": floor["wall_s"] / spark_s}


# -- the cold / warm section (--only scoring) ---------------------------------------------------------
def ensure_inputs(spark, root: str, size: int, log=print) -> tuple[str, str]:
    """(warehouse, version): one simulated day of ``size`` exposures, its features and a DCMT trained
    on it for one epoch (reused when the warehouse's stamp says so)."""
    from liftlake.lib.artifacts.model_store import versions
    from liftlake.lib.pipelines.build_features import build_features_days
    from liftlake.lib.pipelines.simulate import simulate_days
    from liftlake.lib.pipelines.train import train

    warehouse = os.path.join(root, f"scoring-{size}")
    stamp = os.path.join(warehouse, "_bench_inputs.json")
    want = {"exposures": size, "ds": DS, "model": MODEL}
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as fh:
            if json.load(fh) == want and versions(warehouse, MODEL):
                return warehouse, versions(warehouse, MODEL)[-1]
    shutil.rmtree(warehouse, ignore_errors=True)
    log(f"[bench] scoring {size:,}: simulate, build-features, train {MODEL} (one epoch)")
    ctx = job_context(warehouse, [f"simulator.exposures={size}"], [DS], spark)
    simulate_days(ctx)
    build_features_days(ctx)
    train(job_context(warehouse, [f"model.name={MODEL}", "train.epochs=1"], [DS], spark), DS)
    with open(stamp, "w", encoding="utf-8") as fh:
        json.dump(want, fh)
    return warehouse, versions(warehouse, MODEL)[-1]


def start_workers(_) -> list[int]:
    """A task's whole work in the workers' start-up measurement: the scoring job's imports."""
    import liftlake.lib.scoring.scorer  # noqa: F401
    import liftlake.lib.training.plan  # noqa: F401 - torch, the models

    return [os.getpid()]


def drive(mode: str, warehouse: str, size: int) -> dict:
    """A cold run, in a fresh driver process: its session's start, then (``cold``) the job, or
    (``workers``) a Spark job of a task per core that only imports what a scoring task imports: the
    part of a cold job's wall no scoring code can remove."""
    from bench.run.features import spark_session
    from liftlake.lib.artifacts.model_store import versions

    start = time.perf_counter()
    spark = spark_session()
    session_s = time.perf_counter() - start
    start = time.perf_counter()
    if mode == "workers":
        tasks = spark.sparkContext.defaultParallelism
        rows = len(spark.sparkContext.parallelize(range(tasks), tasks).mapPartitions(start_workers).collect())
    else:
        rows = score_day(spark, warehouse, MODEL, versions(warehouse, MODEL)[-1])
    job_s = time.perf_counter() - start
    spark.stop()
    return {"session_s": session_s, "job_s": job_s, "rows": rows}


def bench_scoring_cold(spark, size: int, root: str, repeats: int = 2, log=print) -> dict:
    from bench.run.common import run_driver

    warehouse, version = ensure_inputs(spark, root, size, log)
    out: dict = {"exposures": size, "model": MODEL, "version": version, "repeats": repeats,
                 "load_before": os.getloadavg()}
    log(f"[bench] scoring {size:,}: cold (a fresh driver)")
    with TreeCPU() as m:
        cold = run_driver("bench.run.scoring", ["cold", warehouse, str(size)])
    out["cold"] = {**cold, "process_wall_s": m.wall, "cpu_s": m.cpu}
    log(f"[bench] scoring {size:,}: cold start of the Python workers (a fresh driver)")
    out["cold_workers"] = run_driver("bench.run.scoring", ["workers", warehouse, str(size)])
    warm = []
    for i in range(repeats + 1):  # run 0 warms the session, its workers and the artifact cache up
        log(f"[bench] scoring {size:,}: warm round {i}")
        with TreeCPU() as m:
            rows = score_day(spark, warehouse, MODEL, version)
        warm.append({"wall_s": m.wall, "cpu_s": m.cpu, "rows": rows})
    out["warm_runs"] = warm
    out["warm"] = min(warm[1:], key=lambda r: r["wall_s"])
    log(f"[bench] scoring {size:,}: in-process floor")
    out["floor"] = inprocess(warehouse, MODEL, version, spark)
    out["load_after"] = os.getloadavg()
    floor = out["floor"]["wall_s"]
    out["ratio_cold"] = floor / out["cold"]["job_s"]
    out["ratio_cold_process"] = floor / out["cold"]["process_wall_s"]
    out["ratio_warm"] = floor / out["warm"]["wall_s"]
    return out


def section(results: list[dict], info: dict) -> list[str]:
    from bench.run.report import fmt

    lines = [BEGIN, "## Scoring, cold and warm, vs. in-process torch inference", "",
             f"Measured {info['started']} by `{info['command']}` on {info['machine']['cpus']} CPU cores "
             f"(pyspark {info['machine'].get('pyspark')}, torch {info['machine'].get('torch')}); {MODEL} "
             "(trained one epoch on the day) scores one simulated day: the day's features.samples files are "
             "read, the forward passes run and the scores.cvr files written with pyarrow, delta-rs commits them; "
             "who does it (the path column): the driver itself for a day of at most `score.driver_max_rows` "
             f"({DRIVER_MAX_ROWS:,}, the default) rows, else the Python workers, a Spark task per share of the "
             "files. Cold: a fresh driver process "
             "(its session start apart, then the job with a JIT-cold JVM and no Python worker yet); the "
             "whole process also counts Python's imports and the session. Warm: this run's session after a "
             f"warm-up, best of {results[0]['repeats'] if results else 0}. Floor: the same rows' forward "
             "passes in this process over arrays already in memory, every core's threads.", "",
             "| exposures | path | run | wall s | CPU s | rows/s | ratio vs. floor |", "|---|---|---|---|---|---|---|"]
    for r in results:
        c, w, f = r["cold"], r["warm"], r["floor"]
        head = f"{r['exposures']:,} | {'driver' if r['exposures'] <= DRIVER_MAX_ROWS else 'Spark tasks'}"
        lines += [
            f"| {head} | cold: whole process | {fmt(c['process_wall_s'])} | {fmt(c['cpu_s'])} | "
            f"{fmt(c['rows'] / c['process_wall_s'])} | {r['ratio_cold_process']:.3f} |",
            f"| {head} | cold: session start | {fmt(c['session_s'])} | | | |",
            f"| {head} | cold: the job | {fmt(c['job_s'])} | | {fmt(c['rows'] / c['job_s'])} | {r['ratio_cold']:.3f} |",
            *([f"| {head} | cold: the Python workers' start alone | {fmt(r['cold_workers']['job_s'])} | | | |"]
              if "cold_workers" in r else []),
            f"| {head} | warm: the job | {fmt(w['wall_s'])} | {fmt(w['cpu_s'])} | {fmt(w['rows'] / w['wall_s'])} | "
            f"{r['ratio_warm']:.3f} |",
            f"| {head} | floor: in-process forward passes | {fmt(f['wall_s'])} | {fmt(f['cpu_s'])} | "
            f"{fmt(f['rows'] / f['wall_s'])} | 1 |"]
    lines += ["", *target_rows(targets(results))]
    loads = ", ".join(f"{r['exposures']:,}: {r['load_before'][0]:.2f} before, {r['load_after'][0]:.2f} after"
                      for r in results)
    lines += ["", "The Python workers' start alone: in another fresh driver, a Spark job of a task per core that "
              "only imports what a scoring task imports (torch, the models), the part of a cold job's wall that no "
              "scoring code can remove on the Spark tasks' path; a cold job there is within the target only when the "
              "floor's wall / 0.6 leaves room for it. The driver's path starts no worker (torch is already imported "
              "in the driver, which loads the artifact to check the day).", "",
              "CPU seconds are user + system of the process tree (the cold one: the fresh driver, its JVM and "
              "workers, from its start to its exit), the floor's this process's own. Machine load (1-minute "
              f"average) per size: {loads}. Regenerate: `.venv/bin/python -m bench.run --only scoring`.", END, ""]
    return lines


def targets(results: list[dict]) -> list[Target]:
    """Rows/s of the cold job over the in-process floor's, at each size."""
    return [Target(f"score, cold, >= {TARGET_VS_INPROCESS} of in-process inference at {r['exposures']:,} (rows/s)",
                   f"{r['ratio_cold']:.3f} (whole process {r['ratio_cold_process']:.3f})",
                   r["ratio_cold"] >= TARGET_VS_INPROCESS) for r in results]


if __name__ == "__main__":
    from bench.run.common import serve_driver

    serve_driver(drive)
