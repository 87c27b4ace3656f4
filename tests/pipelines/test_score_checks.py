"""Scores are checked where they are made (the Python worker) before anything is written: non-finite
values, probabilities outside [0, 1] and decisions outside their set stop the job with one line naming
model, version and the count of bad rows; the day's tables stay as they were."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from liftlake.lib.scoring.scorer import BadScoresError, bad_scores_message, check_scores
from liftlake.lib.storage.store import DeltaRsStore

GRID = [1.0, 5.0]


def _cvr(**overrides):
    out = pd.DataFrame({"exposure_id": ["a", "b", "c"], "user_id": [1, 2, 3], "ctr": [0.1, 0.2, 0.3],
                        "cvr": [0.05, 0.5, 0.9], "ctcvr": [0.005, 0.1, 0.27], "model": "dcmt", "version": "v0001",
                        "ds": "2026-11-20"})
    for col, values in overrides.items():
        out[col] = values
    return out


def test_good_scores_pass():
    check_scores(_cvr(), "cvr", "dcmt", "v0001", GRID)
    coupon = pd.DataFrame({"user_id": [1, 2], "p0": [0.2, 0.3], "unit_uplift": [-0.01, 0.02],
                           "coupon_value": [0.0, 5.0], "expected_gain": [0.0, 0.05]})
    check_scores(coupon, "coupon", "unimvt", "v0002", GRID)


@pytest.mark.reliability
@pytest.mark.parametrize("column, values, count", [
    ("cvr", [np.nan, 0.5, 0.2], 1),
    ("ctr", [1.5, -0.1, 0.2], 2),
    ("ctcvr", [np.inf, np.inf, np.inf], 3),
])
def test_bad_cvr_scores_are_refused_naming_model_version_and_count(column, values, count):
    with pytest.raises(BadScoresError, match=rf"model dcmt version v0001: {count} of 3 rows .*{column}: {count}"):
        check_scores(_cvr(**{column: values}), "cvr", "dcmt", "v0001", GRID)


@pytest.mark.reliability
def test_decisions_outside_their_set_are_refused():
    coupon = pd.DataFrame({"user_id": [1, 2], "p0": [0.2, 0.3], "unit_uplift": [0.01, 0.02],
                           "coupon_value": [3.0, 5.0], "expected_gain": [0.0, 0.05]})
    with pytest.raises(BadScoresError, match="coupon_value: 1"):
        check_scores(coupon, "coupon", "unimvt", "v0002", GRID)
    multi = pd.DataFrame({"user_id": [1, 2], "tau_r1_k1": [0.1, 0.2], "decision_k1": [1, 2]})
    with pytest.raises(BadScoresError, match="decision_k1: 1"):
        check_scores(multi, "multi_treatment", "hmum", "v0003", GRID)


@pytest.mark.reliability
def test_a_worker_refusal_fails_the_write_and_reaches_the_driver_as_one_line(spark, tmp_path):
    store = DeltaRsStore(spark, str(tmp_path / "wh"))
    schema = "exposure_id string, user_id long, ctr double, cvr double, ctcvr double, model string, " \
             "version string, ds string"

    def scored(batches):
        for pdf in batches:
            out = _cvr(cvr=[np.nan, 0.5, 0.2])
            check_scores(out, "cvr", "dcmt", "v0001", GRID)
            yield out

    frame = spark.range(1, 2, 1, 1).mapInPandas(scored, schema=schema)
    with pytest.raises(Exception) as failure:
        with store.commit_together():
            store.write(frame, "scores.cvr", "overwrite_partitions", ["2026-11-20"], partition_by=("ds", "model"),
                        sub_partition_values={"model": ["dcmt"]})
    message = bad_scores_message(failure.value)
    assert message == ("scores refused, nothing written: model dcmt version v0001: 1 of 3 rows of a batch break "
                       "the score rules (cvr: 1; rule: finite, probabilities in [0, 1], decisions in the allowed set)")
    assert not store.exists("scores.cvr")


@pytest.mark.reliability
def test_a_worker_refusal_while_staging_files_fails_the_write_and_leaves_no_table(spark, tmp_path):
    # the embedded default's scoring path: Spark tasks (Python workers) write the score files
    # themselves; a refusal there fails the Spark job, reaches the driver as the same one line, and
    # the staged folder goes with it
    import os

    from pyspark.sql import types as T

    from liftlake.lib.scoring.scorer import CVR_SCHEMA

    store = DeltaRsStore(spark, str(tmp_path / "wh"))
    staged: list[str] = []

    def stage(folder):
        staged.append(folder)
        day = os.path.join(folder, "ds=2026-11-20", "model=dcmt")

        def task(_):
            os.makedirs(day, exist_ok=True)
            _cvr().drop(columns=["model", "ds"]).to_parquet(os.path.join(day, "part-00000.parquet"))
            check_scores(_cvr(ctr=[0.1, 1.5, 0.2]), "cvr", "dcmt", "v0001", GRID)
            yield 3

        spark.sparkContext.parallelize([0], 1).mapPartitions(task).collect()

    with pytest.raises(Exception) as failure:
        store.write_staged("scores.cvr", T.StructType(CVR_SCHEMA.fields), stage, "overwrite_partitions",
                           ["2026-11-20"], partition_by=("ds", "model"), sub_partition_values={"model": ["dcmt"]})
    assert bad_scores_message(failure.value) == (
        "scores refused, nothing written: model dcmt version v0001: 1 of 3 rows of a batch break the score rules "
        "(ctr: 1; rule: finite, probabilities in [0, 1], decisions in the allowed set)")
    assert staged and not os.path.exists(staged[0]) and not store.exists("scores.cvr")
