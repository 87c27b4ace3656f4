"""HMUM / HUM w/o KL: the masked MSE and the KL of eq. 5, DDM's value-weight loss and eq. 10,
the relative uplift and score of eq. 6-7 and 11, the output contract, bad input, training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from liftlake.models.base import BadBatchError
from liftlake.models.hmum import decision_scores, value_weights
from liftlake.models.registry import build_model

FIELD_DIMS = [4, 6, 3]
SMALL = {"embed_dim": 8, "num_experts": 2, "expert_dims": [8], "tower_dims": [4],
         "ddm_embed_dim": 4, "ddm_num_experts": 2, "ddm_expert_dims": [8], "ddm_tower_dims": [4]}




def multi_batch(n: int, seed: int = 0, k: int = 2) -> dict[str, torch.Tensor]:
    """Two responses; treatment 1 lifts response 1 for x1 >= 3, treatment 2 lifts response 2."""
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, d, (n,), generator=g) for d in FIELD_DIMS], dim=1)
    tid = torch.randint(0, k + 1, (n,), generator=g)
    base = torch.stack([1.0 + 0.5 * x[:, 0].float(), 2.0 + 0.3 * x[:, 2].float()], dim=1)
    lift = torch.zeros(n, 2)
    lift[:, 0] += (tid == 1).float() * (0.2 + 0.6 * (x[:, 1] >= 3).float())
    lift[:, 1] += (tid == 2).float() * 0.5
    responses = (base + lift + 0.1 * torch.randn(n, 2, generator=g)).clamp_min(0.0)
    share1 = torch.where(x[:, 0] >= 2, torch.tensor(0.7), torch.tensor(0.3))
    shares = torch.stack([share1, 1 - share1], dim=1)
    return {"x": x, "treatment_id": tid, "responses": responses, "value_shares": shares, "rct": torch.ones(n)}


def tiny_batch() -> dict[str, torch.Tensor]:
    return {"x": torch.tensor([[0, 1, 2], [1, 0, 0], [2, 5, 1]]),
            "treatment_id": torch.tensor([0, 1, 2]),
            "responses": torch.tensor([[1.0, 2.0], [3.0, 0.5], [2.0, 4.0]]),
            "value_shares": torch.tensor([[0.25, 0.75], [0.5, 0.5], [1.0, 0.0]]),
            "rct": torch.ones(3)}


def tiny_out() -> dict[str, torch.Tensor]:
    # y_treat / y_control: [B=3, K=2, R=2]; control_repr: [B, K, R, D=2]; shares_hat: [B, R]
    y_treat = torch.tensor([[[9.0, 9.0], [9.0, 9.0]],
                            [[2.0, 1.0], [9.0, 9.0]],
                            [[9.0, 9.0], [2.5, 3.0]]])
    y_control = torch.tensor([[[1.5, 1.0], [0.5, 2.5]],
                              [[9.0, 9.0], [9.0, 9.0]],
                              [[9.0, 9.0], [9.0, 9.0]]])
    # z^{0,k'}_r, the gate outputs (expert mixtures) of each branch on the control input
    z = torch.zeros(3, 2, 2, 2)
    z[0, 0, 0] = torch.tensor([1.0, -0.5])
    z[0, 1, 0] = torch.tensor([0.0, 0.5])
    z[0, 0, 1] = torch.tensor([0.3, 0.7])
    z[0, 1, 1] = torch.tensor([0.3, 0.7])
    z[1] = torch.tensor([2.0, -2.0])  # treated rows: no KL contribution whatever the representation
    return {"y_treat": y_treat, "y_control": y_control, "control_repr": z,
            "shares_hat": torch.tensor([[0.4, 0.5], [0.5, 0.5], [0.6, 0.2]])}


def hand_parts():
    # eq. 5's squared errors in units of each response's batch mean: (1 + 3 + 2) / 3 = 2 and
    # (2 + 0.5 + 4) / 3 = 13 / 6
    u1, u2 = 2.0, 13 / 6
    # treated rows: row 1 (k=1) against branch 1's treated output, row 2 (k=2) branch 2's
    mse_treated = (((3.0 - 2.0) / u1) ** 2 + ((0.5 - 1.0) / u2) ** 2
                   + ((2.0 - 2.5) / u1) ** 2 + ((4.0 - 3.0) / u2) ** 2) / 3
    # control row 0 against every branch's control output
    mse_control = (((1.0 - 1.5) / u1) ** 2 + ((2.0 - 1.0) / u2) ** 2
                   + ((1.0 - 0.5) / u1) ** 2 + ((2.0 - 2.5) / u2) ** 2) / 3
    # KL of each branch's control representation (a softmax over its units) to the branches' mean,
    # control row 0 only; the response-2 representations agree
    z1, z2 = np.exp([1.0, -0.5]), np.exp([0.0, 0.5])
    z1, z2 = z1 / z1.sum(), z2 / z2.sum()          # [0.8176, 0.1824], [0.3775, 0.6225]
    mean = (z1 + z2) / 2
    kl = (np.sum(z1 * np.log(z1 / mean)) + np.sum(z2 * np.log(z2 / mean))) / 3
    # DDM: squared error against o_r, summed over r, averaged over rows
    ddm = ((0.4 - 0.25) ** 2 + (0.5 - 0.75) ** 2 + 0.0 + (0.6 - 1.0) ** 2 + 0.2 ** 2) / 3
    return mse_treated, mse_control, kl, ddm


def test_masked_mse_kl_and_value_weight_loss_by_hand():
    model = build_model("hmum", FIELD_DIMS, {**SMALL, "kl_weight": 0.5, "ddm_loss_weight": 2.0})
    loss = model.compute_loss(tiny_batch(), tiny_out())
    mse_treated, mse_control, kl, ddm = hand_parts()
    assert loss.parts["mse_treated"].item() == pytest.approx(mse_treated, rel=1e-6)
    assert loss.parts["mse_control"].item() == pytest.approx(mse_control, rel=1e-6)
    assert loss.parts["kl"].item() == pytest.approx(kl, rel=1e-5)
    assert loss.parts["value_weight"].item() == pytest.approx(ddm, rel=1e-6)
    assert loss.total.item() == pytest.approx(mse_treated + mse_control + 0.5 * kl + 2.0 * ddm, rel=1e-5)


def test_hum_without_kl_drops_only_the_kl_term():
    model = build_model("hum_no_kl", FIELD_DIMS, SMALL)
    loss = model.compute_loss(tiny_batch(), tiny_out())
    mse_treated, mse_control, kl, ddm = hand_parts()
    assert loss.parts["kl"].item() == pytest.approx(kl, rel=1e-5)  # still reported
    assert loss.total.item() == pytest.approx(mse_treated + mse_control + ddm, rel=1e-5)


def test_value_weights_eq_10():
    w = value_weights(torch.tensor([[0.2, 0.6], [0.5, 0.5]])).numpy()
    np.testing.assert_allclose(w, [[0.25, 0.75], [0.5, 0.5]], rtol=1e-6)


def test_relative_uplift_and_score_eq_6_7_11():
    y_treat = torch.tensor([[[3.0, 1.0], [2.0, 6.0]]])     # [B=1, K=2, R=2]
    y_control = torch.tensor([[[1.0, 4.0], [3.0, 2.0]]])
    weights = torch.tensor([[0.25, 0.75]])
    s = decision_scores(y_treat, y_control, weights, sigma=0.1, baseline_floor=1e-3)
    # eq. 6: y0* = branch mean = [2, 3]; eq. 7: delta = y^k / y0* - 1
    np.testing.assert_allclose(s["y0"].numpy(), [[2.0, 3.0]])
    np.testing.assert_allclose(s["delta"].numpy(), [[[0.5, -2 / 3], [0.0, 1.0]]], rtol=1e-6)
    np.testing.assert_allclose(s["tau"].numpy(), [[[1.0, -2.0], [0.0, 3.0]]])
    # eq. 11: phi^1 = 0.25*0.5 + 0.75*(-2/3) = -0.375; phi^2 = 0.75; decision phi > 0.1
    np.testing.assert_allclose(s["phi"].numpy(), [[-0.375, 0.75]], rtol=1e-6)
    np.testing.assert_allclose(s["decision"].numpy(), [[0.0, 1.0]])


def test_relative_uplift_floors_a_zero_baseline():
    s = decision_scores(torch.tensor([[[0.5]]]), torch.tensor([[[0.0]]]), torch.tensor([[1.0]]),
                        sigma=0.0, baseline_floor=0.01)
    assert s["delta"].item() == pytest.approx(0.5 / 0.01 - 1)


def test_predict_contract_and_consistency():
    model = build_model("hmum", FIELD_DIMS, {**SMALL, "num_treatments": 3, "num_responses": 2, "sigma": 0.05})
    batch = multi_batch(40, seed=2, k=3)
    pred = model.predict(batch)
    expected = {f"y0_r{r}" for r in (1, 2)} | {f"w_r{r}" for r in (1, 2)} | \
        {f"tau_r{r}_k{k}" for r in (1, 2) for k in (1, 2, 3)} | \
        {f"delta_r{r}_k{k}" for r in (1, 2) for k in (1, 2, 3)} | \
        {f"phi_k{k}" for k in (1, 2, 3)} | {f"decision_k{k}" for k in (1, 2, 3)}
    assert set(pred) == expected
    assert all(v.shape == (40,) for v in pred.values())
    np.testing.assert_allclose((pred["w_r1"] + pred["w_r2"]).numpy(), 1.0, rtol=1e-6)
    for k in (1, 2, 3):
        phi = pred["w_r1"] * pred[f"delta_r1_k{k}"] + pred["w_r2"] * pred[f"delta_r2_k{k}"]
        np.testing.assert_allclose(pred[f"phi_k{k}"].numpy(), phi.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(pred[f"decision_k{k}"].numpy(), (phi > 0.05).float().numpy())
    out = model(batch)
    y0 = out["y_control"].mean(dim=1)
    np.testing.assert_allclose(pred["tau_r2_k3"].numpy(), (out["y_treat"][:, 2, 1] - y0[:, 1]).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_feature_selection_depends_on_the_treatment_only():
    # eq. 2: w^k = softmax(W^k e_t + b^k) is a function of the treatment embedding alone
    model = build_model("hmum", FIELD_DIMS, SMALL)
    branch = model.branches[0]
    e_t = model.treatment_embedding(torch.tensor([1, 1, 0]))
    w = torch.softmax(branch.selector(e_t), dim=-1)
    assert torch.allclose(w[0], w[1]) and not torch.allclose(w[0], w[2])


@pytest.mark.reliability
def test_bad_batches_raise():
    model = build_model("hmum", FIELD_DIMS, SMALL)
    for key, value, match in [
        ("treatment_id", torch.tensor([0, 3, 1]), "treatment_id"),
        ("treatment_id", torch.tensor([-1, 1, 1]), "treatment_id"),
        ("treatment_id", torch.tensor([0.0, 1.0, 2.0]), "treatment_id"),
        ("responses", torch.tensor([[1.0, float("nan")], [1.0, 1.0], [1.0, 1.0]]), "NaN"),
        ("responses", torch.tensor([[1.0, -2.0], [1.0, 1.0], [1.0, 1.0]]), ">= 0"),
        ("responses", torch.ones(3, 3), "responses"),
        ("value_shares", torch.tensor([[0.5, 0.2], [0.5, 0.5], [1.0, 0.0]]), "value_shares"),
    ]:
        bad = tiny_batch()
        bad[key] = value
        with pytest.raises(BadBatchError, match=match):
            model.compute_loss(bad, tiny_out())
    bad = tiny_batch()
    del bad["value_shares"]
    with pytest.raises(BadBatchError, match="missing"):
        model.compute_loss(bad, tiny_out())


@pytest.mark.parametrize("name", ["hmum", "hum_no_kl"])
def test_training_lowers_the_loss(name, adam_steps):
    torch.manual_seed(0)
    model = build_model(name, FIELD_DIMS, {})
    batch = multi_batch(512, seed=0)
    first, last = adam_steps(model, batch)
    assert last < 0.5 * first


def test_predict_runs_in_eval_mode_and_restores_the_mode():
    torch.manual_seed(0)
    model = build_model("hmum", FIELD_DIMS, {**SMALL, "dropout": 0.5})
    batch = multi_batch(64, seed=4)
    model.train()
    first = model.predict(batch)
    assert model.training
    model.eval()
    for key, value in model.predict(batch).items():  # no dropout while scoring
        torch.testing.assert_close(first[key], value)
    assert not model.training


def test_towers_start_at_the_responses_level_and_old_weights_load_at_level_1():
    # y-hat = level_r * exp(h): the level is the mean of response r over the training batches, so
    # towers start at responses of tens instead of exp(0) = 1 (before: 0.5-2 against a mean of ~40)
    torch.manual_seed(0)
    model = build_model("hmum", FIELD_DIMS, SMALL)
    batch = multi_batch(256, seed=1)
    batch["responses"] = 20.0 * batch["responses"]
    halves = [{k: v[:128] for k, v in batch.items()}, {k: v[128:] for k, v in batch.items()}]
    for half in halves:
        model.compute_loss(half, model(half)).total.backward()
    torch.testing.assert_close(model.response_level, batch["responses"].mean(dim=0))
    with torch.no_grad():
        y0 = model.predict(batch)["y0_r1"]
        model.compute_loss(batch, model(batch))             # no gradient: not a training step
        model.eval()
        model.compute_loss(batch, model(batch))             # eval mode: not a training step
    torch.testing.assert_close(model.response_level, batch["responses"].mean(dim=0))
    ratio = y0.mean().item() / batch["responses"][:, 0].mean().item()
    assert 0.5 < ratio < 2.0
    # a state dict saved before the level existed: the towers' exp(h) as they were trained
    old = {k: v for k, v in model.state_dict().items() if k not in ("response_level", "level_batches")}
    reloaded = build_model("hmum", FIELD_DIMS, SMALL)
    reloaded.load_state_dict(old, strict=True)
    torch.testing.assert_close(reloaded.predict(batch)["y0_r1"], y0 / model.response_level[0])
