"""train.split_by: the window's rows split by user (every day alike) or chronologically (test on the
last day, train on the earlier ones, as the CVR papers split their logs); training and evaluation read
the same rule, and a model keeps the rule it was trained with (end to end: the small report's CVR world,
tests/pipelines/test_report.py; a one-day window refused: tests/pipelines/test_score.py)."""
from __future__ import annotations

import pytest

from liftlake.lib.training.trainset import window_split

DAYS = ["2026-11-19", "2026-11-20"]


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
