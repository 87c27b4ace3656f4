"""CausalML's learners as the report's outside references: wired the right way round (they rank a
strong, known effect and read the control arm as the base rate), in the platform's prediction
columns, on worlds small enough for seconds on 2 cores."""
from __future__ import annotations

import numpy as np
import pytest

from liftlake.lib.evaluation.causalml_references import (COUPON_LEARNERS, MULTI_LEARNERS, coupon_predictions,
                                                         multi_predictions)
from liftlake.lib.evaluation.report import yardstick

FEATURES = [f"f{i}" for i in range(4)]


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def coupon_world(rng, n: int) -> dict:
    """Binary outcome; the coupon's effect per unit of value grows with f0 (0 to 0.1), the base rate
    with f1; who gets a coupon depends on f2 (not randomized)."""
    x = rng.integers(0, 10, size=(n, 4))
    base = 1 / (1 + np.exp(-(-1.5 + 0.2 * x[:, 1])))
    eta = 0.1 * x[:, 0] / 9
    value = rng.choice([1.0, 2.0], size=n)
    treated = (rng.random(n) < 1 / (1 + np.exp(-(-0.5 + 0.1 * x[:, 2])))).astype(int)
    outcome = (rng.random(n) < np.clip(base + treated * eta * value, 0, 1)).astype(int)
    return {**{f: x[:, i] for i, f in enumerate(FEATURES)}, "treated": treated, "outcome": outcome,
            "intensity": np.where(treated == 1, value, 0.0), "eta_true": eta, "base_true": base}


def multi_world(rng, n: int) -> dict:
    """Two strategies, two continuous responses: tau_r1_k = k f0 / 3, tau_r2_k = (3 - k) f3 / 3."""
    x = rng.integers(0, 10, size=(n, 4)).astype(float)
    tid = rng.integers(0, 3, size=n)
    cols = {**{f: x[:, i] for i, f in enumerate(FEATURES)}, "treatment_id": tid}
    for r in (1, 2):
        y = 10 + x[:, r]
        for k in (1, 2):
            cols[f"tau_r{r}_k{k}_true"] = (k * x[:, 0] if r == 1 else (3 - k) * x[:, 3]) / 3
            y = y + np.where(tid == k, cols[f"tau_r{r}_k{k}_true"], 0.0)
        cols[f"response_{r}"] = y + rng.normal(0, 3, n)
    return cols


def test_coupon_learners_rank_the_effect_and_read_the_control_arm():
    rng = np.random.default_rng(7)
    train, test = coupon_world(rng, 20_000), coupon_world(rng, 4_000)
    preds = coupon_predictions(train, test, FEATURES, seed=1)
    assert sorted(preds) == sorted(COUPON_LEARNERS)
    for name, pred in preds.items():
        assert pred["p0"].shape == pred["unit_uplift"].shape == (4_000,)
        # an arm swapped would rank the effect backwards and give a negative mean uplift
        assert spearman(pred["unit_uplift"], test["eta_true"]) > 0.3, name
        assert abs(pred["unit_uplift"].mean() - test["eta_true"].mean()) < 0.02, name
        assert np.corrcoef(pred["p0"], test["base_true"])[0, 1] > 0.8, name  # the control arm's rate


def test_multi_treatment_learners_rank_each_effect():
    rng = np.random.default_rng(8)
    train, test = multi_world(rng, 20_000), multi_world(rng, 4_000)
    preds = multi_predictions(train, test, FEATURES, num_treatments=2, num_responses=2, seed=1)
    assert sorted(preds) == sorted(MULTI_LEARNERS)
    for name, pred in preds.items():
        assert {"y0_r1", "y0_r2"} <= set(pred)
        for r in (1, 2):
            assert np.corrcoef(pred[f"y0_r{r}"], test[f"f{r}"])[0, 1] > 0.9, (name, r)
            for k in (1, 2):
                assert spearman(pred[f"tau_r{r}_k{k}"], test[f"tau_r{r}_k{k}_true"]) > 0.7, (name, r, k)


@pytest.mark.reliability
def test_a_strategy_without_train_rows_is_named():
    rng = np.random.default_rng(9)
    train = multi_world(rng, 2_000)
    train["treatment_id"] = np.where(train["treatment_id"] == 2, 1, train["treatment_id"])
    with pytest.raises(ValueError, match=r"no row of strategy \[2\]"):
        multi_predictions(train, train, FEATURES, num_treatments=2, num_responses=2, seed=1)


def test_yardstick_names_the_best_on_each_side():
    runs = [{"unimvt": {"eta_spearman": 0.30}, "t_learner": {"eta_spearman": 0.20},
             "CausalML X-learner, LightGBM (external)": {"eta_spearman": 0.40},
             "CausalML S-learner, LightGBM (external)": {"eta_spearman": 0.10}},
            {"unimvt": {"eta_spearman": 0.50}, "t_learner": {"eta_spearman": 0.10},
             "CausalML X-learner, LightGBM (external)": {"eta_spearman": 0.20},
             "CausalML S-learner, LightGBM (external)": {"eta_spearman": 0.30}}]
    line = yardstick(runs, ["unimvt", "t_learner"], "eta_spearman", "Spearman")
    assert line == "Spearman: the platform's best unimvt 0.4000, CausalML's best X-learner, LightGBM (external) 0.3000"
    assert yardstick(runs, ["unimvt"], "eta_sqrt_pehe", "PEHE", best="min") is None  # not measured
    assert yardstick([{"unimvt": {"eta_spearman": 0.3}}], ["unimvt"], "eta_spearman", "Spearman") is None
