"""CVR family: each loss against the paper's equation worked by hand, training, prediction, bad input."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import yaml

from liftlake.models.base import BadBatchError
from liftlake.models.registry import ModelConfigError, build_model, get_entry, list_models

CVR_MODELS = ["naive", "esmm", "mtl_ips", "mtl_dr", "escm2_ips", "escm2_dr", "dcmt", "dcmt_pd", "dcmt_cf",
              "escim_max", "escim_ratio"]
DIMS = [3, 3]

# The tiny batch every hand computation below uses: two clicks (one converted), two non-clicks.
CLICK = np.array([1.0, 1.0, 0.0, 0.0])
CONV = np.array([1.0, 0.0, 0.0, 0.0])
CTR = np.array([0.8, 0.4, 0.3, 0.1])
CVR = np.array([0.6, 0.3, 0.2, 0.5])
CVR_CF = np.array([0.3, 0.6, 0.7, 0.2])
IMPUTED = np.array([0.5, 0.2, 0.4, 0.1])
CF_LABEL = np.array([0.0, 0.0, 1.0, 0.0])




def bce(p, y):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def tiny_batch():
    return {"x": torch.zeros(4, 2, dtype=torch.long), "click": torch.tensor(CLICK, dtype=torch.float32),
            "conversion": torch.tensor(CONV, dtype=torch.float32),
            "cf_label": torch.tensor(CF_LABEL, dtype=torch.float32)}


def fixed_out(ctr=CTR, requires_grad=False):
    """Model outputs set by hand, so the loss is a function of known probabilities only."""
    def t(a):
        return torch.tensor(a, dtype=torch.float32, requires_grad=requires_grad)
    out = {"ctr": t(ctr), "cvr": t(CVR), "cvr_cf": t(CVR_CF), "imputation": t(IMPUTED)}
    out["ctcvr"] = out["ctr"] * out["cvr"]
    return out


def small(name, **extra):
    params = {"embed_dim": 4, "hidden_dims": [8]}
    if name.startswith("escm2"):
        params.update(hidden_dims=[], num_experts=2, expert_dims=[8])
    return build_model(name, DIMS, {**params, **extra})


CTR_LOSS = bce(CTR, CLICK).mean()
CTCVR_LOSS = bce(CTR * CVR, CLICK * CONV).mean()
CVR_ERR = bce(CVR, CONV)


# --------------------------------------------------------------------------- losses by hand
def test_naive_loss_is_ctr_plus_cvr_over_clicked_rows():
    loss = small("naive").compute_loss(tiny_batch(), fixed_out())
    cvr_clicked = (bce(0.6, 1) + bce(0.3, 0)) / 2  # eq. 3: mean over O only
    assert loss.parts["cvr"].item() == pytest.approx(cvr_clicked, rel=1e-5)
    assert loss.total.item() == pytest.approx(CTR_LOSS + cvr_clicked, rel=1e-5)


def test_esmm_loss_is_ctr_plus_ctcvr_over_all_exposures():
    loss = small("esmm").compute_loss(tiny_batch(), fixed_out())
    ctcvr = (bce(0.48, 1) + bce(0.12, 0) + bce(0.06, 0) + bce(0.05, 0)) / 4
    assert loss.parts["ctcvr"].item() == pytest.approx(ctcvr, rel=1e-5)
    assert loss.total.item() == pytest.approx(CTR_LOSS + ctcvr, rel=1e-5)
    assert set(loss.parts) == {"ctr", "ctcvr"}


IPS = (bce(0.6, 1) / 0.8 + bce(0.3, 0) / 0.4) / 4  # eq. 9: 1/|D| sum o e / o^


def test_mtl_ips_loss():
    loss = small("mtl_ips").compute_loss(tiny_batch(), fixed_out())
    assert loss.parts["cvr_ips"].item() == pytest.approx(IPS, rel=1e-5)
    assert loss.total.item() == pytest.approx(CTR_LOSS + IPS, rel=1e-5)
    assert set(loss.parts) == {"ctr", "cvr_ips"}


def test_escm2_ips_loss_is_eq13_with_paper_weights():
    loss = small("escm2_ips").compute_loss(tiny_batch(), fixed_out())
    assert loss.parts["cvr_ips"].item() == pytest.approx(IPS, rel=1e-5)
    # lambda_c = 0.1, lambda_g = 1 (ESCM² V-A)
    assert loss.total.item() == pytest.approx(CTR_LOSS + 0.1 * IPS + 1.0 * CTCVR_LOSS, rel=1e-5)


# eq. 10: 1/|D| sum (eps^ + o (eps - eps^) / o^); eq. 11: 1/|D| sum o (eps - eps^)^2 / o^
DR_ERR = (IMPUTED[0] + (CVR_ERR[0] - IMPUTED[0]) / 0.8 + IMPUTED[1] + (CVR_ERR[1] - IMPUTED[1]) / 0.4
          + IMPUTED[2] + IMPUTED[3]) / 4
DR_IMP = ((CVR_ERR[0] - IMPUTED[0]) ** 2 / 0.8 + (CVR_ERR[1] - IMPUTED[1]) ** 2 / 0.4) / 4


def test_escm2_dr_loss_has_error_and_imputation_terms():
    loss = small("escm2_dr").compute_loss(tiny_batch(), fixed_out())
    assert loss.parts["cvr_dr"].item() == pytest.approx(DR_ERR, rel=1e-5)
    assert loss.parts["imputation"].item() == pytest.approx(DR_IMP, rel=1e-5)
    assert loss.total.item() == pytest.approx(CTR_LOSS + 0.1 * (DR_ERR + DR_IMP) + CTCVR_LOSS, rel=1e-5)


def test_mtl_dr_loss():
    loss = small("mtl_dr").compute_loss(tiny_batch(), fixed_out())
    assert loss.total.item() == pytest.approx(CTR_LOSS + DR_ERR + DR_IMP, rel=1e-5)
    assert "ctcvr" not in loss.parts


def test_propensity_is_clipped_below():
    # o^ = 0.01 on the clicked, converted row; clip 0.05 makes its weight 1/0.05, not 1/0.01.
    loss = small("mtl_ips", propensity_clip=0.05).compute_loss(
        tiny_batch(), fixed_out(ctr=np.array([0.01, 0.4, 0.3, 0.1])))
    assert loss.parts["cvr_ips"].item() == pytest.approx((bce(0.6, 1) / 0.05 + bce(0.3, 0) / 0.4) / 4, rel=1e-5)


# Gradients by hand on the tiny batch, d e(r, r^) / d r^ = (r^ - r) / (r^ (1 - r^)):
#   IPS (eq. 9)        d R_IPS / d r^        = o / o^ * de/dr^ / |D|
#   DR  (eq. 10-12)    d R_DR / d r^         = o / o^ * de/dr^ / |D|   (eps^ no function of r^; eps fixed in R_imp)
#                      d R_DR / d eps^       = -2 o (eps - eps^) / o^ / |D|   (R_imp only; eps^ fixed in R_err)
ERR_SLOPE = (CVR - CONV) / (CVR * (1 - CVR))
IPS_GRAD_CVR = CLICK / CTR * ERR_SLOPE / 4
DR_GRAD_IMPUTATION = -2 * CLICK * (CVR_ERR - IMPUTED) / CTR / 4


def _grads(name, parts, wrt):
    """Gradient of the sum of the named loss parts (or the total) w.r.t. the hand-set outputs."""
    out = fixed_out(requires_grad=True)
    loss = small(name).compute_loss(tiny_batch(), out)
    value = loss.total if parts == "total" else sum(loss.parts[p] for p in parts)
    return dict(zip(wrt, torch.autograd.grad(value, [out[k] for k in wrt], allow_unused=True)))


def test_ips_gradient_reaches_the_cvr_arm_on_clicked_rows_only_and_never_the_propensity():
    g = _grads("escm2_ips", ["cvr_ips"], ["cvr", "ctr"])
    np.testing.assert_allclose(g["cvr"].numpy(), IPS_GRAD_CVR, rtol=1e-5)
    assert g["ctr"] is None  # Alg. 1 step 2: o^ is a coefficient (stop-gradient)


def test_dr_gradient_paths_are_the_papers():
    """ESCM² IV-C: eps^ enters R_err without gradient, eps enters R_imp without gradient.

    So the CVR arm learns from R_DR exactly what it learns from R_IPS (eps^ is the imputation arm's
    output, no function of r^, and R_err's only live term in r^ is o eps / o^), and the imputation
    arm learns only from R_imp, by the squared correction error on the clicked rows.
    """
    dr = _grads("escm2_dr", ["cvr_dr", "imputation"], ["cvr", "imputation", "ctr"])
    np.testing.assert_allclose(dr["cvr"].numpy(), IPS_GRAD_CVR, rtol=1e-5)
    np.testing.assert_allclose(dr["imputation"].numpy(), DR_GRAD_IMPUTATION, rtol=1e-5)
    assert dr["ctr"] is None
    assert (dr["cvr"][2:] == 0).all() and (dr["imputation"][2:] == 0).all()  # nothing on non-clicks
    # term by term: R_err feeds the CVR arm only, R_imp the imputation arm only
    err = _grads("escm2_dr", ["cvr_dr"], ["cvr", "imputation"])
    imp = _grads("escm2_dr", ["imputation"], ["cvr", "imputation"])
    assert err["imputation"] is None and imp["cvr"] is None
    # the whole objective (eq. 13): the CVR arm's gradient is the same under DR and IPS, the
    # imputation arm's is lambda_c d R_imp / d eps^
    total_dr = _grads("escm2_dr", "total", ["cvr", "imputation"])
    total_ips = _grads("escm2_ips", "total", ["cvr"])
    torch.testing.assert_close(total_dr["cvr"], total_ips["cvr"])
    np.testing.assert_allclose(total_dr["imputation"].numpy(), 0.1 * DR_GRAD_IMPUTATION, rtol=1e-5)


def test_dr_differs_from_ips_through_the_imputation_arm_in_the_shared_experts():
    """ESCM²-DR given ESCM²-IPS's weights is ESCM²-IPS plus a third gate and the imputation arm. On
    a real batch their CTR / CVR outputs agree, the CVR head gets the same gradient, and the shared
    MMoE experts differ by exactly the gradient lambda_c R_imp sends through the imputation arm."""
    dims, batch = synthetic(256)
    sizes = {"embed_dim": 4, "hidden_dims": [], "num_experts": 2, "expert_dims": [8]}
    torch.manual_seed(3)
    ips, dr = build_model("escm2_ips", dims, sizes), build_model("escm2_dr", dims, sizes)
    missing = dr.load_state_dict(ips.state_dict(), strict=False).missing_keys
    assert all(k.startswith(("body.mmoe.gates.2.", "heads.imputation.")) for k in missing), missing
    out_ips, out_dr = ips(batch), dr(batch)
    torch.testing.assert_close(out_ips["cvr"], out_dr["cvr"])
    torch.testing.assert_close(out_ips["ctr"], out_dr["ctr"])
    loss_ips, loss_dr = ips.compute_loss(batch, out_ips), dr.compute_loss(batch, out_dr)
    experts_ips, experts_dr = list(ips.body.mmoe.experts.parameters()), list(dr.body.mmoe.experts.parameters())
    g_ips = torch.autograd.grad(loss_ips.total, experts_ips + list(ips.heads["cvr"].parameters()))
    g_dr = torch.autograd.grad(loss_dr.total, experts_dr + list(dr.heads["cvr"].parameters()), retain_graph=True)
    g_imp = torch.autograd.grad(dr.lambda_c * loss_dr.parts["imputation"], experts_dr)
    n = len(experts_dr)
    for a, b in zip(g_ips[n:], g_dr[n:]):  # CVR head: the same
        torch.testing.assert_close(a, b)
    for a, b, c in zip(g_ips[:n], g_dr[:n], g_imp):  # shared experts: IPS + the imputation arm's pull
        torch.testing.assert_close(b - a, c, rtol=1e-4, atol=1e-7)
    assert sum(c.abs().sum() for c in g_imp) > 0


# DCMT, eq. 9 with SNIPS (eq. 13): factual over O weighted 1/o^, counterfactual over N* (label 1)
# weighted 1/(1 - o^), each normalized by the sum of its weights; regularizer mean |1 - (r^ + r^*)|.
DCMT_FACTUAL = (bce(0.6, 1) / 0.8 + bce(0.3, 0) / 0.4) / (1 / 0.8 + 1 / 0.4)
DCMT_CF = (bce(0.7, 1) / 0.7 + bce(0.2, 1) / 0.9) / (1 / 0.7 + 1 / 0.9)
DCMT_REG = (abs(1 - 0.9) + abs(1 - 0.9) + abs(1 - 0.9) + abs(1 - 0.7)) / 4


def test_dcmt_loss_snips_factual_counterfactual_and_regularizer():
    loss = small("dcmt").compute_loss(tiny_batch(), fixed_out())
    assert loss.parts["cvr_factual"].item() == pytest.approx(DCMT_FACTUAL, rel=1e-5)
    assert loss.parts["cvr_counterfactual"].item() == pytest.approx(DCMT_CF, rel=1e-5)
    assert loss.parts["cf_reg"].item() == pytest.approx(DCMT_REG, rel=1e-5)
    # eq. 14 with w_cvr = w_ctcvr = 1, lambda_1 = 0.001
    expected = CTR_LOSS + (DCMT_FACTUAL + DCMT_CF + 0.001 * DCMT_REG) + CTCVR_LOSS
    assert loss.total.item() == pytest.approx(expected, rel=1e-5)


def test_dcmt_without_self_normalization_divides_by_batch_size():
    loss = small("dcmt", self_normalize=False, cf_reg_weight=0.5).compute_loss(tiny_batch(), fixed_out())
    factual = (bce(0.6, 1) / 0.8 + bce(0.3, 0) / 0.4) / 4
    counterfactual = (bce(0.7, 1) / 0.7 + bce(0.2, 1) / 0.9) / 4
    assert loss.total.item() == pytest.approx(
        CTR_LOSS + factual + counterfactual + 0.5 * DCMT_REG + CTCVR_LOSS, rel=1e-5)


def test_dcmt_pd_drops_the_regularizer():
    loss = small("dcmt_pd").compute_loss(tiny_batch(), fixed_out())
    assert "cf_reg" not in loss.parts
    assert loss.total.item() == pytest.approx(CTR_LOSS + DCMT_FACTUAL + DCMT_CF + CTCVR_LOSS, rel=1e-5)


def test_dcmt_cf_drops_the_propensity_weights():
    loss = small("dcmt_cf").compute_loss(tiny_batch(), fixed_out())
    factual = (bce(0.6, 1) + bce(0.3, 0)) / 2
    counterfactual = (bce(0.7, 1) + bce(0.2, 1)) / 2
    assert loss.parts["cvr_factual"].item() == pytest.approx(factual, rel=1e-5)
    assert loss.parts["cvr_counterfactual"].item() == pytest.approx(counterfactual, rel=1e-5)
    assert loss.total.item() == pytest.approx(
        CTR_LOSS + factual + counterfactual + 0.001 * DCMT_REG + CTCVR_LOSS, rel=1e-5)


def test_escim_loss_eq16_to_18():
    loss = small("escim_max").compute_loss(tiny_batch(), fixed_out())
    factual = IPS  # eq. 17 = ESCM²'s IPS risk
    # eq. 18 over the non-clicked rows with the counterfactual label (row 3: v* = 1, row 4: v* = 0)
    counterfactual = (bce(0.2, 1) / 0.3 + bce(0.5, 0) / 0.1) / 4
    assert loss.parts["cvr_factual"].item() == pytest.approx(factual, rel=1e-5)
    assert loss.parts["cvr_counterfactual"].item() == pytest.approx(counterfactual, rel=1e-5)
    # alpha_F = 0.1, alpha_CF = 1e-4 (IV-A4); propensity clip 0.05 does not bind here
    expected = CTR_LOSS + CTCVR_LOSS + 0.1 * factual + 1e-4 * counterfactual
    assert loss.total.item() == pytest.approx(expected, rel=1e-5)
    # a clicked row's cf_label is ignored
    batch = tiny_batch()
    batch["cf_label"][0] = 1.0
    assert small("escim_max").compute_loss(batch, fixed_out()).parts["cvr_counterfactual"].item() == \
        pytest.approx(counterfactual, rel=1e-5)


# --------------------------------------------------------------------------- initial state
@pytest.mark.parametrize("name", ["esmm", "escm2_dr", "dcmt", "escim_ratio"])
def test_heads_start_at_their_priors_not_at_one_half(name):
    model = build_model(name, [6, 5, 4, 3], {"embed_dim": 4, "hidden_dims": [8], "ctr_prior": 0.04,
                                             "cvr_prior": 0.1})
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    expected = {"ctr": logit(0.04), "cvr": logit(0.1), "cvr_cf": logit(0.9),  # DCMT: r^ + r^* = 1
                "imputation": math.log(math.expm1(bce(0.1, 0.1)))}  # softplus^-1 of H(0.1)
    for head, value in expected.items():
        if head in model.heads:
            assert model.heads[head].net[-1].bias.item() == pytest.approx(value, rel=1e-6)
    _, batch = synthetic(512)
    pred = model.predict({"x": batch["x"]})
    assert abs(pred["ctr"].mean().item() - 0.04) < 0.02 and abs(pred["cvr"].mean().item() - 0.1) < 0.04


# --------------------------------------------------------------------------- training
def synthetic(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    dims = [6, 5, 4, 3]
    x = torch.stack([torch.randint(0, d, (n,), generator=g) for d in dims], dim=1)
    click = (torch.rand(n, generator=g) < 0.15 + 0.1 * x[:, 0]).float()
    conversion = click * (torch.rand(n, generator=g) < 0.1 + 0.2 * x[:, 1]).float()
    cf_label = (1 - click) * (x[:, 1] >= 3).float()
    return dims, {"x": x, "click": click, "conversion": conversion, "cf_label": cf_label}


# every model once, every backbone under both sharing modes (escm2_* use MMoE)
TRAIN_CASES = [("naive", "mlp"), ("esmm", "deepfm"), ("mtl_ips", "autoint"), ("mtl_dr", "dcnv2"),
               ("escm2_ips", "autoint"), ("escm2_dr", "dcnv2"), ("dcmt", "deepfm"), ("dcmt_pd", "mlp"),
               ("dcmt_cf", "autoint"), ("escim_max", "dcnv2"), ("escim_ratio", "deepfm")]


@pytest.mark.parametrize("name, backbone", TRAIN_CASES)
def test_adam_steps_lower_the_loss(name, backbone):
    torch.manual_seed(0)
    dims, batch = synthetic()
    params = {"backbone": backbone, "embed_dim": 4, "hidden_dims": [16], "dropout": 0.0,
              "autoint_layers": 1, "cross_layers": 1}
    if name.startswith("escm2"):
        params.update(num_experts=2, expert_dims=[8])
    model = build_model(name, dims, params)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)

    def loss_value():
        return model.compute_loss(batch, model(batch)).total

    before = loss_value().item()
    # The DR objectives rise for a while before they fall: the imputation arm starts out right for
    # an untrained CVR arm (every error near log 2) and must chase the errors as the CVR arm learns.
    for _ in range(60 if name.endswith("_dr") else 30):
        loss = loss_value()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = loss_value().item()
    assert math.isfinite(after) and after < 0.95 * before, (before, after)


def test_mmoe_sharing_available_to_every_model():
    dims, batch = synthetic(64)
    model = build_model("mtl_ips", dims, {"sharing": "mmoe", "hidden_dims": [], "num_experts": 3,
                                          "expert_dims": [8]})
    assert len(model.body.mmoe.experts) == 3
    assert model.compute_loss(batch, model(batch)).total.isfinite()


# --------------------------------------------------------------------------- prediction
@pytest.mark.parametrize("name", ["escm2_dr", "dcmt", "escim_ratio"])
def test_predict_returns_exactly_ctr_cvr_ctcvr(name):
    dims, batch = synthetic(32)
    model = build_model(name, dims, {"embed_dim": 4, "hidden_dims": [8], "dropout": 0.1})
    model.train()
    pred = model.predict({"x": batch["x"]})
    assert set(pred) == {"ctr", "cvr", "ctcvr"}
    for value in pred.values():
        assert value.shape == (32,) and value.dtype == torch.float32
        assert ((value >= 0) & (value <= 1)).all()
    torch.testing.assert_close(pred["ctcvr"], pred["ctr"] * pred["cvr"])
    assert model.training  # predict runs in eval mode and restores the mode
    model.eval()
    torch.testing.assert_close(pred["cvr"], model(batch)["cvr"])  # DCMT: the factual head


@pytest.mark.reliability
def test_predict_refuses_out_of_vocabulary_ids():
    dims, batch = synthetic(8)
    model = build_model("esmm", dims, {})
    x = batch["x"].clone()
    x[0, 2] = dims[2]
    with pytest.raises(BadBatchError, match="outside"):
        model.predict({"x": x})


# --------------------------------------------------------------------------- bad batches
def _corrupt(batch, kind, dims):
    batch = {k: v.clone() for k, v in batch.items()}
    if kind == "id_out_of_range":
        batch["x"][1, 0] = dims[0]
    elif kind == "negative_id":
        batch["x"][1, 3] = -1
    elif kind == "click_is_2":
        batch["click"][2] = 2.0
    elif kind == "conversion_nan":
        batch["conversion"][0] = float("nan")
    elif kind == "conversion_on_non_click":
        row = int((batch["click"] == 0).nonzero()[0])
        batch["conversion"][row] = 1.0
    elif kind == "wrong_label_shape":
        batch["click"] = batch["click"][:-1]
    return batch


@pytest.mark.parametrize("name", ["naive", "escm2_dr", "dcmt_cf", "escim_max"])
@pytest.mark.parametrize("kind, message", [
    ("id_out_of_range", "outside"), ("negative_id", "outside"), ("click_is_2", "0 or 1"),
    ("conversion_nan", "NaN"), ("conversion_on_non_click", "conversion label on a non-click"),
    ("wrong_label_shape", "shape")])
@pytest.mark.reliability
def test_bad_batches_raise_bad_batch_error(name, kind, message):
    dims, batch = synthetic(16)
    model = build_model(name, dims, {"embed_dim": 4, "hidden_dims": [8]})
    bad = _corrupt(batch, kind, dims)
    with pytest.raises(BadBatchError, match=message):
        out = model({"x": batch["x"]})  # forward on the good ids; the loss sees the bad batch
        model.compute_loss(bad, out)


def test_escim_needs_cf_label():
    dims, batch = synthetic(16)
    model = build_model("escim_ratio", dims, {"embed_dim": 4, "hidden_dims": [8]})
    del batch["cf_label"]
    with pytest.raises(BadBatchError, match="cf_label"):
        model.compute_loss(batch, model(batch))


# --------------------------------------------------------------------------- registry and configs
def test_registry_lists_the_eleven_cvr_models():
    names = {e.name for e in list_models() if e.family == "cvr"}
    assert set(CVR_MODELS) <= names
    assert get_entry("escim_max").cls.cf_label_column == "label_max"
    assert get_entry("escim_ratio").cls.cf_label_column == "label_ratio"
    for name in CVR_MODELS:
        assert get_entry(name).cls.family == "cvr"
        assert {"click", "conversion"} <= set(get_entry(name).cls.binary_keys)
        assert get_entry(name).cls.Params().backbone == "mlp"


def test_the_catalog_and_the_registered_classes_agree():
    from liftlake.models.catalog import MODELS

    entries = list_models()
    assert {e.name: e.family for e in entries} == {name: family for name, (_, family) in MODELS.items()}
    for e in entries:
        assert e.cls.family == e.family and e.cls.__module__ == f"liftlake.models.{MODELS[e.name][0]}"


@pytest.mark.parametrize("params, message", [
    ({"backbone": "resnet"}, "backbone must be one of mlp, deepfm, autoint, dcnv2"),
    ({"sharing": "shared"}, "sharing"),
    ({"propensity_clip": 0.0}, "propensity_clip"),
    ({"lambda_c": -1.0}, "lambda_c"),
    ({"cvr_prior": 1.0}, "cvr_prior"),
])
@pytest.mark.reliability
def test_bad_parameters_fail_before_training(params, message):
    with pytest.raises(ModelConfigError, match=message):
        build_model("escm2_ips", DIMS, params)


def _conf_path(name):
    import liftlake.conf.models as conf_models
    return os.path.join(os.path.dirname(conf_models.__file__), f"{name}.yaml")


@pytest.mark.parametrize("name", CVR_MODELS)
def test_model_config_file_builds_its_model(name):
    with open(_conf_path(name), encoding="utf-8") as fh:
        conf = yaml.safe_load(fh)
    # the files hold only what differs from the code's defaults (conf/base.yaml, the Params dataclass)
    assert conf["model"]["name"] == name
    assert conf["model"].get("backbone", "mlp") in ("mlp", "deepfm", "autoint", "dcnv2")
    assert set(conf.get("train", {})) <= {"optimizer", "learning_rate", "weight_decay", "batch_size", "epochs"}
    params = dict(conf["model"].get("params", {}), backbone=conf["model"].get("backbone", "mlp"))
    model = build_model(name, [4, 3, 5], params)
    assert all(getattr(model.params, k) == (tuple(v) if isinstance(v, list) else v) for k, v in params.items())
