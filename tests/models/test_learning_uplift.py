"""Learning tests for the uplift family: each model, trained for a fixed number of Adam steps with
its own compute_loss on a small synthetic world whose true effect is known per row, must give
outputs that vary between users, rank users as the true effect does (Spearman), and, where it
predicts a probability, a base rate near the world's.

The worlds (numpy, seeded; categorical fields x0, x1, x2):

* coupon (UniMVT): base rate p0 set by x0, a unit uplift eta >= 0 set by x1 and shrinking as p0
  rises (the simulator's "less active users respond more"), p(y | t) = p0 + eta * t for a face
  value t in 1..4 (Definition 3.2, linear in the probability); x2 is noise.
* signed coupon (the baselines): the same, but the coupon hurts two users in three (eta < 0), so
  a read-out that clips the effect at 0 ties most users.
* multi-treatment (HMUM): K = 2 strategies, R = 2 responses of tens of units (minutes, views)
  with multiplicative effects tau_rk = y0_r * delta_rk(x) of both signs, log-normal noise.

Bounds come from measuring each model on these worlds (the values measured are in comments) and
leave a margin. Everything is seeded (data, initialisation, minibatches; one torch thread), so a
run gives the same numbers each time.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from liftlake.models.registry import build_model

FIELD_DIMS = [4, 3, 5]
FACE_VALUES = np.array([1.0, 2.0, 3.0, 4.0])
ROWS = 20000
STEPS = 300
BATCH = 256
LR = 0.01


def spearman(a, b) -> float:
    """Rank correlation (ties share their mean rank); NaN when either side is constant."""
    ranks = [pd.Series(np.asarray(v, dtype=float)).rank().to_numpy() for v in (a, b)]
    if min(r.std() for r in ranks) == 0:
        return float("nan")
    return float(np.corrcoef(*ranks)[0, 1])


def largest_tie(values) -> float:
    """Share of the rows in the largest group of identical values."""
    return float(pd.Series(np.asarray(values)).value_counts().iloc[0] / len(values))


def draw_fields(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.stack([rng.integers(0, d, n) for d in FIELD_DIMS], axis=1)


def coupon_world(base_rate, unit_uplift, seed: int, n: int = ROWS,
                 face_values: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
    """p0 = base_rate[x0], eta = unit_uplift[x0, x1]; half the rows get a coupon of a random face
    value (one of FACE_VALUES, or uniform in ``face_values`` = (low, high)); y ~ Bernoulli(p0 + eta * t)."""
    rng = np.random.default_rng(seed)
    x = draw_fields(rng, n)
    p0 = np.asarray(base_rate)[x[:, 0]]
    eta = np.asarray(unit_uplift)[x[:, 0], x[:, 1]]
    treated = rng.random(n) < 0.5
    drawn = rng.choice(FACE_VALUES, n) if face_values is None else rng.uniform(*face_values, n)
    t = np.where(treated, drawn, 0.0)
    prob = p0 + eta * t
    assert (prob > 0).all() and (prob < 1).all()
    y = rng.random(n) < prob
    return {"x": x, "treated": treated.astype(float), "intensity": t, "outcome": y.astype(float),
            "p0_true": p0, "eta_true": eta}


# eta is set by x1 and falls as p0 rises (x0: p0 0.05 .. 0.45, eta x 1.3 .. 0.7); p0 (1 - p0), the
# factor between a logit shift and a probability slope, varies fivefold with x0
HELPFUL = dict(base_rate=[0.05, 0.12, 0.25, 0.45],
               unit_uplift=np.outer([1.3, 1.1, 0.9, 0.7], [0.01, 0.03, 0.06]))
# two of the three x1 groups are hurt by the coupon
SIGNED = dict(base_rate=[0.25, 0.35, 0.45, 0.60],
              unit_uplift=np.outer([1.0, 0.8, 0.6, 0.4], [-0.045, -0.02, 0.04]))


def multi_world(seed: int, n: int = ROWS) -> dict[str, np.ndarray]:
    """y0_r set by x0 (tens of units), delta_rk by x1 and x0; response = (y0 + tau_k) * LogNormal
    with mean 1; treatment id uniform over 0..2; DDM's value shares set by x2."""
    rng = np.random.default_rng(seed)
    x = draw_fields(rng, n)
    level = np.array([0.6, 0.9, 1.3, 1.8])[x[:, 0]]
    y0 = np.stack([40.0 * level, 25.0 / level], axis=1)                         # [n, R]
    strength = np.array([0.0, 0.5, 1.0])[x[:, 1]] * np.array([0.6, 0.8, 1.0, 1.2])[x[:, 0]]
    delta = np.empty((n, 2, 2))                                                  # [n, K, R]
    delta[:, 0, 0] = 0.5 * strength - 0.1          # strategy 1 lifts response 1 ...
    delta[:, 0, 1] = -0.3 * strength               # ... and costs response 2
    delta[:, 1, 0] = -0.2 * (1.0 - strength)       # strategy 2: the other way round
    delta[:, 1, 1] = 0.5 * (1.2 - strength) - 0.1
    tau = y0[:, None, :] * delta
    tid = rng.integers(0, 3, n)
    effect = np.where((tid > 0)[:, None], tau[np.arange(n), np.maximum(tid - 1, 0)], 0.0)
    responses = (y0 + effect) * np.exp(0.3 * rng.standard_normal((n, 2)) - 0.045)
    share1 = np.array([0.2, 0.4, 0.6, 0.8, 0.5])[x[:, 2]]
    return {"x": x, "treatment_id": tid, "responses": responses,
            "value_shares": np.stack([share1, 1.0 - share1], axis=1), "y0_true": y0, "tau_true": tau}


