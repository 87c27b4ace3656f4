"""The feature job on a small simulated day: quarantine, idempotent re-runs, encodings, errors."""
from __future__ import annotations

import argparse
import os

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from liftlake.lib.artifacts.feature_specs import load_spec
from liftlake.lib.cli.runner import InputError, JobContext
from liftlake.lib.config import load_config
from liftlake.lib.pipelines.build_features import build_features_days
from liftlake.lib.pipelines.simulate import simulate_days
from liftlake.lib.storage.store import DeltaRsStore

DS = "2026-11-20"


def make_ctx(spark, warehouse, days, *overrides):
    config = load_config([], [f"warehouse.path={warehouse}", *overrides], env={})
    args = argparse.Namespace(conf=[], overrides=list(overrides), json=False, model=None, quiet_config=True)
    return JobContext("test", config, args, days, _spark=spark, _store=DeltaRsStore(spark, warehouse))


@pytest.fixture(scope="module")
def day(spark, tmp_path_factory):
    warehouse = str(tmp_path_factory.mktemp("wh"))
    ctx = make_ctx(spark, warehouse, [DS], "simulator.exposures=6000", "simulator.bad_row_rate=0.04")
    simulate_days(ctx)
    summary = build_features_days(ctx)[DS]
    return ctx, summary


@pytest.mark.reliability
def test_every_row_is_kept_or_quarantined_with_its_rule(day):
    ctx, summary = day
    store = ctx.store
    raw = store.read("raw.exposures", partitions=[DS])
    samples = store.read("features.samples", partitions=[DS])
    quarantine = store.read("ops.quarantine", partitions=[DS])
    q_exp = quarantine.where(F.col("source_table") == "raw.exposures").count()
    assert samples.count() + q_exp == raw.count()
    rules = {r.rule for r in quarantine.select("rule").distinct().collect()}
    for rule in ("null_id", "duplicate_exposure_id", "click_without_exposure", "conversion_without_click",
                 "conversion_before_click", "bad_coupon_value_on_treated_row", "unknown_treatment_id",
                 "response_nan_or_negative"):
        assert rule in rules, (rule, rules)
    assert summary["ops.quarantine"] == quarantine.count()
    assert sum(summary["quarantined_by_rule"].values()) == quarantine.count()
    # exposure ids are unique, conversions only on clicks
    assert samples.select("exposure_id").distinct().count() == samples.count()
    assert samples.where((F.col("conversion") == 1) & (F.col("click") == 0)).count() == 0
    users = store.read("features.user_samples", partitions=[DS])
    assert users.select("user_id").distinct().count() == users.count()
    assert users.where((F.col("treated") == 1) & (F.col("intensity") <= 0)).count() == 0


def test_encoded_ids_stay_inside_the_spec(day):
    ctx, _ = day
    spec = load_spec(ctx.store.root)
    samples = ctx.store.read("features.samples", partitions=[DS])
    bounds = samples.agg(*[F.min(c).alias(f"min_{c}") for c in spec.columns("exposure")],
                         *[F.max(c).alias(f"max_{c}") for c in spec.columns("exposure")]).collect()[0]
    for name, dim in zip(spec.columns("exposure"), spec.field_dims("exposure")):
        assert 0 <= bounds[f"min_{name}"] and bounds[f"max_{name}"] < dim, name
    assert {r[0] for r in samples.select("split").distinct().collect()} == {"train", "valid", "test"}
    # user-level models read the user's attributes, not its id (the split holds out whole users)
    users = ctx.store.read("features.user_samples", partitions=[DS])
    assert "user_id" in spec.names("exposure") and "user_id" not in spec.names("user")
    assert set(spec.columns("user")) <= set(users.columns) and "f_user_id" not in users.columns


EXPOSURE_DDL = "exposure_id string, user_id long, item_id long, ts timestamp, position int, hour int"


