"""A job killed inside its commit loop (its tables commit one after the other at its end) leaves a
manifest; `liftlake repair`, or the next job that commits, puts the batch's tables back as they were
before that job. The process is killed at each step of a two-table loop."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pyspark.sql import functions as F

from liftlake.lib.cli.main import main
from liftlake.lib.storage.store import COMMITS_DIR, DeltaRsStore

DS = "2026-11-20"

BATCH_SCRIPT = r"""
import sys
from pyspark.sql import functions as F
from liftlake.lib.storage.spark import build_session
from liftlake.lib.storage.store import DeltaRsStore
spark = build_session("batch", master="local[1]", conf={"spark.ui.enabled": "false"})
store = DeltaRsStore(spark, sys.argv[1])
rows = int(sys.argv[2])
with store.commit_together():
    for name in ("scores.first", "scores.second"):
        df = spark.range(rows).withColumnRenamed("id", "event_id").withColumn("ds", F.lit("2026-11-20"))
        store.write(df, name, "overwrite_partitions", ["2026-11-20"])
"""


def run_batch(tmp_path, root, rows, kill_after=None):
    script = tmp_path / "batch.py"
    script.write_text(BATCH_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "LIFTLAKE_FAULT_IN_COMMIT_LOOP"}
    if kill_after is not None:
        env["LIFTLAKE_FAULT_IN_COMMIT_LOOP"] = str(kill_after)
    return subprocess.run([sys.executable, str(script), root, str(rows)], env=env, capture_output=True,
                          timeout=300)


@pytest.fixture()
def warehouse(spark, tmp_path):
    store = DeltaRsStore(spark, str(tmp_path / "wh"))
    for name in ("scores.first", "scores.second"):
        df = spark.range(10).withColumnRenamed("id", "event_id").withColumn("ds", F.lit(DS))
        store.write(df, name, "overwrite_partitions", [DS])
        df = spark.range(5).withColumnRenamed("id", "event_id").withColumn("ds", F.lit("2026-11-19"))
        store.write(df, name, "overwrite_partitions", ["2026-11-19"])
    return store


def day_rows(store):
    return {name: store.partition_counts(name).get(DS) for name in ("scores.first", "scores.second")}


@pytest.mark.reliability
@pytest.mark.parametrize("kill_after, after_repair", [
    (0, {"scores.first": 10, "scores.second": 10}),   # before the first commit: nothing landed
    (1, {"scores.first": 10, "scores.second": 10}),   # between the two: the first is rolled back
    (2, {"scores.first": 30, "scores.second": 30}),   # after both: the batch is complete
])
def test_a_kill_at_each_step_of_the_commit_loop_is_repaired(warehouse, tmp_path, capsys, kill_after, after_repair):
    proc = run_batch(tmp_path, warehouse.root, 30, kill_after)
    assert proc.returncode == 137, proc.stderr.decode()[-2000:]
    manifests = os.listdir(os.path.join(warehouse.root, COMMITS_DIR))
    assert len(manifests) == 1
    if kill_after == 1:
        assert day_rows(warehouse) == {"scores.first": 30, "scores.second": 10}  # the window the manifest closes
    assert main(["repair", "--set", f"warehouse.path={warehouse.root}"]) == 0
    assert "1 half-committed batch(es) finished" in capsys.readouterr().err
    assert day_rows(warehouse) == after_repair
    assert os.listdir(os.path.join(warehouse.root, COMMITS_DIR)) == []
    for name in ("scores.first", "scores.second"):  # the other day was never touched
        assert warehouse.partition_counts(name)["2026-11-19"] == 5
    assert main(["repair", "--set", f"warehouse.path={warehouse.root}"]) == 0  # idempotent
    assert "0 half-committed batch(es)" in capsys.readouterr().err


@pytest.mark.reliability
def test_the_next_job_repairs_before_it_commits(warehouse, tmp_path):
    assert run_batch(tmp_path, warehouse.root, 30, kill_after=1).returncode == 137
    proc = run_batch(tmp_path, warehouse.root, 7)  # the re-run of the day
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"rolled back ['scores.first']" in proc.stderr
    assert day_rows(warehouse) == {"scores.first": 7, "scores.second": 7}
    assert os.listdir(os.path.join(warehouse.root, COMMITS_DIR)) == []


@pytest.mark.reliability
def test_a_live_job_s_manifest_is_kept_however_old_and_a_dead_one_is_not(tmp_path, monkeypatch):
    """Liveness of a manifest: on this host the writer's process decides (a commit loop longer than
    MANIFEST_STALE_S is not rolled back under a running job; a reused pid is not taken for the job);
    a writer on another host is alive while it touches the manifest (its heartbeat)."""
    import json
    import socket
    import time

    from liftlake.lib.storage import store as store_module

    path = tmp_path / "batch.json"
    hour_ago = time.time() - 3600
    me = {"host": socket.gethostname(), "pid": os.getpid(), "created": hour_ago,
          "pid_started": store_module._process_start(os.getpid())}
    path.write_text(json.dumps(me))
    os.utime(path, (hour_ago, hour_ago))
    assert store_module._manifest_alive(me, str(path))
    assert not store_module._manifest_alive({**me, "pid_started": me["pid_started"] - 1}, str(path))  # pid reused
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not store_module._manifest_alive({**me, "pid": int(gone.stdout)}, str(path))
    remote = {"host": "another-host", "pid": 1, "created": hour_ago}
    assert not store_module._manifest_alive(remote, str(path))  # untouched for an hour
    monkeypatch.setattr(store_module, "MANIFEST_HEARTBEAT_S", 0.05)
    beat = store_module._Heartbeat(str(path))
    try:
        time.sleep(0.3)
        assert store_module._manifest_alive(remote, str(path))  # its writer touches it
    finally:
        beat.stop()
    assert time.time() - os.stat(path).st_mtime < 5
