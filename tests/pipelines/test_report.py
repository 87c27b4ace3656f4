"""A small configuration of the evidence report runs in the suite so that it cannot rot."""
from __future__ import annotations

import argparse
import os

import pytest

from liftlake.lib.cli.runner import JobContext
from liftlake.lib.config import load_config


@pytest.mark.slow
def test_small_report_end_to_end(spark, tmp_path):
    out = tmp_path / "reports"
    sets = [f"warehouse.path={tmp_path / 'wh'}", f"report.out={out}", "report.seeds=[1]", "report.exposures=4000",
            "report.days=1", "report.epochs=1", "report.cvr_models=[esmm,escm2_dr,escim_max]", "report.coupon_presets=[syn1]",
            "report.coupon_models=[unimvt,t_learner]", "report.multi_models=[hmum,s_learner]",
            "escim_labels.params={pretrain_epochs: 1, vae_epochs: 1}", "report.escim_label_rates=[0.01,0.1]"]
    config = load_config([], sets, env={})
    args = argparse.Namespace(conf=[], overrides=sets, json=False, model=None, quiet_config=True)
    from liftlake.lib.pipelines.report import run_report

    path = run_report(JobContext("report", config, args, ["2026-11-20"], _spark=spark))
    text = open(path, encoding="utf-8").read()
    assert "## CVR over the entire exposure space" in text and "| escm2_dr |" in text
    assert "| escim_max |" in text  # trained on the counterfactual labels the report's world wrote
    assert "### syn1" in text and "| unimvt |" in text and "| t_learner |" in text
    assert "| sklift T-learner (external) |" in text and "scikit-uplift's TwoModels on the same rows" in text
    assert "## Multi-treatment uplift" in text and "| hmum |" in text
    assert "ESMM over-estimates CVR" in text  # the claim line is computed, whatever its verdict
    assert "Seeds [1] (1 per cell)" in text
    # the second run with one optimizer for all, and ESCIM's label-rate sweep with its claim
    assert "## CVR, one optimizer for every model" in text and "learning rate 0.001, batch 1024" in text
    assert "## Multi-treatment uplift, one optimizer for every model" in text
    assert "## ESCIM: AUC vs. the counterfactual label rate" in text
    assert "| 0.01 |" in text and "| 0.1 |" in text and "the max / ratio cut-offs sit near" in text
    assert "figures/escim_label_rate.png" in text
    pngs = [f for f in os.listdir(out / "figures") if f.endswith(".png")]
    assert pngs
    for name in pngs:
        with open(out / "figures" / name, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{name}" in text
