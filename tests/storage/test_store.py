"""The table store contract, on both backends (the ``backend`` fixture: delta-rs and delta-spark, real
Delta tables in the test session's one local JVM): round trips, partition overwrite, time travel,
atomic commits, schema checks, vacuum, concurrent writers."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from deltalake import DeltaTable, QueryBuilder
from pyspark.sql import functions as F

from liftlake.lib.storage.store import (DS_CHECK, DeltaRsStore, InjectedFault, TableError, open_store, probability_checks,
                                        validate_table_name)


def day_frame(spark, ds: str, n: int, offset: int = 0):
    return (spark.range(offset, offset + n).withColumnRenamed("id", "event_id")
            .withColumn("value", F.col("event_id") * 0.5)
            .withColumn("label", F.concat(F.lit("e"), F.col("event_id").cast("string")))
            .withColumn("ts", F.to_timestamp(F.lit(f"{ds} 12:00:00")))
            .withColumn("ds", F.lit(ds)))


def delta_rows(path: str) -> int:
    """Row count as delta-rs' own SQL engine (DataFusion) sees the table."""
    result = QueryBuilder().register("t", DeltaTable(path)).execute("select count(*) as n from t").read_all()
    return result.column("n").to_pylist()[0]


@pytest.fixture()
def store(spark, tmp_path, backend):
    return open_store(spark, str(tmp_path / "wh"), backend)


@pytest.fixture()
def rs_store(spark, tmp_path):
    """The delta-rs store alone, for the cases that exercise its own commit path."""
    return DeltaRsStore(spark, str(tmp_path / "wh"))


def test_each_backend_is_the_store_it_names(store, backend):
    assert store.backend == backend


def test_auto_keeps_delta_rs_where_liftlake_loaded_the_jars_itself(spark, tmp_path):
    from liftlake.lib.storage.spark import DELTA_ON_REQUEST, has_delta_extension

    # the test session loads the Delta jars so that delta-spark stores can be opened on request;
    # that is not a Delta cluster's session, so the default backend stays the embedded one
    assert has_delta_extension(spark) and spark.conf.get(DELTA_ON_REQUEST) == "true"
    assert open_store(spark, str(tmp_path / "wh"), "auto").backend == "delta-rs"
    assert open_store(None, str(tmp_path / "wh"), "auto").backend == "delta-rs"


def test_round_trip_and_other_readers(spark, store):
    df = day_frame(spark, "2026-11-20", 100)
    res = store.write(df, "raw.events", mode="overwrite_partitions", partition_values=["2026-11-20"])
    assert (res.version, res.rows) == (0, 100)
    back = store.read("raw.events")
    assert back.columns == df.columns
    assert sorted(r.event_id for r in back.collect()) == list(range(100))
    assert back.schema["ts"].dataType.simpleString() == "timestamp"
    # Any Delta reader opens it: delta-rs sees the same version, partitioning and file row counts.
    table = DeltaTable(store.path("raw.events"))
    assert table.version() == 0
    assert table.metadata().partition_columns == ["ds"]
    assert delta_rows(store.path("raw.events")) == 100
    assert store.partition_counts("raw.events") == {"2026-11-20": 100}


def test_rerunning_a_day_replaces_it(spark, store):
    for _ in range(2):
        store.write(day_frame(spark, "2026-11-20", 50), "raw.events", "overwrite_partitions", ["2026-11-20"])
        store.write(day_frame(spark, "2026-11-21", 30), "raw.events", "overwrite_partitions", ["2026-11-21"])
    assert store.version("raw.events") == 3
    assert store.partition_counts("raw.events") == {"2026-11-20": 50, "2026-11-21": 30}
    assert store.read("raw.events").count() == 80
    # Re-running one day with other rows touches only that day.
    store.write(day_frame(spark, "2026-11-21", 7, offset=1000), "raw.events", "overwrite_partitions", ["2026-11-21"])
    assert store.partition_counts("raw.events") == {"2026-11-20": 50, "2026-11-21": 7}


def test_time_travel_and_history(spark, store):
    store.write(day_frame(spark, "2026-11-20", 10), "raw.events", "append")
    store.write(day_frame(spark, "2026-11-20", 5, offset=10), "raw.events", "append")
    assert store.read("raw.events", version=0).count() == 10
    assert store.read("raw.events").count() == 15
    assert len(store.history("raw.events")) == 2
    with pytest.raises(TableError, match="version 9 does not exist"):
        store.read("raw.events", version=9)


