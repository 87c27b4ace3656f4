"""CVR-family evaluation metrics over numpy arrays (no torch, no Spark).

Ranking and calibration: ``auc``, ``log_loss``, ``ks``, ``best_threshold_f1``.
ESCM² checks (Section V-D / V-E):
- ``ieb_bias``: Table V's intrinsic-estimation-bias check, the mean CVR estimate over the whole
  exposure space against the truth (ESMM over-estimates it).
- ``causal_risk_ratio``: the false-independence-prior check, the causal risk ratio of "conversion"
  for clicked vs. propensity-matched non-clicked exposures; |CRR - 1| is the causal strength O -> R.
``cvr_report`` bundles them into one flat ``dict[str, float]`` for ``ops.model_metrics``.

Every function validates its input and raises ``ValueError`` with a message naming the argument:
empty arrays, mismatched lengths, labels outside {0, 1}, NaN / inf predictions, and a single class
where a ranking metric needs both.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "auc",
    "log_loss",
    "ks",
    "best_threshold_f1",
    "ieb_bias",
    "causal_risk_ratio",
    "cvr_report",
]


# --------------------------------------------------------------------------- input checks
def as_1d_float(name: str, values: Any) -> np.ndarray:
    """A non-empty, finite, 1-D float64 copy of ``values``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: empty input")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name}: expected numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name}: {bad} NaN / infinite value(s)")
    return arr


def as_binary(name: str, values: Any) -> np.ndarray:
    """A 1-D float64 array whose values are all 0 or 1."""
    arr = as_1d_float(name, values)
    outside = (arr != 0.0) & (arr != 1.0)
    if np.any(outside):
        shown = np.unique(arr[outside])[:5].tolist()
        raise ValueError(f"{name}: labels must be 0 or 1, got values such as {shown}")
    return arr


def check_same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"mismatched lengths: {lengths}")


def require_both_classes(name: str, labels: np.ndarray, metric: str) -> None:
    positives = int(labels.sum())
    if positives == 0 or positives == labels.size:
        only = int(labels[0])
        raise ValueError(f"{metric}: {name} holds a single class (all {only}); it needs both 0 and 1")


def _labels_and_scores(y: Any, p: Any, metric: str, both_classes: bool) -> tuple[np.ndarray, np.ndarray]:
    labels = as_binary("y", y)
    scores = as_1d_float("p", p)
    check_same_length(y=labels, p=scores)
    if both_classes:
        require_both_classes("y", labels, metric)
    return labels, scores


