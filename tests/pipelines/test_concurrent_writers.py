"""Two jobs writing one day of scores.* / ops.model_metrics for different models: both rows stay.

Score and metric writes replace only their own (day, model[, version, split]) partition, never
read-modify-write the day. Job A stages its write and waits; job B writes and commits another model's
rows of the same day; then A commits. A write that read the day before B's commit and overwrote the
whole day would drop B's rows (what the score and evaluate jobs did before). Both table-store backends."""
from __future__ import annotations

import threading

import pytest
from pyspark.sql import functions as F

from liftlake.lib.evaluation.evaluate import write_metrics
from liftlake.lib.scoring.scorer import CVR_SCHEMA, write_scores
from liftlake.lib.storage.store import open_store

DS = "2026-11-20"


def _scores(spark, model: str, rows: int):
    return spark.createDataFrame([(f"{DS}-{i}", i, 0.1, 0.2, 0.02, model, "v0001", DS) for i in range(rows)],
                                 CVR_SCHEMA)


def _interleave(job_a, job_b, store_a) -> None:
    """Run job_a inside a commit_together() block that waits, after staging, until job_b has committed."""
    staged, proceed, errors = threading.Event(), threading.Event(), []

    def first():
        try:
            with store_a.commit_together():
                job_a()
                staged.set()
                proceed.wait(120)
        except Exception as exc:  # noqa: BLE001 - re-raised on the test's thread
            errors.append(exc)
            staged.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert staged.wait(120)
    job_b()
    proceed.set()
    thread.join(120)
    assert not errors, errors


@pytest.mark.reliability
def test_two_score_jobs_for_one_day_keep_both_models(spark, tmp_path, backend):
    root = str(tmp_path / "wh")
    store_a, store_b = open_store(spark, root, backend), open_store(spark, root, backend)
    write_scores(store_a, "scores.cvr", _scores(spark, "dcmt", 3), "dcmt", DS)
    _interleave(lambda: write_scores(store_a, "scores.cvr", _scores(spark, "dcmt", 5), "dcmt", DS),
                lambda: write_scores(store_b, "scores.cvr", _scores(spark, "esmm", 4), "esmm", DS), store_a)
    counts = {r["model"]: r["count"] for r in store_a.read("scores.cvr", partitions=[DS]).groupBy("model").count()
              .collect()}
    assert counts == {"dcmt": 5, "esmm": 4}
    assert store_a.partition_counts("scores.cvr") == {DS: 9}


@pytest.mark.reliability
def test_two_evaluations_of_one_day_keep_both_models_metrics(spark, tmp_path, backend):
    root = str(tmp_path / "wh")
    store_a, store_b = open_store(spark, root, backend), open_store(spark, root, backend)
    write_metrics(store_a, "dcmt", "v0001", "test", DS, {"auc": 0.70})
    _interleave(lambda: write_metrics(store_a, "dcmt", "v0001", "test", DS, {"auc": 0.71, "ks": 0.3}),
                lambda: write_metrics(store_b, "esmm", "v0003", "test", DS, {"auc": 0.65}), store_a)
    rows = {(r["model"], r["metric"]): r["value"] for r in store_a.read("ops.model_metrics", partitions=[DS])
            .select("model", "metric", "value").collect()}
    assert rows == {("dcmt", "auc"): 0.71, ("dcmt", "ks"): 0.3, ("esmm", "auc"): 0.65}
    # re-running an evaluation replaces its rows, never adds copies
    write_metrics(store_b, "esmm", "v0003", "test", DS, {"auc": 0.66})
    esmm = store_a.read("ops.model_metrics", partitions=[DS]).where(F.col("model") == "esmm").collect()
    assert [(r["metric"], r["value"]) for r in esmm] == [("auc", 0.66)]
