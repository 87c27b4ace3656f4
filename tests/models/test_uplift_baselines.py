"""Uplift baselines in both tasks: training lowers the loss, the output contract, task support,
bad input, and the hand-checkable pieces (factual losses, IPM, DESCN's entire-space terms,
DRNet's strata, VCNet's spline basis)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liftlake.models.base import BadBatchError
from liftlake.models.dose_response import truncated_power_basis
from liftlake.models.registry import ModelConfigError, build_model
from liftlake.models.representation import linear_mmd

FIELD_DIMS = [4, 6, 3]
SMALL = {"embed_dim": 4, "hidden_dims": [16, 8], "head_dims": [8]}
BOTH = ["s_learner", "t_learner", "tarnet", "cfrnet", "efin", "m3tn"]
COUPON_ONLY = ["descn", "drnet", "vcnet"]




def coupon_batch(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, d, (n,), generator=g) for d in FIELD_DIMS], dim=1)
    treated = (torch.rand(n, generator=g) < 0.4).float()
    intensity = treated * (1.0 + torch.randint(0, 4, (n,), generator=g).float())
    p = 0.1 + 0.3 * (x[:, 0] == 1).float() + (0.02 + 0.05 * (x[:, 1] >= 3).float()) * intensity
    outcome = (torch.rand(n, generator=g) < p).float()
    return {"x": x, "treated": treated, "intensity": intensity, "outcome": outcome, "rct": torch.zeros(n)}


def multi_batch(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, d, (n,), generator=g) for d in FIELD_DIMS], dim=1)
    tid = torch.randint(0, 3, (n,), generator=g)
    base = torch.stack([1.0 + 0.5 * x[:, 0].float(), 2.0 + 0.3 * x[:, 2].float()], dim=1)
    base[:, 0] += (tid == 1).float() * (0.2 + 0.6 * (x[:, 1] >= 3).float())
    base[:, 1] += (tid == 2).float() * 0.5
    responses = (base + 0.1 * torch.randn(n, 2, generator=g)).clamp_min(0.0)
    return {"x": x, "treatment_id": tid, "responses": responses, "rct": torch.ones(n)}


CASES = [(name, "coupon") for name in BOTH + COUPON_ONLY] + [(name, "multi_treatment") for name in BOTH]


@pytest.mark.parametrize("name,task", CASES)
def test_training_lowers_the_loss_and_predict_follows_the_contract(name, task, adam_steps):
    torch.manual_seed(0)
    model = build_model(name, FIELD_DIMS, {**SMALL, "task": task})
    assert model.family == "uplift"
    batch = coupon_batch(512) if task == "coupon" else multi_batch(512)
    first, last = adam_steps(model, batch)
    assert last < first - 0.05 * abs(first)
    pred = model.predict(batch)
    if task == "coupon":
        assert set(pred) == {"p0", "unit_uplift"}
        assert ((pred["p0"] > 0) & (pred["p0"] < 1)).all()
        t_read = model.read_intensity()
        probs = model.prob_at(batch, torch.tensor([0.0, t_read, 3.0]))
        assert probs.shape == (512, 3)
        np.testing.assert_allclose(probs[:, 0].numpy(), pred["p0"].numpy(), rtol=1e-5)
        # unit uplift: the slope read at a face value the training rows had, signed (a predicted
        # harm is not clipped to 0)
        np.testing.assert_allclose(pred["unit_uplift"].numpy(), (probs[:, 1].numpy() - probs[:, 0].numpy()) / t_read,
                                   atol=1e-6)
    else:
        assert set(pred) == {"y0_r1", "y0_r2", "tau_r1_k1", "tau_r1_k2", "tau_r2_k1", "tau_r2_k2"}
        assert all(v.shape == (512,) for v in pred.values())


def test_the_unit_uplift_is_read_at_a_face_value_the_treated_training_rows_had():
    model = build_model("t_learner", FIELD_DIMS, {**SMALL, "task": "coupon"})
    assert model.read_intensity() == 1.0                       # no treated row seen yet
    batch = coupon_batch(512)
    batch["intensity"] = batch["treated"] * torch.where(torch.arange(512) % 3 == 0, 1.0, 4.0)
    model.train()
    model(batch)
    # mean 3.0 falls between the two values used; the nearest one used is 4.0
    assert model.read_intensity() == 4.0
    model.eval()
    model.predict(batch)
    model(batch)                                               # scoring counts nothing
    counts = model.treated_face_values[:, 0]
    assert counts.sum().item() == batch["treated"].sum().item()
    # the histogram is saved with the weights, and weights saved before it existed read at 1.0
    state = model.state_dict()
    loaded = build_model("t_learner", FIELD_DIMS, {**SMALL, "task": "coupon"})
    loaded.load_state_dict(state)
    assert loaded.read_intensity() == 4.0
    older = {k: v for k, v in state.items() if k != "treated_face_values"}
    loaded.load_state_dict(older)
    assert loaded.read_intensity() == 1.0
    fixed = build_model("t_learner", FIELD_DIMS, {**SMALL, "task": "coupon", "unit_intensity": 2.0})
    fixed.load_state_dict(state)
    assert fixed.read_intensity() == 2.0


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan"), "two"])
def test_unit_intensity_must_be_a_positive_finite_face_value(value):
    with pytest.raises(ModelConfigError, match="unit_intensity"):
        build_model("t_learner", FIELD_DIMS, {"task": "coupon", "unit_intensity": value})


@pytest.mark.parametrize("name", COUPON_ONLY)
def test_coupon_only_models_refuse_multi_treatment(name):
    with pytest.raises(ModelConfigError, match="multi_treatment"):
        build_model(name, FIELD_DIMS, {"task": "multi_treatment"})


def test_unknown_task_is_refused():
    with pytest.raises(ModelConfigError, match="task"):
        build_model("s_learner", FIELD_DIMS, {"task": "dose"})


def test_bad_batches_raise():
    coupon = build_model("tarnet", FIELD_DIMS, {**SMALL, "task": "coupon"})
    bad = coupon_batch(8)
    bad["treated"][0], bad["intensity"][0] = 1.0, 0.0
    with pytest.raises(BadBatchError, match="intensity"):
        coupon.compute_loss(bad, coupon(coupon_batch(8)))
    multi = build_model("tarnet", FIELD_DIMS, {**SMALL, "task": "multi_treatment"})
    good = multi_batch(8)
    bad = multi_batch(8)
    bad["treatment_id"][0] = 5
    with pytest.raises(BadBatchError, match="treatment_id"):
        multi.compute_loss(bad, multi(good))
    bad = multi_batch(8)
    bad["responses"][2, 1] = float("nan")
    with pytest.raises(BadBatchError, match="NaN"):
        multi.compute_loss(bad, multi(good))
    bad = multi_batch(8)
    del bad["responses"]
    with pytest.raises(BadBatchError, match="missing"):
        multi.compute_loss(bad, multi(good))


def test_factual_losses_by_hand():
    coupon = build_model("s_learner", FIELD_DIMS, {**SMALL, "task": "coupon"})
    batch = {"x": torch.tensor([[0, 0, 0], [1, 1, 1]]), "treated": torch.tensor([1.0, 0.0]),
             "intensity": torch.tensor([2.0, 0.0]), "outcome": torch.tensor([1.0, 0.0]), "rct": torch.zeros(2)}
    loss = coupon.compute_loss(batch, {"outcome": torch.tensor([[0.4], [-0.2]])})
    expected = (-math.log(1 / (1 + math.exp(-0.4))) - math.log(1 - 1 / (1 + math.exp(0.2)))) / 2
    assert loss.total.item() == pytest.approx(expected, rel=1e-6)
    multi = build_model("s_learner", FIELD_DIMS, {**SMALL, "task": "multi_treatment"})
    batch = {"x": torch.tensor([[0, 0, 0], [1, 1, 1]]), "treatment_id": torch.tensor([0, 2]),
             "responses": torch.tensor([[1.0, 2.0], [0.0, 3.0]]), "rct": torch.zeros(2)}
    loss = multi.compute_loss(batch, {"outcome": torch.tensor([[1.5, 2.0], [1.0, 1.0]])})
    assert loss.parts["response_mse"].item() == pytest.approx((0.25 + 0 + 1 + 4) / 2)


def test_linear_mmd_by_hand():
    phi = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 0.0], [4.0, 4.0], [2.0, 0.0]])
    group = torch.tensor([0, 0, 1, 2, 2])
    # control mean (2, 1); arm 1 mean (0, 0) -> 4 + 1; arm 2 mean (3, 2) -> 1 + 1
    assert linear_mmd(phi, group, 3).item() == pytest.approx(7.0)
    assert linear_mmd(phi, torch.tensor([1, 1, 1, 1, 1]), 2).item() == 0.0


def test_cfrnet_adds_the_weighted_ipm():
    model = build_model("cfrnet", FIELD_DIMS, {**SMALL, "ipm_weight": 0.5})
    batch = coupon_batch(64)
    out = model(batch)
    loss = model.compute_loss(batch, out)
    w = batch["treated"] == 1
    ipm = ((out["phi"][w].mean(0) - out["phi"][~w].mean(0)) ** 2).sum().item()
    assert loss.parts["ipm"].item() == pytest.approx(ipm, rel=1e-5)
    assert loss.total.item() == pytest.approx(loss.parts["outcome_bce"].item() + 0.5 * ipm, rel=1e-5)


def test_descn_entire_space_and_cross_terms_by_hand():
    model = build_model("descn", FIELD_DIMS, SMALL)
    batch = {"x": torch.tensor([[0, 0, 0], [1, 1, 1]]), "treated": torch.tensor([1.0, 0.0]),
             "intensity": torch.tensor([2.0, 0.0]), "outcome": torch.tensor([1.0, 1.0]), "rct": torch.zeros(2)}
    out = {"outcome": torch.zeros(2, 1), "propensity_logit": torch.tensor([0.0, 0.0]),
           "mu0_logit": torch.tensor([0.0, math.log(3.0)]), "mu1_logit": torch.tensor([math.log(3.0), 0.0]),
           "pseudo_effect": torch.tensor([math.log(3.0), math.log(3.0)])}
    parts = model.compute_loss(batch, out).parts
    # pi = 0.5; row 0: mu1 = 0.75, y*w = 1; row 1: pi*mu1 = 0.25 against 0
    assert parts["es_treated"].item() == pytest.approx((-math.log(0.375) - math.log(0.75)) / 2, rel=1e-5)
    # (1 - pi) * mu0: row 0 = 0.25 against 0, row 1 = 0.375 against 1
    assert parts["es_control"].item() == pytest.approx((-math.log(0.75) - math.log(0.375)) / 2, rel=1e-5)
    # treated row 0: sigma(logit mu0 + tau') = sigma(log 3) = 0.75 against 1
    assert parts["cross_treated"].item() == pytest.approx(-math.log(0.75) / 2, rel=1e-5)
    # control row 1: sigma(logit mu1 - tau') = sigma(-log 3) = 0.25 against 1
    assert parts["cross_control"].item() == pytest.approx(-math.log(0.25) / 2, rel=1e-5)


def test_vcnet_identity_link_by_hand():
    """VCNet's default link: the head's output is the probability (clamped), fit by squared error,
    so the unit uplift is the head's own slope; 'logit' keeps the sigmoid and BCE."""
    model = build_model("vcnet", FIELD_DIMS, {**SMALL, "t_min": 1.0, "t_max": 4.0})
    batch = {"x": torch.tensor([[0, 0, 0], [1, 1, 1]]), "treated": torch.tensor([1.0, 0.0]),
             "intensity": torch.tensor([2.0, 0.0]), "outcome": torch.tensor([1.0, 0.0]), "rct": torch.zeros(2)}
    loss = model.compute_loss(batch, {"outcome": torch.tensor([[0.4], [0.3]]),
                                      "density_logits": torch.zeros(2, model.params.density_grid + 1)})
    assert loss.parts["outcome_mse"].item() == pytest.approx(((1 - 0.4) ** 2 + 0.3 ** 2) / 2, rel=1e-6)
    np.testing.assert_allclose(model.coupon_probability(torch.tensor([[-0.2], [0.3], [1.7]])).numpy(),
                               [1e-6, 0.3, 1 - 1e-6], rtol=1e-6)
    model.params.unit_intensity = 2.0  # read the slope at a face value of 2
    pred = model.predict(batch)
    with torch.no_grad():
        rep = model.encode(batch["x"])
        h0 = model.outcome(rep, torch.zeros(2)).squeeze(-1)
        h2 = model.outcome(rep, torch.full((2,), 2.0)).squeeze(-1)
    slope = (h2.clamp(1e-6, 1 - 1e-6) - h0.clamp(1e-6, 1 - 1e-6)) / 2
    np.testing.assert_allclose(pred["unit_uplift"].numpy(), slope.numpy(), rtol=1e-5, atol=1e-7)
    logit = build_model("vcnet", FIELD_DIMS, {**SMALL, "outcome_link": "logit"})
    parts = logit.compute_loss(batch, {"outcome": torch.tensor([[0.4], [0.3]]),
                                       "density_logits": torch.zeros(2, logit.params.density_grid + 1)}).parts
    assert set(parts) == {"outcome_bce", "density_nll"}
    with pytest.raises(ModelConfigError, match="outcome_link"):
        build_model("vcnet", FIELD_DIMS, {**SMALL, "outcome_link": "probit"})


