"""Metrics against the simulator's ground truth, over ALL test rows (numpy in, floats / dicts out).

The simulator knows, for every test row, what the observed logs hide: the true individual effect
tau_i, the true CVR q_i = P(conversion | do(click=1)) of every exposure, its potential conversion, and
the true outcome of every action. These functions score a prediction against that truth; the same
code scores the models and the reference rows of ``reference_predictions`` (oracle, constant, random).

Effects (uplift models)
  ``effect_accuracy``      sqrt-PEHE, PEHE, MAE, bias, Pearson and Spearman correlation with tau.
  ``true_uplift_curve``    G(k) = sum of tau over the k users ranked first by the model's score.
  ``true_uplift_areas``    areas under G for the model, the oracle ordering and random ordering.
  ``true_uplift_auc``      (A_model - A_random) / (A_oracle - A_random): oracle 1, random 0.
  With the truth, the uplift curve (mean effect among the top k, times k) and the Qini curve
  (incremental responders among the top k) are the same curve G, so one function serves both.
  ``effect_truth_report``  the above as one flat dict for ``ops.model_metrics``.
Decisions
  ``best_constant_policy_value`` the best single action for everybody; ``policy_truth_report`` adds it
  to ``policy.compare_policies`` (policy value, oracle, random, regret), which it reuses.
CVR over the entire exposure space
  ``expected_auc``         AUC against true probabilities (no Bernoulli draw).
  ``soft_log_loss``        cross-entropy against a probability target; ``binary_entropy`` its floor.
  ``ece``                  expected calibration error, equal-width bins, with the per-bin counts.
  ``cvr_truth_report``     the above as one flat dict; the IEB bias is ``cvr_metrics.ieb_bias``.
ESCIM counterfactual labels
  ``label_quality``        share labelled, true conversion rate of the labelled, base rate, lift.
Reference rows
  ``reference_predictions`` oracle (the truth), constant (the training mean), random (the truth
  shuffled: the right marginal distribution, no information about which row is which).

Ties in a score are averaged over: every ordering of a tie group is taken as equally likely, so a
constant score is exactly the random ordering (see ``true_uplift_curve``).
Inputs are validated with ``ValueError`` messages naming the argument (empty, NaN / inf, mismatched
lengths, values outside [0, 1] where probabilities are expected).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from liftlake.lib.evaluation.cvr_metrics import as_1d_float, as_binary, check_same_length, ieb_bias
from liftlake.lib.evaluation.policy import _outcome_matrix, compare_policies, uplift_error

__all__ = [
    "average_ranks",
    "pearson",
    "spearman",
    "effect_accuracy",
    "true_uplift_curve",
    "true_uplift_areas",
    "true_uplift_auc",
    "effect_truth_report",
    "best_constant_policy_value",
    "policy_truth_report",
    "expected_auc",
    "soft_log_loss",
    "binary_entropy",
    "CalibrationBins",
    "ece",
    "cvr_truth_report",
    "label_quality",
    "reference_predictions",
]


# --------------------------------------------------------------------------- input checks
def _paired(name_a: str, a: Any, name_b: str, b: Any) -> tuple[np.ndarray, np.ndarray]:
    first, second = as_1d_float(name_a, a), as_1d_float(name_b, b)
    check_same_length(**{name_a: first, name_b: second})
    return first, second


def _require_probabilities(name: str, values: np.ndarray) -> None:
    if np.any((values < 0.0) | (values > 1.0)):
        low, high = float(values.min()), float(values.max())
        raise ValueError(f"{name}: expected probabilities in [0, 1], got values in [{low:.4g}, {high:.4g}]")


def _probabilities(name: str, values: Any) -> np.ndarray:
    arr = as_1d_float(name, values)
    _require_probabilities(name, arr)
    return arr


def _tie_groups(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) indices, end inclusive, of each run of equal values in a sorted array."""
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:] - 1, sorted_values.size - 1]
    return starts, ends


# --------------------------------------------------------------------------- correlation
def average_ranks(values: Any) -> np.ndarray:
    """1-based ranks, ascending; a group of tied values gets the mean of the ranks it spans."""
    arr = as_1d_float("values", values)
    order = np.argsort(arr, kind="mergesort")
    starts, ends = _tie_groups(arr[order])
    ranks = np.empty(arr.size)
    ranks[order] = np.repeat((starts + ends) / 2.0 + 1.0, ends - starts + 1)
    return ranks


