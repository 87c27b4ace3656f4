"""train.split_by: the window's rows split by user (every day alike) or chronologically (test on the
last day, train on the earlier ones, as the CVR papers split their logs); training and evaluation read
the same rule, and a model keeps the rule it was trained with."""
from __future__ import annotations

import argparse

import pytest

from liftlake.lib.cli.runner import InputError, JobContext
from liftlake.lib.config import load_config
from liftlake.lib.pipelines.build_features import build_features_days
from liftlake.lib.pipelines.simulate import simulate_days
from liftlake.lib.storage.store import DeltaRsStore
from liftlake.lib.training.trainset import window_split

DAYS = ["2026-11-19", "2026-11-20"]


def make_ctx(spark, warehouse, days, *overrides):
    sets = [f"warehouse.path={warehouse}", *overrides]
    config = load_config([], sets, env={})
    args = argparse.Namespace(conf=[], overrides=sets, json=False, model=None, quiet_config=True)
    return JobContext("test", config, args, days, _spark=spark, _store=DeltaRsStore(spark, warehouse))


def test_the_day_split_tests_on_the_last_day_and_keeps_the_earlier_valid_rows(spark):
    rows = [(ds, split) for ds in DAYS for split in ("train", "valid", "test")]
    df = spark.createDataFrame(rows, "ds string, split string")
    by_day = {(r.ds, r.split): r.s for r in df.select("ds", "split", window_split(DAYS, "day").alias("s")).collect()}
    assert by_day == {("2026-11-19", "train"): "train", ("2026-11-19", "valid"): "valid",
                      ("2026-11-19", "test"): "train", ("2026-11-20", "train"): "test",
                      ("2026-11-20", "valid"): "test", ("2026-11-20", "test"): "test"}
    by_user = [r.s for r in df.select(window_split(DAYS, "user").alias("s")).collect()]
    assert by_user == [split for _, split in rows]
    with pytest.raises(ValueError, match="split_by 'week'"):
        window_split(DAYS, "week")


@pytest.mark.slow
def test_a_model_trained_on_the_day_split_is_judged_on_the_last_day(spark, tmp_path):
    from liftlake.lib.artifacts.model_store import load_artifact
    from liftlake.lib.evaluation.evaluate import test_rows
    from liftlake.lib.pipelines.report import latest_artifact
    from liftlake.lib.pipelines.train import train

    warehouse = str(tmp_path / "wh")
    ctx = make_ctx(spark, warehouse, DAYS, "simulator.exposures=3000")
    simulate_days(ctx)
    build_features_days(ctx)
    run = make_ctx(spark, warehouse, DAYS, "model.name=dcmt", "train.epochs=1", "train.gate_min_cvr=0",
                   "train.split_by=day")
    version = train(run, DAYS[-1])["version"]
    art = load_artifact(warehouse, "dcmt", version)
    assert art.data["split_by"] == "day" and art.data["days"] == DAYS
    counts = ctx.store.partition_counts("features.samples")
    assert art.data["rows"]["test"] == counts[DAYS[-1]]  # every row of the last day, none earlier
    assert art.data["rows"]["train"] + art.data["rows"]["valid"] == counts[DAYS[0]]
    _, layout = latest_artifact(warehouse, "dcmt", version)
    columns, _ = test_rows(ctx.store, art.info, art.data, layout, max_rows=10_000)
    assert len(next(iter(columns.values()))) == counts[DAYS[-1]]  # evaluation reads the same rule

    one_day = make_ctx(spark, warehouse, DAYS[-1:], "model.name=dcmt", "train.window_days=1", "train.split_by=day")
    with pytest.raises(InputError, match=r"train\.split_by=day .*\(rule: a window of at least 2 days"):
        train(one_day, DAYS[-1])
