"""Verdicts by paired differences: the interval rule on made-up intervals, the t interval and MDD worked by
hand (quantiles from scipy.stats.t), the bootstrap over one world's rows, and whether a metric resolves."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from liftlake.lib.evaluation.cvr_metrics import auc
from liftlake.lib.evaluation.verdicts import (
    bootstrap_diff_ci,
    bootstrap_verdict,
    minimal_detectable_difference,
    paired_verdict,
    replicate_verdict,
    replicates_resolve,
    resolves,
    student_t_ppf,
    student_t_sf,
    verdict_from_interval,
)


# --------------------------------------------------------------------------- the interval rule
@pytest.mark.parametrize("low, high, direction, expected", [
    (0.01, 0.03, "greater", "holds"),
    (-0.03, -0.01, "greater", "contradicted"),
    (-0.01, 0.02, "greater", "inconclusive"),
    (0.0, 0.02, "greater", "inconclusive"),  # touching 0 does not exclude it
    (-0.03, -0.01, "less", "holds"),  # e.g. a lower sqrt-PEHE than the rival
    (0.01, 0.03, "less", "contradicted"),
    (-0.01, 0.0, "less", "inconclusive"),
    (0.02, 0.02, "greater", "holds"),  # a zero-width interval (every seed gave the same difference)
])
def test_verdict_from_made_up_intervals(low, high, direction, expected):
    assert verdict_from_interval(low, high, direction) == expected


def test_verdict_from_interval_rejects_bad_input():
    with pytest.raises(ValueError, match="direction"):
        verdict_from_interval(0.1, 0.2, "bigger")
    with pytest.raises(ValueError, match="ci_low <= ci_high"):
        verdict_from_interval(0.2, 0.1)
    with pytest.raises(ValueError, match="ci_low <= ci_high"):
        verdict_from_interval(math.nan, 0.1)


# --------------------------------------------------------------------------- Student t, no scipy in the library
def test_student_t_matches_scipy():
    for dof in (1, 2, 3, 4, 7, 19, 100, 2.5):
        for p in (0.01, 0.2, 0.5, 0.8, 0.9, 0.975, 0.995):
            assert student_t_ppf(p, dof) == pytest.approx(stats.t.ppf(p, dof), rel=1e-10, abs=1e-12)
        for t in (-4.0, -0.7, 0.0, 0.3, 1.96, 12.7, math.inf):
            assert student_t_sf(t, dof) == pytest.approx(stats.t.sf(t, dof), rel=1e-10, abs=1e-14)
    with pytest.raises(ValueError, match="probability"):
        student_t_ppf(1.0, 3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        student_t_ppf(0.9, 0)


# --------------------------------------------------------------------------- the paired t interval by hand
# model [0.80, 0.82, 0.79, 0.83] vs rival [0.78, 0.79, 0.78, 0.80]: d = [0.02, 0.03, 0.01, 0.03]
#   mean 0.0225; deviations [-.0025, .0075, -.0125, .0075], squares sum 2.75e-4, sd = sqrt(2.75e-4 / 3)
#   CI = 0.0225 +- t_{.975, 3} sd / 2 = 0.0225 +- 3.1824 * 0.0047871 = [0.00727, 0.03773] -> holds
#   MDD = (t_{.975, 3} + t_{.8, 3}) sd / 2 = (3.1824 + 0.9785) * 0.0047871 = 0.01992
MODEL = [0.80, 0.82, 0.79, 0.83]
RIVAL = [0.78, 0.79, 0.78, 0.80]
SD = math.sqrt(2.75e-4 / 3)


def test_paired_verdict_by_hand():
    v = paired_verdict(MODEL, RIVAL)
    half_width = stats.t.ppf(0.975, 3) * SD / math.sqrt(4)
    assert v.verdict == "holds"
    assert v.n == 4
    assert v.mean_diff == pytest.approx(0.0225)
    assert v.sd_diff == pytest.approx(SD)
    assert v.ci_low == pytest.approx(0.0225 - half_width)
    assert v.ci_high == pytest.approx(0.0225 + half_width)
    assert (v.ci_low, v.ci_high) == pytest.approx((0.00727, 0.03773), abs=1e-5)
    assert v.mdd == pytest.approx((stats.t.ppf(0.975, 3) + stats.t.ppf(0.8, 3)) * SD / 2)
    assert v.mdd == pytest.approx(0.01992, abs=1e-5)
    assert v.describe().startswith("holds: +0.0225, 95% CI [+0.007265, +0.03773], paired t over seeds, n = 4")


def test_paired_verdict_contradicted_both_ways():
    assert paired_verdict(RIVAL, MODEL).verdict == "contradicted"
    assert paired_verdict(MODEL, RIVAL, direction="less").verdict == "contradicted"
    assert paired_verdict(RIVAL, MODEL, direction="less").verdict == "holds"


def test_paired_verdict_inconclusive_reports_the_mdd():
    # d = [0.02, -0.01, 0.015, -0.02]: mean 0.00125, sd = sqrt(sum (d - mean)^2 / 3)
    d = np.array([0.02, -0.01, 0.015, -0.02])
    v = paired_verdict(0.5 + d, np.full(4, 0.5))
    sd = math.sqrt(np.sum((d - d.mean()) ** 2) / 3)
    assert v.verdict == "inconclusive"
    assert v.mdd == pytest.approx((stats.t.ppf(0.975, 3) + stats.t.ppf(0.8, 3)) * sd / 2)
    assert f"|difference| >= {v.mdd:.4g} (power 0.8)" in v.describe()


def test_two_seeds_use_one_degree_of_freedom_and_alpha_changes_the_width():
    v = paired_verdict([0.7, 0.72], [0.69, 0.70])  # d = [0.01, 0.02]: mean .015, sd .00707
    assert v.ci_high - v.ci_low == pytest.approx(2 * stats.t.ppf(0.975, 1) * math.sqrt(0.00005) / math.sqrt(2))
    assert v.verdict == "inconclusive"  # t_{.975, 1} = 12.7: two seeds rarely decide
    wide = paired_verdict(MODEL, RIVAL, alpha=0.01)
    assert wide.ci_high - wide.ci_low > paired_verdict(MODEL, RIVAL).ci_high - paired_verdict(MODEL, RIVAL).ci_low


def test_minimal_detectable_difference_formula():
    assert minimal_detectable_difference(0.01, 5) == pytest.approx(
        (stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) * 0.01 / math.sqrt(5))
    assert minimal_detectable_difference(0.01, 10, alpha=0.1, power=0.9) == pytest.approx(
        (stats.t.ppf(0.95, 9) + stats.t.ppf(0.9, 9)) * 0.01 / math.sqrt(10))
    assert minimal_detectable_difference(0.0, 3) == 0.0
    with pytest.raises(ValueError, match="n >= 2"):
        minimal_detectable_difference(0.01, 1)


def test_paired_verdict_validates_its_input():
    with pytest.raises(ValueError, match="bootstrap"):
        paired_verdict([0.8], [0.7])
    with pytest.raises(ValueError, match="mismatched lengths"):
        paired_verdict([0.8, 0.81, 0.82], [0.7, 0.71])
    with pytest.raises(ValueError, match="NaN"):
        paired_verdict([0.8, math.nan], [0.7, 0.71])
    with pytest.raises(ValueError, match="empty"):
        paired_verdict([], [])
    with pytest.raises(ValueError, match="direction"):
        paired_verdict(MODEL, RIVAL, direction="higher")
    with pytest.raises(ValueError, match="alpha"):
        paired_verdict(MODEL, RIVAL, alpha=1.5)
    with pytest.raises(ValueError, match="power"):
        paired_verdict(MODEL, RIVAL, power=0.0)


# --------------------------------------------------------------------------- does the metric resolve?
def test_a_deterministic_gap_resolves_with_full_power():
    r = resolves([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])  # e.g. true_uplift_auc of oracle and constant
    assert r.resolved and r.power_at_gap == 1.0 and r.verdict.mean_diff == 1.0
    assert "separates oracle from constant: yes" in r.describe()


def test_power_at_a_gap_of_exactly_the_mdd_is_the_target_power():
    # d = [-1, 0, 1] + MDD: sd 1, n 3 -> mean d = MDD, so 1 - F(t_crit - MDD / se) = 1 - F(-t_{.8}) = 0.8
    mdd = (stats.t.ppf(0.975, 2) + stats.t.ppf(0.8, 2)) / math.sqrt(3)
    r = resolves(np.array([-1.0, 0.0, 1.0]) + mdd, np.zeros(3))
    assert r.verdict.mdd == pytest.approx(mdd)
    assert r.power_at_gap == pytest.approx(0.8)


def test_an_error_metric_resolves_in_the_less_direction():
    oracle_pehe, constant_pehe = [0.0, 0.0, 0.0, 0.0], [0.031, 0.029, 0.030, 0.032]
    assert resolves(oracle_pehe, constant_pehe, direction="less").resolved
    noisy = resolves([0.51, 0.47, 0.52, 0.49], [0.50, 0.50, 0.50, 0.50])  # AUC 0.5 vs. ~0.5: no separation
    assert not noisy.resolved and noisy.power_at_gap < 0.8
    assert "separates oracle from constant: no" in noisy.describe()


# --------------------------------------------------------------------------- bootstrap over one world's rows
def _mean(rows):
    return float(np.mean(rows))


def test_bootstrap_of_a_constant_shift_is_that_shift():
    rng = np.random.default_rng(1)
    b = rng.random(200)
    ci = bootstrap_diff_ci(b + 0.1, b, _mean, n_boot=200, rng=5)
    assert ci["diff"] == pytest.approx(0.1)
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((0.1, 0.1), abs=1e-12)
    assert ci["boot_sd"] == pytest.approx(0.0, abs=1e-12)
    assert ci["n_rows"] == 200.0 and ci["n_boot"] == 200.0
    assert bootstrap_verdict(b + 0.1, b, _mean, n_boot=200, rng=5).verdict == "holds"


def test_bootstrap_pairs_rows_and_agrees_with_the_normal_interval():
    rng = np.random.default_rng(2)
    shared = rng.normal(size=2000)  # a large per-row component common to both: pairing removes it
    a, b = shared + rng.normal(0.05, 0.2, 2000), shared + rng.normal(0.0, 0.2, 2000)
    ci = bootstrap_diff_ci(a, b, _mean, n_boot=400, rng=np.random.default_rng(9))
    se = np.std(a - b, ddof=1) / math.sqrt(2000)
    assert ci["boot_sd"] == pytest.approx(se, rel=0.15)
    assert ci["ci_low"] == pytest.approx(np.mean(a - b) - 1.96 * se, abs=0.5 * se)
    assert ci["mdd"] == pytest.approx((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * ci["boot_sd"])
    assert ci == bootstrap_diff_ci(a, b, _mean, n_boot=400, rng=np.random.default_rng(9))  # seeded


def test_bootstrap_with_mappings_of_columns():
    rng = np.random.default_rng(4)
    truth = (rng.random(400) < 0.4).astype(float)
    good = {"y": truth, "p": truth * 0.6 + rng.random(400) * 0.4}
    weak = {"y": truth, "p": rng.random(400)}
    v = bootstrap_verdict(good, weak, lambda rows: auc(rows["y"], rows["p"]), n_boot=100, rng=0)
    assert v.verdict == "holds" and v.method == "paired bootstrap over test rows" and v.n == 400


def test_bootstrap_validates_its_input():
    with pytest.raises(ValueError, match="mismatched lengths"):
        bootstrap_diff_ci(np.ones(5), np.ones(4), _mean, n_boot=100)
    with pytest.raises(ValueError, match="different numbers of rows"):
        bootstrap_diff_ci({"y": np.ones(5), "p": np.ones(4)}, {"y": np.ones(5)}, _mean, n_boot=100)
    with pytest.raises(ValueError, match="no rows"):
        bootstrap_diff_ci(np.ones(0), np.ones(0), _mean, n_boot=100)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_diff_ci(np.ones(5), np.ones(5), _mean, n_boot=10)
    with pytest.raises(ValueError, match="non-finite|nan"):
        bootstrap_diff_ci(np.ones(5), np.ones(5), lambda rows: math.nan, n_boot=100)
    with pytest.raises(ValueError, match="single class"):  # a replicate the metric cannot score
        bootstrap_diff_ci({"y": np.r_[1.0, np.zeros(4)], "p": np.ones(5)}, {"y": np.r_[1.0, np.zeros(4)],
                          "p": np.ones(5)}, lambda rows: auc(rows["y"], rows["p"]), n_boot=200, rng=0)


def test_replicate_verdict_by_hand():
    reps = np.arange(1, 41) / 100  # 0.01 .. 0.40, one difference per replicate
    v = replicate_verdict(0.2, reps, "greater", worlds=2)
    # numpy's linear percentiles by hand: position 0.025 * 39 = 0.975 -> 0.01 + 0.975 * 0.01; 0.975 * 39 = 38.025
    assert (v.ci_low, v.ci_high) == pytest.approx((0.01975, 0.39025))
    assert (v.verdict, v.n, v.mean_diff, v.method) == ("holds", 2, 0.2, "paired bootstrap over test rows")
    sd = math.sqrt(sum((x - 0.205) ** 2 for x in reps) / 39)
    assert v.sd_diff == pytest.approx(sd) and v.mdd == pytest.approx((1.959964 + 0.841621) * sd, rel=1e-5)
    assert replicate_verdict(0.2, reps, "less").verdict == "contradicted"
    assert replicate_verdict(0.0, reps - 0.2, "greater").verdict == "inconclusive"
    found = replicates_resolve(0.2, reps, "greater")
    assert found.resolved and found.power_at_gap == pytest.approx(1 - stats.norm.cdf(1.959964 - 0.2 / sd), rel=1e-4)
    with pytest.raises(ValueError, match="at least 40"):
        replicate_verdict(0.2, reps[:39])
    with pytest.raises(ValueError, match="NaN"):
        replicate_verdict(0.2, np.r_[reps[:-1], np.nan])
    with pytest.raises(ValueError, match="point_diff"):
        replicate_verdict(math.nan, reps)


def test_the_resolution_table_measures_calibration_against_the_random_row():
    from liftlake.lib.evaluation.claims import CONSTANT, ORACLE, RANDOM, resolution_table

    # ECE per seed: the oracle 0, a constant at the train mean nearly calibrated (one bin), the truth's
    # values on shuffled rows far off; AUC: the constant 0.5
    runs = [{ORACLE: {"ece": 0.0, "auc": 0.76}, CONSTANT: {"ece": e, "auc": 0.5}, RANDOM: {"ece": r, "auc": a}}
            for e, r, a in [(0.002, 0.044, 0.49), (0.005, 0.047, 0.51), (0.004, 0.041, 0.50)]]
    lines = resolution_table(runs, [("ece", "ECE", "min", RANDOM), ("auc", "AUC", "max")])
    ece = next(line for line in lines if line.startswith("| ECE |"))
    auc_line = next(line for line in lines if line.startswith("| AUC |"))
    assert "| random 0.0440 | yes |" in ece  # mean of 0.044, 0.047, 0.041
    assert "| constant 0.5000 | yes |" in auc_line
    # against the constant the same ECE column cannot separate: why the report names the random row
    lines = resolution_table(runs, [("ece", "ECE", "min")])
    assert "| constant 0.0037 | no |" in next(line for line in lines if line.startswith("| ECE |"))


def test_seeds_to_decide_is_the_first_seed_count_whose_mdd_reaches_the_gap():
    from liftlake.lib.evaluation.verdicts import seeds_to_decide

    sd, gap = 0.02, 0.01
    n = seeds_to_decide(sd, gap)
    # by hand from the MDD formula (quantiles from scipy): MDD(n) <= gap < MDD(n - 1)
    mdd = [(stats.t.ppf(0.975, k - 1) + stats.t.ppf(0.8, k - 1)) * sd / math.sqrt(k) for k in (n - 1, n)]
    assert mdd[1] <= gap < mdd[0] and n == 34
    assert seeds_to_decide(sd, -gap) == n  # the sign of the gap does not matter
    assert seeds_to_decide(0.0, 0.01) == 2  # differences that do not vary
    assert seeds_to_decide(0.02, 0.0) is None and seeds_to_decide(1e-17, 7e-18) is None  # no gap (round-off)
    assert seeds_to_decide(1.0, 1e-4) is None  # past 100,000 seeds
    with pytest.raises(ValueError, match="finite"):
        seeds_to_decide(float("nan"), 0.1)


def test_the_decision_summary_sorts_each_claims_comparisons_by_verdict():
    from liftlake.lib.evaluation.claims import claim, comparison, decision_summary, recording_verdicts

    with recording_verdicts() as judged:
        claim("A beats B", [comparison("A", [0.70, 0.72, 0.71], "B", [0.60, 0.61, 0.60], "greater", "AUC")])
        claim("A beats C", [comparison("A", [0.70, 0.72, 0.71], "C", [0.80, 0.81, 0.80], "greater", "AUC"),
                            comparison("A", [0.70, 0.72, 0.71], "D", [0.69, 0.73, 0.70], "greater", "AUC")])
    comparison("A", [0.1, 0.2], "B", [0.1, 0.2], "greater")  # outside the block: not recorded
    assert [j.claim for j in judged] == ["A beats B", "A beats C", "A beats C"]
    text = "\n".join(decision_summary(judged, seeds=3))
    assert "Of the 3 comparisons behind the claims below, 1 hold, 1 are contradicted and 1 stay inconclusive" in text
    hold, contradicted, inconclusive = (text.index(h) for h in ("Hold on", "Contradicted on", "Inconclusive here"))
    assert hold < text.index("- A beats B:\n  - AUC: A 0.7100 vs. B 0.6033 (+0.1067, 95% CI") < contradicted
    assert contradicted < text.index("- A beats C:\n  - AUC: A 0.7100 vs. C 0.8033 (-0.09333") < inconclusive
    assert text.index("- A beats C:\n  - AUC: A 0.7100 vs. D 0.7067") > inconclusive
    d = np.array([0.70, 0.72, 0.71]) - np.array([0.69, 0.73, 0.70])
    needed = next(k for k in range(2, 10_000) if (stats.t.ppf(0.975, k - 1) + stats.t.ppf(0.8, k - 1))
                  * d.std(ddof=1) / math.sqrt(k) <= abs(d.mean()))
    assert f"AUC: A 0.7100 vs. D 0.7067 (gap {d.mean():+.4g}, detectable now" in text
    assert f"about {needed:,} seeds" in text


def test_the_decision_summary_lists_a_claim_judged_under_two_settings_once_per_setting():
    from liftlake.lib.evaluation.claims import claim, comparison, decision_summary, judged_under, recording_verdicts

    with recording_verdicts() as judged:
        claim("A beats B", [comparison("A", [0.70, 0.72, 0.71], "B", [0.60, 0.61, 0.60], "greater", "AUC")])
        with judged_under("one optimizer"):
            claim("A beats B", [comparison("A", [0.70, 0.72, 0.71], "B", [0.50, 0.51, 0.50], "greater", "AUC")])
    assert [(j.claim, j.settings) for j in judged] == [("A beats B", ""), ("A beats B", "one optimizer")]
    text = "\n".join(decision_summary(judged, seeds=3))
    assert "- A beats B:\n  - AUC: A 0.7100 vs. B 0.6033 (" in text
    assert "- A beats B (one optimizer):\n  - AUC: A 0.7100 vs. B 0.5033 (" in text