def pearson(a: Any, b: Any) -> float:
    """r = sum (a - a_bar)(b - b_bar) / sqrt(sum (a - a_bar)^2 sum (b - b_bar)^2); NaN if a or b is constant."""
    x, y = _paired("a", a, "b", b)
    x_c, y_c = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(np.sum(x_c * x_c)) * float(np.sum(y_c * y_c)))
    if denominator == 0.0:  # a constant series has no direction to correlate with
        return math.nan
    return float(np.clip(np.sum(x_c * y_c) / denominator, -1.0, 1.0))


def spearman(a: Any, b: Any) -> float:
    """rho = Pearson correlation of the average ranks (ties averaged); NaN if a or b is constant."""
    x, y = _paired("a", a, "b", b)
    return pearson(average_ranks(x), average_ranks(y))


def effect_accuracy(estimated: Any, true: Any) -> dict[str, float]:
    """Accuracy of estimated individual effects tau_hat against the true ones tau, over all rows.

    sqrt_pehe = sqrt(mean (tau_hat - tau)^2)   (the root-mean-squared error the report prints)
    pehe      = mean (tau_hat - tau)^2         (Hill 2011; same key as ``policy.uplift_error``)
    mae       = mean |tau_hat - tau|
    bias      = mean(tau_hat) - mean(tau)      (signed: > 0 over-estimates the ATE)
    pearson, spearman: correlation of tau_hat with tau (Spearman on average ranks); NaN when either
    is constant (the constant reference row), since a constant carries no ranking.
    """
    est, truth = _paired("estimated", estimated, "true", true)
    errors = uplift_error(est, truth)
    return {"sqrt_pehe": errors["rmse"], "pehe": errors["pehe"], "mae": errors["mae"],
            "bias": errors["ate_error"], "pearson": pearson(est, truth), "spearman": spearman(est, truth)}


# --------------------------------------------------------------------------- truth-based uplift curve
def true_uplift_curve(score: Any, true_effect: Any) -> tuple[np.ndarray, np.ndarray]:
    """The expected gain of targeting the top k users by ``score``: G(k) = sum_{i in top k} tau_i.

    Points (k, G(k)) at k = 0 and at the end of every group of tied scores, highest score first.
    Within a tie group every order is equally likely, so the expected G is linear between the group's
    end points: the curve joins them by straight lines, and its trapezoid area is the area averaged
    over all tie-breaks (a constant score gives the straight line of random targeting). Divide both
    axes by N for (share targeted, gain per user of the population).
    """
    scores, tau = _paired("score", score, "true_effect", true_effect)
    order = np.argsort(-scores, kind="mergesort")
    _, ends = _tie_groups(scores[order])
    gain = np.cumsum(tau[order])[ends]
    return np.r_[0.0, ends + 1.0], np.r_[0.0, gain]