def test_partition_read(spark, store):
    store.write(day_frame(spark, "2026-11-20", 10).unionByName(day_frame(spark, "2026-11-21", 4, 10)),
                "raw.events", "append")
    assert store.read("raw.events", partitions=["2026-11-21"]).count() == 4
    assert store.read("raw.events", partitions=["2026-11-22"]).count() == 0


@pytest.mark.reliability
def test_schema_mismatch_names_the_columns(spark, store):
    store.write(day_frame(spark, "2026-11-20", 5), "raw.events", "append")
    bad = day_frame(spark, "2026-11-21", 5).drop("label").withColumn("extra", F.lit(1)) \
        .withColumn("value", F.col("value").cast("string"))
    with pytest.raises(TableError) as err:
        store.write(bad, "raw.events", "append")
    msg = str(err.value)
    assert "raw.events" in msg and "['label']" in msg and "['extra']" in msg and "value (double" in msg
    assert store.version("raw.events") == 0


@pytest.mark.reliability
def test_overwrite_refuses_rows_outside_the_partition(spark, store):
    with pytest.raises(TableError, match="outside the partitions"):
        store.write(day_frame(spark, "2026-11-21", 5), "raw.events", "overwrite_partitions", ["2026-11-20"])
    assert not store.exists("raw.events")
    store.write(day_frame(spark, "2026-11-20", 5), "raw.events", "overwrite_partitions", ["2026-11-20"])
    mixed = day_frame(spark, "2026-11-20", 3).unionByName(day_frame(spark, "2026-11-22", 2))
    with pytest.raises(TableError, match=r"\['2026-11-22'\] outside the partitions"):
        store.write(mixed, "raw.events", "overwrite_partitions", ["2026-11-20"])
    assert store.version("raw.events") == 0 and store.read("raw.events").count() == 5
    staging = os.path.join(store.path("raw.events"), "_staging")
    assert not os.path.isdir(staging) or not os.listdir(staging)  # the staged files are gone


@pytest.mark.reliability
@pytest.mark.parametrize("name", ["raw", "raw.Events", "../etc.passwd", "raw.events;drop", "a.b.c", "raw.`x`"])
def test_table_names_outside_the_rule_are_refused(name):
    with pytest.raises(TableError, match="a-z0-9_"):
        validate_table_name(name)


@pytest.mark.reliability
def test_failure_before_commit_leaves_table_unchanged(spark, store, monkeypatch):
    store.write(day_frame(spark, "2026-11-20", 20), "raw.events", "overwrite_partitions", ["2026-11-20"])
    monkeypatch.setenv("LIFTLAKE_FAULT_BEFORE_COMMIT", "raw.events")
    with pytest.raises(InjectedFault):
        store.write(day_frame(spark, "2026-11-20", 99, offset=500), "raw.events", "overwrite_partitions",
                    ["2026-11-20"])
    assert store.version("raw.events") == 0
    assert store.partition_counts("raw.events") == {"2026-11-20": 20}
    assert sorted(r.event_id for r in store.read("raw.events").collect()) == list(range(20))
    parquet = [f for _, _, fs in os.walk(store.path("raw.events")) for f in fs if f.endswith(".parquet")]
    assert len(parquet) == len(store.referenced_files("raw.events"))


@pytest.mark.reliability
def test_a_failed_spark_write_leaves_no_staging_folder(spark, store):
    store.write(day_frame(spark, "2026-11-20", 20), "raw.events", "overwrite_partitions", ["2026-11-20"])
    # a row that fails while Spark writes the staged files (the task's error is not retried away)
    bad = day_frame(spark, "2026-11-20", 50).withColumn(
        "value", F.when(F.col("event_id") == 7, F.raise_error(F.lit("bad row 7"))).otherwise(F.col("value")))
    with pytest.raises(Exception, match="bad row 7"):
        store.write(bad, "raw.events", "overwrite_partitions", ["2026-11-20"])
    assert store.version("raw.events") == 0
    assert store.partition_counts("raw.events") == {"2026-11-20": 20}
    staging = os.path.join(store.path("raw.events"), "_staging")
    assert not os.path.exists(staging) or os.listdir(staging) == []


