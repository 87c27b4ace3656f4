"""Decision quality over numpy arrays: the value of a policy against the true outcome of every action, its
comparison with the oracle, random and constant policies, and the accuracy of an estimated effect."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from liftlake.lib.evaluation.cvr_metrics import as_1d_float, check_same_length


# --------------------------------------------------------------------------- policy value
def _outcome_matrix(outcomes: Any) -> np.ndarray:
    matrix = np.asarray(outcomes, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"true outcomes: expected a non-empty [N, A] array, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("true outcomes: NaN / infinite value(s)")
    return matrix


def _decisions(decision: Any, n_rows: int, n_actions: int) -> np.ndarray:
    chosen = as_1d_float("decision", decision)
    if chosen.size != n_rows:
        raise ValueError(f"mismatched lengths: decision has {chosen.size} rows, outcomes {n_rows}")
    if np.any((chosen < 0) | (chosen >= n_actions) | (chosen != np.round(chosen))):
        raise ValueError(f"decision: expected action indices in 0..{n_actions - 1}")
    return chosen.astype(np.int64)


def policy_value(decision: Any, true_outcome_under_each_action: Any) -> float:
    """Mean true outcome when row i takes action ``decision[i]``; outcomes are an [N, A] matrix
    (e.g. expected net value of coupon value a for user i, column 0 = no coupon)."""
    outcomes = _outcome_matrix(true_outcome_under_each_action)
    chosen = _decisions(decision, *outcomes.shape)
    return float(outcomes[np.arange(outcomes.shape[0]), chosen].mean())


def compare_policies(
    decision: Any,
    true_outcome_under_each_action: Any,
    action_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """A policy against the truth's best policy, a uniformly random one and every constant one.

    Keys: ``policy``, ``oracle`` (each row's best action), ``random`` (expected value of a uniform random
    action), ``always_<name>`` per action (the all-or-nothing policies; names default to the column
    index), ``regret`` = oracle - policy, ``normalized`` = (policy - random) / (oracle - random)
    (1 = oracle, 0 = random; NaN when every action is worth the same), ``oracle_agreement`` = share of
    rows where the policy picks a best action.
    """
    outcomes = _outcome_matrix(true_outcome_under_each_action)
    n_rows, n_actions = outcomes.shape
    chosen = _decisions(decision, n_rows, n_actions)
    names = [str(a) for a in range(n_actions)] if action_names is None else [str(a) for a in action_names]
    if len(names) != n_actions:
        raise ValueError(f"action_names: {len(names)} names for {n_actions} actions")
    value = float(outcomes[np.arange(n_rows), chosen].mean())
    best = outcomes.max(axis=1)
    oracle = float(best.mean())
    random = float(outcomes.mean())
    result = {"policy": value, "oracle": oracle, "random": random, "regret": oracle - value,
              "normalized": (value - random) / (oracle - random) if oracle > random else math.nan,
              "oracle_agreement": float(np.mean(outcomes[np.arange(n_rows), chosen] >= best))}
    for name, column_mean in zip(names, outcomes.mean(axis=0)):
        result[f"always_{name}"] = float(column_mean)
    return result


def compare_switch_policies(
    decision: Any,
    true_gain: Any,
    treatment_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Per-treatment on/off decisions (HMUM: decision[k] = phi_k > sigma) against the truth.

    ``decision``: [N, K] booleans (switch treatment k on for row i); ``true_gain``: [N, K] true value of
    switching it on (e.g. sum_r w_r tau[r, k]). Per treatment name (default ``k1``..``kK``, treatment
    ids start at 1): ``<k>_policy`` = mean(decision * gain), ``<k>_oracle`` = mean(max(gain, 0)),
    ``<k>_all_on`` = mean(gain), ``<k>_all_off`` = 0, ``<k>_random`` = mean(gain) / 2 (each switch a
    fair coin), ``<k>_regret`` = oracle - policy; and the same six summed over treatments as ``total_*``.
    """
    gain = _outcome_matrix(true_gain)
    switches = np.asarray(decision)
    if switches.ndim == 1 and gain.shape[1] == 1:
        switches = switches[:, None]
    if switches.shape != gain.shape:
        raise ValueError(f"mismatched shapes: decision {switches.shape}, true_gain {gain.shape}")
    on = switches.astype(np.float64)
    if not np.all((on == 0) | (on == 1)):
        raise ValueError("decision: expected booleans / 0-1 values")
    n_treatments = gain.shape[1]
    names = [f"k{k + 1}" for k in range(n_treatments)] if treatment_names is None else list(treatment_names)
    if len(names) != n_treatments:
        raise ValueError(f"treatment_names: {len(names)} names for {n_treatments} treatments")
    parts = {
        "policy": (on * gain).mean(axis=0),
        "oracle": np.maximum(gain, 0.0).mean(axis=0),
        "all_on": gain.mean(axis=0),
        "all_off": np.zeros(n_treatments),
        "random": gain.mean(axis=0) / 2.0,
    }
    parts["regret"] = parts["oracle"] - parts["policy"]
    result: dict[str, float] = {}
    for j, name in enumerate(names):
        for key, values in parts.items():
            result[f"{name}_{key}"] = float(values[j])
    for key, values in parts.items():
        result[f"total_{key}"] = float(values.sum())
    return result


# --------------------------------------------------------------------------- effect accuracy
def uplift_error(estimated: Any, true: Any) -> dict[str, float]:
    """Accuracy of estimated individual effects against the simulator's true ones.

    ``pehe`` is Hill's (2011) epsilon_PEHE = mean((tau_hat - tau)^2); ``rmse`` = sqrt(pehe) (the
    "sqrt PEHE" many papers print); ``mae`` = mean |tau_hat - tau|; ``ate_error`` = mean(tau_hat) -
    mean(tau) (signed).
    """
    est = as_1d_float("estimated", estimated)
    truth = as_1d_float("true", true)
    check_same_length(estimated=est, true=truth)
    diff = est - truth
    pehe = float(np.mean(diff**2))
    return {"rmse": math.sqrt(pehe), "mae": float(np.mean(np.abs(diff))), "pehe": pehe,
            "ate_error": float(diff.mean())}
