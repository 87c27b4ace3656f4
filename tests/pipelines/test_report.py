"""A small configuration of the evidence report runs in the suite so that it cannot rot."""
from __future__ import annotations

import argparse
import json
import os

import pytest

from liftlake.lib.cli.runner import JobContext
from liftlake.lib.config import load_config
from liftlake.lib.config.loader import conf_dir


@pytest.mark.slow
def test_small_report_end_to_end(spark, tmp_path):
    out = tmp_path / "reports"
    # `liftlake report --quick`: the preset under the command line's own settings
    quick = os.path.join(conf_dir(), "report-quick.yaml")
    sets = [f"warehouse.path={tmp_path / 'wh'}", f"report.out={out}"]
    config = load_config([quick], sets, env={})
    args = argparse.Namespace(conf=[quick], overrides=sets, json=False, model=None, quiet_config=True)
    from liftlake.lib.evaluation.report import EXTERNAL_T_LEARNER as EXTERNAL
    from liftlake.lib.pipelines.report import run_report

    path = run_report(JobContext("report", config, args, ["2026-11-20"], _spark=spark))
    text = open(path, encoding="utf-8").read()
    assert "## CVR over the entire exposure space" in text and "| escm2_dr |" in text
    assert "| escim_max |" in text  # trained on the counterfactual labels the report's world wrote
    assert "| sklearn gradient boosting, naive (external) |" in text  # an outside CVR model on the same rows
    assert "What propensity weighting can reach here" in text  # the SNIPS means of the world, on its rows
    assert "This run took " in text and "minutes." in text
    assert "the CVR world: its last day, trained on the earlier ones" in text  # report.cvr_split_by=day
    assert "### syn1" in text and "| unimvt |" in text and "| t_learner |" in text
    assert "| sklift T-learner (external) |" in text and "scikit-uplift's TwoModels on the same rows" in text
    assert "## Multi-treatment uplift" in text and "| hmum |" in text
    # CausalML's learners on the same rows: four rows in the coupon table, three in the multi-treatment one
    for row in ("S-learner, LightGBM", "T-learner, LightGBM", "X-learner, LightGBM", "uplift random forest"):
        assert text.count(f"| CausalML {row} (external) |") == (1 if row == "uplift random forest" else 3), row
    assert "syn1: outside yardstick, CausalML's learners fitted on the same rows" in text
    assert "outside yardstick, CausalML's learners fitted on the same rows (mean over seeds): Spearman with the " \
           "true tau r1 t1" in text
    assert "ESMM over-estimates CVR" in text  # the claim line is computed, whatever its verdict
    assert "Seeds [1] (1 per cell)" in text
    # the second run with one optimizer for all, and ESCIM's label-rate sweep with its claim
    assert "## CVR, one optimizer for every model" in text and "learning rate 0.001, batch 1024" in text
    assert "## Multi-treatment uplift, one optimizer for every model" in text
    assert "## ESCIM: AUC vs. the counterfactual label rate" in text
    assert "| 0.01 |" in text and "| 0.1 |" in text and "the max / ratio cut-offs sit near" in text
    assert "figures/escim_label_rate.png" in text
    # the truth wired in: reference rows in the tables, the resolution table, verdicts (one seed: on the
    # bootstrap of the world's test rows), the switch claim (it reads switch_total_oracle) and the ESCIM
    # label quality
    for row in ("| oracle (truth) |", "| constant (train mean) |", "| random (shuffled truth) |"):
        assert row in text
    assert "Can each metric tell the oracle from an uninformed prediction" in text
    assert "With fewer than 3 seeds the interval is instead the paired bootstrap over each world's test rows " \
           "(40 resamples" in text
    assert "HMUM's switches" in text and "the truth's best" in text
    switches = next(line for line in text.splitlines() if line.startswith("- HMUM's switches") and " -> " in line)
    assert "paired bootstrap over test rows, n = 1" in switches  # a derived rival (better of two) has replicates
    # a resolution row judged on the replicates, not n/a
    assert "| CVR AUC vs. true CVR | " in text and "| CVR AUC vs. true CVR | n/a" not in text
    # the verdicts in words, first: with one seed the bootstrap judges; the sweep's rival has no replicates
    assert text.index("## What this run decides") < text.index("## CVR over the entire exposure space")
    judged = next(line for line in text.splitlines() if line.startswith("Of the "))
    assert "at this scale (1 seed(s)" in judged and "could not be judged (one seed, or not measured)" in judged
    assert "-> n/a (1 seed): " in text  # the ESCIM sweep's best rate: no replicates
    assert "times the test users" in text or "Inconclusive here" not in text
    assert "Counterfactual label quality" in text and "| max | " in text
    assert "![calibration esmm](figures/calibration_esmm.png)" in text
    results = json.loads((out / "report.json").read_text(encoding="utf-8"))
    gbdt = results["cvr"][0]["sklearn gradient boosting, naive (external)"]
    assert 0 <= gbdt["cvr_true_auc"] <= 1 and "ref_oracle__cvr_true_auc" in gbdt
    esmm = results["cvr"][0]["esmm"]
    assert {"cvr_true_auc", "cvr_true_logloss", "cvr_true_ece", "cvr_true_bias", "cvr_entire_ece"} <= set(esmm)
    assert esmm["ref_constant__cvr_true_auc"] == pytest.approx(0.5)  # the train mean from the Spark aggregate
    assert esmm["ref_oracle__cvr_true_auc"] > 0.5
    assert 3_600 <= esmm["n_rows"] <= 4_000  # the last day's exposures (by user: ~10 % of both days)
    unimvt = results["coupon"]["syn1"][0]["unimvt"]
    assert {"eta_sqrt_pehe", "eta_spearman", "eta_true_auuc", "coupon_policy_over_best_constant"} <= set(unimvt)
    assert unimvt["ref_oracle__eta_true_auuc"] == pytest.approx(1.0)
    assert "ref_constant__eta_sqrt_pehe" in results["coupon"]["syn1"][0][EXTERNAL]
    hmum = results["multi"][0]["hmum"]
    assert {"tau_r1_k1_true_auuc", "tau_r2_k2_sqrt_pehe", "ref_constant__tau_r1_k1_sqrt_pehe"} <= set(hmum)
    quality = results["escim_label_rate_sweep"][0]["label_quality"]
    assert set(quality) == {"max", "ratio"} and {"labelled_share", "labelled_true_rate", "lift"} <= set(quality["max"])
    assert results["escim_label_rate_sweep"][0]["transform_rates"]["max"] == quality["max"]["labelled_share"]
    assert results["escim_label_quality"] == [quality]  # the CVR section's table: the same world's labels
    assert text.count("Counterfactual label quality") == 1
    pngs = [f for f in os.listdir(out / "figures") if f.endswith(".png")]
    assert pngs and {"true_gain_syn1.png", "true_gain_r1_k1.png"} <= set(pngs)  # the truth-based curves
    for name in pngs:
        with open(out / "figures" / name, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{name}" in text


def test_world_settings_give_user_level_worlds_their_size_grid_and_cost():
    from liftlake.lib.pipelines.report import world_settings
    from liftlake.lib.sim.settings import SimulatorConfig

    cfg = load_config([], ["report.uplift_users=30000", "report.coupon_rct_share=0.5",
                           "report.treatment_rct_share=0.4"], env={}).report
    cvr = world_settings("default", 3, cfg)
    # the CVR world carries its split: its models and ESCIM's labeler train on the same rows
    assert cvr == ["simulator.preset=default", "simulator.seed=3", f"simulator.exposures={cfg.exposures}",
                   "train.split_by=day"]
    syn3 = world_settings("syn3", 3, cfg)
    assert {"simulator.users=30000", "simulator.coupon_rct_share=0.5", "simulator.treatment_rct_share=0.4",
            "score.coupon_grid=[1,1.6,2.4,4]", "score.coupon_cost_per_unit=0.022"} <= set(syn3)
    multi = world_settings("multi_treatment", 3, cfg)
    assert "simulator.users=30000" in multi and not any(s.startswith("score.") for s in multi)
    # every setting the report makes loads (the grid as YAML, the cost in range)
    loaded = load_config([], syn3, env={})
    assert loaded.score.coupon_grid == SimulatorConfig(preset="syn3").grid == [1.0, 1.6, 2.4, 4.0]
    assert loaded.simulator.users == 30000


@pytest.mark.slow
def test_a_cached_world_is_rebuilt_when_its_stamp_differs(spark, tmp_path):
    from liftlake.lib.pipelines.report import WORLD_STAMP, _reset_stale_world, _world

    sets = ["report.exposures=1000", "report.days=1", "report.cvr_split_by=user", "spark.master=local[1]"]
    cfg = load_config([], sets, env={}).report
    args = argparse.Namespace(conf=[], overrides=sets, json=False, model=None, quiet_config=True)

    def world():
        return _world(args, spark, str(tmp_path), "syn1", 5, cfg, "2026-11-20")

    ctx = world()
    _reset_stale_world(ctx)
    stamp = tmp_path / "syn1-seed5" / WORLD_STAMP
    made = json.loads(stamp.read_text(encoding="utf-8"))
    assert made["simulator"]["preset"] == "syn1" and made["days"] == ["2026-11-20"] and len(made["code"]) == 64
    assert ctx.store.version("features.samples") == 0
    _reset_stale_world(world())  # same settings, same code: the tables are kept as they are
    assert world().store.version("features.samples") == 0
    (tmp_path / "syn1-seed5" / "stray.txt").write_text("left by an older run")
    stamp.write_text(json.dumps(made | {"code": "0" * 64}), encoding="utf-8")  # made by other code
    _reset_stale_world(world())
    assert world().store.version("features.samples") == 0  # rebuilt from scratch, not overwritten on top
    assert not (tmp_path / "syn1-seed5" / "stray.txt").exists()
    assert json.loads(stamp.read_text(encoding="utf-8")) == made