KILL_SCRIPT = r"""
import sys
from pyspark.sql import functions as F
from liftlake.lib.storage.spark import build_session
from liftlake.lib.storage.store import open_store
backend = sys.argv[2]
spark = build_session("kill", master="local[1]", conf={"spark.ui.enabled": "false"},
                      delta_jars=backend == "delta-spark")
store = open_store(spark, sys.argv[1], backend)
df = spark.range(1000).withColumnRenamed("id", "event_id").withColumn("ds", F.lit("2026-11-20"))
with store.commit_together():  # a job's write: staged, then committed at the block's end
    store.write(df, "raw.killed", "overwrite_partitions", ["2026-11-20"])
"""


@pytest.mark.reliability
def test_process_killed_before_commit_leaves_only_unreferenced_files(spark, store, tmp_path, backend):
    store.write(spark.range(10).withColumnRenamed("id", "event_id").withColumn("ds", F.lit("2026-11-20")),
                "raw.killed", "overwrite_partitions", ["2026-11-20"])
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    env = dict(os.environ, LIFTLAKE_FAULT_BEFORE_COMMIT="raw.killed", LIFTLAKE_FAULT_MODE="exit")
    proc = subprocess.run([sys.executable, str(script), store.root, backend], env=env, capture_output=True,
                          timeout=300)
    assert proc.returncode == 137, proc.stderr.decode()[-2000:]
    assert store.version("raw.killed") == 0
    assert store.partition_counts("raw.killed") == {"2026-11-20": 10}
    # The dead write's files are on disk but unreferenced; vacuum removes exactly those.
    referenced = store.referenced_files("raw.killed")
    on_disk = {os.path.relpath(os.path.join(d, f), store.path("raw.killed")).replace(os.sep, "/")
               for d, _, fs in os.walk(store.path("raw.killed")) for f in fs if f.endswith(".parquet")}
    assert on_disk - referenced
    removed = store.vacuum("raw.killed", retention_hours=0)
    assert all(any(f == r or f.startswith(r + "/") for r in removed) for f in on_disk - referenced), removed
    assert {os.path.relpath(os.path.join(d, f), store.path("raw.killed")).replace(os.sep, "/")
            for d, _, fs in os.walk(store.path("raw.killed")) for f in fs if f.endswith(".parquet")} == referenced
    assert store.read("raw.killed").count() == 10
    assert delta_rows(store.path("raw.killed")) == 10


@pytest.mark.reliability
def test_concurrent_writers_lose_nothing(spark, store):
    store.write(day_frame(spark, "2026-11-19", 3), "raw.events", "append")
    errors = []

    def append(offset):
        try:
            store.write(day_frame(spark, "2026-11-20", 25, offset=offset), "raw.events", "append")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(1000 * (i + 1),)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = [r.event_id for r in store.read("raw.events").collect()]
    assert len(ids) == len(set(ids)) == 53


@pytest.mark.reliability
def test_losing_the_race_to_create_a_table_commits_onto_it(spark, rs_store, monkeypatch):
    store = rs_store
    # two days of a backfill both find no table and both create it: the second must land on the
    # first one's table (seen in the 30-day Airflow backfill, where it cost a retry)
    store.write(day_frame(spark, "2026-11-19", 4), "raw.events", "overwrite_partitions", ["2026-11-19"])
    real_exists = store.exists
    checks = []

    def stale_exists(name):
        checks.append(name)
        return False if len(checks) == 1 else real_exists(name)  # the check made before the other commit

    monkeypatch.setattr(store, "exists", stale_exists)
    res = store.write(day_frame(spark, "2026-11-20", 6, offset=100), "raw.events", "overwrite_partitions",
                      ["2026-11-20"])
    assert res.version == 1
    assert store.partition_counts("raw.events") == {"2026-11-19": 4, "2026-11-20": 6}
    checks.clear()
    wrong = day_frame(spark, "2026-11-21", 2).withColumn("value", F.col("value").cast("string"))
    with pytest.raises(TableError, match="value"):
        store.write(wrong, "raw.events", "overwrite_partitions", ["2026-11-21"])
    assert real_exists("raw.events") and store.version("raw.events") == 1


