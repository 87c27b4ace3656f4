"""ESCIM's counterfactual labeler (ESCIM III-A..C, Alg. 1-3), fitted once per training window by
the escim-labels job; the CVR models that train on its labels are in models/escim.py.

Counterfactual inference (III-A, Alg. 1):
  1. pre-training  f(x, z): a conversion model trained on clicked rows with z ~ N(0, I) (eq. 14);
  2. abduction     a VAE q(z | x, v) trained on clicked rows, ELBO with an annealed KL weight (eq. 15);
  3. action        do(C = 1) on the non-clicked rows;
  4. prediction    pcvr_cf = f(x, z) with z drawn from q(z | x, v = 0).
Label transforms (III-B): ``max`` (Alg. 2) labels 1 where pcvr_cf reaches the largest factual pCVR
of the clicked rows; ``ratio`` (Alg. 3) labels the top k = |V| |N| / |C| as 1 so N* converts at the
clicked rows' rate. III-C (eq. 16-18) uses those labels as the counterfactual CVR targets.

Choices the paper leaves open (stated here once): f and the VAE read their own field embedding,
which the VAE sees frozen (it reconstructs it, so it must not chase it); the encoder is
conditioned on (x, v) since every training row has c = 1; for a clicked row scored without its
conversion label, z is drawn from the prior.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from liftlake.models.base import BadBatchError
from liftlake.models.cvr_base import _require, log_loss
from liftlake.models.layers import MLP, FieldEmbedding

LABEL_CHUNK_ROWS = 65536  # rows per forward pass when labelling


@dataclass
class EscimLabelParams:
    """Counterfactual labeler settings. The architecture is ESCIM IV-A4 and its appendix (Ali-CCP);
    the optimisation is not (see below)."""

    embed_dim: int = 5
    z_dim: int = 0  # 0: embed_dim x number of fields, as IV-A4 sets it
    outcome_dims: tuple[int, ...] = (512, 256, 128)  # f(x, z)
    encoder_dims: tuple[int, ...] = (512, 256, 128)
    decoder_dims: tuple[int, ...] = (128, 256, 512)
    dropout: float = 0.1
    weight_decay: float = 1e-6
    # Optimisation. The paper trains with Adam at lr 1e-4 and batch 8192 on tens of millions of
    # exposures (millions of clicks): hundreds of steps an epoch. This labeler learns from the
    # clicked rows of one window's sample, 10^3..10^5 rows, where batch 8192 is one to ten steps an
    # epoch: a few epochs at lr 1e-4 leave f where it started (pCVR ~0.5 on every row, no ranking).
    # So the amount of training is a number of optimizer steps, not of epochs, with a larger step
    # and a smaller batch, and early stopping on held-out clicked rows decides when to end. The
    # step is set by the simulator (two days, ~17 000 clicks, user and item ids of 4 097 and 2 049
    # buckets): at lr 2e-3 or 1e-3 f memorises the ids within 50 - 75 steps, before its validation
    # loss gets below the base rate's (AUC against the true CVR 0.52 - 0.53); at 5e-4 it learns for
    # ~150 steps first (AUC 0.58; the evidence report's best CVR models reach 0.59 there). On the
    # id-free synthetic world of tests/models/test_escim_labeler.py 5e-4 stops after ~500 steps.
    learning_rate: float = 5e-4  # Adam
    batch_size: int = 1024  # the largest batch; a small fit uses ceil(rows / min_batches_per_epoch)
    min_batches_per_epoch: int = 16
    # Step budget of each stage (pre-training, abduction): at most max(epochs x steps an epoch,
    # max_steps) steps; early stopping ends it sooner, but never before min_steps steps.
    min_steps: int = 200
    max_steps: int = 2000
    pretrain_epochs: int = 1
    vae_epochs: int = 1
    # Early stopping: validation_share of the clicked rows (per conversion class) is held out, as
    # IV-A1 holds out 10 % of the training set; its loss is measured every eval_every steps and a
    # stage stops after `patience` measures without improvement, keeping its best weights. A fit
    # too small to hold out a converter and a non-converter trains its whole budget instead.
    validation_share: float = 0.1
    eval_every: int = 25
    patience: int = 4
    # KL annealing against posterior collapse: beta rises linearly from 0 to kl_beta over the
    # first kl_anneal_steps optimizer steps of VAE training, then stays; early stopping compares
    # validation ELBOs at the full beta only, from then on.
    kl_beta: float = 1.0
    kl_anneal_steps: int = 100
    num_z_samples: int = 1  # z draws averaged per row in the prediction step
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("outcome_dims", "encoder_dims", "decoder_dims"):
            dims = tuple(getattr(self, key))
            _require(all(isinstance(d, int) and d >= 1 for d in dims), f"{key} must hold integers >= 1")
            setattr(self, key, dims)
        _require(self.embed_dim >= 1 and self.z_dim >= 0, "embed_dim must be >= 1 and z_dim >= 0")
        _require(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        _require(self.learning_rate > 0 and self.weight_decay >= 0, "learning_rate > 0, weight_decay >= 0")
        _require(self.batch_size >= 1 and self.min_batches_per_epoch >= 1,
                 "batch_size and min_batches_per_epoch must be >= 1")
        _require(1 <= self.min_steps <= self.max_steps, "min_steps must be >= 1 and <= max_steps")
        _require(self.pretrain_epochs >= 1 and self.vae_epochs >= 1, "pretrain_epochs and vae_epochs must be >= 1")
        _require(0.0 <= self.validation_share < 1.0, "validation_share must be in [0, 1)")
        _require(self.eval_every >= 1 and self.patience >= 1, "eval_every and patience must be >= 1")
        _require(self.kl_beta >= 0 and self.kl_anneal_steps >= 0, "kl_beta and kl_anneal_steps must be >= 0")
        _require(self.num_z_samples >= 1, "num_z_samples must be >= 1")


def kl_weight(step: int, params: EscimLabelParams) -> float:
    """Annealed beta of eq. 15 at optimizer step ``step`` (0-based)."""
    if params.kl_anneal_steps <= 0:
        return params.kl_beta
    return params.kl_beta * min(1.0, step / params.kl_anneal_steps)


@dataclass(frozen=True)
class StagePlan:
    """How one training stage runs over ``rows`` rows: its batch size, batches per epoch and its step
    budget (early stopping may end it sooner, never before ``min_steps``)."""

    batch_size: int
    steps_per_epoch: int
    max_steps: int
    min_steps: int


def stage_plan(rows: int, epochs: int, params: EscimLabelParams) -> StagePlan:
    """The batch shrinks so an epoch holds at least min_batches_per_epoch steps, and the budget is
    max_steps steps whatever the epochs hold (more when the epochs ask for more): a day of any size
    gets enough updates, and early stopping, not the size of the day, decides how many it uses."""
    if rows < 1:
        raise ValueError("a training stage needs at least one row")
    batch = max(1, min(params.batch_size, math.ceil(rows / params.min_batches_per_epoch)))
    per_epoch = math.ceil(rows / batch)
    return StagePlan(batch, per_epoch, max(epochs * per_epoch, params.max_steps), params.min_steps)


class CounterfactualLabeler(nn.Module):
    """f(x, z) -- the conversion mechanism under a click -- and the VAE that abducts z.

    Buffers kept from fitting (saved in the state_dict): the clicked rows' largest factual pCVR
    (max transform threshold) and their click / conversion counts (ratio transform's k).
    """

    def __init__(self, field_dims: Sequence[int], params: EscimLabelParams):
        super().__init__()
        self.field_dims = [int(d) for d in field_dims]
        self.params = params
        self.embedding = FieldEmbedding(self.field_dims, params.embed_dim)
        feature_dim = self.embedding.output_dim
        self.z_dim = params.z_dim or feature_dim
        act = nn.LeakyReLU  # ESCIM appendix: MLPs with Leaky ReLU
        self.outcome = MLP(feature_dim + self.z_dim, params.outcome_dims, output_dim=1,
                           dropout=params.dropout, activation=act)
        self.encoder = MLP(feature_dim + 1, params.encoder_dims, output_dim=2 * self.z_dim, activation=act)
        self.decoder = MLP(self.z_dim, params.decoder_dims, output_dim=feature_dim + 1, activation=act)
        self.factual_pcvr_max: torch.Tensor
        self.num_clicks: torch.Tensor
        self.num_conversions: torch.Tensor
        self.register_buffer("factual_pcvr_max", torch.tensor(float("nan")))
        self.register_buffer("num_clicks", torch.tensor(0, dtype=torch.long))
        self.register_buffer("num_conversions", torch.tensor(0, dtype=torch.long))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding.flat(x)

    def conversion_prob(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """f(x, z): P(V = 1 | x, do(C = 1), z)."""
        return torch.sigmoid(self.outcome(torch.cat([features, z], dim=1)).squeeze(-1))

    def posterior(self, features: torch.Tensor, conversion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z | x, v) = N(mu, exp(logvar))."""
        mu, logvar = self.encoder(torch.cat([features, conversion.unsqueeze(1)], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def elbo_terms(self, features: torch.Tensor, conversion: torch.Tensor,
                   noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, KL) of eq. 15, each averaged over rows: Gaussian reconstruction of the
        embedding, Bernoulli of v; KL(q(z | x, v) || N(0, I)). ``noise``: the reparameterization's
        N(0, I) draws (fresh ones when None)."""
        mu, logvar = self.posterior(features, conversion)
        eps = torch.randn_like(mu) if noise is None else noise
        z = mu + torch.exp(0.5 * logvar) * eps  # reparameterization
        recon = self.decoder(z)
        feature_part = (recon[:, :-1] - features).pow(2).sum(dim=1)
        conversion_part = F.binary_cross_entropy_with_logits(recon[:, -1], conversion, reduction="none")
        kl = -0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        return (feature_part + conversion_part).mean(), kl.mean()

    @property
    def conversion_rate_among_clicks(self) -> float:
        return float(self.num_conversions) / max(int(self.num_clicks), 1)


def _check_labeler_inputs(x: torch.Tensor, click: torch.Tensor, conversion: torch.Tensor | None,
                          field_dims: Sequence[int]) -> None:
    if x.dtype not in (torch.int64, torch.int32) or x.dim() != 2 or x.shape[1] != len(field_dims):
        raise BadBatchError(f"x must be an integer tensor [rows, {len(field_dims)}], got {x.dtype} {list(x.shape)}")
    dims = torch.tensor(list(field_dims), device=x.device)
    if (x < 0).any() or (x >= dims).any():
        raise BadBatchError("x holds a feature id outside its field's vocabulary")
    for name, label in (("click", click), ("conversion", conversion)):
        if label is None:
            continue
        if tuple(label.shape) != (x.shape[0],):
            raise BadBatchError(f"{name} must have shape [{x.shape[0]}], got {list(label.shape)}")
        if not ((label == 0) | (label == 1)).all():
            raise BadBatchError(f"{name} must be 0 or 1")
    if conversion is not None and ((conversion > 0) & (click == 0)).any():
        raise BadBatchError("conversion label on a non-click")


def _minibatches(rows: int, batch_size: int, device) -> list[torch.Tensor]:
    return list(torch.randperm(rows, device=device).split(batch_size))


def validation_split(conversion: torch.Tensor, share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) row indices of the clicked rows: each conversion class gives
    floor(share x its size) rows to validation, so both splits keep the conversion rate. Empty
    validation when that leaves it without a converter or a non-converter. Uses the ambient RNG."""
    train, validation = [], []
    for cls in (1.0, 0.0):
        rows = (conversion == cls).nonzero().squeeze(1)
        rows = rows[torch.randperm(rows.shape[0], device=rows.device)]
        held = int(share * rows.shape[0])
        validation.append(rows[:held])
        train.append(rows[held:])
    if min(part.shape[0] for part in validation) == 0:
        return torch.cat(train + validation).sort().values, conversion.new_zeros(0, dtype=torch.long)
    return torch.cat(train).sort().values, torch.cat(validation).sort().values


def _logit(rate: float) -> float:
    rate = min(max(rate, 1e-4), 1.0 - 1e-4)
    return math.log(rate / (1.0 - rate))


def _set_output_bias(mlp: MLP, unit: int, rate: float) -> None:
    """Start a sigmoid output at the base rate: the untrained net then predicts the conversion rate
    among clicks instead of ~0.5, and training spends its steps on ranking rather than on the mean."""
    last = mlp.net[-1]
    assert isinstance(last, nn.Linear)
    with torch.no_grad():
        last.bias[unit] = _logit(rate)


def _run_stage(name: str, plan: StagePlan, rows: int, device, modules: Sequence[nn.Module],
               train_step: Callable[[torch.Tensor, int], float], validate: Callable[[], float] | None,
               track_from: int, params: EscimLabelParams, log: Callable[[str], None]) -> None:
    """Minibatch steps under ``plan``; every eval_every steps (and at the end) the validation loss,
    compared from step ``track_from`` on; stops after ``patience`` measures without a better one
    once min_steps are done, and leaves ``modules`` at their best measured weights."""
    best, best_step, stale = math.inf, 0, 0
    best_state: list[dict[str, torch.Tensor]] | None = None
    step, total, count, stopped = 0, 0.0, 0, False
    while step < plan.max_steps and not stopped:
        for idx in _minibatches(rows, plan.batch_size, device):
            total += train_step(idx, step) * idx.shape[0]
            count += idx.shape[0]
            step += 1
            if step % params.eval_every and step < plan.max_steps:
                continue
            message = f"escim labeler {name} step {step}/{plan.max_steps}: train loss {total / count:.5f}"
            total, count = 0.0, 0
            if validate is not None:
                loss = validate()
                message += f", validation loss {loss:.5f}"
                if step >= track_from:
                    if not math.isfinite(best) or loss < best - 1e-4 * abs(best):
                        best, best_step, stale = loss, step, 0
                        best_state = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]
                    else:
                        stale += 1
                    stopped = step >= plan.min_steps and stale >= params.patience
            log(message)
            if stopped or step >= plan.max_steps:
                break
    if best_state is not None:
        for module, state in zip(modules, best_state):
            module.load_state_dict(state)
        ended = "stopped early" if stopped and step < plan.max_steps else "ran its budget"
        log(f"escim labeler {name}: {ended} at step {step}, "
            f"kept step {best_step} (validation loss {best:.5f}; batch {plan.batch_size}, "
            f"{plan.steps_per_epoch} steps an epoch)")
    else:
        log(f"escim labeler {name}: {step} steps without validation (batch {plan.batch_size}, "
            f"{plan.steps_per_epoch} steps an epoch)")


def fit_counterfactual_labeler(x: torch.Tensor, click: torch.Tensor, conversion: torch.Tensor,
                               field_dims: Sequence[int], params: EscimLabelParams,
                               log: Callable[[str], None] = print) -> CounterfactualLabeler:
    """Pre-train f(x, z) and fit the abduction VAE on the clicked rows (Alg. 1 steps 1-2), then keep
    the thresholds the label transforms need. Adam on minibatches, each stage under a step budget
    (``stage_plan``) with early stopping on a held-out share of the clicked rows."""
    click, conversion = click.float(), conversion.float()
    _check_labeler_inputs(x, click, conversion, field_dims)
    clicked = click > 0
    if not clicked.any():
        raise BadBatchError("ESCIM labeler needs clicked rows to learn the conversion mechanism; got none")
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(params.seed)
        labeler = CounterfactualLabeler(field_dims, params).to(x.device)
        xc, vc = x[clicked], conversion[clicked]
        train_idx, val_idx = validation_split(vc, params.validation_share)
        xt, vt, xv, vv = xc[train_idx], vc[train_idx], xc[val_idx], vc[val_idx]
        rows, has_validation = xt.shape[0], val_idx.shape[0] > 0
        base_rate = float(vt.mean())
        _set_output_bias(labeler.outcome, 0, base_rate)
        _set_output_bias(labeler.decoder, -1, base_rate)
        log(f"escim labeler: {xc.shape[0]} clicked rows, {rows} to train on, {xv.shape[0]} held out; "
            f"conversion rate among clicks {base_rate:.5f}")

        # Step 1, pre-training (eq. 14): z carries no information yet, it is drawn from N(0, I).
        pretrain_modules: list[nn.Module] = [labeler.embedding, labeler.outcome]
        optimizer = torch.optim.Adam([p for m in pretrain_modules for p in m.parameters()],
                                     lr=params.learning_rate, weight_decay=params.weight_decay)
        z_val = torch.randn(xv.shape[0], labeler.z_dim, device=x.device)  # fixed: comparable measures

        def pretrain_step(idx: torch.Tensor, step: int) -> float:
            z = torch.randn(idx.shape[0], labeler.z_dim, device=x.device)
            loss = log_loss(labeler.conversion_prob(labeler.features(xt[idx]), z), vt[idx]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.item()

        def pretrain_validation() -> float:
            labeler.eval()
            with torch.no_grad():
                loss = log_loss(labeler.conversion_prob(labeler.features(xv), z_val), vv).mean().item()
            labeler.train()
            return loss

        labeler.train()
        _run_stage("pre-train", stage_plan(rows, params.pretrain_epochs, params), rows, x.device, pretrain_modules,
                   pretrain_step, pretrain_validation if has_validation else None, 0, params, log)

        # Step 2, abduction (eq. 15): the VAE reconstructs the frozen embedding and v.
        labeler.embedding.requires_grad_(False)
        labeler.outcome.requires_grad_(False)
        vae_modules: list[nn.Module] = [labeler.encoder, labeler.decoder]
        optimizer = torch.optim.Adam([p for m in vae_modules for p in m.parameters()],
                                     lr=params.learning_rate, weight_decay=params.weight_decay)
        with torch.no_grad():
            features_val = labeler.features(xv)
        noise_val = torch.randn(xv.shape[0], labeler.z_dim, device=x.device)

        def vae_step(idx: torch.Tensor, step: int) -> float:
            with torch.no_grad():
                features = labeler.features(xt[idx])
            recon, kl = labeler.elbo_terms(features, vt[idx])
            loss = recon + kl_weight(step, params) * kl
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            return loss.item()

        def vae_validation() -> float:
            with torch.no_grad():
                recon, kl = labeler.elbo_terms(features_val, vv, noise_val)
            return (recon + params.kl_beta * kl).item()

        plan = stage_plan(rows, params.vae_epochs, params)
        _run_stage("abduction", plan, rows, x.device, vae_modules, vae_step, vae_validation if has_validation else None,
                   min(params.kl_anneal_steps, plan.max_steps), params, log)
        labeler.requires_grad_(True)

        # Thresholds of Alg. 2 and 3 from the clicked rows: factual pCVR with z abducted from (x, v).
        labeler.eval()
        factual = _predict_pcvr(labeler, xc, vc, torch.ones_like(vc, dtype=torch.bool))
        labeler.factual_pcvr_max.fill_(float(factual.max()))
        labeler.num_clicks.fill_(xc.shape[0])
        labeler.num_conversions.fill_(int(vc.sum().item()))
    log(f"escim labeler: max factual pCVR {float(labeler.factual_pcvr_max):.5f}, "
        f"conversion rate among clicks {labeler.conversion_rate_among_clicks:.5f}")
    return labeler


@torch.no_grad()
def _predict_pcvr(labeler: CounterfactualLabeler, x: torch.Tensor, evidence: torch.Tensor,
                  has_evidence: torch.Tensor) -> torch.Tensor:
    """Alg. 1 steps 3-4: f(x, z) under do(C = 1), z ~ q(z | x, v = evidence) (or N(0, I) where a
    row has no evidence), averaged over num_z_samples draws. Uses the ambient RNG."""
    out = torch.empty(x.shape[0], device=x.device)
    for start in range(0, x.shape[0], LABEL_CHUNK_ROWS):
        sl = slice(start, start + LABEL_CHUNK_ROWS)
        features = labeler.features(x[sl])
        mu, logvar = labeler.posterior(features, evidence[sl])
        known = has_evidence[sl].unsqueeze(1)
        mu, logvar = torch.where(known, mu, torch.zeros_like(mu)), torch.where(known, logvar, torch.zeros_like(logvar))
        std = torch.exp(0.5 * logvar)
        draws = [labeler.conversion_prob(features, mu + std * torch.randn_like(mu))
                 for _ in range(labeler.params.num_z_samples)]
        out[sl] = torch.stack(draws).mean(dim=0)
    return out


def max_transform(pcvr_cf: torch.Tensor, factual_pcvr_max: float) -> torch.Tensor:
    """Alg. 2: 1 where the counterfactual pCVR reaches the largest factual pCVR of the clicked rows."""
    return (pcvr_cf >= factual_pcvr_max).float()


def ratio_transform(pcvr_cf: torch.Tensor, num_conversions: int, num_clicks: int) -> torch.Tensor:
    """Alg. 3: 1 for the top k = ceil(|V| |N| / |C|) counterfactual pCVRs, so that N* converts at
    the clicked rows' rate."""
    n = pcvr_cf.shape[0]
    if num_clicks <= 0:
        raise ValueError("ratio transform needs the number of clicked rows (> 0)")
    k = min(n, -(-int(num_conversions) * n // int(num_clicks)))  # integer ceil
    labels = torch.zeros_like(pcvr_cf)
    if k > 0:
        labels[torch.topk(pcvr_cf, k).indices] = 1.0
    return labels


def label_counterfactuals(labeler: CounterfactualLabeler, x: torch.Tensor, click: torch.Tensor,
                          conversion: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """pcvr_cf for every row and the max / ratio counterfactual labels for the non-clicked rows
    (0 on clicked rows, whose factual label is used in training).

    ``conversion`` is optional: with it, a clicked row's z is abducted from its observed
    conversion; without it, from the prior. Non-clicked rows always condition on v = 0.
    Deterministic for a given labeler (its params.seed).
    """
    click = click.float()
    _check_labeler_inputs(x, click, None if conversion is None else conversion.float(), labeler.field_dims)
    if torch.isnan(labeler.factual_pcvr_max) or int(labeler.num_clicks) <= 0:
        raise ValueError("the labeler has not been fitted (no factual pCVR threshold); fit it first")
    clicked = click > 0
    if conversion is None:
        evidence, has_evidence = torch.zeros_like(click), ~clicked
    else:
        evidence, has_evidence = conversion.float(), torch.ones_like(clicked)
    was_training = labeler.training
    labeler.eval()
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(labeler.params.seed)
            pcvr_cf = _predict_pcvr(labeler, x, evidence, has_evidence)
    finally:
        labeler.train(was_training)
    nonclicked = ~clicked
    label_max = torch.zeros_like(pcvr_cf)
    label_ratio = torch.zeros_like(pcvr_cf)
    label_max[nonclicked] = max_transform(pcvr_cf[nonclicked], float(labeler.factual_pcvr_max))
    label_ratio[nonclicked] = ratio_transform(pcvr_cf[nonclicked], int(labeler.num_conversions),
                                              int(labeler.num_clicks))
    return {"pcvr_cf": pcvr_cf, "label_max": label_max, "label_ratio": label_ratio}
