"""Faults during a write: after each, the table is exactly as before."""
from __future__ import annotations

import errno
import os

import pytest
from pyspark.sql import functions as F

from liftlake.lib.storage import store as store_module
from liftlake.lib.storage.store import DeltaRsStore


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


@pytest.fixture()
def tiny_filesystem(tmp_path):
    """A real 4 MiB tmpfs (root with CAP_SYS_ADMIN, as on the CI machine); the tests above inject the
    same errno where mounting is not allowed."""
    import subprocess

    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); covered by the injected ENOSPC tests")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def free_bytes(path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_a_real_full_disk_fails_the_write_and_leaves_the_table_as_before(spark, tiny_filesystem):
    def noisy(n, offset=0):  # incompressible doubles: 16 bytes a row on disk
        return frame(spark, n, offset=offset).withColumn("noise", F.rand(seed=offset)) \
            .withColumn("noise2", F.rand(seed=offset + 1))

    store = DeltaRsStore(spark, str(tiny_filesystem / "wh"))
    store.write(noisy(200), "raw.events", "overwrite_partitions", ["2026-11-20"])
    before = (store.version("raw.events"), sorted(r.event_id for r in store.read("raw.events").collect()))
    with pytest.raises(Exception, match="No space left on device"):  # ~24 MB into what is left of 4 MiB
        store.write(noisy(1_500_000, offset=10_000), "raw.events", "overwrite_partitions", ["2026-11-20"])
    assert (store.version("raw.events"), sorted(r.event_id for r in store.read("raw.events").collect())) == before
    # the failed write took its staged files with it (and had the JVM close the streams of its failed
    # tasks, which hold deleted files' space): the space comes back and the next write lands
    assert not os.listdir(os.path.join(store.path("raw.events"), "_staging"))
    import time

    deadline = time.time() + 30
    while free_bytes(tiny_filesystem) < 2 * 2**20 and time.time() < deadline:
        time.sleep(0.5)
    assert free_bytes(tiny_filesystem) >= 2 * 2**20
    store.write(noisy(300, offset=500), "raw.events", "overwrite_partitions", ["2026-11-20"])
    assert store.read("raw.events").count() == 300 and store.version("raw.events") == before[0] + 1