def test_drnet_strata_and_vcnet_basis():
    model = build_model("drnet", FIELD_DIMS, {**SMALL, "t_min": 1.0, "t_max": 5.0, "num_strata": 4})
    # strata of width 1 over [1, 5]; values outside the range go to the edge strata
    np.testing.assert_array_equal(model.stratum(torch.tensor([1.0, 1.99, 2.0, 4.5, 5.0, 9.0, 0.2])).numpy(),
                                  [0, 0, 1, 3, 3, 3, 0])
    basis = truncated_power_basis(torch.tensor([0.0, 0.5, 0.9]), 2, [1 / 3, 2 / 3]).numpy()
    np.testing.assert_allclose(basis, [[1, 0, 0, 0, 0],
                                       [1, 0.5, 0.25, (0.5 - 1 / 3) ** 2, 0],
                                       [1, 0.9, 0.81, (0.9 - 1 / 3) ** 2, (0.9 - 2 / 3) ** 2]], rtol=1e-6)


@pytest.mark.parametrize("name,task", CASES)
def test_predict_runs_in_eval_mode_and_restores_the_mode(name, task):
    torch.manual_seed(0)
    model = build_model(name, FIELD_DIMS, {**SMALL, "task": task, "dropout": 0.5})
    batch = coupon_batch(64) if task == "coupon" else multi_batch(64)
    model.train()
    first, second = model.predict(batch), model.predict(batch)
    assert model.training  # put back as it was
    model.eval()
    reference = model.predict(batch)
    assert not model.training
    for key in reference:  # no dropout while scoring: the same rows score the same
        torch.testing.assert_close(first[key], reference[key])
        torch.testing.assert_close(second[key], reference[key])
    if task == "coupon":
        values = torch.tensor([0.0, 2.0])
        expected = model.prob_at(batch, values)
        model.train()
        torch.testing.assert_close(model.prob_at(batch, values), expected)
        assert model.training


def test_descn_reads_untreated_rows_at_a_treated_face_value():
    # ESTR's pi * mu1 = E[y w | x] needs mu1 on an untreated row at a value a coupon would have had
    torch.manual_seed(0)
    model = build_model("descn", FIELD_DIMS, SMALL)
    batch = coupon_batch(64)
    batch["intensity"] = batch["treated"] * torch.where(torch.arange(64) % 2 == 0, 2.0, 3.0)
    rep = model.encode(batch["x"])
    mu1 = model.auxiliary_outputs(batch, rep)["mu1_logit"]
    at = {v: model.treated_head(torch.cat([rep["phi"], model.treatment_features(torch.full((64,), v))], -1))
          .squeeze(-1) for v in (2.0, 3.0)}
    untreated = batch["treated"] == 0
    assert ((mu1 == at[2.0]) | (mu1 == at[3.0]))[untreated].all()
    assert (mu1 == at[2.0])[untreated].any() and (mu1 == at[3.0])[untreated].any()
