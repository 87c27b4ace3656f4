"""Faults during a write: after each, the table is exactly as before."""
from __future__ import annotations

import errno
import os

import pytest
from pyspark.sql import functions as F

from liftlake.lib import store as store_module
from liftlake.lib.store import DeltaRsStore


def frame(spark, n, ds="2026-11-20", offset=0):
    return spark.range(offset, offset + n).withColumnRenamed("id", "event_id").withColumn("ds", F.lit(ds))


def test_disk_full_while_moving_files_leaves_the_table_as_before(spark, tmp_path, monkeypatch):
    store = DeltaRsStore(spark, str(tmp_path / "wh"))
    store.write(frame(spark, 50).repartition(3), "raw.events", "overwrite_partitions", ["2026-11-20"])
    real_replace = os.replace
    calls = {"n": 0}

    def replace_until_full(src, dst):
        calls["n"] += 1
        if calls["n"] == 2:  # the second data file does not fit
            raise OSError(errno.ENOSPC, "No space left on device", dst)
        return real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "replace", replace_until_full)
    with pytest.raises(OSError, match="No space left"):
        store.write(frame(spark, 80, offset=1000).repartition(3), "raw.events", "overwrite_partitions",
                    ["2026-11-20"])
    monkeypatch.setattr(store_module.os, "replace", real_replace)
    assert store.version("raw.events") == 0
    assert sorted(r.event_id for r in store.read("raw.events").collect()) == list(range(50))
    on_disk = {os.path.relpath(os.path.join(d, f), store.path("raw.events"))
               for d, _, fs in os.walk(store.path("raw.events")) for f in fs if f.endswith(".parquet")}
    assert on_disk == store.referenced_files("raw.events")  # the moved file was taken back


def test_disk_full_during_the_commit_leaves_the_table_as_before(spark, tmp_path, monkeypatch):
    store = DeltaRsStore(spark, str(tmp_path / "wh"))
    store.write(frame(spark, 10), "raw.events", "append")
    from deltalake import DeltaTable

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", no_space)
    with pytest.raises(OSError):
        store.write(frame(spark, 10, offset=10), "raw.events", "append")
    monkeypatch.undo()
    assert store.version("raw.events") == 0 and store.read("raw.events").count() == 10