def as_batch(world: dict[str, np.ndarray], keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for key in keys:
        value = world[key]
        out[key] = torch.tensor(value, dtype=torch.long if key in ("x", "treatment_id") else torch.float32)
    return out


COUPON_KEYS = ("x", "treated", "intensity", "outcome")
MULTI_KEYS = ("x", "treatment_id", "responses", "value_shares")


def trained(name: str, params: dict, batch: dict[str, torch.Tensor], steps: int = STEPS, lr: float = LR,
            seed: int = 0, batch_size: int = BATCH, field_dims: list[int] = FIELD_DIMS):
    """``name`` built under ``seed`` and trained for ``steps`` Adam steps on minibatches of
    ``batch_size`` rows drawn (with replacement, seeded) from ``batch`` (``field_dims``: its world's)."""
    torch.manual_seed(seed)
    model = build_model(name, field_dims, params)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    draw = torch.Generator().manual_seed(seed)
    rows = batch["x"].shape[0]
    for _ in range(steps):
        index = torch.randint(0, rows, (batch_size,), generator=draw)
        part = {k: v[index] for k, v in batch.items()}
        loss = model.compute_loss(part, model(part)).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def coupon_scores(model, world) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.predict(as_batch(world, COUPON_KEYS)).items()}


# --------------------------------------------------------------------------------------------
# UniMVT
# --------------------------------------------------------------------------------------------

UNIMVT = {"embed_dim": 4, "expert_dims": [32, 16], "tower_dims": [16], "intensity_head_dims": [8],
          "uplift_head_dims": [16], "t_min": 0.5, "t_max": 5.0}


@pytest.fixture(scope="module")
def unimvt_trained():
    train, test = coupon_world(**HELPFUL, seed=1), coupon_world(**HELPFUL, seed=2, n=4000)
    model = trained("unimvt", UNIMVT, as_batch(train, COUPON_KEYS))
    with torch.no_grad():
        learned_eta = model.unit_uplift(model.represent(torch.tensor(test["x"]))[1]).numpy()
    return coupon_scores(model, test), learned_eta, test


def test_unimvt_unit_uplift_varies_and_ranks_the_true_eta(unimvt_trained):
    scores, learned_eta, world = unimvt_trained
    written, eta = scores["unit_uplift"], world["eta_true"]
    assert written.std() > 0.005                                                 # measured 0.021
    assert spearman(written, eta) > 0.5                                          # measured 0.81
    assert abs(written.mean() / eta.mean() - 1) < 0.5                            # measured -0.34
    # what is written (and priced by the score job's eq. 25) is the eta the X-network fitted, in
    # its order, not that eta reordered by p0 (1 - p0) (the logit read-out: 0.77)
    assert spearman(written, learned_eta) > 0.99                                 # measured 1.0


def test_unimvt_base_rate_is_calibrated_and_ranked(unimvt_trained):
    scores, _, world = unimvt_trained
    assert abs(scores["p0"].mean() - world["p0_true"].mean()) < 0.03             # measured 0.012
    assert spearman(scores["p0"], world["p0_true"]) > 0.8                        # measured 0.97


