"""A worker process lost in the middle of a stage: Spark runs the task again and the table gets every
row exactly once.

The process that dies is the Python worker of one task (the process a scoring UDF runs in) killed
with SIGKILL on its first attempt, in a session whose master allows task retries (``local[2,4]``: a
Spark local master retries a task only when given a failure count). That needs its own JVM, so the
write runs in a child process. A whole executor JVM lost on a standalone cluster is
tests/reliability/test_lost_executor.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import json, os, signal, sys
    import pandas as pd
    from pyspark import TaskContext
    from pyspark.sql import functions as F
    from liftlake.lib.storage.spark import build_session
    from liftlake.lib.storage.store import DeltaRsStore

    warehouse, marker = sys.argv[1], sys.argv[2]
    spark = build_session("lost-worker", master="local[2,4]",
                          conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4",
                                "spark.python.worker.reuse": "false"})
    spark.sparkContext.setLogLevel("OFF")
    store = DeltaRsStore(spark, warehouse)

    def double(batches):
        ctx = TaskContext.get()
        for pdf in batches:
            if ctx.partitionId() == 2 and ctx.attemptNumber() == 0:
                with open(marker, "a") as fh:
                    fh.write(f"{ctx.stageId()}:{ctx.partitionId()}\\n")
                os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-stage, mid-partition
            yield pdf.assign(score=pdf["event_id"] * 2.0)

    df = (spark.range(0, 40_000, 1, 4).withColumnRenamed("id", "event_id")
          .mapInPandas(double, "event_id long, score double").withColumn("ds", F.lit("2026-11-20")))
    res = store.write(df, "scores.events", "overwrite_partitions", ["2026-11-20"])
    rows = store.read("scores.events").select("event_id", "score").collect()
    print(json.dumps({"version": res.version, "rows": len(rows), "distinct": len({r.event_id for r in rows}),
                      "scores_ok": all(r.score == 2.0 * r.event_id for r in rows)}))
""")


def test_a_worker_killed_mid_stage_is_retried_and_every_row_lands_once(tmp_path):
    marker = tmp_path / "killed"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "wh"), str(marker)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker.exists() and marker.read_text().strip(), "the worker was never killed"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"version": 0, "rows": 40_000, "distinct": 40_000, "scores_ok": True}
