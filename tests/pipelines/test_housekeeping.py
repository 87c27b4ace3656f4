"""`liftlake housekeeping` removes what killed and finished jobs leave behind, past the retention, and
nothing a reader or a running job still needs."""
from __future__ import annotations

import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from liftlake.lib.cli.main import main
from liftlake.lib.storage.readonly_sql import duckdb_query

DS = "2026-11-20"


def age(path, hours: float) -> None:
    """Set the mtime of ``path`` and everything under it ``hours`` into the past."""
    then = time.time() - hours * 3600
    for folder, dirs, files in os.walk(path, topdown=False):
        for name in files + dirs:
            os.utime(os.path.join(folder, name), (then, then))
    os.utime(path, (then, then))


def make(path, text="x", hours=0.0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    if hours:
        age(path, hours)
    return path


@pytest.fixture()
def wh(tmp_path):
    root = tmp_path / "wh"
    table = root / "scores" / "cvr"
    rows = pa.table({"exposure_id": ["a", "b"], "cvr": [0.1, 0.2], "ds": [DS] * 2})
    write_deltalake(str(table), rows, partition_by=["ds"])
    write_deltalake(str(table), rows, partition_by=["ds"], mode="overwrite")  # v0's file: time travel only
    part = table / f"ds={DS}"
    pq.write_table(rows.drop(["ds"]), str(part / "orphan-old.parquet"))  # a killed writer's file
    age(part / "orphan-old.parquet", 200)
    pq.write_table(rows.drop(["ds"]), str(part / "orphan-new.parquet"))  # a running writer's file
    paths = {
        "table_staging_old": make(str(table / "_staging" / "txn-old" / "part-0.parquet"), hours=30),
        "table_staging_new": make(str(table / "_staging" / "txn-new" / "part-0.parquet")),
        "model_staging_old": make(str(root / "_models" / "dcmt" / "_staging-1-aaa" / "weights.pt"), hours=30),
        "model_staging_new": make(str(root / "_models" / "dcmt" / "_staging-2-bbb" / "weights.pt")),
        "version": make(str(root / "_models" / "dcmt" / "v0001" / "weights.pt"), hours=5000),
        "current": make(str(root / "_models" / "dcmt" / "CURRENT"), "v0001", hours=5000),
        "checkpoint_old": make(str(root / "_models" / "dcmt" / "_checkpoints" / "run-a" / "step-10.pt"), hours=200),
        "checkpoint_new": make(str(root / "_models" / "dcmt" / "_checkpoints" / "run-b" / "step-10.pt"), hours=1),
        "cache_old": make(str(root / "_train_cache" / "0123456789abcdef" / "_DONE.json"), "{}", hours=200),
        "cache_new": make(str(root / "_train_cache" / "fedcba9876543210" / "_DONE.json"), "{}", hours=2),
        "spec": make(str(root / "_features" / "spec" / "abc" / "spec.json"), "{}", hours=5000),
    }
    for key in ("table_staging_old", "model_staging_old", "checkpoint_old", "cache_old"):
        age(os.path.dirname(paths[key]), 200 if "staging" not in key else 30)
    return root, table, paths


def _rows(root):
    return duckdb_query(str(root), "select count(*) from scores.cvr", limit=1)[1][0][0]


@pytest.mark.reliability
def test_housekeeping_removes_only_what_is_past_its_retention(wh, capsys):
    root, table, paths = wh
    before = sorted(os.listdir(table / f"ds={DS}"))
    assert main(["housekeeping", "--dry-run", "--set", f"warehouse.path={root}"]) == 0
    err = capsys.readouterr().err
    assert "would remove 1 table file(s)" in err and "would remove 2 staging(s)" not in err
    assert sorted(os.listdir(table / f"ds={DS}")) == before and all(os.path.exists(p) for p in paths.values())

    assert main(["housekeeping", "--set", f"warehouse.path={root}"]) == 0
    err = capsys.readouterr().err
    assert "removed 1 table file(s)" in err and "removed 1 staging(s)" in err and "removed 1 train cache(s)" in err
    left = sorted(os.listdir(table / f"ds={DS}"))
    assert "orphan-old.parquet" not in left and "orphan-new.parquet" in left
    assert len(left) == len(before) - 1  # the overwritten version's file stays for time travel
    gone = {k for k, p in paths.items() if not os.path.exists(os.path.dirname(p))}
    assert gone == {"table_staging_old", "model_staging_old", "checkpoint_old", "cache_old"}
    assert _rows(root) == 2  # the table reads as before, and its overwritten version still does
    assert sorted(DeltaTable(str(table)).file_uris()) == sorted(DeltaTable(str(table), version=1).file_uris())
    assert duckdb_query(str(root), "select count(*) from scores.cvr", limit=1, as_of=["scores.cvr=0"])[1] == [(2,)]
    # a second run finds nothing more to do
    assert main(["housekeeping", "--set", f"warehouse.path={root}"]) == 0
    assert "removed 0 table file(s)" in capsys.readouterr().err


@pytest.mark.reliability
def test_a_train_cache_in_use_is_kept(wh, capsys):
    root, _, paths = wh
    os.utime(paths["cache_old"])  # what training does each time it reads the cache
    assert main(["housekeeping", "--set", f"warehouse.path={root}"]) == 0
    assert os.path.exists(paths["cache_old"])


def test_housekeeping_compacts_a_day_of_small_files_once(tmp_path, capsys):
    """A day written in five small appends (an hourly loader's pattern) becomes one file in a commit
    that changes no row; with --dry-run, or with housekeeping.compact false, nothing is committed."""
    root = tmp_path / "wh"
    table = root / "raw" / "events"
    for i in range(5):
        write_deltalake(str(table), pa.table({"event_id": [i], "ds": [DS]}), partition_by=["ds"], mode="append")
    args = ["housekeeping", "--set", f"warehouse.path={root}"]
    assert main([*args, "--dry-run"]) == 0
    assert "would compact 1 partition(s)" in capsys.readouterr().err
    assert main([*args, "--set", "housekeeping.compact=false"]) == 0
    assert DeltaTable(str(table)).version() == 4
    assert main(args) == 0
    assert "compacted 1 partition(s)" in capsys.readouterr().err
    compacted = DeltaTable(str(table))
    assert compacted.version() == 5 and len(compacted.file_uris()) == 1
    assert duckdb_query(str(root), "select sum(event_id), count(*) from raw.events", limit=1)[1] == [(10, 5)]
    assert main(args) == 0
    assert "compacted 0 partition(s)" in capsys.readouterr().err and DeltaTable(str(table)).version() == 5