def _descending_groups(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative positives / negatives at the end of each group of tied scores, highest score first.

    Returns (threshold, cum_pos, cum_neg): predicting 1 for ``score >= threshold[i]`` gives
    ``cum_pos[i]`` true positives and ``cum_neg[i]`` false positives.
    """
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    group_ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    cum_pos = np.cumsum(sorted_labels)[group_ends]
    cum_neg = (group_ends + 1) - cum_pos
    return sorted_scores[group_ends], cum_pos, cum_neg


# --------------------------------------------------------------------------- ranking / calibration
def auc(y: Any, p: Any) -> float:
    """ROC AUC as the Mann-Whitney statistic: P(score of a positive > score of a negative), ties count 1/2."""
    labels, scores = _labels_and_scores(y, p, "auc", both_classes=True)
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    # Average rank (1-based) of every tie group, assigned back to the rows.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:] - 1, scores.size - 1]
    group_of_sorted = np.repeat(np.arange(starts.size), ends - starts + 1)
    ranks = np.empty(scores.size)
    ranks[order] = ((starts + ends) / 2.0 + 1.0)[group_of_sorted]
    n_pos = labels.sum()
    n_neg = labels.size - n_pos
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y: Any, p: Any, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy; probabilities clipped to [eps, 1 - eps]."""
    labels, probs = _labels_and_scores(y, p, "log_loss", both_classes=False)
    if np.any((probs < 0.0) | (probs > 1.0)):
        raise ValueError("log_loss: p must be probabilities in [0, 1]")
    if not 0.0 < eps < 0.5:
        raise ValueError(f"log_loss: eps must be in (0, 0.5), got {eps}")
    clipped = np.clip(probs, eps, 1.0 - eps)
    return float(-np.mean(labels * np.log(clipped) + (1.0 - labels) * np.log1p(-clipped)))


def ks(y: Any, p: Any) -> float:
    """Kolmogorov-Smirnov statistic: max over thresholds of |TPR - FPR|."""
    labels, scores = _labels_and_scores(y, p, "ks", both_classes=True)
    _, cum_pos, cum_neg = _descending_groups(labels, scores)
    tpr = cum_pos / labels.sum()
    fpr = cum_neg / (labels.size - labels.sum())
    return float(np.max(np.abs(tpr - fpr)))


def best_threshold_f1(y: Any, p: Any) -> dict[str, float]:
    """The threshold (predict 1 when ``p >= threshold``) that maximises F1, with its precision and recall.

    Candidate thresholds are the distinct predicted values; among equal F1 the highest threshold wins.
    """
    labels, scores = _labels_and_scores(y, p, "best_threshold_f1", both_classes=True)
    thresholds, true_pos, false_pos = _descending_groups(labels, scores)
    n_pos = labels.sum()
    predicted_pos = true_pos + false_pos
    f1 = 2.0 * true_pos / (predicted_pos + n_pos)  # = 2 TP / (2 TP + FP + FN)
    best = int(np.argmax(f1))
    return {
        "threshold": float(thresholds[best]),
        "precision": float(true_pos[best] / predicted_pos[best]),
        "recall": float(true_pos[best] / n_pos),
        "f1": float(f1[best]),
    }


# --------------------------------------------------------------------------- ESCM² checks
def ieb_bias(pred_cvr_all_exposures: Any, true_cvr_all_exposures: Any) -> dict[str, float]:
    """ESCM² Table V: mean CVR estimate over every exposure (clicked or not) against the truth.

    ``true_cvr_all_exposures`` is either one value per exposure (the simulator's CVR under do(click=1),
    or potential conversion labels) or a single number (e.g. Table V's r-bar, the click-space label mean).
    ``bias = mean_pred - mean_true`` is signed (IEB shows as a positive bias: over-estimation);
    Table V's column is its absolute value. ``relative_bias = bias / mean_true``.
    """
    pred = as_1d_float("pred_cvr_all_exposures", pred_cvr_all_exposures)
    if np.any((pred < 0.0) | (pred > 1.0)):
        raise ValueError("ieb_bias: pred_cvr_all_exposures must be probabilities in [0, 1]")
    if np.ndim(true_cvr_all_exposures) == 0:
        truth = as_1d_float("true_cvr_all_exposures", [true_cvr_all_exposures])
    else:
        truth = as_1d_float("true_cvr_all_exposures", true_cvr_all_exposures)
        check_same_length(pred_cvr_all_exposures=pred, true_cvr_all_exposures=truth)
    if np.any((truth < 0.0) | (truth > 1.0)):
        raise ValueError("ieb_bias: true_cvr_all_exposures must be in [0, 1]")
    mean_pred = float(pred.mean())
    mean_true = float(truth.mean())
    bias = mean_pred - mean_true
    if mean_true > 0:
        relative = bias / mean_true
    else:  # no true conversions: any non-zero estimate is an infinitely large relative bias
        relative = math.copysign(math.inf, bias) if bias else 0.0
    return {"mean_pred": mean_pred, "mean_true": mean_true, "bias": bias, "relative_bias": float(relative)}


def _logit(p: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    clipped = np.clip(p, eps, 1.0 - eps)
    return np.log(clipped) - np.log1p(-clipped)


def causal_risk_ratio(
    click: Any,
    conversion: Any,
    propensity: Any,
    caliper: float | None = 0.2,
) -> dict[str, float]:
    """Causal risk ratio of conversion for click vs. no click, by propensity-score matching (ESCM² V-E).

    Definition implemented (ESCM² uses CTR estimates as propensities and CVR estimates as outcomes):
      1. score every exposure by ``s = logit(propensity)`` (propensity clipped to [1e-7, 1 - 1e-7]);
      2. match each clicked exposure i to the non-clicked exposure j with the nearest score
         (1-nearest-neighbour, with replacement; an exact tie goes to the lower score);
      3. drop pairs with ``|s_i - s_j| > caliper * sd_pooled``, where ``sd_pooled`` is
         ``sqrt((var(s | clicked) + var(s | not clicked)) / 2)`` (Austin's 0.2-SD-of-the-logit rule);
         ``caliper=None`` keeps every pair;
      4. ``CRR = mean(conversion_i over kept clicked) / mean(conversion_j over their matches)``,
         a risk ratio on the clicked (ATT-style): E[R | do(O=1)] / E[R | do(O=0)] among clicked.
    ``strength = |CRR - 1|`` (the paper's causation strength O -> R; ~0 means click and conversion look
    independent). ``conversion`` may be labels or probabilities in [0, 1]. If the matched controls'
    mean outcome is 0, CRR and strength are ``inf``.

    Returns crr, strength, n_clicked, n_matched, mean_outcome_clicked, mean_outcome_unclicked,
    caliper_width (in logit units; inf without a caliper).
    """
    clicks = as_binary("click", click)
    outcome = as_1d_float("conversion", conversion)
    prop = as_1d_float("propensity", propensity)
    check_same_length(click=clicks, conversion=outcome, propensity=prop)
    if np.any((outcome < 0.0) | (outcome > 1.0)):
        raise ValueError("causal_risk_ratio: conversion must be labels or probabilities in [0, 1]")
    if np.any((prop < 0.0) | (prop > 1.0)):
        raise ValueError("causal_risk_ratio: propensity must be probabilities in [0, 1]")
    require_both_classes("click", clicks, "causal_risk_ratio")
    if caliper is not None and not caliper > 0:
        raise ValueError(f"causal_risk_ratio: caliper must be positive or None, got {caliper}")

    score = _logit(prop)
    treated = clicks == 1
    s_treated, y_treated = score[treated], outcome[treated]
    control_order = np.argsort(score[~treated], kind="mergesort")
    s_control = score[~treated][control_order]
    y_control = outcome[~treated][control_order]

    right = np.clip(np.searchsorted(s_control, s_treated), 0, s_control.size - 1)
    left = np.clip(right - 1, 0, s_control.size - 1)
    take_left = np.abs(s_treated - s_control[left]) <= np.abs(s_treated - s_control[right])
    match = np.where(take_left, left, right)
    distance = np.abs(s_treated - s_control[match])

    if caliper is None:
        width = math.inf
    else:
        width = caliper * math.sqrt((np.var(s_treated) + np.var(s_control)) / 2.0)
    kept = distance <= width
    n_matched = int(kept.sum())
    if n_matched == 0:
        raise ValueError(
            f"causal_risk_ratio: no clicked exposure has a non-clicked match within the caliper "
            f"({width:.4g} logit units); widen the caliper"
        )
    mean_clicked = float(y_treated[kept].mean())
    mean_unclicked = float(y_control[match[kept]].mean())
    crr = mean_clicked / mean_unclicked if mean_unclicked > 0 else math.inf
    return {
        "crr": float(crr),
        "strength": float(abs(crr - 1.0)),
        "n_clicked": float(treated.sum()),
        "n_matched": float(n_matched),
        "mean_outcome_clicked": mean_clicked,
        "mean_outcome_unclicked": mean_unclicked,
        "caliper_width": float(width),
    }


# --------------------------------------------------------------------------- report
def _binary_block(prefix: str, labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """AUC / LogLoss / KS / best-F1 for one task; ranking metrics only when both classes occur."""
    out = {f"{prefix}_logloss": log_loss(labels, probs), f"{prefix}_n": float(labels.size),
           f"{prefix}_positive_rate": float(labels.mean())}
    positives = labels.sum()
    if 0 < positives < labels.size:
        out[f"{prefix}_auc"] = auc(labels, probs)
        out[f"{prefix}_ks"] = ks(labels, probs)
        best = best_threshold_f1(labels, probs)
        out.update({f"{prefix}_{key}": value for key, value in best.items()})
    return out


def cvr_report(
    click: Any,
    conversion: Any,
    pred_cvr: Any,
    pred_ctr: Any | None = None,
    pred_ctcvr: Any | None = None,
    true_cvr: Any | None = None,
    potential_conversion: Any | None = None,
    caliper: float | None = 0.2,
) -> dict[str, float]:
    """Flat ``metric -> value`` dict of a CVR-family model's predictions over the exposures of one split.

    Arguments are per exposure: observed ``click`` and ``conversion`` (conversion counts only where
    clicked), the model's ``pred_cvr`` (and optionally ``pred_ctr``, ``pred_ctcvr``; without
    ``pred_ctcvr`` it is ``pred_ctr * pred_cvr``). From the simulator's truth, optionally:
    ``true_cvr`` = P(conversion | do(click=1)) for every exposure, and ``potential_conversion`` =
    the conversion label under do(click=1) for every exposure.

    Keys: ``cvr_*`` (click space: auc, ks, logloss, threshold/precision/recall/f1, n, positive_rate,
    clicked_calibration = mean prediction / conversion rate of the clicked rows, 1 when calibrated),
    ``ctr_*`` and ``ctcvr_*`` (exposure space), ``cvr_entire_*`` (entire exposure space vs. the
    potential labels), ``ieb_*`` (mean_pred, mean_true, bias, abs_bias, relative_bias; against
    ``true_cvr`` when given, else Table V's click-space label mean r-bar), ``crr`` / ``crr_strength`` /
    ``crr_n_matched`` (ESCM² FIP check with the CTR estimate as propensity and the CVR estimate as
    outcome; needs ``pred_ctr``; only ``crr_n_matched = 0`` when no pair is within the caliper).
    Ranking metrics are left out for a task whose labels hold one class.
    """
    clicks = as_binary("click", click)
    conversions = as_binary("conversion", conversion)
    cvr = as_1d_float("pred_cvr", pred_cvr)
    check_same_length(click=clicks, conversion=conversions, pred_cvr=cvr)
    if np.any((conversions == 1) & (clicks == 0)):
        raise ValueError("cvr_report: conversion = 1 on a non-clicked exposure")
    clicked = clicks == 1
    if not clicked.any():
        raise ValueError("cvr_report: no clicked exposure, the click-space CVR metrics are undefined")

    report: dict[str, float] = {}
    report.update(_binary_block("cvr", conversions[clicked], cvr[clicked]))
    clicked_rate = float(conversions[clicked].mean())
    # calibration in the click space: mean predicted CVR of the clicked rows over their conversion rate
    report["cvr_clicked_calibration"] = float(cvr[clicked].mean()) / clicked_rate if clicked_rate > 0 else math.nan

    ctr = None
    if pred_ctr is not None:
        ctr = as_1d_float("pred_ctr", pred_ctr)
        check_same_length(click=clicks, pred_ctr=ctr)
        report.update(_binary_block("ctr", clicks, ctr))
    ctcvr: np.ndarray | None = None
    if pred_ctcvr is not None:
        ctcvr = as_1d_float("pred_ctcvr", pred_ctcvr)
        check_same_length(click=clicks, pred_ctcvr=ctcvr)
    elif ctr is not None:
        ctcvr = ctr * cvr
    if ctcvr is not None:
        report.update(_binary_block("ctcvr", clicks * conversions, ctcvr))

    if potential_conversion is not None:
        potential = as_binary("potential_conversion", potential_conversion)
        check_same_length(click=clicks, potential_conversion=potential)
        report.update(_binary_block("cvr_entire", potential, cvr))

    truth = true_cvr if true_cvr is not None else float(conversions[clicked].mean())
    ieb = ieb_bias(cvr, truth)
    report.update({f"ieb_{key}": value for key, value in ieb.items()})
    report["ieb_abs_bias"] = abs(ieb["bias"])

    if ctr is not None and 0 < clicks.sum() < clicks.size and np.all((ctr >= 0) & (ctr <= 1)):
        try:
            crr = causal_risk_ratio(clicks, cvr, ctr, caliper=caliper)
        except ValueError:  # no pair within the caliper: report the count, not a made-up ratio
            report["crr_n_matched"] = 0.0
        else:
            report["crr"] = crr["crr"]
            report["crr_strength"] = crr["strength"]
            report["crr_n_matched"] = crr["n_matched"]
    return {key: float(value) for key, value in report.items()}
