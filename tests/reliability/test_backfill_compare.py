"""The comparison bench/backfill/compare.py makes to say a backfilled day equals its one-day run: two real Delta
tables written through the store, fingerprinted per day. Row order and file layout must not matter;
one changed value, a missing row or a duplicated row must."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from liftlake.lib.storage.store import DeltaRsStore

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ is a folder of the checkout, not an installed package
    sys.path.insert(0, str(REPO))
from bench.backfill.compare import compare_table, fingerprint  # noqa: E402
from bench.backfill.report import verdict  # noqa: E402

DAY = "2026-11-20"
ROWS = [(f"e{i}", i % 3, float(i) / 7.0, None if i % 4 == 0 else f"u{i}", f"v000{i % 2 + 1}", DAY)
        for i in range(12)]
COLUMNS = ["exposure_id", "click", "pcvr_cf", "user_id", "labeler_version", "ds"]


def write(spark, root, rows, partitions=1, name="labels.escim_counterfactual"):
    store = DeltaRsStore(spark, str(root))
    df = spark.createDataFrame(rows, COLUMNS).repartition(partitions)
    store.write(df, name, "overwrite_partitions", [DAY])
    return store


@pytest.fixture(scope="module")
def a(spark, tmp_path_factory):
    """The day as one warehouse holds it (one file); each test writes the other side."""
    return write(spark, tmp_path_factory.mktemp("backfilled"), ROWS, partitions=1)


def test_same_rows_in_another_order_and_file_layout_match(spark, tmp_path, a):
    b = write(spark, tmp_path / "b", list(reversed(ROWS)), partitions=3)
    assert len(b.referenced_files("labels.escim_counterfactual")) > len(a.referenced_files("labels.escim_counterfactual"))
    res = compare_table(a, b, "labels.escim_counterfactual", DAY)
    assert res["match"], res
    assert res["rows_a"] == res["rows_b"] == len(ROWS)
    assert res["hash_a"] == res["hash_b"]


def test_one_changed_value_is_a_mismatch_naming_its_column(spark, tmp_path, a):
    changed = list(ROWS)
    changed[5] = (*changed[5][:2], changed[5][2] + 1e-12, *changed[5][3:])  # one double, last bits
    b = write(spark, tmp_path / "b", changed)
    res = compare_table(a, b, "labels.escim_counterfactual", DAY)
    assert not res["match"]
    assert res["rows_a"] == res["rows_b"] == len(ROWS)
    assert res["columns"] == ["pcvr_cf"]
    assert "content differs in pcvr_cf" in res["reason"]


def test_missing_duplicated_and_moved_nulls_are_mismatches(spark, tmp_path, a):
    fewer = write(spark, tmp_path / "fewer", ROWS[:-1])
    res = compare_table(a, fewer, "labels.escim_counterfactual", DAY)
    assert not res["match"] and "rows 12 vs 11" in res["reason"]
    # Same row count, one row twice and another gone.
    dup = write(spark, tmp_path / "dup", ROWS[:-1] + [ROWS[0]])
    assert not compare_table(a, dup, "labels.escim_counterfactual", DAY)["match"]
    # A null moved from one column to another is not the same row.
    df = spark.createDataFrame([("x", None), (None, "x")], "p string, q string")
    swapped = spark.createDataFrame([(None, "x"), (None, "x")], "p string, q string")
    assert fingerprint(df)["hash"] != fingerprint(swapped)["hash"]


def test_excluded_columns_and_missing_partitions(spark, tmp_path, a):
    relabelled = [(*r[:4], "v0042", r[5]) for r in ROWS]  # another warehouse's labeler counter
    b = write(spark, tmp_path / "b", relabelled)
    table = "labels.escim_counterfactual"
    assert compare_table(a, b, table, DAY)["columns"] == ["labeler_version"]
    res = compare_table(a, b, table, DAY, exclude=["labeler_version"])
    assert res["match"] and res["excluded"] == ["labeler_version"]
    # A day the other side does not have, and a table it does not have.
    res = compare_table(a, b, table, "2026-11-21")
    assert res["match"] and res["rows_a"] is None  # neither side has the day
    res = compare_table(a, DeltaRsStore(spark, str(tmp_path / "empty")), table, DAY)
    assert not res["match"] and res["reason"] == "missing in reference"
    # The fingerprint of a day reads that partition only: another day on one side changes nothing.
    other_day = spark.createDataFrame([("e99", 1, 0.5, "u99", "v0001", "2026-11-21")], COLUMNS)
    b.write(other_day, table, "overwrite_partitions", ["2026-11-21"])
    assert compare_table(a, b, table, DAY, exclude=["labeler_version"])["match"]
    res = compare_table(a, b, table, "2026-11-21")
    assert not res["match"] and res["reason"] == "missing in backfill"
    assert fingerprint(b.read(table).where(F.col("ds") == DAY))["hash"] == \
        fingerprint(b.read(table, partitions=[DAY]))["hash"]


def _result(score_rows: dict, seeded: bool) -> dict:
    """A finished one-day backfill whose tables all match; ``score_rows`` are the backfill's rows per
    scores table."""
    rows = [{"table": "raw.exposures", "match": True, "rows_a": 3000}] + [
        {"table": t, "match": True, "rows_a": n} for t, n in score_rows.items()]
    seed = {"day": "2026-11-19", "models": {"dcmt": {"version": "v0001", "gate_passed": True}}} if seeded else None
    backfill = {"runs_expected": 1, "runs_success": 1, "runs_failed": 0, "tasks_failed": 0, "failed_tries": [],
                "timed_out": False, "wall_s": 60.0, "seed": seed}
    return {"backfill": backfill, "comparison": {DAY: rows}, "config": {"timeout_min": 120}}


def test_a_day_without_scores_fails_the_bench_when_models_were_seeded():
    """Two empty score tables match, and would say nothing about scoring: with seeded models a day must
    have scores in the backfill."""
    assert verdict(_result({"scores.cvr": 3000, "scores.uplift_user": 900}, seeded=True))[0] == "PASS"
    status, line = verdict(_result({"scores.cvr": 0}, seeded=True))
    assert status == "FAIL" and "1 days without scores" in line
    assert verdict(_result({}, seeded=True))[0] == "FAIL"
    assert verdict(_result({}, seeded=False))[0] == "PASS"  # --models '': nothing to score, nothing asked