def _area(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def true_uplift_areas(score: Any, true_effect: Any) -> dict[str, float]:
    """Areas under G on axes (share targeted, gain per user), i.e. area(G) / N^2, by the trapezoid rule.

    model  = area of the model's curve;  random = sum(tau) / (2N) (the straight line to (1, mean tau));
    oracle = area of the curve of the ordering by tau itself (the best any ordering can do);
    model_over_random = model - random;  oracle_over_random = oracle - random;
    normalized = (model - random) / (oracle - random) (NaN when every tau is equal: no ordering helps).
    """
    scores, tau = _paired("score", score, "true_effect", true_effect)
    n = float(tau.size)
    model = _area(*true_uplift_curve(scores, tau)) / n**2
    oracle = _area(*true_uplift_curve(tau, tau)) / n**2
    random = float(tau.sum()) / (2.0 * n)
    headroom = oracle - random
    normalized = (model - random) / headroom if headroom > 0.0 else math.nan
    return {"model": model, "random": random, "oracle": oracle, "model_over_random": model - random,
            "oracle_over_random": headroom, "normalized": normalized}


def true_uplift_auc(score: Any, true_effect: Any) -> float:
    """Normalized area under the truth-based uplift (= Qini) curve:
    (A_model - A_random) / (A_oracle - A_random), 1 for the oracle ordering, 0 for random (and for a
    constant score), -1 for the reversed oracle ordering. Raises ValueError when every true effect is
    the same, since then every ordering is worth the same and the ratio is 0 / 0."""
    areas = true_uplift_areas(score, true_effect)
    if math.isnan(areas["normalized"]):
        raise ValueError("true_uplift_auc: every true effect is equal, so the oracle is no better than random")
    return areas["normalized"]


def effect_truth_report(estimated: Any, true: Any, prefix: str) -> dict[str, float]:
    """``effect_accuracy`` and the truth-based uplift areas as ``<prefix>_<key>``:
    sqrt_pehe, pehe, mae, bias, pearson, spearman, true_auuc (normalized), true_auuc_over_random,
    true_auuc_oracle_over_random. true_auuc is NaN when every true effect is equal."""
    est, truth = _paired("estimated", estimated, "true", true)
    areas = true_uplift_areas(est, truth)
    out = effect_accuracy(est, truth)
    out.update({"true_auuc": areas["normalized"], "true_auuc_over_random": areas["model_over_random"],
                "true_auuc_oracle_over_random": areas["oracle_over_random"]})
    return {f"{prefix}_{key}": value for key, value in out.items()}


# --------------------------------------------------------------------------- decisions
def best_constant_policy_value(true_outcome_under_each_action: Any) -> dict[str, float]:
    """The best single action for everybody: value = max_a mean_i V[i, a] over an [N, A] matrix of true
    outcomes, and its column index ``action`` (the lowest index among equals)."""
    outcomes = _outcome_matrix(true_outcome_under_each_action)
    column_means = outcomes.mean(axis=0)
    best = int(np.argmax(column_means))
    return {"value": float(column_means[best]), "action": float(best)}


def policy_truth_report(
    decision: Any, true_outcome_under_each_action: Any, action_names: Sequence[str] | None = None
) -> dict[str, float]:
    """``policy.compare_policies`` (policy, oracle, random, regret, normalized, oracle_agreement,
    always_<name>) plus best_constant (its value), best_constant_action and
    over_best_constant = policy - best_constant (> 0: personalising pays over any all-or-nothing rule)."""
    result = compare_policies(decision, true_outcome_under_each_action, action_names)
    best = best_constant_policy_value(true_outcome_under_each_action)
    result.update({"best_constant": best["value"], "best_constant_action": best["action"],
                   "over_best_constant": result["policy"] - best["value"]})
    return result


# --------------------------------------------------------------------------- CVR against true probabilities
def expected_auc(score: Any, true_prob: Any) -> float:
    """AUC against true probabilities: the probability that, of two distinct rows i != j with i a
    converter and j not, the score ranks i above j (ties 1/2), when row i converts with p_i:

        AUC = sum_{i != j} p_i (1 - p_j) ([s_i > s_j] + [s_i = s_j] / 2) / sum_{i != j} p_i (1 - p_j).

    O(N log N): rows sorted by score; a tie group G contributes P_G Q_below + (P_G Q_G - sum_G p(1-p)) / 2,
    with P_G = sum_G p, Q_G = sum_G (1 - p), Q_below = sum of (1 - p) over lower scores. With 0/1
    probabilities it is the Mann-Whitney AUC (``cvr_metrics.auc``).
    """
    scores, probs = _paired("score", score, "true_prob", true_prob)
    _require_probabilities("true_prob", probs)
    same_row = float(np.sum(probs * (1.0 - probs)))
    pairs = float(probs.sum()) * float((1.0 - probs).sum()) - same_row
    if pairs <= 0.0:
        raise ValueError("expected_auc: true_prob holds no (converter, non-converter) pair: all 0 or all 1")
    order = np.argsort(scores, kind="mergesort")
    starts, ends = _tie_groups(scores[order])
    p_sorted = probs[order]
    p_group = np.add.reduceat(p_sorted, starts)
    q_group = np.add.reduceat(1.0 - p_sorted, starts)
    pq_group = np.add.reduceat(p_sorted * (1.0 - p_sorted), starts)
    q_below = np.r_[0.0, np.cumsum(q_group)[:-1]]
    wins = np.sum(p_group * q_below) + np.sum(p_group * q_group - pq_group) / 2.0
    return float(np.clip(wins / pairs, 0.0, 1.0))


def soft_log_loss(pred: Any, true_prob: Any, eps: float = 1e-7) -> float:
    """Cross-entropy against a probability target q (soft labels), prediction clipped to [eps, 1 - eps]:
    -mean(q log p + (1 - q) log(1 - p)). With 0/1 targets it is ``cvr_metrics.log_loss``; its minimum
    over p is the target's entropy (``binary_entropy``), reached at p = q."""
    p, q = _paired("pred", pred, "true_prob", true_prob)
    _require_probabilities("pred", p)
    _require_probabilities("true_prob", q)
    if not 0.0 < eps < 0.5:
        raise ValueError(f"soft_log_loss: eps must be in (0, 0.5), got {eps}")
    clipped = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(q * np.log(clipped) + (1.0 - q) * np.log1p(-clipped)))