@pytest.mark.reliability
def test_concurrent_overwrites_of_one_day_leave_one_whole_write(spark, store):
    store.write(day_frame(spark, "2026-11-20", 3), "raw.events", "overwrite_partitions", ["2026-11-20"])
    outcomes = []

    def overwrite(offset, n):
        try:
            store.write(day_frame(spark, "2026-11-20", n, offset=offset), "raw.events", "overwrite_partitions",
                        ["2026-11-20"])
            outcomes.append(("ok", offset))
        except Exception as exc:  # noqa: BLE001 - a conflict must be loud, not silent
            outcomes.append(("failed", type(exc).__name__))

    threads = [threading.Thread(target=overwrite, args=(1000, 40)), threading.Thread(target=overwrite, args=(2000, 60))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert any(o[0] == "ok" for o in outcomes)
    ids = sorted(r.event_id for r in store.read("raw.events").collect())
    # Exactly one writer's rows, never a mix and never duplicated.
    assert ids in (list(range(1000, 1040)), list(range(2000, 2060)))


def test_sql_by_table_name_through_the_catalog(spark, store):
    store.write(day_frame(spark, "2026-11-20", 12), "raw.events", "append")
    version = store.version("raw.events")
    assert store.register_in_catalog(["raw.events"]) == ["raw.events"]
    assert store.register_in_catalog(["raw.events"]) == ["raw.events"]  # again: nothing to do
    rows = spark.sql("select ds, count(*) as n from `raw`.`events` -- it's\n"
                     "where label != 'raw.events' group by ds").collect()
    assert [(r.ds, r.n) for r in rows] == [("2026-11-20", 12)]
    assert "raw.events" in store.tables() and store.version("raw.events") == version  # metadata only
    table = spark.catalog.getTable("raw.events")
    assert table.tableType == "EXTERNAL"
    with pytest.raises(TableError, match="rule <namespace>.<table>"):
        store.register_in_catalog(["raw.events`; drop table x"])


def test_table_and_column_comments_show_in_describe(spark, store):
    comment = "one row per event; it's the raw log"
    store.write(day_frame(spark, "2026-11-20", 3), "raw.events", "append", comment=comment,
                column_comments={"event_id": "the event's id"})
    store.write(day_frame(spark, "2026-11-21", 2), "raw.events", "append", comment=comment)
    store.register_in_catalog(["raw.events"])
    described = {r.col_name: r.data_type for r in spark.sql("describe table extended raw.events").collect()}
    assert described["Comment"] == comment
    columns = {r.col_name: r.comment for r in spark.sql("describe table raw.events").collect()}
    assert columns["event_id"] == "the event's id"
    assert spark.table("raw.events").count() == 5


def test_sql_catalog_leaves_a_table_that_is_not_the_warehouses_alone(spark, store, tmp_path):
    store.write(day_frame(spark, "2026-11-20", 3), "own.kept", "append")
    spark.sql(f"create database if not exists own location '{tmp_path / 'own-db'}'")
    spark.sql("drop table if exists own.kept")
    spark.sql("create table own.kept (a int) using parquet")  # a managed table of the session's own
    try:
        with pytest.raises(TableError, match="managed parquet table"):
            store.register_in_catalog(["own.kept"])
        assert spark.catalog.getTable("own.kept").tableType == "MANAGED"
    finally:
        spark.sql("drop table own.kept")


def parquet_on_disk(store, name: str) -> set[str]:
    root = store.path(name)
    return {os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
            for d, _, fs in os.walk(root) for f in fs if f.endswith(".parquet") and "_staging" not in d}


@pytest.mark.reliability
def test_writes_of_one_block_commit_at_its_end_or_not_at_all(spark, store):
    store.write(day_frame(spark, "2026-11-20", 30), "raw.events", "overwrite_partitions", ["2026-11-20"])
    files_before = store.referenced_files("raw.events")
    # a failure after two writes were staged: neither is committed, their files are gone
    with pytest.raises(RuntimeError, match="the job failed"):
        with store.commit_together():
            staged = store.write(day_frame(spark, "2026-11-20", 40, offset=100), "raw.events",
                                 "overwrite_partitions", ["2026-11-20"])
            store.write(day_frame(spark, "2026-11-20", 5), "raw.other", "overwrite_partitions", ["2026-11-20"])
            assert staged.version is None and store.version("raw.events") == 0
            raise RuntimeError("the job failed")
    assert store.version("raw.events") == 0 and store.referenced_files("raw.events") == files_before
    assert parquet_on_disk(store, "raw.events") == files_before
    assert not store.exists("raw.other")
    # the same block left normally commits both, in the order written
    with store.commit_together() as batch:
        store.write(day_frame(spark, "2026-11-20", 40, offset=100), "raw.events", "overwrite_partitions",
                    ["2026-11-20"])
        store.write(day_frame(spark, "2026-11-20", 5), "raw.other", "overwrite_partitions", ["2026-11-20"])
    assert [(r.table, r.version, r.rows) for r in batch.results] == [("raw.events", 1, 40), ("raw.other", 0, 5)]
    assert store.read("raw.events").count() == 40


@pytest.mark.reliability
def test_a_commit_failing_at_the_end_undoes_the_block_s_earlier_commits(spark, rs_store, monkeypatch):
    store = rs_store
    store.write(day_frame(spark, "2026-11-20", 30), "raw.events", "overwrite_partitions", ["2026-11-20"])
    store.write(day_frame(spark, "2026-11-21", 20, offset=500), "raw.events", "overwrite_partitions", ["2026-11-21"])
    store.write(day_frame(spark, "2026-11-20", 7), "raw.last", "overwrite_partitions", ["2026-11-20"])
    files_before = store.referenced_files("raw.events")
    real = DeltaTable.create_write_transaction

    def fail_on_the_last_table(self, *args, **kwargs):
        if self.table_uri.rstrip("/").endswith("raw/last"):
            raise OSError("commit of raw.last failed")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(DeltaTable, "create_write_transaction", fail_on_the_last_table)
    with pytest.raises(OSError, match="commit of raw.last failed"):
        with store.commit_together():
            store.write(day_frame(spark, "2026-11-20", 40, offset=100), "raw.events", "overwrite_partitions",
                        ["2026-11-20"])
            store.write(day_frame(spark, "2026-11-20", 3), "raw.created", "overwrite_partitions", ["2026-11-20"])
            store.write(day_frame(spark, "2026-11-20", 9), "raw.last", "overwrite_partitions", ["2026-11-20"])
    monkeypatch.undo()
    # raw.events was committed, then given its old files back: the same rows, from the same files
    assert store.version("raw.events") == 3
    assert store.referenced_files("raw.events") == files_before
    assert store.partition_counts("raw.events") == {"2026-11-20": 30, "2026-11-21": 20}
    assert not store.exists("raw.created")  # made by the block alone: removed
    assert store.version("raw.last") == 0 and store.read("raw.last").count() == 7


def test_an_overwrite_scoped_to_an_inner_partition_keeps_the_others(spark, store):
    ds = "2026-11-20"

    def rows(model, n, offset=0):
        return day_frame(spark, ds, n, offset).withColumn("model", F.lit(model))

    parts = ("ds", "model")
    store.write(rows("a", 4).unionByName(rows("b", 3, 100)), "scores.s", "append", partition_by=parts)
    res = store.write(rows("a", 6, 200), "scores.s", "overwrite_partitions", [ds], partition_by=parts,
                      sub_partition_values={"model": ["a"]})
    assert (res.version, res.rows, res.partitions) == (1, 6, (ds,))
    by_model = {r["model"]: r["count"] for r in store.read("scores.s").groupBy("model").count().collect()}
    assert by_model == {"a": 6, "b": 3}
    assert store.partition_counts("scores.s") == {ds: 9}
    assert store.read("scores.s", version=0).where(F.col("model") == "a").count() == 4
    with pytest.raises(TableError, match=r"model values \['b'\] outside the partitions"):
        store.write(rows("b", 1), "scores.s", "overwrite_partitions", [ds], partition_by=parts,
                    sub_partition_values={"model": ["a"]})
    with pytest.raises(TableError, match=r"partitioned by \['ds', 'model'\], the write by \['ds'\]"):
        store.write(rows("a", 1), "scores.s", "append")
    assert store.version("scores.s") == 1


def test_vacuum_removes_the_files_of_replaced_versions_only(spark, store):
    store.write(day_frame(spark, "2026-11-20", 10), "raw.events", "overwrite_partitions", ["2026-11-20"])
    old = store.referenced_files("raw.events")
    store.write(day_frame(spark, "2026-11-20", 5, offset=100), "raw.events", "overwrite_partitions", ["2026-11-20"])
    new = store.referenced_files("raw.events")
    assert old and new and old.isdisjoint(new)
    listed = store.vacuum("raw.events", retention_hours=0, dry_run=True)
    assert set(listed) == old and parquet_on_disk(store, "raw.events") == old | new  # a dry run removes nothing
    assert store.vacuum("raw.events", retention_hours=0) == listed
    assert parquet_on_disk(store, "raw.events") == new
    assert sorted(r.event_id for r in store.read("raw.events").collect()) == list(range(100, 105))
    assert store.vacuum("raw.events", retention_hours=0) == []


def test_optimize_compacts_small_files_without_changing_a_row(spark, store):
    """Three appends to one day and one to the next: the day of three small files is compacted into
    one in a commit that changes no row (time travel included); the day of one file is left alone, a
    dry run commits nothing, and a second run has nothing to do."""
    for i in range(3):
        store.write(day_frame(spark, "2026-11-20", 4, offset=10 * i).coalesce(1), "raw.events", "append")
    store.write(day_frame(spark, "2026-11-21", 4, offset=100).coalesce(1), "raw.events", "append")
    rows = sorted(r.event_id for r in store.read("raw.events").collect())
    version, files = store.version("raw.events"), store.referenced_files("raw.events")
    assert len(files) == 4
    assert store.optimize("raw.events", dry_run=True) == ["ds=2026-11-20"]
    assert store.version("raw.events") == version
    assert store.optimize("raw.events") == ["ds=2026-11-20"]
    assert store.version("raw.events") == version + 1
    compacted = store.referenced_files("raw.events")
    assert len(compacted) == 2 and len([f for f in compacted if "ds=2026-11-20" in f]) == 1
    assert sorted(r.event_id for r in store.read("raw.events").collect()) == rows
    assert sorted(r.event_id for r in store.read("raw.events", version=version).collect()) == rows
    assert delta_rows(store.path("raw.events")) == len(rows)  # an independent reader agrees
    assert store.partition_counts("raw.events") == {"2026-11-20": 12, "2026-11-21": 4}
    assert store.optimize("raw.events") == [] and store.version("raw.events") == version + 1


@pytest.mark.reliability
@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), None])
def test_a_row_breaking_a_column_rule_fails_the_write_and_changes_nothing(spark, store, backend, bad):
    """probability_checks: a value outside [0, 1], NaN or NULL stops the write with one line naming
    the table, the column and the rule; the table is as it was, on both backends and inside a block."""
    from pyspark.sql import functions as F

    checks = probability_checks("value")
    good = day_frame(spark, "2026-11-20", 5).withColumn("value", F.col("event_id") / 10.0)
    store.write(good, "raw.scored", "overwrite_partitions", ["2026-11-20"], checks=checks)
    before = (store.version("raw.scored"), store.referenced_files("raw.scored"))
    broken = good.withColumn("value", F.when(F.col("event_id") == 3, F.lit(bad).cast("double"))
                             .otherwise(F.col("value")))
    rule = r"table raw\.scored: column value breaks its rule \(`value` >= 0 AND `value` <= 1\)"
    with pytest.raises(TableError, match=rule):
        store.write(broken, "raw.scored", "overwrite_partitions", ["2026-11-20"], checks=checks)
    with pytest.raises(TableError, match=rule):
        with store.commit_together():
            store.write(good, "raw.other", "overwrite_partitions", ["2026-11-20"])
            store.write(broken, "raw.scored", "overwrite_partitions", ["2026-11-20"], checks=checks)
    assert (store.version("raw.scored"), store.referenced_files("raw.scored")) == before
    assert not store.exists("raw.other")
    if backend == "delta-spark":  # the rules are the table's: Delta refuses another writer's bad day
        configuration = DeltaTable(store.path("raw.scored")).metadata().configuration
        assert configuration == {"delta.constraints.liftlake_ds": DS_CHECK,
                                 "delta.constraints.liftlake_value": checks["value"]}
        with pytest.raises(Exception, match="DELTA_VIOLATE_CONSTRAINT"):
            good.withColumn("ds", F.lit("20 Nov")).write.format("delta").mode("append").save(store.path("raw.scored"))
        assert store.version("raw.scored") == before[0]