def clean_by_hand(spark, rows, users=((10, 0.5),), items=((100, 9.9),), max_id_chars=128):
    from liftlake.lib.features.cleaning import clean_attributes, clean_exposures

    exposures = spark.createDataFrame(rows, EXPOSURE_DDL)
    u = clean_attributes(spark.createDataFrame(list(users), "user_id long, u_income double"),
                         "raw.users", "user_id", DS, "test", max_id_chars)
    i = clean_attributes(spark.createDataFrame(list(items), "item_id long, i_price double"),
                         "raw.items", "item_id", DS, "test", max_id_chars)
    cleaned = clean_exposures(exposures, u.good, i.good, DS, "test", max_id_chars)
    rejected = {r.row_key: r.rule for r in cleaned.rejected.collect()}
    return cleaned, rejected, {(r.source_table, r.row_key): r.rule for r in u.rejected.union(i.rejected).collect()}


@pytest.mark.reliability
def test_exposures_outside_the_day_are_quarantined(spark):
    # the simulator never writes these; a late or clock-skewed log line does
    import datetime as dt

    rows = [("1", 10, 100, dt.datetime(2026, 11, 20, 0, 0, 0), 1, 0),      # first instant of the day: kept
            ("2", 10, 100, dt.datetime(2026, 11, 20, 23, 59, 59), 1, 23),  # last second: kept
            ("3", 10, 100, dt.datetime(2026, 11, 19, 23, 59, 59), 1, 23),  # the day before
            ("4", 10, 100, dt.datetime(2026, 11, 21, 0, 0, 0), 1, 0),      # the next day starts here
            ("5", 10, 100, None, 1, None)]
    cleaned, rejected, _ = clean_by_hand(spark, rows)
    assert sorted(r.exposure_id for r in cleaned.good.collect()) == ["1", "2"]
    assert rejected == {"3": "ts_outside_day", "4": "ts_outside_day", "5": "ts_outside_day"}


@pytest.mark.reliability
def test_raw_values_that_contradict_or_join_nothing_are_quarantined(spark):
    import datetime as dt

    t = dt.datetime(2026, 11, 20, 7, 30, 0)
    rows = [("ok", 10, 100, t, 3, 7),
            ("no-hour", 10, 100, t, 3, None),       # a missing hour is the missing bucket, not a fault
            ("wrong-hour", 10, 100, t, 3, 8),       # the hour column says 8, the timestamp 07:30
            ("neg-pos", 10, 100, t, -1, 7),
            ("orphan-user", 11, 100, t, 3, 7),      # user 11 is not in the day's raw.users
            ("orphan-item", 10, 101, t, 3, 7),
            ("nan-user", 12, 100, t, 3, 7),         # user 12's row is quarantined itself (NaN income)
            ("x" * 129, 10, 100, t, 3, 7)]
    users = [(10, 0.5), (12, float("nan")), (13, float("inf")), (None, 1.0)]
    items = [(100, 9.9), (100, 9.9)]                # a re-sent item row counts once
    cleaned, rejected, attr_rejected = clean_by_hand(spark, rows, users, items)
    good = {r.exposure_id: r for r in cleaned.good.collect()}
    assert set(good) == {"ok", "no-hour"}
    # a good row is the raw exposure: the users' and items' encoded fields are joined to it later
    # (build_feature_day), so that the de-duplication's shuffle and the cache carry the exposure alone
    assert good["ok"].asDict() == {"exposure_id": "ok", "user_id": 10, "item_id": 100, "ts": t, "position": 3,
                                   "hour": 7}
    assert rejected == {"wrong-hour": "hour_contradicts_ts", "neg-pos": "negative_position",
                        "orphan-user": "unknown_user_id", "orphan-item": "unknown_item_id",
                        "nan-user": "unknown_user_id", "x" * 129: "oversized_id"}
    assert attr_rejected == {("raw.users", "12"): "non_finite_attribute", ("raw.users", "13"): "non_finite_attribute",
                             ("raw.users", None): "null_id", ("raw.items", "100"): "duplicate_item_id"}
    # the quarantined row is the raw exposure, not the joined one
    import json
    payload = json.loads(cleaned.rejected.where(F.col("row_key") == "neg-pos").first().row_json)
    assert set(payload) == {"exposure_id", "user_id", "item_id", "ts", "position", "hour"}