# --------------------------------------------------------------------------------------------
# The coupon baselines: at least one of each file (meta_learners, representation, dose_response,
# interaction)
# --------------------------------------------------------------------------------------------

BASELINE = {"embed_dim": 4, "hidden_dims": [32, 16], "head_dims": [16], "t_min": 1.0, "t_max": 4.0}
BASELINES = ["s_learner", "t_learner", "tarnet", "cfrnet", "descn", "drnet", "vcnet", "efin", "m3tn"]


@pytest.fixture(scope="module")
def signed_worlds():
    return coupon_world(**SIGNED, seed=3), coupon_world(**SIGNED, seed=4, n=4000)


@pytest.mark.parametrize("name", BASELINES)
def test_coupon_baseline_learns_signed_effects(name, signed_worlds):
    train, test = signed_worlds
    scores = coupon_scores(trained(name, BASELINE, as_batch(train, COUPON_KEYS)), test)
    eta, true = scores["unit_uplift"], test["eta_true"]
    # measured over the nine: std 0.040-0.077, Spearman 0.52 (tarnet)-0.92, harm predicted for
    # 0.53-0.68 of the users, largest tie < 5 % (clipped at 0: 53-68 %), |mean p0 - truth| <= 0.024
    assert eta.std() > 0.01
    assert spearman(eta, true) > 0.4
    # a predicted harm keeps its size: the hurt two thirds are neither tied at 0 nor dropped
    assert largest_tie(eta) < 0.05
    assert (eta < 0).mean() > 0.3
    assert abs(scores["p0"].mean() - test["p0_true"].mean()) < 0.04


# Syn-1's coupons are all about 2.5: a treated pathway that never saw a face value of 1 extrapolates
# there, so the slope is read at a face value the treated rows had (UpliftBaseline.read_intensity)
NARROW_FACE_VALUES = (2.3, 2.7)


@pytest.fixture(scope="module")
def narrow_worlds():
    return (coupon_world(**HELPFUL, seed=5, face_values=NARROW_FACE_VALUES),
            coupon_world(**HELPFUL, seed=6, n=4000, face_values=NARROW_FACE_VALUES))


@pytest.mark.parametrize("name", ["t_learner", "tarnet", "drnet"])
def test_coupon_baseline_reads_its_slope_where_the_coupons_were(name, narrow_worlds):
    train, test = narrow_worlds
    model = trained(name, {**BASELINE, "t_min": 0.5, "t_max": 5.0}, as_batch(train, COUPON_KEYS))
    assert NARROW_FACE_VALUES[0] <= model.read_intensity() <= NARROW_FACE_VALUES[1]   # measured 2.54
    eta, true = coupon_scores(model, test)["unit_uplift"], test["eta_true"]
    # measured at the read face value: sqrt-PEHE 0.014-0.016, mean 0.021 vs true 0.033, Spearman
    # 0.82-0.91; read at t = 1 (the old default): sqrt-PEHE 0.049 / 0.061 / 0.212, mean 0.060-0.205
    assert np.sqrt(np.mean((eta - true) ** 2)) < 0.03
    assert abs(eta.mean() / true.mean() - 1) < 0.5
    assert spearman(eta, true) > 0.6


# --------------------------------------------------------------------------------------------
# HMUM / HUM without KL
# --------------------------------------------------------------------------------------------

HMUM = {"embed_dim": 8, "num_experts": 2, "expert_dims": [16], "tower_dims": [8],
        "ddm_embed_dim": 4, "ddm_num_experts": 2, "ddm_expert_dims": [8], "ddm_tower_dims": [4]}


@pytest.fixture(scope="module")
def multi_worlds():
    return multi_world(seed=5), multi_world(seed=6, n=4000)


@pytest.fixture(scope="module")
def hum_models(multi_worlds):
    train, _ = multi_worlds
    batch = as_batch(train, MULTI_KEYS)
    return {name: trained(name, HMUM, batch) for name in ("hmum", "hum_no_kl")}


def multi_scores(model, world) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in model.predict(as_batch(world, MULTI_KEYS)).items()}


