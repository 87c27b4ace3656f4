"""The ESCIM training rows at a fixed counterfactual label rate (Fig. 3's sweep), and labeler versions."""
from __future__ import annotations

import pytest

from liftlake.lib.training.trainset import top_share_label
from liftlake.models.registry import ModelConfigError, build_model


def scored(spark):
    # ten non-clicked exposures with pcvr_cf 0.01..0.10, two clicked ones scored far higher: the
    # cut-off must come from the non-clicked rows alone, and clicked rows are never labelled
    rows = [(f"n{i}", 0, 0.01 * i) for i in range(1, 11)] + [("c1", 1, 0.9), ("c2", 1, 0.95)]
    return spark.createDataFrame(rows, "exposure_id string, click int, pcvr_cf double")


@pytest.mark.parametrize("rate, positives", [(0.3, {"n8", "n9", "n10"}), (0.1, {"n10"}), (0.5, {"n6", "n7", "n8", "n9", "n10"})])
def test_rate_labels_mark_the_top_share_of_non_clicked_rows(spark, rate, positives):
    got = {r.exposure_id: r.label for r in top_share_label(scored(spark), rate, "label").collect()}
    assert {e for e, v in got.items() if v == 1} == positives
    assert len(got) == 12 and set(got.values()) == {0, 1}


def test_a_zero_share_labels_nothing(spark):
    assert {r.label for r in top_share_label(scored(spark), 0.0, "label").collect()} == {0}


def test_label_rate_outside_the_unit_interval_is_refused():
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ModelConfigError, match="label_rate"):
            build_model("escim_ratio", [3, 4], {"label_rate": bad})
    assert build_model("escim_ratio", [3, 4], {"label_rate": 0.02}).params.label_rate == 0.02