def test_a_partition_s_single_value_is_read_from_the_log_statistics(spark, store):
    """single_value_from_stats: the value a day's files all hold, from their min / max in the Delta
    log; None where the statistics cannot say (two values, no such day, no such column).
    values_from_stats: the distinct tuples of several columns, a partition column's from the file's
    partition values."""
    one = day_frame(spark, "2026-11-20", 6).withColumn("spec", F.lit("abc123")).withColumn("src", F.lit("sim"))
    one = one.repartition(2)
    mixed = day_frame(spark, "2026-11-21", 6).withColumn(
        "spec", F.when(F.col("event_id") < 3, F.lit("abc123")).otherwise(F.lit("def456"))
    ).withColumn("src", F.lit("sim")).coalesce(1)
    store.write(one.unionByName(mixed), "raw.encoded", "overwrite_partitions", ["2026-11-20", "2026-11-21"])
    assert store.single_value_from_stats("raw.encoded", "spec", "2026-11-20") == "abc123"
    assert store.single_value_from_stats("raw.encoded", "spec", "2026-11-21") is None
    assert store.single_value_from_stats("raw.encoded", "spec", "2026-11-22") is None
    assert store.single_value_from_stats("raw.encoded", "no_such_column", "2026-11-20") is None
    # several columns: the distinct tuples when each file holds one; an empty day holds none
    days = ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert store.values_from_stats("raw.encoded", ["spec", "src"], days) == {
        "2026-11-20": {("abc123", "sim")}, "2026-11-21": None, "2026-11-22": set()}
    by_day = store.values_from_stats("raw.encoded", ["ds", "spec"], days[:1])
    assert by_day == {"2026-11-20": {("2026-11-20", "abc123")}}
    assert store.values_from_stats("raw.encoded", ["spec", "no_such_column"], days[:1]) == {"2026-11-20": None}