@pytest.mark.parametrize("name", ["hmum", "hum_no_kl"])
def test_hum_learns_the_effects_of_each_strategy_on_each_response(name, hum_models, multi_worlds):
    _, test = multi_worlds
    scores = multi_scores(hum_models[name], test)
    # measured (hmum / hum_no_kl): y0 level within 2-11 %, Spearman 0.97; tau spread 0.83-1.12 of
    # the truth's, Spearman 0.93-0.98 (raw-scale MSE and linear towers: 0.31, 0.32, -0.29, -0.71)
    for r in (1, 2):
        y0 = test["y0_true"][:, r - 1]
        assert abs(scores[f"y0_r{r}"].mean() / y0.mean() - 1) < 0.2
        assert spearman(scores[f"y0_r{r}"], y0) > 0.8
        for k in (1, 2):
            tau, true = scores[f"tau_r{r}_k{k}"], test["tau_true"][:, k - 1, r - 1]
            assert tau.std() > 0.5 * true.std(), (r, k)
            assert spearman(tau, true) > 0.5, (r, k)


def test_the_kl_term_changes_what_hum_learns(hum_models, multi_worlds):
    _, test = multi_worlds
    batch = as_batch(test, MULTI_KEYS)
    with torch.no_grad():
        kl = {name: model.compute_loss(batch, model(batch)).parts["kl"].item() for name, model in hum_models.items()}
    # trained with eq. 5's KL, the branches' control gates agree far more than without it
    # (measured 0.0003 vs 0.58; with the KL at 1e-4 of a raw-scale loss: 0.77 vs 0.80)
    assert kl["hmum"] < 0.2 * kl["hum_no_kl"]
    with_kl, without = multi_scores(hum_models["hmum"], test), multi_scores(hum_models["hum_no_kl"], test)
    # and the ablation measures something: the effects differ by a sizeable share of their spread
    # (measured 0.048-0.20 with the towers at the responses' level; 0.10-0.46 when they climbed from
    # exp(0) = 1; with the KL at 1e-4 of the loss: 0.003-0.049)
    gaps = [np.abs(with_kl[k] - without[k]).mean() / without[k].std() for k in with_kl if k.startswith("tau_")]
    assert min(gaps) > 0.03


# --------------------------------------------------------------------------------------------
# HMUM on a simulator-like world, against a constant and a gradient-boosting T-learner
# --------------------------------------------------------------------------------------------

# Six user fields as the simulator's user level has them (age, gender, city, segment, activity,
# income buckets), read from latents the way lib/sim derives them, and its response structure:
# y0_r = base_r exp(c_r . z), delta_rk = A_rk + B tanh(g_rk . z) over (activity, wealth, age, price),
# price unobserved; responses (y0 + tau_k) x LogNormal(sd 0.4, mean 1) (the simulator's noise);
# treatment uniform over 0..2 (its randomized slice).
SIX_FIELDS = [16, 3, 20, 4, 16, 16]
SIX_STEPS = 800


def six_field_world(seed: int, n: int = ROWS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 4))                                   # activity, wealth, age, price
    z[:, 3] = -0.5 * z[:, 1] + np.sqrt(0.75) * z[:, 3]

    def bucket(v, size):                                              # a noisy observed quantile
        return np.clip(np.floor((v + 0.3 * rng.standard_normal(n)) * size / 6 + size / 2), 0, size - 1)

    x = np.stack([bucket(z[:, 2], 16), rng.integers(0, 3, n), rng.integers(0, 20, n),
                  (z[:, 0] > 0.6) + 2 * (z[:, 1] > 1.2), bucket(z[:, 0], 16), bucket(z[:, 1], 16)], axis=1)
    y0 = np.stack([45.0 * np.exp(z[:, :3] @ [0.35, -0.1, -0.15]), 26.0 * np.exp(z[:, :3] @ [0.2, 0.25, 0.05])],
                  axis=1)                                                                        # [n, R]
    g = np.array([[[0.7, -0.5, 0.3, 0.4], [-0.4, 0.8, 0.2, -0.3]],
                  [[0.5, 0.6, -0.5, 0.2], [0.3, -0.6, -0.6, 0.4]]])                              # [K, R, 4]
    shift = np.array([[0.18, -0.10], [-0.10, 0.18]])                  # each strategy lifts one response
    tau = y0[:, None, :] * (shift[None] + 0.22 * np.tanh(np.einsum("nz,krz->nkr", z, g)))      # [n, K, R]
    tid = rng.integers(0, 3, n)
    effect = np.where((tid > 0)[:, None], tau[np.arange(n), np.maximum(tid - 1, 0)], 0.0)
    responses = (y0 + effect) * np.exp(0.4 * rng.standard_normal((n, 2)) - 0.08)
    share1 = 1.0 / (1.0 + np.exp(-(0.8 * z[:, 0] - 0.4 * z[:, 1])))
    return {"x": x.astype(np.int64), "treatment_id": tid, "responses": responses,
            "value_shares": np.stack([share1, 1.0 - share1], axis=1), "y0_true": y0, "tau_true": tau}


