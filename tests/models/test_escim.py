"""ESCIM's counterfactual-label stage: label transforms by hand, KL annealing, a real fit on
synthetic clicks whose conversion depends on one field, determinism and save / load."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liftlake.models.base import BadBatchError
from liftlake.models.escim_labeler import (
    CounterfactualLabeler,
    EscimLabelParams,
    fit_counterfactual_labeler,
    kl_weight,
    label_counterfactuals,
    max_transform,
    ratio_transform,
)
from liftlake.models.registry import build_model

DIMS = [4, 6, 3]




# --------------------------------------------------------------------------- transforms by hand
def test_max_transform_labels_pcvr_at_or_above_the_largest_factual_pcvr():
    pcvr = torch.tensor([0.1, 0.5, 0.7, 0.49999, 0.5])
    np.testing.assert_array_equal(max_transform(pcvr, 0.5).numpy(), [0, 1, 1, 0, 1])


def test_ratio_transform_labels_the_top_k_at_the_clicked_conversion_rate():
    pcvr = torch.tensor([0.05, 0.9, 0.3, 0.8, 0.1, 0.2, 0.7, 0.6, 0.4, 0.0])
    # |V| = 3 conversions among |C| = 20 clicks, |N| = 10: k = ceil(3 * 10 / 20) = ceil(1.5) = 2
    np.testing.assert_array_equal(ratio_transform(pcvr, 3, 20).numpy(), [0, 1, 0, 1, 0, 0, 0, 0, 0, 0])
    # k = 3 * 10 / 15 = 2 exactly
    assert ratio_transform(pcvr, 3, 15).sum().item() == 2
    assert ratio_transform(pcvr, 0, 20).sum().item() == 0  # no conversions: no counterfactual ones
    assert ratio_transform(pcvr, 30, 20).sum().item() == 10  # k capped at |N|
    with pytest.raises(ValueError, match="clicked rows"):
        ratio_transform(pcvr, 1, 0)


def test_kl_weight_rises_linearly_then_holds():
    params = EscimLabelParams(kl_beta=0.5, kl_anneal_epochs=2)
    # 10 steps per epoch: beta reaches 0.5 at step 20
    assert [kl_weight(s, 10, params) for s in (0, 5, 10, 20, 100)] == [0.0, 0.125, 0.25, 0.5, 0.5]
    assert kl_weight(0, 10, EscimLabelParams(kl_beta=0.5, kl_anneal_epochs=0)) == 0.5


def test_paper_defaults():
    p = EscimLabelParams()
    assert (p.embed_dim, p.outcome_dims, p.encoder_dims, p.decoder_dims) == \
        (5, (512, 256, 128), (512, 256, 128), (128, 256, 512))
    assert (p.batch_size, p.learning_rate, p.weight_decay, p.dropout) == (8192, 1e-4, 1e-6, 0.1)
    labeler = CounterfactualLabeler(DIMS, p)
    assert labeler.z_dim == 5 * len(DIMS)  # z as wide as the concatenated embeddings (IV-A4)


# --------------------------------------------------------------------------- a real fit
def synthetic(n=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, d, (n,), generator=g) for d in DIMS], dim=1)
    click = (torch.rand(n, generator=g) < 0.3).float()
    p_convert = torch.where(x[:, 0] >= 2, 0.7, 0.05)  # field 0 decides conversion under a click
    conversion = click * (torch.rand(n, generator=g) < p_convert).float()
    return x, click, conversion


FAST = EscimLabelParams(embed_dim=4, outcome_dims=(32, 16), encoder_dims=(32,), decoder_dims=(32,), dropout=0.0,
                        learning_rate=1e-2, batch_size=256, pretrain_epochs=4, vae_epochs=3, kl_anneal_epochs=2)


@pytest.fixture(scope="module")
def fitted():
    x, click, conversion = synthetic()
    lines: list[str] = []
    labeler = fit_counterfactual_labeler(x, click, conversion, DIMS, FAST, log=lines.append)
    return x, click, conversion, labeler, lines, label_counterfactuals(labeler, x, click)


def test_fit_logs_each_epoch_and_keeps_the_transform_statistics(fitted):
    x, click, conversion, labeler, lines, _ = fitted
    assert sum("pre-train epoch" in line for line in lines) == FAST.pretrain_epochs
    assert sum("abduction epoch" in line for line in lines) == FAST.vae_epochs
    assert int(labeler.num_clicks) == int(click.sum()) and int(labeler.num_conversions) == int(conversion.sum())
    assert 0.0 < float(labeler.factual_pcvr_max) <= 1.0


def test_labels_are_binary_and_zero_on_clicked_rows(fitted):
    x, click, _, _, _, out = fitted
    assert set(out) == {"pcvr_cf", "label_max", "label_ratio"}
    for key in out:
        assert out[key].shape == (x.shape[0],)
    assert ((out["pcvr_cf"] >= 0) & (out["pcvr_cf"] <= 1)).all()
    for key in ("label_max", "label_ratio"):
        assert set(out[key].unique().tolist()) <= {0.0, 1.0}
        assert out[key][click == 1].sum() == 0


def test_label_rates_follow_the_transforms(fitted):
    x, click, conversion, labeler, _, out = fitted
    nonclicked = click == 0
    pcvr = out["pcvr_cf"][nonclicked]
    # ratio: N* converts at the clicked rows' rate, on the highest counterfactual pCVRs
    n, v, c = int(nonclicked.sum()), int(conversion.sum()), int(click.sum())
    ratio = out["label_ratio"][nonclicked]
    assert int(ratio.sum()) == math.ceil(v * n / c)
    assert pcvr[ratio == 1].min() >= pcvr[ratio == 0].max()
    # max: exactly the rows reaching the largest factual pCVR, so never more than all of them
    maxed = out["label_max"][nonclicked]
    torch.testing.assert_close(maxed, (pcvr >= labeler.factual_pcvr_max).float())
    assert maxed.sum() <= ratio.sum()  # here the max threshold is the conservative one


def test_counterfactual_pcvr_follows_the_learned_mechanism(fitted):
    x, click, _, _, _, out = fitted
    nonclicked = click == 0
    high = out["pcvr_cf"][nonclicked & (x[:, 0] >= 2)].mean()
    low = out["pcvr_cf"][nonclicked & (x[:, 0] < 2)].mean()
    assert high > low + 0.2, (high, low)  # true rates under a click: 0.7 vs 0.05


def test_labelling_is_deterministic_and_survives_save_and_load(fitted):
    x, click, conversion, labeler, _, out = fitted
    again = label_counterfactuals(labeler, x, click)
    torch.testing.assert_close(again["pcvr_cf"], out["pcvr_cf"])
    restored = CounterfactualLabeler(DIMS, FAST)
    restored.load_state_dict(labeler.state_dict())
    loaded = label_counterfactuals(restored, x, click)
    for key in out:
        torch.testing.assert_close(loaded[key], out[key])
    # a clicked row's z may be abducted from its conversion; non-clicked rows always use v = 0
    with_conv = label_counterfactuals(labeler, x, click, conversion)
    torch.testing.assert_close(with_conv["pcvr_cf"][click == 0], out["pcvr_cf"][click == 0])


def test_labels_feed_the_escim_model(fitted):
    x, click, conversion, _, _, out = fitted
    model = build_model("escim_ratio", DIMS, {"embed_dim": 4, "hidden_dims": [8]})
    batch = {"x": x, "click": click, "conversion": conversion, "cf_label": out[model.cf_label_column]}
    assert torch.isfinite(model.compute_loss(batch, model(batch)).total)


def test_unfitted_labeler_and_bad_inputs_are_refused():
    x, click, conversion = synthetic(200)
    with pytest.raises(ValueError, match="not been fitted"):
        label_counterfactuals(CounterfactualLabeler(DIMS, FAST), x, click)
    with pytest.raises(BadBatchError, match="no|none"):
        fit_counterfactual_labeler(x, torch.zeros_like(click), torch.zeros_like(conversion), DIMS, FAST,
                                   log=lambda _: None)
    bad = conversion.clone()
    bad[int((click == 0).nonzero()[0])] = 1.0
    with pytest.raises(BadBatchError, match="conversion label on a non-click"):
        fit_counterfactual_labeler(x, click, bad, DIMS, FAST, log=lambda _: None)
    wide = x.clone()
    wide[0, 1] = DIMS[1]
    with pytest.raises(BadBatchError, match="outside"):
        fit_counterfactual_labeler(wide, click, conversion, DIMS, FAST, log=lambda _: None)