def test_a_delta_spark_table_lacking_its_rules_and_comment_gets_them_on_the_next_write(spark, tmp_path, caplog):
    """A table Spark created without the store (or before the store set constraints and comments, or
    whose creating job died before its comment commit) gains the CHECK constraints and the comment of
    the store's next write to it, once; a constraint its old rows break is left off with a warning,
    and no row is lost."""
    store = open_store(spark, str(tmp_path / "wh"), "delta-spark")
    checks = probability_checks("value")
    old = day_frame(spark, "2026-11-20", 4).withColumn("value", F.col("event_id") / 10.0)
    old.write.format("delta").partitionBy("ds").save(store.path("raw.scored"))
    old.withColumn("value", F.lit(2.0)).write.format("delta").partitionBy("ds").save(store.path("raw.broken"))
    new = day_frame(spark, "2026-11-21", 3).withColumn("value", F.col("event_id") / 10.0)
    for name in ("raw.scored", "raw.broken"):
        store.write(new, name, "overwrite_partitions", ["2026-11-21"], checks=checks, comment="scored rows")

    scored = DeltaTable(store.path("raw.scored")).metadata()
    assert scored.configuration == {"delta.constraints.liftlake_ds": DS_CHECK,
                                    "delta.constraints.liftlake_value": checks["value"]}
    assert scored.description == "scored rows"
    broken = DeltaTable(store.path("raw.broken")).metadata()
    assert broken.configuration == {"delta.constraints.liftlake_ds": DS_CHECK}  # its old rows have value 2.0
    assert broken.description == "scored rows"
    assert any("raw.broken: CHECK constraint liftlake_value" in r.getMessage() for r in caplog.records)
    assert store.partition_counts("raw.broken") == {"2026-11-20": 4, "2026-11-21": 3}
    with pytest.raises(Exception, match="DELTA_VIOLATE_CONSTRAINT"):  # the rule is the table's now
        old.withColumn("value", F.lit(1.5)).write.format("delta").mode("append").save(store.path("raw.scored"))

    version = store.version("raw.scored")
    store.write(new, "raw.scored", "overwrite_partitions", ["2026-11-21"], checks=checks, comment="scored rows")
    assert store.version("raw.scored") == version + 1  # a complete table: the write's commit alone


