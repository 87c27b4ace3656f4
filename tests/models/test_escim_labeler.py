"""ESCIM's counterfactual labeler: label transforms by hand, KL annealing, the step budget and the
validation split, early stopping, a small fit whose conversion depends on one field, determinism and
save / load -- and a learning test: with its defaults the labeler recovers the true CVR of the
non-clicked rows of a synthetic world with selection bias (mean, spread, ranking, labels)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liftlake.lib.evaluation.truth_metrics import expected_auc, label_quality, spearman
from liftlake.models.base import BadBatchError
from liftlake.models.escim_labeler import (
    CounterfactualLabeler,
    EscimLabelParams,
    fit_counterfactual_labeler,
    kl_weight,
    label_counterfactuals,
    max_transform,
    ratio_transform,
    stage_plan,
    validation_split,
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
    params = EscimLabelParams(kl_beta=0.5, kl_anneal_steps=20)
    assert [kl_weight(s, params) for s in (0, 5, 10, 20, 100)] == [0.0, 0.125, 0.25, 0.5, 0.5]
    assert kl_weight(0, EscimLabelParams(kl_beta=0.5, kl_anneal_steps=0)) == 0.5


def test_defaults_keep_the_paper_architecture_and_train_by_steps():
    p = EscimLabelParams()
    assert (p.embed_dim, p.outcome_dims, p.encoder_dims, p.decoder_dims) == \
        (5, (512, 256, 128), (512, 256, 128), (128, 256, 512))
    assert (p.weight_decay, p.dropout) == (1e-6, 0.1)
    # not the paper's lr 1e-4 / batch 8192, sized for millions of clicks (see EscimLabelParams)
    assert p.learning_rate > 1e-4 and p.batch_size < 8192 and 100 <= p.min_steps < p.max_steps
    assert p.validation_share == 0.1
    labeler = CounterfactualLabeler(DIMS, p)
    assert labeler.z_dim == 5 * len(DIMS)  # z as wide as the concatenated embeddings (IV-A4)


# --------------------------------------------------------------------------- the step budget
def test_small_fits_get_smaller_batches_and_more_epochs_to_reach_the_step_budget():
    p = EscimLabelParams(batch_size=1024, min_batches_per_epoch=8, min_steps=200, max_steps=500)
    large = stage_plan(1_000_000, 1, p)  # paper-sized: one epoch is already past the budget
    assert (large.batch_size, large.steps_per_epoch, large.max_steps) == (1024, 977, 977)
    assert stage_plan(1_000_000, 3, p).max_steps == 3 * 977
    mid = stage_plan(20_000, 1, p)  # a day's sample: 20 steps an epoch, up to 25 epochs
    assert (mid.batch_size, mid.steps_per_epoch, mid.max_steps) == (1024, 20, 500)
    small = stage_plan(800, 1, p)  # the batch shrinks to keep 8 steps an epoch
    assert (small.batch_size, small.steps_per_epoch, small.max_steps) == (100, 8, 500)
    assert stage_plan(3, 1, p).batch_size == 1
    assert all(plan.min_steps == 200 for plan in (large, mid, small))
    with pytest.raises(ValueError, match="at least one row"):
        stage_plan(0, 1, p)
    with pytest.raises(ValueError, match="max_steps"):
        EscimLabelParams(min_steps=300, max_steps=200)


def test_validation_split_holds_out_a_share_of_each_conversion_class():
    torch.manual_seed(0)
    conversion = torch.cat([torch.ones(50), torch.zeros(450)])[torch.randperm(500)]
    train, val = validation_split(conversion, 0.1)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(500))  # disjoint, covers every row
    assert (int(conversion[val].sum()), val.shape[0]) == (5, 50)  # the conversion rate is kept
    # too few converters to hold one out: everything trains, no validation
    few = torch.cat([torch.ones(5), torch.zeros(95)])
    train, val = validation_split(few, 0.1)
    assert (train.shape[0], val.shape[0]) == (100, 0)
    assert validation_split(conversion, 0.0)[1].shape[0] == 0


# --------------------------------------------------------------------------- a small fit
def synthetic(n=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.randint(0, d, (n,), generator=g) for d in DIMS], dim=1)
    click = (torch.rand(n, generator=g) < 0.3).float()
    p_convert = torch.where(x[:, 0] >= 2, 0.7, 0.05)  # field 0 decides conversion under a click
    conversion = click * (torch.rand(n, generator=g) < p_convert).float()
    return x, click, conversion


FAST = EscimLabelParams(embed_dim=4, outcome_dims=(32, 16), encoder_dims=(32,), decoder_dims=(32,), dropout=0.0,
                        learning_rate=1e-2, batch_size=256, min_steps=40, max_steps=80, eval_every=10,
                        kl_anneal_steps=20)


@pytest.fixture(scope="module")
def fitted():
    x, click, conversion = synthetic()
    lines: list[str] = []
    labeler = fit_counterfactual_labeler(x, click, conversion, DIMS, FAST, log=lines.append)
    return x, click, conversion, labeler, lines, label_counterfactuals(labeler, x, click)


def test_fit_logs_its_validation_measures_and_keeps_the_transform_statistics(fitted):
    _, click, conversion, labeler, lines, _ = fitted
    for stage in ("pre-train", "abduction"):
        measures = [line for line in lines if line.startswith(f"escim labeler {stage} step")]
        assert len(measures) >= FAST.min_steps // FAST.eval_every and all("validation loss" in m for m in measures)
        assert sum(line.startswith(f"escim labeler {stage}: ") and "kept step" in line for line in lines) == 1
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
    _, click, conversion, labeler, _, out = fitted
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


def test_an_untrained_labeler_starts_at_the_conversion_rate_among_clicks():
    # the output bias starts at the logit of the base rate: with (almost) no training the labeler
    # predicts that rate, not the ~0.5 of a zero bias
    x, click, conversion = synthetic()
    still = EscimLabelParams(**{**FAST.__dict__, "learning_rate": 1e-9, "min_steps": 1, "validation_share": 0.0})
    labeler = fit_counterfactual_labeler(x, click, conversion, DIMS, still, log=lambda _: None)
    base = float(conversion.sum() / click.sum())
    assert float(label_counterfactuals(labeler, x, click)["pcvr_cf"].mean()) == pytest.approx(base, abs=0.03)


def test_early_stopping_ends_an_overfitting_stage_and_keeps_its_best_weights():
    x, click, conversion = synthetic(800)
    # a wide net, a large step and 100 epochs on ~220 clicked rows: the validation loss turns up
    greedy = EscimLabelParams(**{**FAST.__dict__, "outcome_dims": (128, 128), "learning_rate": 3e-2,
                                 "pretrain_epochs": 100, "eval_every": 5, "patience": 3})
    lines: list[str] = []
    fit_counterfactual_labeler(x, click, conversion, DIMS, greedy, log=lines.append)
    summary = next(line for line in lines if line.startswith("escim labeler pre-train: "))
    assert "stopped early" in summary, summary
    stopped, kept = (int(summary.split(word)[1].split()[0].rstrip(",")) for word in (" at step ", "kept step "))
    assert greedy.min_steps <= stopped < stage_plan(int(click.sum()), 100, greedy).max_steps
    assert kept <= stopped - greedy.patience * greedy.eval_every  # the last improvement, >= 3 measures back
    measures = {int(line.split(" step ")[1].split("/")[0]): float(line.rsplit("validation loss ", 1)[1])
                for line in lines if line.startswith("escim labeler pre-train step")}
    assert measures[kept] == min(measures.values())


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


# --------------------------------------------------------------------------- learning, with the truth
WORLD_FIELDS = [20, 30, 10, 8, 12]


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def selection_biased_world(n: int = 40_000, seed: int = 0) -> dict[str, np.ndarray]:
    """Exposures with five categorical fields and the truth real logs never carry. The true CVR under
    do(click = 1) is logistic in the fields (plus one interaction). Clicks are selected on it (users
    click what they would buy) and on field 3, whose first two values -- a slot low on the page, say
    -- are rarely clicked yet convert more when they are: non-clicked rows hold CVRs the clicked ones
    reach rarely. Conversions are observed on clicks only; about 6 % of rows are clicked."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.integers(0, d, n) for d in WORLD_FIELDS], axis=1)
    cvr_effects = [rng.normal(0.0, s, d) for d, s in zip(WORLD_FIELDS, (0.8, 0.6, 0.5, 0.0, 0.4))]
    ctr_effects = [rng.normal(0.0, s, d) for d, s in zip(WORLD_FIELDS, (0.3, 0.0, 0.3, 0.8, 0.0))]
    cvr_effects[3][:2] += 1.0
    ctr_effects[3][:2] -= 2.5
    logit_cvr = (-2.8 + sum(e[x[:, j]] for j, e in enumerate(cvr_effects))
                 + 0.5 * (x[:, 0] % 2) * (x[:, 2] >= 5))
    logit_ctr = -2.8 + 0.5 * (logit_cvr - logit_cvr.mean()) + sum(e[x[:, j]] for j, e in enumerate(ctr_effects))
    click = (rng.random(n) < _sigmoid(logit_ctr)).astype(np.float32)
    potential = (rng.random(n) < _sigmoid(logit_cvr)).astype(np.float32)
    return {"x": x, "click": click, "conversion": click * potential, "true_cvr": _sigmoid(logit_cvr)}


