"""CVR-family metrics: each against a value worked out by hand on a tiny case, plus the input checks."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from liftlake.lib.evaluation.cvr_metrics import (
    auc,
    best_threshold_f1,
    causal_risk_ratio,
    cvr_report,
    ieb_bias,
    ks,
    log_loss,
)


# --------------------------------------------------------------------------- AUC
def test_auc_by_hand_with_a_tie():
    y = [1, 0, 1, 0, 1]
    p = [0.9, 0.3, 0.3, 0.6, 0.2]
    # positives 0.9, 0.3, 0.2 vs negatives 0.3, 0.6 -> 6 pairs:
    # (0.9>0.3)=1 (0.9>0.6)=1 (0.3=0.3)=0.5 (0.3<0.6)=0 (0.2<0.3)=0 (0.2<0.6)=0
    assert auc(y, p) == pytest.approx(2.5 / 6, abs=1e-12)


def test_auc_matches_sklearn_on_random_ties():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.round(rng.random(500), 1)  # many ties
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_auc_perfect_and_reversed():
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0


# --------------------------------------------------------------------------- LogLoss
def test_log_loss_by_hand_with_clipping():
    y = [1, 0, 1]
    p = [0.8, 0.4, 1.0]
    # -(ln 0.8 + ln(1 - 0.4) + ln(1 - 1e-7)) / 3 ; p = 1.0 is clipped to 1 - 1e-7
    expected = -(math.log(0.8) + math.log(0.6) + math.log(1 - 1e-7)) / 3
    assert log_loss(y, p) == pytest.approx(expected, rel=1e-12)
    # A confident wrong answer is capped at -ln(eps).
    assert log_loss([1], [0.0], eps=1e-3) == pytest.approx(-math.log(1e-3), rel=1e-12)


# --------------------------------------------------------------------------- KS and best F1
Y6 = [1, 1, 0, 1, 0, 0]
P6 = [0.9, 0.8, 0.7, 0.6, 0.5, 0.5]
# n_pos = 3, n_neg = 3; thresholds from the top:
#   >= 0.9: TP 1 FP 0 -> TPR 1/3 FPR 0   |diff| 1/3   F1 = 2*1/(1+3) = 0.5
#   >= 0.8: TP 2 FP 0 -> TPR 2/3 FPR 0   |diff| 2/3   F1 = 4/(2+3)   = 0.8
#   >= 0.7: TP 2 FP 1 -> TPR 2/3 FPR 1/3 |diff| 1/3   F1 = 4/(3+3)   = 0.667
#   >= 0.6: TP 3 FP 1 -> TPR 1   FPR 1/3 |diff| 2/3   F1 = 6/(4+3)   = 0.857
#   >= 0.5: TP 3 FP 3 -> TPR 1   FPR 1   |diff| 0     F1 = 6/(6+3)   = 0.667


def test_ks_by_hand():
    assert ks(Y6, P6) == pytest.approx(2 / 3, abs=1e-12)


def test_best_threshold_f1_by_hand():
    best = best_threshold_f1(Y6, P6)
    assert best["threshold"] == 0.6
    assert best["precision"] == pytest.approx(3 / 4)
    assert best["recall"] == pytest.approx(1.0)
    assert best["f1"] == pytest.approx(6 / 7)


def test_best_threshold_f1_scans_every_threshold_and_breaks_ties_high():
    # >= 0.9: TP1 FP0 -> F1 = 2/(1+2) = 2/3 ; >= 0.1: TP2 FP1 -> F1 = 4/(3+2) = 0.8 ; pick 0.1
    assert best_threshold_f1([1, 0, 1], [0.9, 0.5, 0.1])["threshold"] == 0.1
    # >= 0.9: TP1 FP0 -> 2/3 ; >= 0.5: TP1 FP1 -> 2/4 ; >= 0.1: TP2 FP2 -> 4/6 = 2/3 ; tie -> 0.9
    assert best_threshold_f1([1, 0, 0, 1], [0.9, 0.5, 0.1, 0.1])["threshold"] == 0.9


# --------------------------------------------------------------------------- IEB (ESCM² Table V)
def test_ieb_bias_by_hand():
    out = ieb_bias([0.2, 0.1, 0.3, 0.4], [0.1, 0.1, 0.2, 0.2])
    # mean_pred = 1.0 / 4 = 0.25 ; mean_true = 0.6 / 4 = 0.15 ; bias = 0.10 ; relative = 0.10 / 0.15
    assert out["mean_pred"] == pytest.approx(0.25)
    assert out["mean_true"] == pytest.approx(0.15)
    assert out["bias"] == pytest.approx(0.10)
    assert out["relative_bias"] == pytest.approx(2 / 3)


def test_ieb_bias_against_a_scalar_truth_can_be_negative():
    out = ieb_bias([0.2, 0.1, 0.3, 0.4], 0.5)  # Table V style: r-bar given as one number
    assert out["bias"] == pytest.approx(-0.25)
    assert out["relative_bias"] == pytest.approx(-0.5)


# --------------------------------------------------------------------------- CRR (ESCM² V-E)
CLICK = [1, 1, 1, 0, 0, 0]
PROPENSITY = [0.5, 0.8, 0.2, 0.45, 0.7, 0.1]
OUTCOME = [0.6, 0.9, 0.3, 0.2, 0.5, 0.1]


def test_causal_risk_ratio_without_caliper_by_hand():
    # logits: clicked 0, ln 4 = 1.386, -1.386 ; unclicked ln(.45/.55) = -0.201, ln(7/3) = 0.847, ln(1/9) = -2.197
    # nearest unclicked: 0 -> -0.201 (row 3), 1.386 -> 0.847 (row 4), -1.386 -> -2.197 (|0.811| < |1.186|, row 5)
    # CRR = mean(0.6, 0.9, 0.3) / mean(0.2, 0.5, 0.1) = 0.6 / 0.26667 = 2.25
    out = causal_risk_ratio(CLICK, OUTCOME, PROPENSITY, caliper=None)
    assert out["crr"] == pytest.approx(2.25)
    assert out["strength"] == pytest.approx(1.25)
    assert out["n_clicked"] == 3 and out["n_matched"] == 3
    assert out["mean_outcome_unclicked"] == pytest.approx(0.8 / 3)


def test_causal_risk_ratio_caliper_drops_the_far_pair():
    logit = lambda p: math.log(p / (1 - p))
    clicked = np.array([logit(0.5), logit(0.8), logit(0.2)])
    unclicked = np.array([logit(0.45), logit(0.7), logit(0.1)])
    pooled_sd = math.sqrt((clicked.var() + unclicked.var()) / 2)  # = 1.199
    width = 0.5 * pooled_sd  # = 0.600: keeps distances 0.201 and 0.539, drops 0.811
    out = causal_risk_ratio(CLICK, OUTCOME, PROPENSITY, caliper=0.5)
    assert out["caliper_width"] == pytest.approx(width)
    assert out["n_matched"] == 2
    # CRR = mean(0.6, 0.9) / mean(0.2, 0.5) = 0.75 / 0.35
    assert out["crr"] == pytest.approx(0.75 / 0.35)


def test_causal_risk_ratio_is_one_when_click_does_not_matter():
    rng = np.random.default_rng(0)
    propensity = rng.uniform(0.05, 0.6, 4000)
    click = rng.binomial(1, propensity)
    outcome = 0.1 + 0.2 * propensity  # depends on the confounder only, not on the click
    out = causal_risk_ratio(click, outcome, propensity)
    assert out["strength"] < 0.01
    confounded = (outcome[click == 1].mean() / outcome[click == 0].mean()) - 1
    assert confounded > 0.05  # the raw ratio is confounded; matching removes it


def test_causal_risk_ratio_rejects_no_match_and_bad_caliper():
    with pytest.raises(ValueError, match="within the caliper"):
        causal_risk_ratio([1, 0], [0.5, 0.5], [0.9, 0.1], caliper=1e-6)
    with pytest.raises(ValueError, match="caliper"):
        causal_risk_ratio(CLICK, OUTCOME, PROPENSITY, caliper=0.0)
    with pytest.raises(ValueError, match="single class"):
        causal_risk_ratio([1, 1], [0.5, 0.5], [0.9, 0.1])


# --------------------------------------------------------------------------- report
def test_cvr_report_values_by_hand():
    click = [1, 1, 1, 1, 0, 0, 0, 0]
    conversion = [1, 0, 1, 0, 0, 0, 0, 0]
    pred_cvr = [0.9, 0.2, 0.4, 0.5, 0.3, 0.1, 0.2, 0.6]
    pred_ctr = [0.7, 0.6, 0.8, 0.5, 0.3, 0.4, 0.2, 0.1]
    report = cvr_report(click, conversion, pred_cvr, pred_ctr=pred_ctr, caliper=None)
    assert all(isinstance(v, float) for v in report.values())
    # click space: positives 0.9, 0.4 vs negatives 0.2, 0.5 -> pairs 1, 1, 1, 0 -> 3/4
    assert report["cvr_auc"] == pytest.approx(0.75)
    # ctcvr = ctr * cvr = .63 .12 .32 .25 .09 .04 .04 .06 ; labels 1 0 1 0 0 0 0 0 -> both positives on top
    assert report["ctcvr_auc"] == pytest.approx(1.0)
    # IEB against r-bar = 2 / 4 = 0.5 ; mean pred over all 8 exposures = 3.2 / 8 = 0.4
    assert report["ieb_mean_true"] == pytest.approx(0.5)
    assert report["ieb_bias"] == pytest.approx(-0.1)
    assert report["ieb_abs_bias"] == pytest.approx(0.1)
    # click space calibration: mean pred of the clicked (0.9 + 0.2 + 0.4 + 0.5) / 4 = 0.5 over their rate 0.5
    assert report["cvr_clicked_calibration"] == pytest.approx(1.0)
    no_conversion = cvr_report(click, [0] * 8, pred_cvr)
    assert math.isnan(no_conversion["cvr_clicked_calibration"])
    assert {"ctr_auc", "ctr_logloss", "cvr_ks", "cvr_f1", "crr", "crr_strength"} <= set(report)
    # With the default 0.2-SD caliper no pair of these 8 rows is close enough: no ratio, a count of 0.
    strict = cvr_report(click, conversion, pred_cvr, pred_ctr=pred_ctr)
    assert strict["crr_n_matched"] == 0.0 and "crr" not in strict


def test_cvr_report_with_simulator_truth():
    rng = np.random.default_rng(1)
    n = 2000
    true_cvr = rng.uniform(0.02, 0.3, n)
    potential = rng.binomial(1, true_cvr)
    click = rng.binomial(1, 0.3, n)
    conversion = click * potential
    report = cvr_report(click, conversion, true_cvr, true_cvr=true_cvr, potential_conversion=potential)
    assert report["ieb_bias"] == pytest.approx(0.0, abs=1e-12)
    assert report["cvr_entire_auc"] == pytest.approx(auc(potential, true_cvr))
    assert report["cvr_entire_n"] == n


def test_cvr_report_rejects_conversion_without_click():
    with pytest.raises(ValueError, match="non-clicked"):
        cvr_report([1, 0], [0, 1], [0.5, 0.5])


# --------------------------------------------------------------------------- input checks
@pytest.mark.parametrize("metric", [auc, log_loss, ks, best_threshold_f1])
def test_bad_input_is_a_clear_value_error(metric):
    with pytest.raises(ValueError, match="empty"):
        metric([], [])
    with pytest.raises(ValueError, match="mismatched lengths"):
        metric([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="0 or 1"):
        metric([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        metric([0, 1, 1], [0.1, float("nan"), 0.3])
    with pytest.raises(ValueError, match="1-D"):
        metric([[0, 1]], [[0.1, 0.2]])


@pytest.mark.parametrize("metric", [auc, ks, best_threshold_f1])
def test_single_class_is_rejected_by_ranking_metrics(metric):
    with pytest.raises(ValueError, match="single class"):
        metric([1, 1, 1], [0.1, 0.2, 0.3])


def test_log_loss_rejects_non_probabilities_and_ieb_rejects_bad_input():
    with pytest.raises(ValueError, match="probabilities"):
        log_loss([0, 1], [0.5, 1.5])
    with pytest.raises(ValueError, match="mismatched lengths"):
        ieb_bias([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        ieb_bias([0.1, float("nan")], [0.1, 0.2])
    with pytest.raises(ValueError, match="empty"):
        ieb_bias([], [])