@pytest.mark.reliability
def test_two_first_writes_of_a_table_at_once_both_land(spark, store):
    errors = []

    def first_write(ds, n, offset):
        try:
            store.write(day_frame(spark, ds, n, offset), "raw.fresh", "overwrite_partitions", [ds])
        except Exception as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=first_write, args=("2026-11-20", 6, 0)),
               threading.Thread(target=first_write, args=("2026-11-21", 4, 100))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert store.partition_counts("raw.fresh") == {"2026-11-20": 6, "2026-11-21": 4}


@pytest.mark.reliability
def test_a_commit_refused_at_the_end_undoes_the_block_s_earlier_commits(spark, store, backend):
    store.write(day_frame(spark, "2026-11-20", 30), "raw.events", "overwrite_partitions", ["2026-11-20"])
    store.write(day_frame(spark, "2026-11-21", 20, offset=500), "raw.events", "overwrite_partitions", ["2026-11-21"])
    rows_before = sorted(r.event_id for r in store.read("raw.events").collect())
    other_job = open_store(spark, store.root, backend)
    with pytest.raises(TableError, match=r"table raw\.last is partitioned by \[\], the write by \['ds'\]"):
        with store.commit_together():
            store.write(day_frame(spark, "2026-11-20", 40, offset=100), "raw.events", "overwrite_partitions",
                        ["2026-11-20"])
            store.write(day_frame(spark, "2026-11-20", 3), "raw.created", "overwrite_partitions", ["2026-11-20"])
            store.write(day_frame(spark, "2026-11-20", 9), "raw.last", "overwrite_partitions", ["2026-11-20"])
            # before the block commits, another job creates raw.last unpartitioned: its commit is refused
            other_job.write(day_frame(spark, "2026-11-20", 2), "raw.last", "append", partition_by=None)
    # raw.events was committed, then given its rows of before back (version 2: the job's, 3: the undo)
    assert store.version("raw.events") == 3
    assert sorted(r.event_id for r in store.read("raw.events").collect()) == rows_before
    assert store.partition_counts("raw.events") == {"2026-11-20": 30, "2026-11-21": 20}
    assert not store.exists("raw.created")  # made by the block alone: removed
    assert store.read("raw.last").count() == 2  # the other job's table is untouched
    assert not os.listdir(os.path.join(store.root, "_commits"))
    staging = [d for d, _, _ in os.walk(store.root) if os.path.basename(os.path.dirname(d)) == "_staging"]
    assert not staging  # every staged write was committed or removed


