"""The escim-labels job's label-quality line (the Spark aggregate behind it runs in test_score.py)."""
from __future__ import annotations

import math

from liftlake.lib.pipelines.escim_labels import quality_line


def test_the_quality_line_gives_each_transform_its_share_and_lift():
    q = {"nonclicked": 1000.0, "mean_pcvr_cf": 0.05, "share_max": 0.002, "share_ratio": 0.04,
         "with_truth": 1000.0, "base_rate": 0.05, "true_rate_max": 0.2, "true_rate_ratio": 0.1}
    line = quality_line("2026-11-20", q)
    assert line.startswith("escim-labels 2026-11-20: label quality on 1000 non-clicked rows")
    assert "label_max share 0.2000%" in line and "label_ratio share 4.0000%" in line
    assert "max 0.2000 (lift 4.00)" in line and "ratio 0.1000 (lift 2.00)" in line


def test_without_truth_or_labels_there_is_no_lift():
    q = {"nonclicked": 10.0, "mean_pcvr_cf": 0.05, "share_max": 0.0, "share_ratio": 0.1}
    assert quality_line("2026-11-20", q).endswith("(no sim.truth for the day: no lift)")
    nothing = {**q, "with_truth": 10.0, "base_rate": 0.05, "true_rate_max": math.nan, "true_rate_ratio": 0.1}
    assert "max nan (lift nan)" in quality_line("2026-11-20", nothing)
