"""Truth-based metrics: every value worked by hand on a few rows, then a 20k-row sanity population."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from liftlake.lib.evaluation.cvr_metrics import auc, log_loss
from liftlake.lib.evaluation.policy import compare_policies
from liftlake.lib.evaluation.truth_metrics import (
    average_ranks,
    best_constant_policy_value,
    binary_entropy,
    cvr_truth_report,
    ece,
    effect_accuracy,
    effect_truth_report,
    expected_auc,
    label_quality,
    pearson,
    policy_truth_report,
    reference_predictions,
    snips_mean,
    soft_log_loss,
    spearman,
    true_uplift_areas,
    true_uplift_auc,
    true_uplift_curve,
)

# --------------------------------------------------------------------------- effect accuracy
# estimated [1, 2, 3, 4] vs true [1, 1, 4, 2]: errors [0, 1, -1, 2]
#   PEHE = (0 + 1 + 1 + 4) / 4 = 1.5, sqrt-PEHE = sqrt(1.5); MAE = (0 + 1 + 1 + 2) / 4 = 1; bias = 2 / 4 = 0.5
#   Pearson: centred est [-1.5, -.5, .5, 1.5], centred true [-1, -1, 2, 0]: cov sum 3, sums of squares 5, 6
#   Spearman: ranks [1, 2, 3, 4] vs [1.5, 1.5, 4, 3] (the two 1s share ranks 1 and 2), centred
#   [-1.5, -.5, .5, 1.5] vs [-1, -1, 1.5, .5]: cov sum 3.5, sums of squares 5, 4.5
EST = [1.0, 2.0, 3.0, 4.0]
TRUE = [1.0, 1.0, 4.0, 2.0]


def test_effect_accuracy_by_hand():
    acc = effect_accuracy(EST, TRUE)
    assert acc["pehe"] == pytest.approx(1.5)
    assert acc["sqrt_pehe"] == pytest.approx(math.sqrt(1.5))
    assert acc["mae"] == pytest.approx(1.0)
    assert acc["bias"] == pytest.approx(0.5)
    assert acc["pearson"] == pytest.approx(3.0 / math.sqrt(5.0 * 6.0))
    assert acc["spearman"] == pytest.approx(3.5 / math.sqrt(5.0 * 4.5))


def test_spearman_with_ties_matches_scipy():
    assert spearman(EST, TRUE) == pytest.approx(stats.spearmanr(EST, TRUE).statistic)
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, 300), rng.integers(0, 4, 300) + 0.1 * rng.integers(0, 5, 300)  # many ties
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a, b).statistic, abs=1e-12)


def test_average_ranks_share_the_ranks_of_a_tie_group():
    # sorted 1, 2, 3, 3, 3: the three 3s span ranks 3, 4, 5 -> 4 each
    np.testing.assert_allclose(average_ranks([3, 1, 3, 2, 3]), [4, 1, 4, 2, 4])


def test_correlations_of_a_constant_are_nan():
    acc = effect_accuracy([0.5, 0.5, 0.5], [1.0, 2.0, 3.0])
    assert math.isnan(acc["pearson"]) and math.isnan(acc["spearman"])
    assert acc["bias"] == pytest.approx(-1.5)


# --------------------------------------------------------------------------- truth-based uplift curve
# score [0.9, 0.1, 0.5, 0.5], tau [2, -1, 1, 3]: order row 0 | rows 2, 3 (tied) | row 1
#   G at the group ends: k=1: 2; k=3: 2 + 1 + 3 = 6; k=4: 6 - 1 = 5
#   area (trapezoids): 1 + 2 (2 + 6) / 2 + (6 + 5) / 2 = 1 + 8 + 5.5 = 14.5
#   oracle order 3, 2, 1, -1: G = 3, 5, 6, 5, area 1.5 + 4 + 5.5 + 5.5 = 16.5; random: 4 * 5 / 2 = 10
#   normalized = (14.5 - 10) / (16.5 - 10) = 9 / 13; areas on (share, gain per user) axes are / 16
SCORE = [0.9, 0.1, 0.5, 0.5]
TAU = [2.0, -1.0, 1.0, 3.0]


def test_true_uplift_curve_by_hand():
    x, gain = true_uplift_curve(SCORE, TAU)
    np.testing.assert_allclose(x, [0, 1, 3, 4])
    np.testing.assert_allclose(gain, [0, 2, 6, 5])


def test_true_uplift_areas_by_hand():
    areas = true_uplift_areas(SCORE, TAU)
    assert areas["model"] == pytest.approx(14.5 / 16)
    assert areas["oracle"] == pytest.approx(16.5 / 16)
    assert areas["random"] == pytest.approx(10 / 16)
    assert areas["model_over_random"] == pytest.approx(4.5 / 16)
    assert areas["oracle_over_random"] == pytest.approx(6.5 / 16)
    assert areas["normalized"] == pytest.approx(9 / 13)
    assert true_uplift_auc(SCORE, TAU) == pytest.approx(9 / 13)


def test_a_tie_group_counts_as_the_mean_over_its_orderings():
    # rows 2, 3 in either order: areas 1 + 2.5 + 4.5 + 5.5 = 13.5 and 1 + 3.5 + 5.5 + 5.5 = 15.5, mean 14.5
    per_order = []
    for first, second in itertools.permutations([2, 3]):
        broken = np.array(SCORE)
        broken[first], broken[second] = 0.51, 0.49
        per_order.append(true_uplift_areas(broken, TAU)["model"])
    assert per_order == pytest.approx([13.5 / 16, 15.5 / 16])
    assert true_uplift_areas(SCORE, TAU)["model"] == pytest.approx(np.mean(per_order))


def test_oracle_is_one_random_zero_reversed_minus_one():
    assert true_uplift_auc(TAU, TAU) == pytest.approx(1.0)
    assert true_uplift_auc([7.0, 7.0, 7.0, 7.0], TAU) == pytest.approx(0.0, abs=1e-12)
    # reversed oracle: G = -1, 0, 2, 5, area -0.5 - 0.5 + 1 + 3.5 = 3.5 -> (3.5 - 10) / 6.5 = -1
    assert true_uplift_auc(-np.array(TAU), TAU) == pytest.approx(-1.0)


def test_true_uplift_auc_needs_heterogeneous_effects():
    with pytest.raises(ValueError, match="every true effect is equal"):
        true_uplift_auc([0.3, 0.1, 0.2], [1.0, 1.0, 1.0])
    assert math.isnan(true_uplift_areas([0.3, 0.1, 0.2], [1.0, 1.0, 1.0])["normalized"])


def test_effect_truth_report_keys():
    out = effect_truth_report(SCORE, TAU, prefix="tau_r1_k1")
    assert out["tau_r1_k1_true_auuc"] == pytest.approx(9 / 13)
    assert out["tau_r1_k1_true_auuc_over_random"] == pytest.approx(4.5 / 16)
    assert {"tau_r1_k1_sqrt_pehe", "tau_r1_k1_spearman", "tau_r1_k1_bias"} <= set(out)


# --------------------------------------------------------------------------- decisions
# true outcome of actions 0, 1 for 3 users: column means 4/3 and 5/3 -> best constant = action 1, 5/3
OUTCOMES = [[1.0, 3.0], [2.0, 0.0], [1.0, 2.0]]


def test_best_constant_policy_value_by_hand():
    best = best_constant_policy_value(OUTCOMES)
    assert best == {"value": pytest.approx(5 / 3), "action": 1.0}


def test_policy_truth_report_adds_the_best_constant_to_compare_policies():
    decision = [1, 0, 1]  # 3 + 2 + 2 = 7 -> 7/3, each user's best action
    out = policy_truth_report(decision, OUTCOMES, ["none", "coupon"])
    assert {k: v for k, v in out.items() if k in compare_policies(decision, OUTCOMES, ["none", "coupon"])} \
        == compare_policies(decision, OUTCOMES, ["none", "coupon"])
    assert out["policy"] == pytest.approx(7 / 3)
    assert out["best_constant"] == pytest.approx(5 / 3)
    assert out["best_constant_action"] == 1.0
    assert out["over_best_constant"] == pytest.approx(2 / 3)


def test_best_constant_needs_a_matrix():
    with pytest.raises(ValueError, match=r"\[N, A\]"):
        best_constant_policy_value([1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        best_constant_policy_value([[1.0, math.nan]])


# --------------------------------------------------------------------------- CVR against the truth
# score [0.1, 0.3, 0.3, 0.9], p [0.5, 0.2, 1.0, 0.4], 1 - p = [0.5, 0.8, 0, 0.6]
#   denominator sum_{i != j} p_i (1 - p_j) = 2.1 * 1.9 - (0.25 + 0.16 + 0 + 0.24) = 3.34
#   numerator: row 1 beats row 0: 0.2 * 0.5 = 0.1, ties row 2: 0.2 * 0 / 2 = 0
#              row 2 beats row 0: 1.0 * 0.5 = 0.5, ties row 1: 1.0 * 0.8 / 2 = 0.4
#              row 3 beats 0, 1, 2: 0.4 * (0.5 + 0.8 + 0) = 0.52            -> 1.52
def test_expected_auc_by_hand():
    assert expected_auc([0.1, 0.3, 0.3, 0.9], [0.5, 0.2, 1.0, 0.4]) == pytest.approx(1.52 / 3.34)


def test_expected_auc_matches_brute_force_and_the_label_auc():
    rng = np.random.default_rng(0)
    score = np.round(rng.random(150), 1)  # ties
    p = rng.random(150)
    wins = (score[:, None] > score[None, :]) + 0.5 * (score[:, None] == score[None, :])
    weight = p[:, None] * (1 - p[None, :])
    np.fill_diagonal(weight, 0.0)
    assert expected_auc(score, p) == pytest.approx(np.sum(weight * wins) / np.sum(weight), abs=1e-12)
    labels = (rng.random(150) < 0.3).astype(float)
    assert expected_auc(score, labels) == pytest.approx(auc(labels, score), abs=1e-12)


def test_expected_auc_needs_both_outcomes_possible():
    with pytest.raises(ValueError, match="no .converter, non-converter. pair"):
        expected_auc([0.1, 0.2], [0.0, 0.0])
    with pytest.raises(ValueError, match="probabilities"):
        expected_auc([0.1, 0.2], [0.5, 1.5])


# pred [0.5, 0.8] vs q [0.2, 1.0]: -(0.2 ln .5 + 0.8 ln .5 + 1 ln .8) / 2 = -ln(0.4) / 2
# entropy of q: -(0.2 ln .2 + 0.8 ln .8 + 0) / 2
def test_soft_log_loss_and_entropy_by_hand():
    assert soft_log_loss([0.5, 0.8], [0.2, 1.0]) == pytest.approx(-math.log(0.4) / 2)
    assert binary_entropy([0.2, 1.0]) == pytest.approx(-(0.2 * math.log(0.2) + 0.8 * math.log(0.8)) / 2)
    assert soft_log_loss([0.2, 1.0], [0.2, 1.0]) == pytest.approx(binary_entropy([0.2, 1.0]), abs=1e-6)
    assert soft_log_loss([0.3, 0.9, 0.6], [0, 1, 1]) == pytest.approx(log_loss([0, 1, 1], [0.3, 0.9, 0.6]))


def test_soft_log_loss_rejects_non_probabilities():
    with pytest.raises(ValueError, match="pred: expected probabilities"):
        soft_log_loss([1.2, 0.5], [0.1, 0.2])
    with pytest.raises(ValueError, match="eps"):
        soft_log_loss([0.2, 0.5], [0.1, 0.2], eps=0.0)


# 4 equal-width bins; pred [0.1, 0.2, 0.3, 0.6, 0.9, 1.0] -> bins 0, 0, 1, 2, 3, 3 (1.0 in the last)
#   counts [2, 1, 1, 2]; mean pred [0.15, 0.3, 0.6, 0.95]; mean label [0.5, 0, 1, 1]
#   ECE = (2 * 0.35 + 0.3 + 0.4 + 2 * 0.05) / 6 = 0.25
def test_ece_with_counts_by_hand():
    bins = ece([0.1, 0.2, 0.3, 0.6, 0.9, 1.0], [0, 1, 0, 1, 1, 1], bins=4)
    assert bins.ece == pytest.approx(0.25)
    np.testing.assert_array_equal(bins.counts, [2, 1, 1, 2])
    np.testing.assert_allclose(bins.edges, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(bins.mean_pred, [0.15, 0.3, 0.6, 0.95])
    np.testing.assert_allclose(bins.mean_true, [0.5, 0, 1, 1])


def test_ece_empty_bins_and_soft_targets():
    bins = ece([0.1, 0.9], [0, 1], bins=4)  # gaps 0.1 and 0.1, bins 1 and 2 empty
    assert bins.ece == pytest.approx(0.1)
    np.testing.assert_array_equal(bins.counts, [1, 0, 0, 1])
    assert np.isnan(bins.mean_pred[1:3]).all() and np.isnan(bins.mean_true[1:3]).all()
    assert ece([0.1, 0.2], [0.3, 0.1], bins=4).ece == pytest.approx(0.05)  # one bin: |0.15 - 0.2|
    assert ece([0.3, 0.7], [0.3, 0.7]).ece == 0.0


@pytest.mark.parametrize("bins", [0, -3, 2.5, True])
def test_ece_rejects_bad_bin_counts(bins):
    with pytest.raises(ValueError, match="bins"):
        ece([0.1, 0.2], [0, 1], bins=bins)


def test_cvr_truth_report_of_the_oracle_and_a_biased_estimate():
    q = np.array([0.1, 0.2, 0.4, 0.05])
    oracle = cvr_truth_report(q, q, potential_conversion=[0, 0, 1, 0])
    assert oracle["cvr_true_ece"] == 0.0 and oracle["cvr_true_bias"] == pytest.approx(0.0)
    assert oracle["cvr_true_logloss"] == pytest.approx(oracle["cvr_true_entropy"])
    assert oracle["cvr_true_auc"] == pytest.approx(expected_auc(q, q))
    assert "cvr_entire_ece" in oracle
    biased = cvr_truth_report(q + 0.1, q)
    assert biased["cvr_true_bias"] == pytest.approx(0.1)
    assert biased["cvr_true_relative_bias"] == pytest.approx(0.1 / q.mean())
    assert biased["cvr_true_logloss"] > oracle["cvr_true_logloss"]
    assert "cvr_true_auc" not in cvr_truth_report([0.1, 0.2], [0.0, 0.0])


# --------------------------------------------------------------------------- ESCIM label quality
# rows 0-4 not clicked, row 5 clicked (its label does not count); labelled among them: rows 0, 1
#   potential conversions [1, 0, 0, 0, 1 | 1]: share 2/5, labelled rate 1/2, base rate 2/5, lift 1.25,
#   recall 1/2; true CVRs [.6, .2, .1, .1, 0 | .9]: labelled rate .4, base .2, lift 2, recall .8
LABEL = [1, 1, 0, 0, 0, 1]
CLICKED = [0, 0, 0, 0, 0, 1]


def test_label_quality_against_potential_conversions():
    out = label_quality(LABEL, [1, 0, 0, 0, 1, 1], CLICKED)
    assert out == {"labelled_share": pytest.approx(0.4), "labelled_true_rate": pytest.approx(0.5),
                   "base_rate": pytest.approx(0.4), "lift": pytest.approx(1.25), "recall": pytest.approx(0.5),
                   "n_unclicked": 5.0, "n_labelled": 2.0}


def test_label_quality_against_true_cvr():
    out = label_quality(LABEL, [0.6, 0.2, 0.1, 0.1, 0.0, 0.9], CLICKED)
    assert out["labelled_true_rate"] == pytest.approx(0.4)
    assert out["base_rate"] == pytest.approx(0.2)
    assert out["lift"] == pytest.approx(2.0)
    assert out["recall"] == pytest.approx(0.8)


def test_label_quality_edge_cases():
    none_labelled = label_quality([0, 0, 1], [1, 0, 1], [0, 0, 1])
    assert none_labelled["labelled_share"] == 0.0 and math.isnan(none_labelled["lift"])
    with pytest.raises(ValueError, match="every exposure is clicked"):
        label_quality([1, 0], [1, 0], [1, 1])
    with pytest.raises(ValueError, match="label: labels must be 0 or 1"):
        label_quality([0.5, 0], [1, 0], [0, 0])


# --------------------------------------------------------------------------- selection correction's reach
def test_snips_mean_by_hand():
    # clicked rows 0, 1, 2 with weights 1/q = 2, 4, 1: (2 * 1 + 4 * 0 + 1 * 1) / 7; row 3 is not clicked
    assert snips_mean([1, 0, 1, 0], [1, 1, 1, 0], [0.5, 0.25, 1.0, 0.3]) == pytest.approx(3 / 7)
    with pytest.raises(ValueError, match="no clicked row"):
        snips_mean([0, 0], [0, 0], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"propensity of a clicked row must be in \(0, 1\]"):
        snips_mean([1, 0], [1, 0], [0.0, 0.5])


def test_snips_mean_recovers_the_truth_only_with_the_propensity_that_sees_the_shared_cause():
    rng = np.random.default_rng(3)
    n = 400_000
    x = rng.integers(0, 2, n)  # what a model sees
    u = rng.normal(size=n)  # the unobserved cause of both the click and the conversion
    ctr = 1 / (1 + np.exp(-(-2.0 + 0.8 * x + 1.0 * u)))
    cvr = 1 / (1 + np.exp(-(-2.5 + 1.0 * u)))
    click = (rng.random(n) < ctr).astype(int)
    conversion = click * (rng.random(n) < cvr)
    truth = cvr.mean()
    assert snips_mean(conversion, click, ctr) == pytest.approx(truth, abs=0.004)
    ctr_on_x = np.where(x == 1, click[x == 1].mean(), click[x == 0].mean())
    clicked_rate = conversion[click == 1].mean()
    on_features = snips_mean(conversion, click, ctr_on_x)
    assert truth + 0.03 < on_features < clicked_rate + 0.004  # corrects for x, not for u


# --------------------------------------------------------------------------- reference rows
def test_reference_predictions():
    truth = np.array([0.3, -0.1, 0.8, 0.2, 0.0])
    refs = reference_predictions(truth, train_mean=0.25, rng=7)
    np.testing.assert_array_equal(refs["oracle"], truth)
    np.testing.assert_array_equal(refs["constant"], np.full(5, 0.25))
    np.testing.assert_array_equal(np.sort(refs["random"]), np.sort(truth))
    same_seed = reference_predictions(truth, 0.25, np.random.default_rng(7))
    np.testing.assert_array_equal(refs["random"], same_seed["random"])
    assert true_uplift_auc(refs["oracle"], truth) == pytest.approx(1.0)
    assert true_uplift_auc(refs["constant"], truth) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="train_mean"):
        reference_predictions(truth, math.nan, 0)
    with pytest.raises(ValueError, match="rng"):
        reference_predictions(truth, 0.1, "seed")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- input validation
CALLS = {
    "effect_accuracy": lambda a, b: effect_accuracy(a, b),
    "spearman": lambda a, b: spearman(a, b),
    "true_uplift_curve": lambda a, b: true_uplift_curve(a, b),
    "true_uplift_auc": lambda a, b: true_uplift_auc(a, b),
    "expected_auc": lambda a, b: expected_auc(a, b),
    "soft_log_loss": lambda a, b: soft_log_loss(a, b),
    "ece": lambda a, b: ece(a, b),
    "cvr_truth_report": lambda a, b: cvr_truth_report(a, b),
    "label_quality": lambda a, b: label_quality([0] * len(b), a, [0] * len(b)),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_length_mismatch_nan_and_empty_are_rejected(name):
    call = CALLS[name]
    with pytest.raises(ValueError, match="mismatched lengths"):
        call([0.1, 0.2, 0.3], [0.1, 0.9])
    with pytest.raises(ValueError, match="NaN"):
        call([0.1, math.nan], [0.1, 0.9])
    with pytest.raises(ValueError, match="empty"):
        call([], [])


def test_two_dimensional_input_is_rejected():
    with pytest.raises(ValueError, match="1-D"):
        effect_accuracy([[1.0, 2.0]], [[1.0, 2.0]])


# --------------------------------------------------------------------------- sanity on a synthetic population
def test_oracle_constant_and_noisy_estimate_on_20k_rows():
    rng = np.random.default_rng(2024)
    n = 20_000
    x = rng.normal(size=n)
    tau = 0.02 + 0.03 * np.tanh(x) + 0.01 * rng.normal(size=n)  # heterogeneous, some negative effects
    noisy = tau + 0.03 * rng.normal(size=n)
    refs = reference_predictions(tau, train_mean=float(tau.mean()), rng=rng)

    assert true_uplift_auc(refs["oracle"], tau) == pytest.approx(1.0, abs=1e-9)
    assert true_uplift_auc(refs["constant"], tau) == pytest.approx(0.0, abs=1e-9)  # one tie group = random
    noisy_auc = true_uplift_auc(noisy, tau)
    assert 0.2 < noisy_auc < 0.95
    assert abs(true_uplift_auc(refs["random"], tau)) < 0.05
    assert true_uplift_auc(-tau, tau) == pytest.approx(-1.0, abs=1e-9)

    oracle_fit, noisy_fit = effect_accuracy(refs["oracle"], tau), effect_accuracy(noisy, tau)
    assert oracle_fit["sqrt_pehe"] == 0.0 and oracle_fit["spearman"] == pytest.approx(1.0)
    assert noisy_fit["sqrt_pehe"] == pytest.approx(0.03, rel=0.05)
    assert 0.0 < noisy_fit["spearman"] < 1.0