def test_tables_are_delta_partitioned_by_ds(day):
    ctx, _ = day
    for name in ctx.store.tables():
        table = DeltaTable(ctx.store.path(name))
        assert table.metadata().partition_columns == ["ds"], name


def test_rerunning_the_day_keeps_row_counts(day):
    ctx, _ = day
    store = ctx.store
    before = {t: store.table_info(t) for t in store.tables()}
    simulate_days(ctx)
    build_features_days(ctx)
    for t, info in before.items():
        after = store.table_info(t)
        assert after["rows_per_partition"] == info["rows_per_partition"], t
        assert after["version"] == info["version"] + 1, t


@pytest.mark.reliability
def test_missing_partition_and_missing_column_are_named(day, spark, tmp_path):
    ctx, _ = day
    other = make_ctx(spark, ctx.store.root, ["2026-11-25"])
    with pytest.raises(InputError, match=r"table raw.exposures: partition ds=2026-11-25 is missing"):
        build_features_days(other)
    # a raw table that lost a column
    warehouse = str(tmp_path / "wh2")
    broken = make_ctx(spark, warehouse, [DS], "simulator.exposures=500")
    simulate_days(broken)
    items = broken.store.read("raw.items").drop("i_brand")
    store2 = DeltaRsStore(spark, warehouse)
    store2.write(items.localCheckpoint(), "raw.items_copy", "overwrite_partitions", [DS])
    import shutil

    shutil.rmtree(store2.path("raw.items"))
    shutil.copytree(store2.path("raw.items_copy"), store2.path("raw.items"))
    with pytest.raises(InputError, match=r"table raw.items: missing column\(s\) \['i_brand'\]"):
        build_features_days(broken)


@pytest.mark.reliability
def test_two_first_feature_jobs_at_once_share_one_spec(spark, tmp_path):
    # a backfill starts its first days together on a fresh warehouse: the job that waits for the
    # spec lock must use the spec the other fitted (its own window would fit another one)
    import threading

    from liftlake.lib.artifacts.feature_specs import spec_dir
    from liftlake.lib.features.build import build_feature_day

    days = ["2026-11-20", "2026-11-21"]
    ctx = make_ctx(spark, str(tmp_path / "wh"), days, "simulator.exposures=800")
    simulate_days(ctx)
    cfg = ctx.config
    specs, errors = {}, []
    start = threading.Barrier(2)

    def first_feature_job(ds):
        try:
            start.wait()
            specs[ds] = build_feature_day(ctx.store, ctx.store.root, cfg.features, ds, cfg.data.num_treatments,
                                          cfg.data.num_responses, log=lambda *_: None).spec.version
        except Exception as exc:  # noqa: BLE001 - re-raised below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=first_feature_job, args=(ds,)) for ds in days]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert specs[days[0]] == specs[days[1]] == load_spec(ctx.store.root).version
    assert [f for f in os.listdir(spec_dir(ctx.store.root)) if f.endswith(".json")] == [f"{specs[days[0]]}.json"]


@pytest.mark.reliability
def test_the_raw_contract_follows_the_configured_data_shape(spark, tmp_path):
    # data.num_responses=3 (K=2, R=3): simulate writes response_3, build-features reads it (the raw
    # schemas once were fixed at K=R=2, so this failed with UNRESOLVED_COLUMN response_3)
    ctx = make_ctx(spark, str(tmp_path / "wh"), [DS], "simulator.exposures=800", "data.num_responses=3")
    simulate_days(ctx)
    summary = build_features_days(ctx)[DS]
    users = ctx.store.read("features.user_samples", partitions=[DS])
    assert {"response_3", "value_share_3"} <= set(users.columns)
    assert summary["features.user_samples"] == users.count() > 0


def test_the_data_shape_is_validated_on_load(tmp_path):
    from liftlake.lib.config import ConfigError

    with pytest.raises(ConfigError, match=r"data\.num_responses: must be an integer in \[1, 8\]"):
        load_config([], ["data.num_responses=9"], env={})
    with pytest.raises(ConfigError, match=r"simulator\.items: must be >= data\.num_responses"):
        load_config([], ["data.num_responses=3", "simulator.items=2"], env={})