def binary_entropy(true_prob: Any) -> float:
    """-mean(q log q + (1 - q) log(1 - q)), with 0 log 0 = 0: the oracle's soft log-loss, its floor."""
    q = _probabilities("true_prob", true_prob)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0.0, q * np.log(q), 0.0) + np.where(q < 1.0, (1.0 - q) * np.log1p(-q), 0.0)
    return float(-np.mean(terms))


@dataclass(frozen=True)
class CalibrationBins:
    """Equal-width reliability diagram: bin b covers [edges[b], edges[b+1]) (the last bin includes 1).
    ``mean_pred`` / ``mean_true`` are NaN in an empty bin."""

    ece: float
    edges: np.ndarray
    counts: np.ndarray
    mean_pred: np.ndarray
    mean_true: np.ndarray


def ece(pred: Any, true_prob_or_label: Any, bins: int = 10) -> CalibrationBins:
    """Expected calibration error over B equal-width bins of the prediction p on [0, 1]:

        ECE = sum_b (n_b / N) |mean_{i in b} p_i - mean_{i in b} y_i|,   bin b = floor(p * B) (1 -> B - 1),

    y a 0/1 label (the potential conversion) or the true probability; empty bins contribute 0.
    """
    p, y = _paired("pred", pred, "true_prob_or_label", true_prob_or_label)
    _require_probabilities("pred", p)
    _require_probabilities("true_prob_or_label", y)
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"ece: bins must be a positive integer, got {bins!r}")
    n_bins = int(bins)
    bin_of_row = np.minimum(np.floor(p * n_bins).astype(np.int64), n_bins - 1)
    counts = np.bincount(bin_of_row, minlength=n_bins)
    sum_pred = np.bincount(bin_of_row, weights=p, minlength=n_bins)
    sum_true = np.bincount(bin_of_row, weights=y, minlength=n_bins)
    filled = counts > 0
    mean_pred = np.full(n_bins, math.nan)
    mean_true = np.full(n_bins, math.nan)
    mean_pred[filled] = sum_pred[filled] / counts[filled]
    mean_true[filled] = sum_true[filled] / counts[filled]
    error = float(np.sum(np.abs(sum_pred[filled] - sum_true[filled])) / p.size)  # n_b |mean gap| = |sum gap|
    return CalibrationBins(ece=error, edges=np.linspace(0.0, 1.0, n_bins + 1), counts=counts,
                           mean_pred=mean_pred, mean_true=mean_true)


def cvr_truth_report(
    pred_cvr: Any, true_cvr: Any, potential_conversion: Any | None = None, bins: int = 10
) -> dict[str, float]:
    """A CVR estimate over every exposure (clicked or not) against the truth, as one flat dict:

    cvr_true_auc (``expected_auc`` against q), cvr_true_logloss (``soft_log_loss``), cvr_true_entropy
    (the oracle's floor of that log-loss), cvr_true_ece (``ece`` against q), cvr_true_bias and
    cvr_true_relative_bias (``cvr_metrics.ieb_bias``: mean p - mean q); with ``potential_conversion``
    also cvr_entire_ece (against the 0/1 potential conversions; their AUC / log-loss are
    ``cvr_report``'s cvr_entire_auc / cvr_entire_logloss). cvr_true_auc is left out when q holds no
    (converter, non-converter) pair.
    """
    p, q = _paired("pred_cvr", pred_cvr, "true_cvr", true_cvr)
    _require_probabilities("pred_cvr", p)
    _require_probabilities("true_cvr", q)
    bias = ieb_bias(p, q)
    out = {"cvr_true_logloss": soft_log_loss(p, q), "cvr_true_entropy": binary_entropy(q),
           "cvr_true_ece": ece(p, q, bins).ece, "cvr_true_bias": bias["bias"],
           "cvr_true_relative_bias": bias["relative_bias"]}
    if float(q.sum()) * float((1.0 - q).sum()) - float(np.sum(q * (1.0 - q))) > 0.0:
        out["cvr_true_auc"] = expected_auc(p, q)
    if potential_conversion is not None:
        potential = as_binary("potential_conversion", potential_conversion)
        check_same_length(pred_cvr=p, potential_conversion=potential)
        out["cvr_entire_ece"] = ece(p, potential, bins).ece
    return out


