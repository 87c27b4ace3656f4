"""Tables written by one backend are read by the other and by independent Delta readers (delta-rs'
log with pyarrow's Parquet reader, and polars' own Delta scan), with the same rows."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from liftlake.lib.storage.readonly_sql import _delta_dataset
from liftlake.lib.storage.store import DeltaRsStore, TableError, open_store, probability_checks

DS = "2026-11-20"


def frame(spark, n: int, offset: int = 0, ds: str = DS):
    return (spark.range(offset, offset + n).withColumnRenamed("id", "event_id")
            .withColumn("p", F.col("event_id") / 100.0)
            .withColumn("label", F.concat(F.lit("e"), F.col("event_id").cast("string")))
            .withColumn("ts", F.to_timestamp(F.lit(f"{ds} 12:00:00")))
            .withColumn("ds", F.lit(ds)))


def spark_rows(df) -> list[tuple]:
    return sorted((r.event_id, r.p, r.label, r.ts, r.ds) for r in df.collect())


def arrow_rows(path: str, version: int | None = None) -> list[tuple]:
    """The rows as a reader without Spark sees them: delta-rs resolves the snapshot's files from the
    log, pyarrow reads the Parquet (what `liftlake sql` hands DuckDB). deltalake 1.6.6's own
    ``to_pyarrow_table()`` and QueryBuilder results do not load into the pinned pyarrow 14."""
    return _utc_rows(_delta_dataset(path, version).to_table().to_pylist())


def polars_rows(path: str, version: int | None = None) -> list[tuple]:
    """The rows as polars reads them (`pl.scan_delta`, what docs/tables.md shows an analyst)."""
    return _utc_rows(pl.scan_delta(path, version=version).collect().to_dicts())


def _utc_rows(rows: list[dict]) -> list[tuple]:
    # Spark hands timestamps to Python as naive datetimes of the session zone (UTC here)
    return sorted((r["event_id"], r["p"], r["label"],
                   r["ts"].astimezone(dt.timezone.utc).replace(tzinfo=None) if r["ts"].tzinfo else r["ts"],
                   r["ds"]) for r in rows)


def test_a_delta_spark_table_reads_the_same_in_delta_rs(spark, tmp_path):
    root = str(tmp_path / "wh")
    writer = open_store(spark, root, "delta-spark")
    writer.write(frame(spark, 8), "raw.events", "overwrite_partitions", [DS])
    writer.write(frame(spark, 5, 100, "2026-11-21"), "raw.events", "overwrite_partitions", ["2026-11-21"])
    writer.write(frame(spark, 3, 200), "raw.events", "overwrite_partitions", [DS])  # replaces the day
    expected = spark_rows(writer.read("raw.events"))
    assert len(expected) == 8
    path = writer.path("raw.events")
    assert arrow_rows(path) == expected  # an independent reader: delta-rs' own, no Spark
    assert arrow_rows(path, version=0) == spark_rows(writer.read("raw.events", version=0))
    assert polars_rows(path) == expected and polars_rows(path, version=0) == arrow_rows(path, version=0)
    reader = DeltaRsStore(spark, root)
    assert spark_rows(reader.read("raw.events")) == expected
    assert reader.version("raw.events") == 2
    assert reader.partition_counts("raw.events") == writer.partition_counts("raw.events") == {DS: 3, "2026-11-21": 5}
    assert DeltaTable(path).metadata().partition_columns == ["ds"]


def test_a_delta_spark_table_with_check_constraints_takes_delta_rs_writes(spark, tmp_path):
    """The CHECK constraints delta-spark puts on a table it creates (writer protocol 3) do not lock
    the embedded store out: delta-rs commits the next day, and a bad row still fails its write."""
    root = str(tmp_path / "wh")
    checks = probability_checks("p")
    open_store(spark, root, "delta-spark").write(frame(spark, 8), "raw.events", "overwrite_partitions", [DS],
                                                 checks=checks)
    assert DeltaTable(open_store(spark, root, "delta-spark").path("raw.events")).protocol().min_writer_version >= 3
    rs = DeltaRsStore(spark, root)
    rs.write(frame(spark, 5, 50, "2026-11-21"), "raw.events", "overwrite_partitions", ["2026-11-21"], checks=checks)
    assert rs.partition_counts("raw.events") == {DS: 8, "2026-11-21": 5}
    with pytest.raises(TableError, match="column p breaks its rule"):
        rs.write(frame(spark, 5, 500, "2026-11-21"), "raw.events", "overwrite_partitions", ["2026-11-21"],
                 checks=checks)
    assert polars_rows(rs.path("raw.events")) == spark_rows(open_store(spark, root, "delta-spark").read("raw.events"))


def test_a_delta_rs_table_reads_the_same_in_delta_spark_and_takes_its_writes(spark, tmp_path):
    root = str(tmp_path / "wh")
    writer = DeltaRsStore(spark, root)
    writer.write(frame(spark, 6), "raw.events", "overwrite_partitions", [DS])
    writer.write(frame(spark, 4, 100, "2026-11-21"), "raw.events", "overwrite_partitions", ["2026-11-21"])
    expected = spark_rows(writer.read("raw.events"))
    spark_store = open_store(spark, root, "delta-spark")
    assert spark_rows(spark_store.read("raw.events")) == expected == arrow_rows(writer.path("raw.events"))
    # the other backend goes on writing the same table, and delta-rs reads its commit
    res = spark_store.write(frame(spark, 2, 300), "raw.events", "overwrite_partitions", [DS])
    assert (res.version, res.rows) == (2, 2)
    assert writer.partition_counts("raw.events") == {DS: 2, "2026-11-21": 4}
    assert arrow_rows(writer.path("raw.events")) == spark_rows(spark_store.read("raw.events"))
    assert polars_rows(writer.path("raw.events")) == arrow_rows(writer.path("raw.events"))
    assert polars_rows(writer.path("raw.events"), version=1) == expected
