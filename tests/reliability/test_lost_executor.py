"""A whole executor JVM lost in the middle of a stage, on a Spark standalone cluster with two executors.

The cluster is real: a standalone Master and two Workers (one core each) started from the pip pyspark's
jars with ``spark-class``, each in its own process group so that the finalizer kills the daemons, the
executors they launched and the executors' Python workers, even when a test fails. A driver in a child
process writes ``scores.events`` through ``DeltaRsStore.write(..., "overwrite_partitions", [day])``;
on the stage after a shuffle, a UDF walks up from its Python worker to its own
``CoarseGrainedExecutorBackend`` JVM (checking the application id in its command line) and SIGKILLs it,
once (a marker file created with O_EXCL is the guard, since a resubmitted stage restarts attempt
numbers at 0).

* Default ``spark.task.maxFailures``: the Worker reports the executor's exit, the Master launches a new
  executor on the freed core, the lost tasks (and any lost shuffle output) are re-run, and the delta-rs
  commit, on the driver after every task has succeeded, holds each row once.
* ``spark.task.maxFailures=1``: the loss aborts the job, nothing is committed, the table keeps its
  version, its rows and its data files.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ is a folder of the checkout, not an installed package
    sys.path.insert(0, str(REPO))
from bench.standalone import ClusterError, kill_group, tail  # noqa: E402
from bench.standalone import standalone_cluster as standalone_cluster_of  # noqa: E402

pytestmark = pytest.mark.slow

DAY, OLD_DAY, ROWS, OLD_ROWS = "2026-11-20", "2026-11-19", 40_000, 1_000

CHILD = textwrap.dedent("""
    import json, os, sys, time
    import psutil
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable
    from pyspark import TaskContext
    from pyspark.sql import functions as F
    from liftlake.lib.storage.spark import build_session
    from liftlake.lib.storage.store import DeltaRsStore

    master, warehouse, marker, max_failures = sys.argv[1:5]
    DAY, OLD_DAY, ROWS, OLD_ROWS = "2026-11-20", "2026-11-19", 40_000, 1_000
    JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
    conf = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4",
            "spark.driver.memory": "1g", "spark.executor.memory": "512m", "spark.executor.cores": "1",
            "spark.cores.max": "2", "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
            # start only once both executors are registered: the kill happens on a 2-executor cluster
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "90s",
            # short-lived JVMs on 2 cores: C1 only and the serial GC start and warm up faster
            "spark.driver.extraJavaOptions": JVM_OPTS, "spark.executor.extraJavaOptions": JVM_OPTS}
    if max_failures != "default":
        conf["spark.task.maxFailures"] = max_failures
    spark = build_session("lost-executor", master=master, conf=conf)
    spark.sparkContext.setLogLevel("WARN")
    sc = spark.sparkContext
    app_id = sc.applicationId
    store = DeltaRsStore(spark, warehouse)

    def executor_ids():
        return sorted(sc._jsc.sc().getExecutorIds().mkString(",").split(","))  # noqa: SLF001

    # Version 0: two days of old scores (-1.0), written before any fault.
    old = (spark.range(0, OLD_ROWS, 1, 2).withColumnRenamed("id", "event_id")
           .withColumn("score", F.lit(-1.0)))
    store.write(old.withColumn("ds", F.lit(OLD_DAY)).unionByName(old.withColumn("ds", F.lit(DAY))),
                "scores.events", "overwrite_partitions", [OLD_DAY, DAY])

    def table_state():
        # the files of the latest version, from the Delta log, read with pyarrow: no Spark job
        table_dir = store.path("scores.events")
        actions = pa.table(DeltaTable(table_dir).get_add_actions(flatten=True)).to_pydict()
        rows = []
        for path, ds in zip(actions["path"], actions["partition.ds"]):
            data = pq.read_table(os.path.join(table_dir, path), columns=["event_id", "score"]).to_pydict()
            rows += [(ds, e, s) for e, s in zip(data["event_id"], data["score"])]
        rows.sort()
        on_disk = {os.path.relpath(os.path.join(d, f), table_dir) for d, _, fs in os.walk(table_dir)
                   for f in fs if f.endswith(".parquet") and "_staging" not in d}
        # every data file in the folder belongs to some version: the lost tasks left no orphan behind
        committed = set().union(*(store.referenced_files("scores.events", v)
                                  for v in range(store.version("scores.events") + 1)))
        return rows, sorted(on_disk - committed)

    before_rows, _ = table_state()
    executors_before = executor_ids()

    def double(batches):
        ctx = TaskContext.get()
        for pdf in batches:
            if ctx.partitionId() == 2:
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    fd = None
                if fd is not None:
                    # The Python worker's ancestors: pyspark's daemon, then this executor's JVM.
                    jvm = next(p for p in psutil.Process().parents()
                               if "org.apache.spark.executor.CoarseGrainedExecutorBackend" in p.cmdline())
                    cmd = jvm.cmdline()
                    if cmd[cmd.index("--app-id") + 1] != app_id:
                        raise RuntimeError(f"refusing to kill another application's executor: {cmd}")
                    os.write(fd, json.dumps({
                        "executor": cmd[cmd.index("--executor-id") + 1], "pid": jvm.pid,
                        "stage": ctx.stageId(), "partition": ctx.partitionId(),
                        "attempt": ctx.attemptNumber()}).encode())
                    os.close(fd)
                    jvm.kill()   # SIGKILL the whole executor JVM, mid-stage, mid-partition
                    os._exit(1)  # and this orphaned worker with it
            yield pdf.assign(score=pdf["event_id"] * 2.0)

    df = (spark.range(0, ROWS, 1, 4).withColumnRenamed("id", "event_id")
          .repartition(4, "event_id")  # a shuffle: the lost executor also held map output
          .mapInPandas(double, "event_id long, score double").withColumn("ds", F.lit(DAY)))
    out = {"app_id": app_id, "executors_before": executors_before}
    try:
        res = store.write(df, "scores.events", "overwrite_partitions", [DAY])
        out["ok"], out["write_version"] = True, res.version
    except Exception as exc:  # the job failed: report it, then look at the table
        out["ok"], out["error"] = False, f"{type(exc).__name__}: {exc}"[:4000]
    rows, orphans = table_state()
    new = [r for r in rows if r[0] == DAY]
    out.update({
        "version": store.version("scores.events"),
        "unchanged": rows == before_rows,
        "old_day_kept": [r for r in rows if r[0] == OLD_DAY] == [r for r in before_rows if r[0] == OLD_DAY],
        "day_rows": len(new), "day_distinct": len({r[1] for r in new}),
        "day_ids_ok": {r[1] for r in new} == set(range(ROWS)),
        "day_scores_ok": all(r[2] == 2.0 * r[1] for r in new),
        "orphan_files": orphans,
    })
    if out["ok"]:
        # The Master replaces the lost executor on the freed core of its Worker.
        deadline = time.time() + 60
        while time.time() < deadline:
            out["executors_after"] = executor_ids()
            if len(out["executors_after"]) == 2 and out["executors_after"] != executors_before:
                break
            time.sleep(0.5)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory):
    """``spark://127.0.0.1:<port>`` of a Master with two 1-core Workers; every JVM is killed at the end."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java: a Spark standalone master cannot start here")
    try:
        with standalone_cluster_of(tmp_path_factory.mktemp("standalone"), workers=2, cores=1) as cluster:
            yield cluster
    except ClusterError as exc:
        pytest.fail(str(exc))


def run_driver(cluster: dict, tmp_path: Path, max_failures: str) -> tuple[dict, Path]:
    marker = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, cluster["url"], str(tmp_path / "wh"), str(marker),
                             max_failures], env=cluster["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    timed_out = False
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        timed_out = True
        kill_group(proc)
        stdout, stderr = proc.communicate()
    finally:
        kill_group(proc)  # the driver's JVM too, whatever happened
    context = stderr[-4000:] + "\n" + "\n".join(tail(log, 1500) for log in cluster["logs"])
    assert not timed_out, "the driver ran past 240 s\n" + context
    assert proc.returncode == 0, context
    assert marker.exists() and marker.read_text(), "no executor was killed\n" + context
    return json.loads(stdout.strip().splitlines()[-1]), marker


def worker_saw_the_kill(cluster: dict, app_id: str, executor: str) -> bool:
    """A Worker logged the executor's exit by SIGKILL (128 + 9), as the cluster manager saw it."""
    pattern = re.compile(rf"Executor {re.escape(app_id)}/{executor} finished with state \w+ .*exitStatus 137")
    deadline = time.time() + 10
    while True:
        if any(pattern.search(log.read_text(errors="replace")) for log in cluster["logs"][1:]):
            return True
        if time.time() > deadline:
            return False
        time.sleep(0.5)


