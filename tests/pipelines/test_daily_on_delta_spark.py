"""The daily pipeline (simulate -> build-features -> escim-labels -> train -> score) on the delta-spark
backend, in one Spark session with Delta's own connector: every table is written by Spark's Delta
writer, read back by the embedded store and by polars (independent readers), carries its column rules
as CHECK constraints, and a re-run of the day replaces the day's rows instead of adding to them."""
from __future__ import annotations

import argparse

import polars as pl
import pytest

from liftlake.lib.cli.runner import JobContext
from liftlake.lib.config import load_config
from liftlake.lib.storage.store import DS_CHECK, DeltaRsStore, open_store

DS = "2026-11-20"


def make_ctx(spark, warehouse, *overrides):
    sets = [f"warehouse.path={warehouse}", "warehouse.backend=delta-spark", "simulator.exposures=3000", *overrides]
    config = load_config([], sets, env={})
    args = argparse.Namespace(conf=[], overrides=sets, json=False, model=None, quiet_config=True)
    return JobContext("test", config, args, [DS], _spark=spark, _store=open_store(spark, warehouse, "delta-spark"))


@pytest.mark.slow
def test_the_daily_pipeline_runs_on_delta_spark_and_its_tables_read_anywhere(spark, tmp_path):
    from deltalake import DeltaTable

    from liftlake.lib.pipelines.build_features import build_features_days
    from liftlake.lib.pipelines.escim_labels import escim_labels
    from liftlake.lib.pipelines.score import score_days
    from liftlake.lib.pipelines.simulate import simulate_days
    from liftlake.lib.pipelines.train import train

    warehouse = str(tmp_path / "wh")
    ctx = make_ctx(spark, warehouse)
    assert ctx.store.backend == "delta-spark"
    simulate_days(ctx)
    build_features_days(ctx)
    escim_labels(ctx)
    trained = train(make_ctx(spark, warehouse, "model.name=dcmt", "train.epochs=1", "train.gate_min_cvr=0"), DS)
    assert trained["version"]
    score_days(ctx, only_model="dcmt")

    exposures = ctx.store.partition_counts("raw.exposures")[DS]
    assert ctx.store.partition_counts("features.samples")[DS] + \
        ctx.store.partition_counts("ops.quarantine").get(DS, 0) >= exposures > 0
    samples = ctx.store.partition_counts("features.samples")[DS]
    assert ctx.store.partition_counts("labels.escim_counterfactual")[DS] == samples
    assert ctx.store.partition_counts("scores.cvr")[DS] == samples

    # the embedded store, delta-rs' log and polars read what Spark's Delta writer committed
    embedded = DeltaRsStore(spark, warehouse)
    for name in ("raw.exposures", "features.samples", "labels.escim_counterfactual", "scores.cvr"):
        assert embedded.partition_counts(name) == ctx.store.partition_counts(name), name
    cvr = pl.read_delta(ctx.store.path("scores.cvr"))
    assert cvr.height == samples and cvr["cvr"].is_between(0, 1).all() and cvr["cvr"].n_unique() > 1
    configuration = DeltaTable(ctx.store.path("scores.cvr")).metadata().configuration
    assert configuration["delta.constraints.liftlake_ds"] == DS_CHECK
    assert {"delta.constraints.liftlake_cvr", "delta.constraints.liftlake_ctr"} <= set(configuration)

    # re-running the day replaces its partitions: the same rows once, a new version
    version = ctx.store.version("scores.cvr")
    score_days(ctx, only_model="dcmt")
    assert ctx.store.version("scores.cvr") == version + 1
    assert ctx.store.partition_counts("scores.cvr") == {DS: samples}