@pytest.fixture(scope="module")
def learned():
    """The labeler at its defaults (lr, batch, step budget, early stopping) on the world's clicks,
    and what it says about the non-clicked rows, beside their truth."""
    w = selection_biased_world()
    x, click = torch.from_numpy(w["x"]), torch.from_numpy(w["click"])
    labeler = fit_counterfactual_labeler(x, click, torch.from_numpy(w["conversion"]), WORLD_FIELDS,
                                         EscimLabelParams(), log=lambda _: None)
    out = label_counterfactuals(labeler, x, click)
    nonclicked = w["click"] == 0
    return {"pcvr_cf": out["pcvr_cf"].numpy()[nonclicked].astype(np.float64), "true_cvr": w["true_cvr"][nonclicked],
            **{key: label_quality(out[key].numpy(), w["true_cvr"], w["click"]) for key in ("label_max", "label_ratio")}}


def test_the_labeler_recovers_the_true_cvr_of_non_clicked_rows(learned):
    # measured at the defaults: mean 0.116 vs true 0.106, std 0.116 vs 0.112, Spearman 0.83, AUC
    # against the true CVR 0.75 (the truth itself: 0.79); seeds 1 and 2 of the world: mean 0.136 vs
    # 0.153 and 0.181 vs 0.163, Spearman 0.92 and 0.80. The paper's lr 1e-4 / batch 8192 for 5 + 10
    # epochs (15 steps here) gave mean 0.48, std 0.005, Spearman 0.00, AUC 0.50.
    pcvr, truth = learned["pcvr_cf"], learned["true_cvr"]
    numbers = {"mean": pcvr.mean(), "true_mean": truth.mean(), "std": pcvr.std(), "true_std": truth.std(),
               "spearman": spearman(pcvr, truth), "auc": expected_auc(pcvr, truth)}
    assert abs(pcvr.mean() - truth.mean()) < 0.25 * truth.mean(), numbers
    assert pcvr.std() > 0.5 * truth.std(), numbers
    assert numbers["spearman"] > 0.6, numbers
    assert numbers["auc"] > 0.68, numbers


def test_both_transforms_label_non_clicked_rows_that_convert_more_than_the_rest(learned):
    # measured at the defaults: max labels 25 rows (0.07 %) at lift 6.0, ratio 14 % at lift 2.7 (on
    # seeds 1 and 2 of the world: max 12 and 2 rows at lift 5.8 and 5.7, ratio at 2.6 and 2.1). The
    # paper's optimisation: max 2 rows at lift 1.7 (3 + 3 epochs: 17 rows at 1.1), ratio at 1.0. The
    # max transform is conservative by design: only rows past every clicked row's pCVR are labelled.
    for key, lift in (("label_max", 2.0), ("label_ratio", 1.5)):
        q = learned[key]
        assert q["n_labelled"] >= 1 and q["lift"] > lift, (key, q)
