"""The cluster section of bench.run (issue 18): the daily pipeline on the delta-spark backend (Spark's
own Delta connector: every table written by Spark's Delta writer), run twice on the same day's size,
each by a fresh driver process:

* local     ``local[2]``: driver and executors in one JVM, the embedded default's layout;
* cluster   a Spark standalone cluster on this machine (bench/standalone.py: a Master and two Workers
            of one core each started from the pip jars); the driver ships the Delta jars to the
            executors, and training runs in barrier tasks on the executors (TorchDistributor with
            ``local_mode=False``, Horovod-on-Spark).

Steps: simulate, build-features, escim-labels, train dcmt (TorchDistributor x2, then Horovod x2: one
epoch each), score dcmt. Each step's wall seconds; the ratio cluster / local of each is the cost of the
cluster's process boundaries (executor JVMs, shipping Python and jars, the shuffle between JVMs) on
the same two cores. ``python -m bench.run --only cluster`` measures this section alone and rewrites only
its part of the report (between the two ``cluster`` markers).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

DS = "2026-11-20"
BEGIN, END = "<!-- bench.run cluster: begin -->", "<!-- bench.run cluster: end -->"
STEPS = ("simulate", "build-features", "escim-labels", "train torch-distributor x2", "train horovod x2", "score")


def drive(master: str, warehouse: str, size: int) -> dict:
    """The pipeline of one day in this process's session on ``master``; {step: seconds, ...}."""
    from bench.run.common import job_context
    from liftlake.lib.pipelines.build_features import build_features_days
    from liftlake.lib.pipelines.escim_labels import escim_labels
    from liftlake.lib.pipelines.score import score_days
    from liftlake.lib.pipelines.simulate import simulate_days
    from liftlake.lib.pipelines.train import train
    from liftlake.lib.storage.spark import build_session

    conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4", "spark.ui.showConsoleProgress": "false"}
    if master.startswith("spark://"):
        conf.update({"spark.executor.cores": "1", "spark.cores.max": "2", "spark.executor.memory": "2g"})
    started = time.perf_counter()
    spark = build_session("liftlake-bench-cluster", master=master, conf=conf, delta_jars=True)
    spark.sparkContext.setLogLevel("ERROR")
    out: dict = {"master": master, "exposures": size, "session_s": time.perf_counter() - started}
    base = [f"simulator.exposures={size}", "warehouse.backend=delta-spark"]
    ctx = job_context(warehouse, base, [DS], spark, backend="delta-spark")
    assert ctx.store.backend == "delta-spark"

    def step(name, fn) -> None:
        print(f"[bench] cluster section, {master}: {name}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        fn()
        out[name] = time.perf_counter() - start

    step("simulate", lambda: simulate_days(ctx))
    step("build-features", lambda: build_features_days(ctx))
    step("escim-labels", lambda: escim_labels(ctx))
    for launcher in ("torch-distributor", "horovod"):
        run = job_context(warehouse, [*base, "model.name=dcmt", f"train.launcher={launcher}", "train.num_processes=2",
                                      "train.epochs=1", "train.gate_min_cvr=0"], [DS], spark, backend="delta-spark")
        step(f"train {launcher} x2", lambda: out.setdefault("versions", []).append(train(run, DS)["version"]))
    step("score", lambda: score_days(ctx, only_model="dcmt"))
    out["samples"] = ctx.store.partition_counts("features.samples")[DS]
    out["scored"] = ctx.store.partition_counts("scores.cvr")[DS]
    out["executors"] = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - (  # noqa: SLF001
        0 if master.startswith("local") else 1)  # the driver's block manager is one of them on a cluster
    spark.stop()
    return out


def bench_cluster(size: int, root: str) -> dict:
    from bench.run.common import run_driver
    from bench.standalone import standalone_cluster

    local = run_driver("bench.run.cluster", ["local[2]", os.path.join(root, "wh-local"), str(size)])
    with standalone_cluster(Path(root) / "standalone", workers=2, cores=1, memory="2500m") as cluster:
        on_cluster = run_driver("bench.run.cluster", [cluster["url"], os.path.join(root, "wh-cluster"), str(size)],
                                env=cluster["env"])
    return {"exposures": size, "local": local, "cluster": on_cluster}


def section(result: dict, info: dict) -> list[str]:
    from bench.run.report import fmt

    local, cluster = result["local"], result["cluster"]
    lines = [BEGIN, "## The daily pipeline on a Spark standalone cluster (delta-spark)", "",
             f"Measured {info['started']} by `{info['command']}` on {info['machine'].get('cpus', '?')} CPU cores; "
             f"one simulated day of {result['exposures']:,} exposures ({local['samples']:,} feature rows), "
             f"backend delta-spark, each mode a fresh driver. local: `local[2]`; cluster: a standalone Master "
             f"and two 1-core Workers on this machine ({cluster['executors']} executors), the same two cores.",
             "", "| step | local[2] s | standalone cluster s | cluster / local |", "|---|---|---|---|"]
    for name in ("session_s", *STEPS):
        label = "session start (Delta jars)" if name == "session_s" else name
        lines.append(f"| {label} | {fmt(local[name])} | {fmt(cluster[name])} | {cluster[name] / local[name]:.2f} |")
    total_local = sum(local[s] for s in STEPS)
    total_cluster = sum(cluster[s] for s in STEPS)
    lines += [f"| **the day** | {fmt(total_local)} | {fmt(total_cluster)} | {total_cluster / total_local:.2f} |", "",
              f"Rows scored: {local['scored']:,} (local), {cluster['scored']:,} (cluster). Both trainings of "
              "each mode are one epoch of DCMT over 2 ranks. Regenerate: "
              "`.venv/bin/python -m bench.run --only cluster --cluster-size "
              f"{result['exposures']}`.", END, ""]
    return lines


if __name__ == "__main__":
    from bench.run.common import serve_driver

    serve_driver(drive)