def _conflicting_overwrite(spark, store, tmp_path):
    """Writer A's overwrite of a day is held inside its Delta transaction (a UDF waits) while writer B
    commits an overwrite of the same day; then A goes on to its commit, which conflicts."""
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")

    @F.udf("long")
    def held(v):
        import os as os_
        import time as time_

        open(started, "w").close()
        while not os_.path.exists(gate):
            time_.sleep(0.05)
        return v

    store.write(day_frame(spark, "2026-11-20", 3), "raw.events", "overwrite_partitions", ["2026-11-20"])
    outcome: list = []

    def writer_a():
        df = day_frame(spark, "2026-11-20", 40, offset=1000).coalesce(1).withColumn("event_id", held("event_id"))
        try:
            outcome.append(store.write(df, "raw.events", "overwrite_partitions", ["2026-11-20"]))
        except Exception as exc:  # noqa: BLE001 - inspected by the test
            outcome.append(exc)

    thread = threading.Thread(target=writer_a)
    thread.start()
    deadline = time.time() + 120
    while not os.path.exists(started) and time.time() < deadline:
        time.sleep(0.05)
    store.write(day_frame(spark, "2026-11-20", 60, offset=2000), "raw.events", "overwrite_partitions", ["2026-11-20"])
    open(gate, "w").close()
    thread.join(180)
    return outcome[0]


@pytest.mark.reliability
def test_delta_spark_retries_a_commit_that_lost_a_conflict(spark, tmp_path):
    store = open_store(spark, str(tmp_path / "wh"), "delta-spark")
    result = _conflicting_overwrite(spark, store, tmp_path)
    assert not isinstance(result, Exception), result
    # A lost to B's commit, tried again and committed after it: A's rows, whole, and B's in history
    assert result.version == 2 and result.rows == 40
    assert sorted(r.event_id for r in store.read("raw.events").collect()) == list(range(1000, 1040))
    assert store.read("raw.events", version=1).count() == 60


@pytest.mark.reliability
def test_delta_spark_fails_loudly_when_its_attempts_are_spent(spark, tmp_path, monkeypatch):
    from liftlake.lib.storage import store as store_module

    monkeypatch.setattr(store_module, "DELTA_COMMIT_ATTEMPTS", 1)
    store = open_store(spark, str(tmp_path / "wh"), "delta-spark")
    result = _conflicting_overwrite(spark, store, tmp_path)
    assert isinstance(result, TableError) and "lost to concurrent commits" in str(result)
    assert store.version("raw.events") == 1  # nothing of A landed; B's rows are the day
    assert sorted(r.event_id for r in store.read("raw.events").collect()) == list(range(2000, 2060))
