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
from dataclasses import dataclass
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from liftlake.models.base import BadBatchError
from liftlake.models.cvr_base import _require, log_loss
from liftlake.models.layers import MLP, FieldEmbedding

LABEL_CHUNK_ROWS = 65536  # rows per forward pass when labelling


@dataclass
class EscimLabelParams:
    """Counterfactual labeler settings; defaults from ESCIM IV-A4 and its appendix (Ali-CCP)."""

    embed_dim: int = 5
    z_dim: int = 0  # 0: embed_dim x number of fields, as IV-A4 sets it
    outcome_dims: tuple[int, ...] = (512, 256, 128)  # f(x, z)
    encoder_dims: tuple[int, ...] = (512, 256, 128)
    decoder_dims: tuple[int, ...] = (128, 256, 512)
    dropout: float = 0.1
    learning_rate: float = 1e-4
    weight_decay: float = 1e-6
    batch_size: int = 8192
    pretrain_epochs: int = 5
    vae_epochs: int = 10
    # KL annealing against posterior collapse: beta rises linearly from 0 to kl_beta over the
    # first kl_anneal_epochs of VAE training, then stays.
    kl_beta: float = 1.0
    kl_anneal_epochs: float = 5.0
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
        _require(self.batch_size >= 1 and self.pretrain_epochs >= 1 and self.vae_epochs >= 1,
                 "batch_size, pretrain_epochs and vae_epochs must be >= 1")
        _require(self.kl_beta >= 0 and self.kl_anneal_epochs >= 0, "kl_beta and kl_anneal_epochs must be >= 0")
        _require(self.num_z_samples >= 1, "num_z_samples must be >= 1")


def kl_weight(step: int, steps_per_epoch: int, params: EscimLabelParams) -> float:
    """Annealed beta of eq. 15 at optimizer step ``step`` (0-based)."""
    anneal_steps = params.kl_anneal_epochs * steps_per_epoch
    if anneal_steps <= 0:
        return params.kl_beta
    return params.kl_beta * min(1.0, step / anneal_steps)


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

    def elbo_terms(self, features: torch.Tensor, conversion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, KL) of eq. 15, each averaged over rows: Gaussian reconstruction of the
        embedding, Bernoulli of v; KL(q(z | x, v) || N(0, I))."""
        mu, logvar = self.posterior(features, conversion)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)  # reparameterization
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


def fit_counterfactual_labeler(x: torch.Tensor, click: torch.Tensor, conversion: torch.Tensor,
                               field_dims: Sequence[int], params: EscimLabelParams,
                               log: Callable[[str], None] = print) -> CounterfactualLabeler:
    """Pre-train f(x, z) and fit the abduction VAE on the clicked rows (Alg. 1 steps 1-2), then keep
    the thresholds the label transforms need. Minibatches, Adam; one log line per epoch."""
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
        rows = xc.shape[0]

        # Step 1, pre-training (eq. 14): z carries no information yet, it is drawn from N(0, I).
        labeler.train()
        pretrain_params = list(labeler.embedding.parameters()) + list(labeler.outcome.parameters())
        optimizer = torch.optim.Adam(pretrain_params, lr=params.learning_rate, weight_decay=params.weight_decay)
        for epoch in range(params.pretrain_epochs):
            total, count = 0.0, 0
            for idx in _minibatches(rows, params.batch_size, x.device):
                features = labeler.features(xc[idx])
                z = torch.randn(idx.shape[0], labeler.z_dim, device=x.device)
                loss = log_loss(labeler.conversion_prob(features, z), vc[idx]).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total, count = total + loss.item() * idx.shape[0], count + idx.shape[0]
            log(f"escim labeler pre-train epoch {epoch + 1}/{params.pretrain_epochs}: "
                f"loss {total / count:.5f} ({rows} clicked rows)")

        # Step 2, abduction (eq. 15): the VAE reconstructs the frozen embedding and v.
        labeler.embedding.requires_grad_(False)
        labeler.outcome.requires_grad_(False)
        vae_params = list(labeler.encoder.parameters()) + list(labeler.decoder.parameters())
        optimizer = torch.optim.Adam(vae_params, lr=params.learning_rate, weight_decay=params.weight_decay)
        steps_per_epoch, step = math.ceil(rows / params.batch_size), 0
        for epoch in range(params.vae_epochs):
            totals, count = [0.0, 0.0], 0
            for idx in _minibatches(rows, params.batch_size, x.device):
                with torch.no_grad():
                    features = labeler.features(xc[idx])
                beta = kl_weight(step, steps_per_epoch, params)
                recon, kl = labeler.elbo_terms(features, vc[idx])
                loss = recon + beta * kl
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                totals[0] += recon.item() * idx.shape[0]
                totals[1] += kl.item() * idx.shape[0]
                count += idx.shape[0]
            log(f"escim labeler abduction epoch {epoch + 1}/{params.vae_epochs}: "
                f"reconstruction {totals[0] / count:.5f}, kl {totals[1] / count:.5f}, beta {beta:.3f}")
        labeler.requires_grad_(True)

        # Thresholds of Alg. 2 and 3 from the clicked rows: factual pCVR with z abducted from (x, v).
        labeler.eval()
        factual = _predict_pcvr(labeler, xc, vc, torch.ones_like(vc, dtype=torch.bool))
        labeler.factual_pcvr_max.fill_(float(factual.max()))
        labeler.num_clicks.fill_(rows)
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
