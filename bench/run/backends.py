"""The backends section of bench.run (issue 18): the two table backends on the same simulated day, so
that the README's choice of the default rests on numbers measured in one run.

* delta-rs     the embedded default: Spark writes the Parquet files, the driver commits them with
               delta-rs (no Delta jars in the JVM);
* delta-spark  Spark's own Delta connector (the session with .venv/jars, ``replaceWhere`` overwrites,
               Delta's optimistic concurrency).

Each backend runs in a fresh driver process (``local[2]``) on its own warehouse, the same day and size:

* session start        the SparkSession (with the Delta jars for delta-spark);
* simulate             one day's nine raw / truth tables, one commit batch;
* build-features       features.samples / user_samples / ops.quarantine, one commit batch;
* write throughput     the day's features.samples (cached in memory first) overwritten through the
                       store: rows per second of one partition overwrite, files and commit included;
* commit latency       a one-row partition overwrite of a small table, repeated; the median (what every
                       commit costs beyond writing its rows).

``python -m bench.run --only backends`` measures this section alone and rewrites only its part of the
report (between the two ``backends`` markers).
"""
from __future__ import annotations

import os
import statistics
import sys
import time

DS = "2026-11-20"
BEGIN, END = "<!-- bench.run backends: begin -->", "<!-- bench.run backends: end -->"
BACKENDS = ("delta-rs", "delta-spark")
COMMIT_REPEATS = 5


def drive(backend: str, warehouse: str, size: int) -> dict:
    """One backend's measurements in this process's session; {measure: value, ...}."""
    from pyspark.sql import functions as F

    from bench.run.common import job_context
    from liftlake.lib.pipelines.build_features import build_features_days
    from liftlake.lib.pipelines.simulate import simulate_days
    from liftlake.lib.storage.spark import build_session

    conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4", "spark.ui.showConsoleProgress": "false"}
    started = time.perf_counter()
    spark = build_session("liftlake-bench-backends", master="local[2]", conf=conf,
                          delta_jars=backend == "delta-spark")
    spark.sparkContext.setLogLevel("ERROR")
    out: dict = {"backend": backend, "exposures": size, "session_s": time.perf_counter() - started}
    ctx = job_context(warehouse, [f"simulator.exposures={size}", f"warehouse.backend={backend}"], [DS], spark,
                      backend=backend)
    store = ctx.store
    assert store.backend == backend, store.backend

    def step(name, fn) -> None:
        print(f"[bench] backends section, {backend}: {name}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - start

    step("simulate", lambda: simulate_days(ctx))
    step("build-features", lambda: build_features_days(ctx))
    samples = store.read("features.samples", partitions=[DS]).cache()
    out["rows"] = samples.count()
    step("overwrite", lambda: store.write(samples, "features.samples", mode="overwrite", partition_values=[DS]))
    samples.unpersist()
    one_row = spark.range(1).select(F.lit(DS).alias("ds"), F.col("id").cast("long").alias("value"))
    store.write(one_row, "bench.commit_probe", mode="overwrite", partition_values=[DS])  # creates the table
    latencies = []
    for _ in range(COMMIT_REPEATS):
        start = time.perf_counter()
        store.write(one_row, "bench.commit_probe", mode="overwrite", partition_values=[DS])
        latencies.append(time.perf_counter() - start)
    out["commit_latencies"] = latencies
    out["commit_s"] = statistics.median(latencies)
    spark.stop()
    return out


def bench_backends(size: int, root: str) -> dict:
    from bench.run.common import run_driver

    before = os.getloadavg()[0]
    # each backend in a fresh driver: a JVM without the Delta jars for delta-rs, with them for
    # delta-spark, each starting cold as a DAG task does
    runs = {b: run_driver("bench.run.backends", [b, os.path.join(root, f"wh-{b}"), str(size)]) for b in BACKENDS}
    return {"exposures": size, "runs": runs, "load_before": before, "load_after": os.getloadavg()[0]}


def section(result: dict, info: dict) -> list[str]:
    from bench.run.report import fmt

    rs, ds = result["runs"]["delta-rs"], result["runs"]["delta-spark"]
    rows = rs["rows"]

    def line(label: str, key: str, unit: str = "s") -> str:
        a, b = rs[key], ds[key]
        return f"| {label} | {fmt(a)} {unit} | {fmt(b)} {unit} | {b / a:.2f} |"

    def throughput(run: dict) -> float:
        return run["rows"] / run["overwrite"]

    lines = [BEGIN, "## Table backends: delta-rs vs. delta-spark on the same day", "",
             f"Measured {info['started']} by `{info['command']}` on {info['machine'].get('cpus', '?')} CPU cores; "
             f"one simulated day of {result['exposures']:,} exposures ({rows:,} feature rows), each backend in a "
             "fresh driver (`local[2]`) on its own warehouse, one after the other. Machine load (1-minute "
             f"average): {result['load_before']:.2f} before, {result['load_after']:.2f} after.", "",
             "| measure | delta-rs | delta-spark | delta-spark / delta-rs |", "|---|---|---|---|",
             line("session start", "session_s"),
             line("simulate (9 tables, one commit batch)", "simulate"),
             line("build-features (3 tables, one commit batch)", "build-features"),
             line(f"overwrite of the day's features.samples ({rows:,} rows)", "overwrite"),
             f"| write throughput of that overwrite | {throughput(rs):,.0f} rows/s | {throughput(ds):,.0f} rows/s | "
             f"{throughput(ds) / throughput(rs):.2f} |",
             line(f"commit latency: one-row partition overwrite, median of {COMMIT_REPEATS}", "commit_s"), "",
             "Commit latencies, each try (s): delta-rs "
             + ", ".join(f"{v:.2f}" for v in rs["commit_latencies"]) + "; delta-spark "
             + ", ".join(f"{v:.2f}" for v in ds["commit_latencies"]) + ". Regenerate: "
             f"`.venv/bin/python -m bench.run --only backends --backends-size {result['exposures']}`.", END, ""]
    return lines


if __name__ == "__main__":
    from bench.run.common import serve_driver

    serve_driver(drive)
