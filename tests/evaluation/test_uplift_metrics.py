"""Uplift metrics: hand-worked curves and areas, scikit-uplift 0.5.1 parity, CS-AUUC / CS-Qini, policy values."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklift.metrics import metrics as sklift

from liftlake.lib.evaluation.policy import compare_policies, compare_switch_policies, policy_value, uplift_error
from liftlake.lib.evaluation.uplift_metrics import (
    cs_auuc_score,
    cs_qini_score,
    cumulative_slope_curve,
    global_slope,
    multi_treatment_scores,
    perfect_qini_curve,
    perfect_uplift_curve,
    qini_auc_score,
    qini_curve,
    uplift_auc_score,
    uplift_curve,
)

# --------------------------------------------------------------------------- a 6-row case worked on paper
Y = [1, 0, 1, 0, 1, 0]
W = [1, 1, 0, 0, 1, 0]
S = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]  # already in descending order
# top k | row (w, y) | n_t y_t n_c y_c | uplift = (y_t/n_t - y_c/n_c) * k | qini = y_t - y_c * n_t / n_c
#   1   |  (1, 1)    |  1   1   0   0  | (1 - 0) * 1       = 1            | 1 - 0       = 1
#   2   |  (1, 0)    |  2   1   0   0  | (1/2 - 0) * 2     = 1            | 1 - 0       = 1
#   3   |  (0, 1)    |  2   1   1   1  | (1/2 - 1) * 3     = -1.5         | 1 - 1 * 2/1 = -1
#   4   |  (0, 0)    |  2   1   2   1  | (1/2 - 1/2) * 4   = 0            | 1 - 1 * 2/2 = 0
#   5   |  (1, 1)    |  3   2   2   1  | (2/3 - 1/2) * 5   = 5/6          | 2 - 1 * 3/2 = 0.5
#   6   |  (0, 0)    |  3   2   3   1  | (2/3 - 1/3) * 6   = 2            | 2 - 1 * 3/3 = 1


def test_uplift_curve_points_by_hand():
    x, v = uplift_curve(Y, S, W)
    np.testing.assert_allclose(x, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(v, [0, 1, 1, -1.5, 0, 5 / 6, 2])


def test_qini_curve_points_by_hand():
    x, v = qini_curve(Y, S, W)
    np.testing.assert_allclose(x, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(v, [0, 1, 1, -1, 0, 0.5, 1])


def test_perfect_uplift_curve_and_auuc_by_hand():
    # control responders (w=0, y=1): 1 ; treated non-responders (w=1, y=0): 1 ; 1 > 1 is false -> summand = w
    # score = 2 [y == w] + w: rows 0, 4 (TR) -> 3 ; rows 3, 5 (CN) -> 2 ; row 1 (TN) -> 1 ; row 2 (CR) -> 0
    # group ends: k=2: n_t 2 y_t 2 n_c 0      -> (1 - 0) * 2     = 2
    #             k=4: n_t 2 y_t 2 n_c 2 y_c 0 -> (1 - 0) * 4     = 4
    #             k=5: n_t 3 y_t 2             -> (2/3 - 0) * 5   = 10/3
    #             k=6: n_c 3 y_c 1             -> (2/3 - 1/3) * 6 = 2
    x, v = perfect_uplift_curve(Y, W)
    np.testing.assert_allclose(x, [0, 2, 4, 5, 6])
    np.testing.assert_allclose(v, [0, 2, 4, 10 / 3, 2])
    # trapezoids: actual = 0.5 + 1 - 0.25 - 0.75 + 5/12 + 17/12 = 7/3
    #             perfect = 2 * (0+2)/2 + 2 * (2+4)/2 + (4 + 10/3)/2 + (10/3 + 2)/2 = 2 + 6 + 11/3 + 8/3 = 43/3
    #             baseline (0,0)-(6,2) = 6
    expected = (7 / 3 - 6) / (43 / 3 - 6)  # = -11/25
    assert uplift_auc_score(Y, S, W) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(-0.44)


def test_perfect_qini_curve_and_qini_by_hand():
    # negative_effect=True: score = y w - y (1 - w): rows 0, 4 -> 1 ; rows 1, 3, 5 -> 0 ; row 2 -> -1
    # k=2: 2 - 0 = 2 ; k=5: n_t 3 y_t 2 n_c 2 y_c 0 -> 2 ; k=6: 2 - 1 * 3/3 = 1
    x, v = perfect_qini_curve(Y, W)
    np.testing.assert_allclose(x, [0, 2, 5, 6])
    np.testing.assert_allclose(v, [0, 2, 2, 1])
    # actual area = 0.5 + 1 + 0 - 0.5 + 0.25 + 0.75 = 2 ; perfect = 2 + 6 + 1.5 = 9.5 ; baseline (6, 1) -> 3
    assert qini_auc_score(Y, S, W) == pytest.approx((2 - 3) / (9.5 - 3), abs=1e-12)
    # negative_effect=False: r = y_t sum 2 - n_t 3 * (y_c sum 1 / n_c 3) = 1 -> points (0,0), (1,1), (6,1)
    x, v = perfect_qini_curve(Y, W, negative_effect=False)
    np.testing.assert_allclose(x, [0, 1, 6])
    np.testing.assert_allclose(v, [0, 1, 1])
    # perfect area = 0.5 + 5 = 5.5 -> (2 - 3) / (5.5 - 3) = -0.4
    assert qini_auc_score(Y, S, W, negative_effect=False) == pytest.approx(-0.4, abs=1e-12)


def test_ties_collapse_into_one_curve_point():
    # rows 1 and 2 share a score: one point at k=3, none at k=2
    x, v = uplift_curve([1, 0, 1, 0], [0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0])
    np.testing.assert_allclose(x, [0, 1, 3, 4])
    # k=3: n_t 2 y_t 1 n_c 1 y_c 1 -> (1/2 - 1) * 3 = -1.5 ; k=4: (1/2 - 1/2) * 4 = 0
    np.testing.assert_allclose(v, [0, 1, -1.5, 0])


def test_perfect_ranking_scores_one():
    y = np.array([1, 0, 1, 0, 1, 0, 0, 1])
    w = np.array([1, 1, 0, 0, 1, 0, 1, 0])
    oracle = 2 * (y == w) + w  # the perfect curve's own score
    assert uplift_auc_score(y, oracle, w) == pytest.approx(1.0)
    assert qini_auc_score(y, y * w - y * (1 - w), w) == pytest.approx(1.0)


# --------------------------------------------------------------------------- scikit-uplift parity
@pytest.mark.parametrize("seed", range(12))
def test_matches_sklift_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 3000))
    y = rng.binomial(1, 0.3, n)
    w = rng.binomial(1, 0.5, n)
    # Some seeds round the scores so that many rows tie.
    uplift = np.round(rng.normal(size=n) + 0.3 * y * w, int(seed % 3))
    assert uplift_auc_score(y, uplift, w) == pytest.approx(sklift.uplift_auc_score(y, uplift, w), abs=1e-9)
    assert qini_auc_score(y, uplift, w) == pytest.approx(sklift.qini_auc_score(y, uplift, w), abs=1e-9)
    try:
        reference = sklift.qini_auc_score(y, uplift, w, negative_effect=False)
    except (ValueError, ZeroDivisionError):  # sklift fails where the average effect is <= 0
        with pytest.raises(ValueError):
            qini_auc_score(y, uplift, w, negative_effect=False)
    else:
        assert qini_auc_score(y, uplift, w, negative_effect=False) == pytest.approx(reference, abs=1e-9)
    for ours, theirs in [(uplift_curve, sklift.uplift_curve), (qini_curve, sklift.qini_curve)]:
        x_ours, v_ours = ours(y, uplift, w)
        x_ref, v_ref = theirs(y, uplift, w)
        np.testing.assert_array_equal(x_ours, x_ref)
        np.testing.assert_allclose(v_ours, v_ref, atol=1e-9)
    # The continuous variant reduces to sklift on 0/1 labels.
    assert uplift_auc_score(y, uplift, w, continuous=True) == pytest.approx(
        sklift.uplift_auc_score(y, uplift, w), abs=1e-9)
    assert qini_auc_score(y, uplift, w, continuous=True) == pytest.approx(
        sklift.qini_auc_score(y, uplift, w), abs=1e-9)


# --------------------------------------------------------------------------- continuous labels (HMUM 5.1.2)
def test_continuous_variant_by_hand():
    y = [10, 2, 6, 4]
    w = [1, 0, 1, 0]
    s = [0.4, 0.3, 0.2, 0.1]
    # min-max: y' = (y - 2) / 8 = [1, 0, 0.5, 0.25]
    # uplift curve: k1 (1-0)*1=1 ; k2 (1-0)*2=2 ; k3 (1.5/2 - 0)*3 = 2.25 ; k4 (0.75 - 0.25/2)*4 = 2.5
    x, v = uplift_curve(y, s, w, continuous=True)
    np.testing.assert_allclose(v, [0, 1, 2, 2.25, 2.5])
    # area = 0.5 + 1.5 + 2.125 + 2.375 = 6.5
    # perfect (interleaved): treated y' [1, 0.5] -> quantiles 0.75, 0.25; control y' [0, 0.25] ->
    # quantiles 0.25, 0.75 -> scores 1 - q = 0.75, 0.25. Scores [0.75, 0.75, 0.25, 0.25]: rows {0, 1}
    # then {2, 3}. k2: (1 - 0) * 2 = 2 ; k4: (1.5/2 - 0.25/2) * 4 = 2.5
    x, v = perfect_uplift_curve(y, w, continuous=True)
    np.testing.assert_allclose(x, [0, 2, 4])
    np.testing.assert_allclose(v, [0, 2, 2.5])
    # perfect area = 2 + 4.5 = 6.5 ; baseline (4, 2.5) = 5: this ranking reaches the perfect curve
    assert uplift_auc_score(y, s, w, continuous=True) == pytest.approx((6.5 - 5) / (6.5 - 5))
    # Qini: k1 1 ; k2 1 - 0 = 1 ; k3 1.5 - 0 * 2/1 = 1.5 ; k4 1.5 - 0.25 * 2/2 = 1.25 -> area 4.125
    # perfect Qini score y'w - y'(1-w) = [1, 0, 0.5, -0.25] -> rows 0, 2, 1, 3:
    #   k1 1 ; k2 1.5 ; k3 1.5 - 0 = 1.5 ; k4 1.5 - 0.25 = 1.25 -> area 0.5 + 1.25 + 1.5 + 1.375 = 4.625
    # baseline (4, 1.25) = 2.5
    assert qini_auc_score(y, s, w, continuous=True) == pytest.approx((4.125 - 2.5) / (4.625 - 2.5))


def test_continuous_variant_ranks_a_true_effect_above_random():
    rng = np.random.default_rng(7)
    n = 6000
    x = rng.normal(size=n)
    w = rng.binomial(1, 0.5, n)
    y = rng.gamma(2.0, 1.0, n) * (1 + 0.4 * w * np.tanh(x))  # e.g. app usage minutes
    good = qini_auc_score(y, np.tanh(x), w, continuous=True)
    assert good > 0.05
    assert abs(qini_auc_score(y, rng.normal(size=n), w, continuous=True)) < good / 2
    assert uplift_auc_score(y, -np.tanh(x), w, continuous=True) < 0


def test_continuous_auuc_of_the_true_effect_is_stable_on_a_skewed_outcome():
    # Log-normal responses as the multi-treatment world's: the truth's AUUC over 12 independent
    # samples of 2,000 RCT rows stays in one band (sklift's closeness ordering swung 0.08-0.56 here).
    scores = []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        n = 2000
        x = rng.normal(size=n)
        w = rng.binomial(1, 0.5, n)
        tau = 0.3 * np.tanh(x)
        y = np.exp(0.5 * x) * (1 + w * tau) * rng.lognormal(-0.08, 0.4, n)
        scores.append(uplift_auc_score(y, np.exp(0.5 * x) * tau, w, continuous=True))
    assert min(scores) > 0.05
    assert max(scores) < 2.5 * min(scores)


# --------------------------------------------------------------------------- CS-AUUC / CS-Qini (UniMVT eq. 26-27)
def test_cumulative_slope_by_hand():
    y = [1, 0, 1, 1]
    dose = [1, 0, 2, 0]
    unit_uplift = [4, 3, 2, 1]
    # top 1: dose does not vary -> slope 0
    # top 2: T = [1, 0], Y = [1, 0]           -> slope 1                       ; gain 1 * 2 = 2
    # top 3: T = [1, 0, 2], Y = [1, 0, 1]     -> cov 1/3, var 2/3, slope 1/2   ; gain 1.5
    # top 4: T-mean = [.25, -.75, 1.25, -.75], Y-mean = [.25, -.75, .25, .25]
    #        sum products = .0625 + .5625 + .3125 - .1875 = .75 ; sum squares = 2.75 -> slope 3/11 ; gain 12/11
    phi, gain = cumulative_slope_curve(y, dose, unit_uplift)
    np.testing.assert_allclose(phi, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(gain, [0, 0, 2, 1.5, 12 / 11])
    assert global_slope(y, dose) == pytest.approx(3 / 11)
    # trapezoids of width 0.25: 0.25 * (0 + 1 + 1.75 + (1.5 + 12/11) / 2)
    cs_auuc = 0.25 * (0 + 1 + 1.75 + (1.5 + 12 / 11) / 2)
    assert cs_auuc_score(y, dose, unit_uplift) == pytest.approx(cs_auuc)
    # CS-Qini subtracts integral of beta_global * phi * N = (3/11) * 4 / 2 = 6/11
    assert cs_qini_score(y, dose, unit_uplift) == pytest.approx(cs_auuc - 6 / 11)


def _dose_response_rct(seed: int, n: int = 3000):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    unit_uplift = 0.03 + 0.05 * np.tanh(x)  # heterogeneous sensitivity to the coupon value
    base = 0.2 + 0.1 * rng.random(n)
    dose = rng.choice([0.0, 1.0, 1.6, 2.4, 4.0], size=n)  # Syn-3's tiers plus no coupon
    return rng, unit_uplift, base, dose


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_by_the_true_unit_uplift_scores_highest(seed):
    rng, unit_uplift, base, dose = _dose_response_rct(seed)
    y = base + unit_uplift * dose  # expected outcome, linear in the dose
    n = y.size
    rivals = [unit_uplift + rng.normal(0, 0.02, n) for _ in range(3)]
    rivals += [rng.normal(size=n) for _ in range(3)] + [-unit_uplift, np.zeros(n)]
    best_auuc, best_qini = cs_auuc_score(y, dose, unit_uplift), cs_qini_score(y, dose, unit_uplift)
    for rival in rivals:
        assert best_auuc > cs_auuc_score(y, dose, rival)
        assert best_qini > cs_qini_score(y, dose, rival)
    assert best_qini > 0 > cs_qini_score(y, dose, -unit_uplift)
    # No ranking (all tied) is the global slope itself: CS-Qini 0.
    assert cs_qini_score(y, dose, np.zeros(n)) == pytest.approx(0.0, abs=1e-9)


def test_cs_qini_on_binary_clicks_separates_true_from_reversed_ranking():
    rng, unit_uplift, base, dose = _dose_response_rct(11, n=8000)
    clicks = rng.binomial(1, base + unit_uplift * dose)
    assert cs_qini_score(clicks, dose, unit_uplift) > 0 > cs_qini_score(clicks, dose, -unit_uplift)
    # CS-Qini = CS-AUUC - beta_global * N / 2 (the subtracted term is a straight line, exact under trapezoids)
    assert cs_qini_score(clicks, dose, unit_uplift) == pytest.approx(
        cs_auuc_score(clicks, dose, unit_uplift) - global_slope(clicks, dose) * clicks.size / 2)


# --------------------------------------------------------------------------- K treatments x R responses
def test_multi_treatment_scores_use_rows_of_control_and_that_treatment():
    rng = np.random.default_rng(5)
    n = 1500
    treatment_id = rng.integers(0, 3, n)
    converted = rng.binomial(1, 0.3, n)
    minutes = rng.gamma(2.0, 1.0, n)
    responses = np.column_stack([converted, minutes])
    tau_hat = {(r, k): rng.normal(size=n) for r in (0, 1) for k in (1, 2)}
    scores = multi_treatment_scores(treatment_id, responses, tau_hat)
    assert set(scores) == {f"{m}_r{r}_k{k}" for m in ("qini", "auuc") for r in (0, 1) for k in (1, 2)}
    for k in (1, 2):
        rows = (treatment_id == 0) | (treatment_id == k)
        treated = (treatment_id[rows] == k).astype(int)
        # binary response: sklift on the {0, k} rows
        assert scores[f"qini_r0_k{k}"] == pytest.approx(
            sklift.qini_auc_score(converted[rows], tau_hat[(0, k)][rows], treated), abs=1e-9)
        assert scores[f"auuc_r0_k{k}"] == pytest.approx(
            sklift.uplift_auc_score(converted[rows], tau_hat[(0, k)][rows], treated), abs=1e-9)
        # real-valued response: the continuous variant is picked automatically
        assert scores[f"qini_r1_k{k}"] == pytest.approx(
            qini_auc_score(minutes[rows], tau_hat[(1, k)][rows], treated, continuous=True))
    # responses as a mapping with named responses gives the same numbers
    named = multi_treatment_scores(treatment_id, {"minutes": minutes}, {("minutes", 2): tau_hat[(1, 2)]})
    assert named["qini_rminutes_k2"] == pytest.approx(scores["qini_r1_k2"])


def test_multi_treatment_scores_rejects_bad_keys():
    ids, resp = np.array([0, 1, 0, 1]), np.array([[1], [0], [0], [1]])
    with pytest.raises(ValueError, match="not in responses"):
        multi_treatment_scores(ids, resp, {(3, 1): np.zeros(4)})
    with pytest.raises(ValueError, match=">= 1"):
        multi_treatment_scores(ids, resp, {(0, 0): np.zeros(4)})
    with pytest.raises(ValueError, match="mismatched lengths"):
        multi_treatment_scores(ids, resp, {(0, 1): np.zeros(3)})


# --------------------------------------------------------------------------- policy value
OUTCOMES = np.array([[0.0, 1.0, 0.5], [2.0, 0.0, 1.0], [0.1, 0.2, 0.3]])  # users x coupon values
DECISION = [1, 2, 2]


def test_policy_value_and_comparison_by_hand():
    # chosen: 1.0, 1.0, 0.3 -> 2.3 / 3 ; best: 1.0, 2.0, 0.3 -> 3.3 / 3 ; all nine / 9 = 5.1 / 9
    assert policy_value(DECISION, OUTCOMES) == pytest.approx(2.3 / 3)
    out = compare_policies(DECISION, OUTCOMES, action_names=["none", "1yuan", "2yuan"])
    assert out["oracle"] == pytest.approx(1.1)
    assert out["random"] == pytest.approx(5.1 / 9)
    assert out["regret"] == pytest.approx(1.1 - 2.3 / 3)
    assert out["normalized"] == pytest.approx((2.3 / 3 - 5.1 / 9) / (1.1 - 5.1 / 9))  # = 0.375
    assert out["oracle_agreement"] == pytest.approx(2 / 3)
    # all-or-nothing: always no coupon (0 + 2 + 0.1) / 3, always 1 yuan 1.2 / 3, always 2 yuan 1.8 / 3
    assert out["always_none"] == pytest.approx(0.7)
    assert out["always_1yuan"] == pytest.approx(0.4)
    assert out["always_2yuan"] == pytest.approx(0.6)


def test_switch_policies_by_hand():
    decision = [[1, 0], [0, 1], [1, 1]]
    gain = [[0.5, -0.2], [-0.1, 0.4], [0.3, -0.3]]
    out = compare_switch_policies(decision, gain)
    # k1: policy (0.5 + 0 + 0.3)/3 ; oracle (0.5 + 0 + 0.3)/3 ; all on (0.5 - 0.1 + 0.3)/3 ; random half of it
    assert out["k1_policy"] == pytest.approx(0.8 / 3)
    assert out["k1_oracle"] == pytest.approx(0.8 / 3)
    assert out["k1_all_on"] == pytest.approx(0.7 / 3)
    assert out["k1_random"] == pytest.approx(0.35 / 3)
    assert out["k1_regret"] == pytest.approx(0.0)
    # k2: policy (0 + 0.4 - 0.3)/3 ; oracle 0.4/3 ; all on (-0.2 + 0.4 - 0.3)/3 ; all off 0
    assert out["k2_policy"] == pytest.approx(0.1 / 3)
    assert out["k2_oracle"] == pytest.approx(0.4 / 3)
    assert out["k2_all_on"] == pytest.approx(-0.1 / 3)
    assert out["k2_all_off"] == 0.0
    assert out["total_policy"] == pytest.approx(0.9 / 3)
    assert out["total_regret"] == pytest.approx(0.3 / 3)


def test_policy_inputs_are_checked():
    with pytest.raises(ValueError, match="action indices"):
        policy_value([0, 3, 1], OUTCOMES)
    with pytest.raises(ValueError, match="mismatched lengths"):
        policy_value([0, 1], OUTCOMES)
    with pytest.raises(ValueError, match=r"\[N, A\]"):
        policy_value([0], [1.0, 2.0])
    with pytest.raises(ValueError, match="mismatched shapes"):
        compare_switch_policies([[1, 0]], [[0.1, 0.2], [0.3, 0.4]])


# --------------------------------------------------------------------------- effect accuracy
def test_uplift_error_by_hand():
    out = uplift_error([1.0, 2.0, 3.0], [1.5, 2.0, 2.0])
    # differences -0.5, 0, 1 -> squared 0.25, 0, 1 -> PEHE (mean) 1.25 / 3 ; |.| mean 1.5 / 3
    assert out["pehe"] == pytest.approx(1.25 / 3)
    assert out["rmse"] == pytest.approx(math.sqrt(1.25 / 3))
    assert out["mae"] == pytest.approx(0.5)
    assert out["ate_error"] == pytest.approx(0.5 / 3)


# --------------------------------------------------------------------------- input checks
def test_uplift_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="empty"):
        qini_auc_score([], [], [])
    with pytest.raises(ValueError, match="mismatched lengths"):
        qini_auc_score([0, 1, 1], [0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError, match="0 or 1"):
        uplift_auc_score([0, 2, 1, 0], [0.1, 0.2, 0.3, 0.4], [0, 1, 1, 0])
    with pytest.raises(ValueError, match="0 or 1"):
        uplift_auc_score([0, 1, 1, 0], [0.1, 0.2, 0.3, 0.4], [0, 2, 1, 0])
    with pytest.raises(ValueError, match="NaN"):
        uplift_auc_score([0, 1, 1, 0], [0.1, float("nan"), 0.3, 0.4], [0, 1, 1, 0])
    with pytest.raises(ValueError, match="treated and control"):
        qini_auc_score([0, 1, 1, 0], [0.1, 0.2, 0.3, 0.4], [1, 1, 1, 1])
    with pytest.raises(ValueError, match="single class"):
        qini_auc_score([0, 0, 0, 0], [0.1, 0.2, 0.3, 0.4], [0, 1, 1, 0])
    with pytest.raises(ValueError, match="constant outcome"):
        qini_auc_score([3, 3, 3, 3], [0.1, 0.2, 0.3, 0.4], [0, 1, 1, 0], continuous=True)
    with pytest.raises(TypeError, match="bool"):
        qini_auc_score(Y, S, W, negative_effect=1)


def test_cs_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="constant treatment intensity"):
        cs_auuc_score([1, 0, 1], [2, 2, 2], [0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="mismatched lengths"):
        cs_qini_score([1, 0, 1], [0, 1, 2], [0.3, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        cs_qini_score([1, 0, 1], [0, 1, 2], [0.3, float("nan"), 0.1])
    with pytest.raises(ValueError, match="empty"):
        cs_auuc_score([], [], [])
