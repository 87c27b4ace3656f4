"""Learning tests for the CVR family: each family, trained with its own compute_loss and Adam (lr
1e-3, batch 1024) for a fixed number of steps on a small synthetic world whose true CVR is known per
exposure, must give CVR estimates that vary between exposures, rank the exposures as the true CVR
does (Spearman over ALL exposures, clicked or not), and be calibrated over all exposures: the mean
estimate near the mean true CVR, and a small expected calibration error.

The world (numpy, seeded): four categorical fields; the CVR under a click and the CTR are logistic
in per-field effects, the CVR a few percent (3.5 % over all exposures), the CTR 14 %; the click
logit carries the CVR logit, so users click more what they would convert on and the clicked rows convert at about twice
the rate of all exposures (the selection bias of ESCM² Theorem 1 and DCMT II, observed here: the
fields explain it, so an unbiased estimator exists). Clicks and conversions are Bernoulli draws.
ESCIM's counterfactual label on a non-click is the row's own potential conversion, drawn from the
truth: what its labeler estimates.

Bounds come from measuring each model on this world (the values measured are in comments) and leave
a margin. Everything is seeded (data, initialisation, minibatches; one torch thread), so a run gives
the same numbers each time.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from liftlake.models.registry import build_model

FIELD_DIMS = [8, 6, 5, 4]
ROWS = 100_000
BATCH = 1024
LR = 1e-3
# One and a half passes over the world: the platform's trainer keeps the epoch with the best
# validation AUC, often the first, and the papers' protocols train one epoch at lr 1e-4.
STEPS = 150


def spearman(a, b) -> float:
    """Rank correlation (ties share their mean rank)."""
    ranks = [pd.Series(np.asarray(v, dtype=float)).rank().to_numpy() for v in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def expected_calibration_error(pred, truth, bins: int = 10) -> float:
    """Mean |mean prediction - mean true CVR| over equal-count bins of the prediction, by row share."""
    order = np.argsort(pred, kind="stable")
    return float(sum(abs(pred[b].mean() - truth[b].mean()) * len(b) for b in np.array_split(order, bins))
                 / len(pred))


def make_world(seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    x = np.stack([rng.integers(0, d, ROWS) for d in FIELD_DIMS], axis=1)
    cvr_logit = -4.2 + sum(rng.normal(0.0, 0.7, d)[x[:, f]] for f, d in enumerate(FIELD_DIMS))
    ctr_logit = (-3.3 + sum(rng.normal(0.0, 0.4, d)[x[:, f]] for f, d in enumerate(FIELD_DIMS))
                 + (cvr_logit - cvr_logit.mean()))  # selection bias: click what you would buy
    true_cvr, true_ctr = 1 / (1 + np.exp(-cvr_logit)), 1 / (1 + np.exp(-ctr_logit))
    click = (rng.random(ROWS) < true_ctr).astype(np.float32)
    potential = (rng.random(ROWS) < true_cvr).astype(np.float32)  # converts if clicked
    return {"x": torch.as_tensor(x), "click": torch.as_tensor(click),
            "conversion": torch.as_tensor(click * potential),
            "cf_label": torch.as_tensor((1 - click) * potential), "true_cvr": true_cvr}


@pytest.fixture(scope="module")
def world() -> dict:
    return make_world()


def train_and_predict(name: str, world: dict, params: dict | None = None, steps: int = STEPS,
                      seed: int = 0) -> np.ndarray:
    """``steps`` Adam steps on shuffled minibatches (a fresh order each pass); CVR of every exposure."""
    torch.manual_seed(seed)
    model = build_model(name, FIELD_DIMS, params or {})
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    order_rng = torch.Generator().manual_seed(seed)
    order, start = torch.randperm(ROWS, generator=order_rng), 0
    for _ in range(steps):
        if start + BATCH > ROWS:
            order, start = torch.randperm(ROWS, generator=order_rng), 0
        rows = order[start:start + BATCH]
        start += BATCH
        batch = {key: world[key][rows] for key in model.batch_keys}
        loss = model.compute_loss(batch, model(batch)).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.predict({"x": world["x"]})["cvr"].numpy().astype(np.float64)


def check_learned(pred: np.ndarray, world: dict, min_std: float, min_spearman: float, max_bias: float,
                  max_ece: float) -> None:
    truth = world["true_cvr"]
    measured = {"std": pred.std(), "spearman": spearman(pred, truth), "bias": pred.mean() - truth.mean(),
                "ece": expected_calibration_error(pred, truth)}
    assert measured["std"] > min_std, measured
    assert measured["spearman"] > min_spearman, measured
    assert abs(measured["bias"]) < max_bias, measured
    assert measured["ece"] < max_ece, measured


def test_world_has_few_percent_rates_and_selection_bias(world):
    truth, click, conversion = world["true_cvr"], world["click"].numpy(), world["conversion"].numpy()
    clicked_rate = conversion.sum() / click.sum()
    assert 0.03 < truth.mean() < 0.05 and 0.1 < click.mean() < 0.2  # CVR 3.5 %, CTR 14 %
    assert clicked_rate > 1.5 * truth.mean()  # a model fitted to the clicks overshoots


# Measured (seed 0, 150 steps): std, Spearman, mean - truth, ECE
#   esmm         0.034  0.897  +0.012  0.012   (heads at 0.5: 0.040  0.807  +0.013  0.013)
#   escm2_ips    0.017  0.914  +0.025  0.027   (heads at 0.5: 0.052  0.637  +0.056  0.056)
#   escm2_dr     0.016  0.916  +0.027  0.030   (heads at 0.5: 0.051  0.631  +0.058  0.058)
#   dcmt         0.032  0.969  -0.005  0.006   (heads at 0.5: 0.028  0.931  +0.004  0.004)
#   escim_ratio  0.030  0.903  +0.009  0.009   (heads at 0.5: 0.041  0.728  +0.019  0.019)
# Seeds 1 and 2 moved these by up to 0.2 in Spearman (ESCIM) and 0.006 in the mean; the true CVR's
# std is 0.036 and its mean 0.035. ESCM²'s arms are still spreading out at 150 steps (std 0.017):
# narrower than the truth, they sit nearer the clicked rows' rate, hence its larger mean error.
@pytest.mark.parametrize("name, params", [
    ("esmm", {}),
    ("escm2_ips", {}),
    ("escm2_dr", {}),
    ("dcmt", {}),
    ("escim_ratio", {"hidden_dims": [64, 32]}),  # the appendix's 512-256-128 is slow on 2 cores
])
def test_learns_to_rank_and_calibrate_over_all_exposures(world, name, params):
    pred = train_and_predict(name, world, params)
    check_learned(pred, world, min_std=0.01, min_spearman=0.7, max_bias=0.035, max_ece=0.04)
