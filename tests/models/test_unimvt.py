"""UniMVT: each loss term of eq. 11-20 against hand arithmetic, eq. 9, stop-gradients, eq. 25,
the coupon decision, bad input, and that training lowers the loss."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liftlake.models.base import BadBatchError
from liftlake.models.registry import ModelConfigError, build_model
from liftlake.models.unimvt import coupon_decision, orthogonality_penalty

FIELD_DIMS = [4, 6, 3]




def coupon_batch(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Outcome = base CTR from x0 plus eta(x1) * t on treated rows (UniMVT's linear assumption)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, d, (n,), generator=g) for d in FIELD_DIMS], dim=1)
    treated = (torch.rand(n, generator=g) < 0.4).float()
    intensity = treated * (1.0 + torch.randint(0, 4, (n,), generator=g).float())
    eta = 0.02 + 0.04 * (x[:, 1] >= 3).float()
    p = 0.1 + 0.15 * (x[:, 0] == 1).float() + eta * intensity
    outcome = (torch.rand(n, generator=g) < p).float()
    return {"x": x, "treated": treated, "intensity": intensity, "outcome": outcome, "rct": torch.zeros(n)}


def tiny_batch() -> dict[str, torch.Tensor]:
    return {"x": torch.tensor([[0, 1, 2], [1, 0, 0], [2, 5, 1], [3, 3, 0]]),
            "treated": torch.tensor([1.0, 0.0, 1.0, 0.0]),
            "intensity": torch.tensor([2.0, 0.0, 1.5, 0.0]),
            "outcome": torch.tensor([1.0, 0.0, 0.0, 1.0]),
            "rct": torch.zeros(4)}


def tiny_out() -> dict[str, torch.Tensor]:
    return {"logit0": torch.tensor([0.2, -1.0, 0.5, -0.3]),
            "logit_treat": torch.tensor([0.7, -0.4, 1.1, 0.1]),
            "intensity_hat": torch.tensor([1.5, 2.5, 2.0, 1.0]),
            "unit_uplift": torch.tensor([0.3, 0.0, 0.1, 0.4]),
            "orth_penalty": torch.tensor(3.0)}


def sig(z):
    return 1.0 / (1.0 + math.exp(-z))


def bce(y, z):
    p = sig(z)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


LAMBDAS = {"lambda_base": 0.7, "lambda_treat": 1.3, "lambda_t": 0.4, "lambda_x": 2.0, "lambda_o": 0.01,
           "lambda_1": 1.0, "lambda_2": 0.5}


def model_with(**params):
    return build_model("unimvt", FIELD_DIMS, {"expert_dims": [8, 4], "tower_dims": [4], **params})


def test_base_and_treat_bce_eq_11_12():
    parts = model_with(**LAMBDAS).compute_loss(tiny_batch(), tiny_out()).parts
    # eq. 11 over control rows 1 (y=0, z=-1.0) and 3 (y=1, z=-0.3); eq. 12 over treated rows
    # 0 (y=1, z=0.7) and 2 (y=0, z=1.1); sums divided by the batch size 4.
    assert parts["base"].item() == pytest.approx((bce(0, -1.0) + bce(1, -0.3)) / 4, rel=1e-5)
    assert parts["treat"].item() == pytest.approx((bce(1, 0.7) + bce(0, 1.1)) / 4, rel=1e-5)


def test_intensity_loss_eq_14():
    parts = model_with(**LAMBDAS).compute_loss(tiny_batch(), tiny_out()).parts
    # treated rows: t=2.0 vs 1.5 (err 0.5), t=1.5 vs 2.0 (err -0.5); lambda_1=1, lambda_2=0.5
    expected = ((1.0 * 0.25 + 0.5 * 0.5) + (1.0 * 0.25 + 0.5 * 0.5)) / 4
    assert parts["intensity"].item() == pytest.approx(expected, rel=1e-6)


def test_x_network_terms_eq_16_to_19_in_probability_space():
    parts = model_with(**LAMBDAS).compute_loss(tiny_batch(), tiny_out()).parts
    # eq. 16 on treated rows with the observed face value (default), the effect added to the
    # probability as eq. 4 and 25 add it: p0 + t * eta (not clipped: a squared error needs no bound)
    p_t0 = sig(0.2) + 2.0 * 0.3
    p_t2 = sig(0.5) + 1.5 * 0.1
    x_treat = ((1 - p_t0) ** 2 + (0 - p_t2) ** 2) / 4              # eq. 18
    # eq. 17 on control rows: p'_0 = p_t(x; t_hat) - t_hat * eta
    p_01 = sig(-0.4) - 2.5 * 0.0
    p_03 = sig(0.1) - 1.0 * 0.4
    x_base = ((0 - p_01) ** 2 + (1 - p_03) ** 2) / 4               # eq. 19
    assert parts["x_treat"].item() == pytest.approx(x_treat, rel=1e-5)
    assert parts["x_base"].item() == pytest.approx(x_base, rel=1e-5)


def test_x_network_terms_eq_16_to_19_in_logit_space():
    parts = model_with(**LAMBDAS, uplift_space="logit").compute_loss(tiny_batch(), tiny_out()).parts
    # eq. 16 as printed, observed face value: sigma(logit0 + t * eta)
    p_t0 = sig(0.2 + 2.0 * 0.3)
    p_t2 = sig(0.5 + 1.5 * 0.1)
    x_treat = ((1 - p_t0) ** 2 + (0 - p_t2) ** 2) / 4              # eq. 18
    # eq. 17 on control rows: p'_0 = sigma(logit_treat - t_hat * eta)
    p_01 = sig(-0.4 - 2.5 * 0.0)
    p_03 = sig(0.1 - 1.0 * 0.4)
    x_base = ((0 - p_01) ** 2 + (1 - p_03) ** 2) / 4               # eq. 19
    assert parts["x_treat"].item() == pytest.approx(x_treat, rel=1e-5)
    assert parts["x_base"].item() == pytest.approx(x_base, rel=1e-5)


def test_x_network_with_the_papers_predicted_dose():
    parts = model_with(x_treat_dose="predicted", uplift_space="logit").compute_loss(tiny_batch(), tiny_out()).parts
    # eq. 16 as written: sigma(logit0 + t_hat * eta) on treated rows
    x_treat = ((1 - sig(0.2 + 1.5 * 0.3)) ** 2 + sig(0.5 + 2.0 * 0.1) ** 2) / 4
    assert parts["x_treat"].item() == pytest.approx(x_treat, rel=1e-5)


def test_orthogonality_penalty_by_hand():
    # layer 1: three groups reading a 2-d input; layer 2: two groups on a 1-d input
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 1.0]])
    c = torch.tensor([[0.0, 2.0]])
    d, e = torch.tensor([[3.0]]), torch.tensor([[-1.0], [2.0]])
    # ||A B^T||^2 = 1 + 1; ||A C^T||^2 = 0 + 4; ||B C^T||^2 = 4; ||D E^T||^2 = 9 + 36
    assert orthogonality_penalty([[a, b, c], [d, e]]).item() == pytest.approx(2 + 4 + 4 + 45)


def test_model_orthogonality_matches_its_expert_weights():
    model = model_with()
    out = model(tiny_batch())
    groups = [model.shared_experts, model.base_experts, model.treated_experts]
    expected = 0.0
    for layer in (0, 2):  # Linear modules sit at positions 0 and 2 of each expert's MLP
        stacked = [np.concatenate([exp.net[layer].weight.detach().numpy() for exp in g]) for g in groups]
        for i in range(3):
            for j in range(i + 1, 3):
                expected += float(((stacked[i] @ stacked[j].T) ** 2).sum())
    assert out["orth_penalty"].item() == pytest.approx(expected, rel=1e-5)


def test_stop_gradients_eq_7_8_13():
    model = model_with()
    batch = tiny_batch()
    # base loss (through u0) must not reach the treated experts (eq. 7)
    model.zero_grad()
    model.compute_loss(batch, model(batch)).parts["base"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.treated_experts.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.shared_experts.parameters())
    # treatment loss (through u^t) must not reach the base experts (eq. 8)
    model.zero_grad()
    model.compute_loss(batch, model(batch)).parts["treat"].backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.base_experts.parameters())
    # the intensity head reads u^t behind a stop-gradient (eq. 13): only the head learns from eq. 14
    model.zero_grad()
    model.compute_loss(batch, model(batch)).parts["intensity"].backward()
    assert model.embedding.embedding.weight.grad is None or model.embedding.embedding.weight.grad.abs().sum() == 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.intensity_head.parameters())


def test_intensity_hat_within_range_and_eta_never_negative():
    model = model_with(t_min=1.0, t_max=4.0)
    batch = coupon_batch(256, seed=3)
    with torch.no_grad():
        # push the uplift head towards negative pre-activations: ReLU must still give eta >= 0
        model.uplift_head.net[-1].bias.fill_(-5.0)
    out = model(batch)
    assert (out["intensity_hat"] > 1.0).all() and (out["intensity_hat"] < 4.0).all()
    assert (model.predict(batch)["unit_uplift"] >= 0).all()
    for seed in range(5):
        torch.manual_seed(seed)
        fresh = model_with()
        eta = fresh.predict(coupon_batch(128, seed))["unit_uplift"]
        # starts alive for every row (a dead ReLU at init would never learn), never negative
        assert (eta > 0).all()


def test_prob_at_is_eq_25_in_probability_space():
    model = model_with()  # uplift_space="probability" by default
    batch = coupon_batch(32, seed=1)
    scores = model.predict(batch)
    values = torch.tensor([0.0, 1.0, 2.5, 40.0])
    probs = model.prob_at(batch, values).numpy()
    p0, eta = scores["p0"].numpy(), scores["unit_uplift"].numpy()
    expected = np.clip(p0[:, None] + eta[:, None] * np.array([0.0, 1.0, 2.5, 40.0])[None, :], 0, 1)
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    assert probs.shape == (32, 4)


def test_probability_space_writes_the_fitted_eta():
    torch.manual_seed(4)
    model = model_with()
    batch = coupon_batch(64, seed=2)
    with torch.no_grad():
        logit0, eta = model._inference(batch["x"])
    scores = model.predict(batch)
    torch.testing.assert_close(scores["p0"], torch.sigmoid(logit0))
    torch.testing.assert_close(scores["unit_uplift"], eta)
    # a fresh head starts every user at eta_init (the head predicts t_max * eta)
    np.testing.assert_allclose(eta.numpy(), 0.02, rtol=0.2)


def test_logit_space_reports_the_probability_slope_of_one_unit():
    # eq. 16-17 as printed: the network's eta is a logit shift, and the coupon contract's
    # unit_uplift is what one unit adds to the probability
    torch.manual_seed(4)
    model = model_with(uplift_space="logit")
    batch = coupon_batch(64, seed=2)
    with torch.no_grad():
        logit0, eta = (v.double() for v in model._inference(batch["x"]))
    scores = model.predict(batch)
    p0 = torch.sigmoid(logit0)
    torch.testing.assert_close(scores["p0"].double(), p0)
    torch.testing.assert_close(scores["unit_uplift"].double(), torch.sigmoid(logit0 + eta) - p0, atol=1e-6, rtol=1e-5)
    values = torch.tensor([0.0, 1.0, 3.0])
    expected = torch.sigmoid(logit0[:, None] + eta[:, None] * values.double()[None, :])
    torch.testing.assert_close(model.prob_at(batch, values).double(), expected, atol=1e-6, rtol=1e-5)
    # eta > 0 and p0 (1 - p0) <= 1/4: the probability slope is well below the logit shift
    assert (scores["unit_uplift"].double() < 0.26 * eta + 1e-7).all()
    assert (scores["unit_uplift"] > 0).all()


def test_former_inference_space_name_still_builds():
    assert model_with(inference_space="logit").params.uplift_space == "logit"
    assert model_with().params.uplift_space == "probability"
    with pytest.raises(ModelConfigError, match="disagree"):
        model_with(inference_space="logit", uplift_space="probability")


def test_coupon_decision_by_hand():
    value, gain = coupon_decision(torch.tensor([0.2, 0.9, 0.2, 0.5]), torch.tensor([0.05, 0.05, 0.01, 0.0]),
                                  [1.0, 2.0, 4.0], cost_per_unit=0.02, min_ratio=1.0)
    # row 0: gains 0.05/0.1/0.2, ratio 2.5 everywhere -> tie -> largest value 4, gain 0.2
    # row 1: gains 0.05/0.1/0.1 (capped at 1), ratios 2.5/2.5/1.25 -> best ratio tie 1 vs 2 -> 2
    # row 2: ratio 0.5 < 1 -> no coupon; row 3: eta 0 -> no coupon
    np.testing.assert_allclose(value.numpy(), [4.0, 2.0, 0.0, 0.0])
    np.testing.assert_allclose(gain.numpy(), [0.2, 0.1, 0.0, 0.0], atol=1e-6)


def test_coupon_decision_only_returns_zero_or_a_grid_value():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 50))
        grid = sorted(set(np.round(rng.uniform(0.1, 10.0, size=int(rng.integers(1, 8))), 2).tolist()))
        p0 = rng.uniform(0, 1, n)
        eta = np.where(rng.uniform(size=n) < 0.2, 0.0, rng.exponential(0.05, n))
        cost, min_ratio = float(rng.uniform(0.001, 0.2)), float(rng.uniform(0, 3))
        value, gain = coupon_decision(p0, eta, grid, cost, min_ratio)
        v, gn = value.numpy(), gain.numpy()
        allowed = np.array([0.0, *grid], dtype=np.float32)
        assert np.isin(v, allowed).all()
        assert (gn >= 0).all()
        issued = v > 0
        expected_gain = np.minimum(p0 + eta * v, 1.0) - p0
        np.testing.assert_allclose(gn[issued], expected_gain[issued], rtol=1e-4, atol=1e-6)
        assert (gn[issued] / (cost * v[issued]) >= min_ratio * (1 - 1e-4)).all()
        assert (gn[~issued] == 0).all()


@pytest.mark.reliability
def test_bad_batches_raise():
    model = model_with()
    bad = tiny_batch()
    bad["intensity"] = torch.tensor([0.0, 0.0, 1.5, 0.0])  # treated row 0 without a face value
    with pytest.raises(BadBatchError, match="intensity"):
        model.compute_loss(bad, tiny_out())
    bad = tiny_batch()
    bad["intensity"] = torch.tensor([2.0, 1.0, 1.5, 0.0])  # untreated row 1 with a face value
    with pytest.raises(BadBatchError, match="untreated"):
        model.compute_loss(bad, tiny_out())
    bad = tiny_batch()
    bad["outcome"] = torch.tensor([1.0, float("nan"), 0.0, 1.0])
    with pytest.raises(BadBatchError):
        model.compute_loss(bad, tiny_out())
    bad = tiny_batch()
    bad["treated"] = torch.tensor([2.0, 0.0, 1.0, 0.0])
    with pytest.raises(BadBatchError):
        model.compute_loss(bad, tiny_out())


@pytest.mark.reliability
def test_bad_params_raise():
    with pytest.raises(ModelConfigError):
        build_model("unimvt", FIELD_DIMS, {"t_min": 3.0, "t_max": 1.0})
    with pytest.raises(ModelConfigError):
        build_model("unimvt", FIELD_DIMS, {"inference_space": "linear"})
    with pytest.raises(ModelConfigError):
        build_model("unimvt", FIELD_DIMS, {"uplift_space": "linear"})


def test_training_lowers_the_loss(adam_steps):
    torch.manual_seed(0)
    model = build_model("unimvt", FIELD_DIMS, {"expert_dims": [32, 16], "tower_dims": [16]})
    batch = coupon_batch(512, seed=0)
    first, last = adam_steps(model, batch)
    assert last < 0.8 * first
    assert set(model.predict(batch)) == {"p0", "unit_uplift"}


@pytest.mark.parametrize("space", ["probability", "logit"])
def test_predict_runs_in_eval_mode_and_restores_the_mode(space):
    torch.manual_seed(0)
    model = model_with(dropout=0.5, uplift_space=space)
    batch = coupon_batch(64, seed=5)
    model.train()
    first, probs = model.predict(batch), model.prob_at(batch, torch.tensor([0.0, 3.0]))
    assert model.training
    model.eval()
    for key, value in model.predict(batch).items():  # no dropout while scoring
        torch.testing.assert_close(first[key], value)
    torch.testing.assert_close(probs, model.prob_at(batch, torch.tensor([0.0, 3.0])))
    assert not model.training