def test_an_executor_jvm_killed_mid_stage_is_replaced_and_every_row_lands_once(standalone_cluster, tmp_path):
    result, marker = run_driver(standalone_cluster, tmp_path, "default")
    killed = json.loads(marker.read_text())
    assert worker_saw_the_kill(standalone_cluster, result["app_id"], killed["executor"]), killed
    assert result["executors_before"] == ["0", "1"], result
    assert killed["executor"] in result["executors_before"] and killed["attempt"] == 0, killed
    assert result["ok"], result.get("error")
    assert result["write_version"] == result["version"] == 1, result
    assert result["day_rows"] == result["day_distinct"] == ROWS and result["day_ids_ok"], result
    assert result["day_scores_ok"] and result["old_day_kept"] and result["orphan_files"] == [], result
    # the standalone Worker relaunched an executor in place of the killed one
    assert len(result["executors_after"]) == 2 and killed["executor"] not in result["executors_after"], result


def test_an_executor_lost_with_no_retries_left_fails_the_job_and_leaves_the_table_as_before(
        standalone_cluster, tmp_path):
    result, marker = run_driver(standalone_cluster, tmp_path, "1")
    killed = json.loads(marker.read_text())
    assert worker_saw_the_kill(standalone_cluster, result["app_id"], killed["executor"]), killed
    assert not result["ok"], result
    assert f"executor {killed['executor']}" in result["error"] or "ExecutorLostFailure" in result["error"], result
    assert result["version"] == 0 and result["unchanged"] and result["orphan_files"] == [], result