# --------------------------------------------------------------------------- ESCIM label quality
def label_quality(label: Any, true_conversion: Any, clicked: Any) -> dict[str, float]:
    """How good ESCIM's counterfactual labels are on the non-clicked exposures U = {i: clicked_i = 0}.

    ``true_conversion``: the potential conversion (0/1) or the true CVR q_i, per exposure.
    labelled_share     = mean_{U} label                     (share of non-clicked rows labelled 1)
    labelled_true_rate = mean_{U, label=1} true_conversion  (precision of the labels; NaN if none)
    base_rate          = mean_{U} true_conversion           (what labelling at random would hit)
    lift               = labelled_true_rate / base_rate     (1 = no better than random; NaN if none
                         labelled, inf if base_rate = 0 and a labelled row converts)
    recall             = sum_{U} label * true_conversion / sum_{U} true_conversion (NaN if base_rate = 0)
    n_unclicked, n_labelled: the counts behind them.
    """
    labels = as_binary("label", label)
    truth = as_1d_float("true_conversion", true_conversion)
    clicks = as_binary("clicked", clicked)
    check_same_length(label=labels, true_conversion=truth, clicked=clicks)
    _require_probabilities("true_conversion", truth)
    unclicked = clicks == 0
    if not unclicked.any():
        raise ValueError("label_quality: every exposure is clicked; there is no non-clicked row to label")
    labelled = unclicked & (labels == 1)
    n_unclicked, n_labelled = int(unclicked.sum()), int(labelled.sum())
    base_rate = float(truth[unclicked].mean())
    hit_rate = float(truth[labelled].mean()) if n_labelled else math.nan
    if math.isnan(hit_rate):
        lift = math.nan
    elif base_rate > 0.0:
        lift = hit_rate / base_rate
    else:
        lift = math.inf if hit_rate > 0.0 else math.nan
    true_total = float(truth[unclicked].sum())
    recall = float(truth[labelled].sum()) / true_total if true_total > 0.0 else math.nan
    return {"labelled_share": n_labelled / n_unclicked, "labelled_true_rate": hit_rate, "base_rate": base_rate,
            "lift": lift, "recall": recall, "n_unclicked": float(n_unclicked), "n_labelled": float(n_labelled)}


# --------------------------------------------------------------------------- selection correction's reach
def snips_mean(outcome: Any, clicked: Any, propensity: Any) -> float:
    """Self-normalised IPS estimate of the mean outcome over every exposure from the clicked ones:
    sum_{O} r_i / q_i / sum_{O} 1 / q_i (DCMT eq. 13's weights), with q_i the click propensity.

    With the true propensity it recovers the mean of the potential outcome; with a propensity that
    sees only the features it recovers E_x[E[r | click, x]], which differs from the truth by the
    part of the selection that runs through what the features do not show. That gap is the least
    bias any CVR model correcting by a propensity on the features is left with."""
    r = as_1d_float("outcome", outcome)
    clicks = as_binary("clicked", clicked)
    q = as_1d_float("propensity", propensity)
    check_same_length(outcome=r, clicked=clicks, propensity=q)
    on = clicks == 1
    if not on.any():
        raise ValueError("snips_mean: no clicked row")
    if not np.all((q[on] > 0.0) & (q[on] <= 1.0)):
        raise ValueError("snips_mean: propensity of a clicked row must be in (0, 1]")
    weights = 1.0 / q[on]
    return float(np.sum(weights * r[on]) / np.sum(weights))


# --------------------------------------------------------------------------- reference rows
def reference_predictions(
    truth: Any, train_mean: float, rng: np.random.Generator | int
) -> dict[str, np.ndarray]:
    """Predictions of the three reference rows of every table, to be scored by the models' metric code:

    oracle   = the truth itself (true effect tau_i or true CVR q_i);
    constant = ``train_mean`` for every row (the ATE / mean CVR of the training rows: no ranking,
               calibrated in the large only as far as train and test agree);
    random   = the truth randomly permuted (seeded by ``rng``): the right marginal distribution and
               mean, no information about which row is which; its ranking metrics are random's
               (0 normalized uplift area, AUC 0.5 in expectation).
    """
    values = as_1d_float("truth", truth)
    if isinstance(train_mean, bool) or not isinstance(train_mean, (int, float, np.number)) \
            or not math.isfinite(float(train_mean)):
        raise ValueError(f"train_mean: expected a finite number, got {train_mean!r}")
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        generator = np.random.default_rng(int(rng))
    elif isinstance(rng, np.random.Generator):
        generator = rng
    else:
        raise ValueError(f"rng: expected a numpy Generator or an integer seed, got {type(rng).__name__}")
    return {"oracle": values.copy(), "constant": np.full(values.size, float(train_mean)),
            "random": generator.permutation(values)}