@pytest.fixture(scope="module")
def six_field_runs():
    torch.set_num_threads(1)
    train, test = six_field_world(seed=11), six_field_world(seed=12, n=5000)
    batch = as_batch(train, MULTI_KEYS)
    models = {name: trained(name, HMUM, batch, SIX_STEPS, field_dims=SIX_FIELDS) for name in ("hmum", "hum_no_kl")}
    return models, train, test


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def test_hum_ranks_each_effect_beside_a_boosted_t_learner(six_field_runs):
    # The T-learner is scikit-learn's histogram gradient boosting (LightGBM's algorithm; lightgbm
    # itself is not a dependency): one regressor per arm and response on the same train rows,
    # tau = m_k - m_0. Measured (Spearman / RMSE, constant's RMSE):
    #   HMUM   r1k1 0.88 / 5.8 (10.3), r1k2 0.78 / 3.8 (6.0), r2k1 0.86 / 2.1 (3.8), r2k2 0.74 / 2.5 (3.7)
    #   (towers climbing from exp(0) = 1: 0.84 / 8.9, 0.73 / 4.3, 0.85 / 2.2, 0.79 / 2.4)
    #   GBDT-T 0.68 / 10.4, 0.50 / 9.0, 0.60 / 4.7, 0.49 / 4.9 (lightgbm 4.7's LGBMRegressor, same
    #   settings, 0.72 / 0.58 / 0.64 / 0.56)
    # With the world's fields joined by a hashed 4096-bucket id that test users share with
    # unrelated train users (the platform's user_id field), HMUM's Spearman on the simulator drops
    # from 0.48-0.88 to 0.21-0.52: that input, not the model, was the report's 0.11.
    from sklearn.ensemble import HistGradientBoostingRegressor

    models, train, test = six_field_runs
    scores = multi_scores(models["hmum"], test)
    arm = train["treatment_id"]
    for r in (1, 2):
        fits = [HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, min_samples_leaf=50,
                                              categorical_features=[1, 2, 3], random_state=0)
                .fit(train["x"][arm == k], train["responses"][arm == k, r - 1]) for k in range(3)]
        for k in (1, 2):
            true = test["tau_true"][:, k - 1, r - 1]
            constant = np.full_like(true, train["tau_true"][:, k - 1, r - 1].mean())
            boosted = fits[k].predict(test["x"]) - fits[0].predict(test["x"])
            tau = scores[f"tau_r{r}_k{k}"]
            assert spearman(tau, true) > 0.6, (r, k)
            assert rmse(tau, true) < 0.95 * rmse(constant, true), (r, k)
            assert spearman(tau, true) > spearman(boosted, true) - 0.1, (r, k)


def test_the_kl_aligns_the_branches_control_representations(six_field_runs):
    # eq. 5's KL is over z^{0,k'}, the branches' gate outputs on the control input. Measured: 0.0013
    # trained with it vs 0.026 without. The branches' control predictions y-hat^{0,k'} agree as well
    # with it as without (mean |difference| over their mean 0.0397 vs 0.0402): the consistency of y0
    # that the paper's A.2 credits the KL with came, here, from the towers' start. While they climbed
    # from exp(0) = 1 to the responses' level the KL's branches agreed more (0.081 vs 0.104); at
    # the level both agree twice as well. (The old KL over the gate weights: 0.097, and the
    # representations at 0.55 vs 0.62 nats a row.)
    models, _, test = six_field_runs
    batch = as_batch(test, MULTI_KEYS)
    kl, gap = {}, {}
    with torch.no_grad():
        for name, model in models.items():
            out = model(batch)
            kl[name] = model.compute_loss(batch, out).parts["kl"].item()
            y0 = out["y_control"]
            gap[name] = ((y0[:, 0] - y0[:, 1]).abs() / y0.mean(dim=1)).mean().item()
    assert kl["hmum"] < 0.2 * kl["hum_no_kl"]
    assert gap["hmum"] < 0.06 and gap["hum_no_kl"] < 0.06
