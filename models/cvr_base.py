"""The CVR family's shared frame: post-click conversion rate over the entire exposure space D.

Every model here predicts, for each exposure, the click-through rate o^ (CTR), the conversion rate
r^ as if clicked (CVR) and their product o^ * r^ (CTCVR), from one shared field embedding.
What differs is how the CVR arm is trained, because conversions are observed only on clicks (O):

  naive      CVR on clicked rows only (ESCM² eq. 3)                          -- biased
  esmm       CTR + CTCVR over all exposures (ESCM² eq. 4)                   -- IEB, FIP
  mtl_ips    CTR + inverse-propensity CVR risk (ESCM² eq. 9)                 -- Multi-IPS
  mtl_dr     CTR + doubly robust CVR risk with an imputation arm (eq. 10-12) -- Multi-DR
  escm2_*    ESMM + lambda_c * IPS / DR risk, MMoE arms (ESCM² eq. 13, Alg. 1)
  dcmt       CTR + twin factual / counterfactual CVR tower, IPW over O and N*, counterfactual
             regularizer, SNIPS (DCMT eq. 9, 13, 14); dcmt_pd / dcmt_cf are its two ablations

Here: the parameters every CVR model accepts, the shared risks (log loss, CTR, CTCVR, IPS),
the task representations and ``CvrModel``. Each model lives in its paper's file: ``esmm``
(naive, ESMM), ``escm2`` (MTL-IPS / -DR, ESCM²), ``dcmt``, ``escim``.

Tasks share the embedding. With ``sharing: towers`` each task has its own backbone (ESMM /
DCMT / ESCIM towers); with ``sharing: mmoe`` one backbone feeds an MMoE whose gates mix experts
per task (ESCM² V-A: "implemented as a standard MMoE").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, cast

import torch
from torch import nn
from torch.nn import functional as F

from liftlake.models.backbones import BACKBONES, build_backbone
from liftlake.models.base import BadBatchError, LiftlakeModel
from liftlake.models.layers import MLP, FieldEmbedding, MMoE

# Probabilities are clamped this far from 0 and 1 inside the log loss, so a saturated sigmoid
# costs a large finite loss rather than inf.
PROB_EPS = 1e-7
SHARING = ("towers", "mmoe")
PREDICT_COLUMNS = ("ctr", "cvr", "ctcvr")


# --------------------------------------------------------------------------- parameters
def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass
class CvrParams:
    """Keys every CVR model accepts: embedding, backbone sizes, task sharing."""

    backbone: str = "mlp"  # the trainer copies model.backbone here
    embed_dim: int = 5
    hidden_dims: tuple[int, ...] = (64, 64, 32)
    dropout: float = 0.0
    batch_norm: bool = False
    autoint_layers: int = 3
    autoint_heads: int = 2
    autoint_attention_dim: int = 0  # 0: the embedding size (ESCIM appendix)
    cross_layers: int = 2
    sharing: str = "towers"
    num_experts: int = 8  # MMoE only
    expert_dims: tuple[int, ...] = (64,)  # MMoE only
    arm_dims: tuple[int, ...] = ()  # hidden layers between a task's representation and its logit
    # The rates the heads start at: their output bias is the rate's logit, where a bias of 0 would
    # start every exposure at 0.5 while CTR and CVR are a few percent, and the arms would spend
    # their first epochs walking down from there (see CvrModel.start_heads_at_priors).
    ctr_prior: float = 0.05
    cvr_prior: float = 0.05

    def __post_init__(self) -> None:
        _require(self.backbone in BACKBONES,
                 f"backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        _require(self.sharing in SHARING, f"sharing must be one of {', '.join(SHARING)}, got {self.sharing!r}")
        _require(self.embed_dim >= 1, "embed_dim must be >= 1")
        _require(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        for key in ("hidden_dims", "expert_dims", "arm_dims"):
            dims = tuple(getattr(self, key))
            _require(all(isinstance(d, int) and d >= 1 for d in dims), f"{key} must hold integers >= 1")
            setattr(self, key, dims)
        _require(self.num_experts >= 1, "num_experts must be >= 1")
        _require(self.sharing != "mmoe" or len(self.expert_dims) >= 1, "mmoe needs expert_dims")
        _require(0.0 < self.ctr_prior < 1.0 and 0.0 < self.cvr_prior < 1.0,
                 "ctr_prior and cvr_prior must be in (0, 1)")


def _check_clip(clip: float) -> None:
    _require(0.0 < clip < 0.5, f"propensity_clip must be in (0, 0.5), got {clip}")


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def binary_entropy(p: float) -> float:
    """The expected log loss of predicting p on rows that convert at rate p."""
    return -(p * math.log(p) + (1.0 - p) * math.log1p(-p))


# --------------------------------------------------------------------------- risks
def log_loss(prob: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Per-row binary cross-entropy e(label, prob) (ESCM² eq. 2, DCMT eq. 1)."""
    prob = prob.clamp(PROB_EPS, 1.0 - PROB_EPS)
    return -(label * torch.log(prob) + (1.0 - label) * torch.log1p(-prob))


def ctr_risk(ctr: torch.Tensor, click: torch.Tensor) -> torch.Tensor:
    return log_loss(ctr, click).mean()  # ESCM² eq. 4, DCMT eq. 15


def ctcvr_risk(ctcvr: torch.Tensor, click: torch.Tensor, conversion: torch.Tensor) -> torch.Tensor:
    return log_loss(ctcvr, click * conversion).mean()  # ESCM² eq. 4, DCMT eq. 15


def naive_cvr_risk(cvr: torch.Tensor, click: torch.Tensor, conversion: torch.Tensor) -> torch.Tensor:
    """Mean CVR error over the clicked rows of the batch (ESCM² eq. 3); 0 for a batch without clicks."""
    return (click * log_loss(cvr, conversion)).sum() / click.sum().clamp_min(1.0)


def propensity(ctr: torch.Tensor, clip: float) -> torch.Tensor:
    """The CTR estimate as click propensity: gradient stopped (ESCM² Alg. 1 step 2), since it is
    only a coefficient of the CVR risk, and clipped into [clip, 1 - clip] so 1/q stays finite."""
    return ctr.detach().clamp(clip, 1.0 - clip)


def ips_risk(cvr: torch.Tensor, click: torch.Tensor, conversion: torch.Tensor,
             q: torch.Tensor) -> torch.Tensor:
    """R_IPS = 1/|D| sum_D o * e / q (ESCM² eq. 9)."""
    return (click * log_loss(cvr, conversion) / q).mean()


# --------------------------------------------------------------------------- modules
class TaskRepresentations(nn.Module):
    """Shared embedding -> one representation per task: a backbone per task (``towers``) or one
    backbone under an MMoE (``mmoe``)."""

    def __init__(self, embedding: FieldEmbedding, params: CvrParams, tasks: tuple[str, ...]):
        super().__init__()
        self.tasks = tasks
        self.sharing = params.sharing
        if params.sharing == "towers":
            self.towers = nn.ModuleDict({t: build_backbone(params.backbone, embedding, params) for t in tasks})
            self.output_dim: int = cast(int, self.towers[tasks[0]].output_dim)
        else:
            self.bottom = build_backbone(params.backbone, embedding, params)
            self.mmoe = MMoE(cast(int, self.bottom.output_dim), params.num_experts, params.expert_dims,
                             num_tasks=len(tasks), dropout=params.dropout)
            self.output_dim = self.mmoe.output_dim

    def forward(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.sharing == "towers":
            return {t: tower(emb) for t, tower in self.towers.items()}
        return dict(zip(self.tasks, self.mmoe(self.bottom(emb))))


class CvrModel(LiftlakeModel):
    """Base of the CVR family: embedding, task representations, one head per output.

    ``heads`` maps an output name to the task representation it reads (DCMT's twin heads both
    read the CVR tower). Heads output probabilities through a sigmoid, except the imputed
    error of the DR estimators, which is a non-negative loss value (softplus).
    """

    family = "cvr"
    batch_keys: tuple[str, ...] = ("x", "click", "conversion")
    binary_keys: tuple[str, ...] = ("click", "conversion")
    ERROR_HEADS = frozenset({"imputation"})

    def __init__(self, field_dims, params: CvrParams, heads: Mapping[str, str] | None = None):
        super().__init__(field_dims, params)
        heads = dict(heads or {"ctr": "ctr", "cvr": "cvr"})
        tasks = tuple(dict.fromkeys(heads.values()))
        self.head_tasks = heads
        self.embedding = FieldEmbedding(field_dims, params.embed_dim)
        self.body = TaskRepresentations(self.embedding, params, tasks)
        self.heads = nn.ModuleDict({
            name: MLP(self.body.output_dim, params.arm_dims, output_dim=1, dropout=params.dropout)
            for name in heads})
        self.start_heads_at_priors()

    def start_heads_at_priors(self) -> None:
        """Set each head's output bias so that, before any training, it predicts its prior: CTR
        ctr_prior, CVR cvr_prior, DCMT's counterfactual CVR 1 - cvr_prior (so r^ + r^* = 1, DCMT
        eq. 9's prior knowledge, holds from the start), and the DR imputed error the log loss a
        CVR arm at cvr_prior makes on rows converting at that rate (so R_imp starts small).

        Why: a head biased at 0 predicts 0.5. The CTR arm, trained on every exposure, walks down
        fast; a CVR arm learns from the clicked rows or through CTCVR = CTR x CVR only, so within a
        few epochs (or at the papers' learning rate of 1e-4) it is still on its way down and its
        mean prediction over the exposures overshoots the truth.

        Mind the optimizer: torch Adam's weight_decay is an L2 gradient that Adam scales up where
        the data gradient is small. At 1e-3 with lr 1e-3 it shrinks ESMM's CVR arm, which learns
        only through CTR x CVR, to a constant near the clicked rows' conversion rate; started at
        its prior the arm gets no large early gradient to outgrow the decay and stays constant
        from the first epoch. Decoupled decay (AdamW) leaves it alone.
        """
        cvr = self.params.cvr_prior
        start = {"ctr": logit(self.params.ctr_prior), "cvr": logit(cvr), "cvr_cf": logit(1.0 - cvr),
                 "imputation": math.log(math.expm1(binary_entropy(cvr)))}  # softplus^-1
        with torch.no_grad():
            for name, head in self.heads.items():
                last = head.net[-1] if isinstance(head, MLP) else None
                if name in start and isinstance(last, nn.Linear):
                    last.bias.fill_(start[name])

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        reps = self.body(self.embedding(batch["x"]))
        out = {}
        for name, task in self.head_tasks.items():
            logit = self.heads[name](reps[task]).squeeze(-1)
            out[name] = F.softplus(logit) if name in self.ERROR_HEADS else torch.sigmoid(logit)
        out["ctcvr"] = out["ctr"] * out["cvr"]  # exposure -> click -> conversion
        return out

    # ---- input checks
    def check_labels(self, batch: dict[str, torch.Tensor]) -> None:
        """check_batch plus the CVR family's rules: labels are [B] and no conversion without a click."""
        self.check_batch(batch)
        rows = batch["x"].shape[0]
        for key in self.binary_keys:
            if tuple(batch[key].shape) != (rows,):
                raise BadBatchError(f"{key} must have shape [{rows}], got {list(batch[key].shape)}")
        if ((batch["conversion"] > 0) & (batch["click"] == 0)).any():
            raise BadBatchError(f"{type(self).__name__}: conversion label on a non-click; "
                                "conversions are only observable after a click")

    def _check_features(self, x: torch.Tensor) -> None:
        if x.dtype not in (torch.int64, torch.int32) or x.dim() != 2 or x.shape[1] != len(self.field_dims):
            raise BadBatchError(f"x must be an integer tensor [batch, {len(self.field_dims)}]")
        dims = torch.tensor(self.field_dims, device=x.device)
        if (x < 0).any() or (x >= dims).any():
            raise BadBatchError("x holds a feature id outside its field's vocabulary")

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """ctr, cvr, ctcvr per row, in eval mode (no dropout, running batch-norm statistics)."""
        self._check_features(batch["x"])
        was_training = self.training
        if was_training:  # eval() walks every submodule: a scoring job calls predict per batch
            self.eval()
        try:
            out = self.forward({"x": batch["x"]})
        finally:
            if was_training:
                self.train()
        return {k: out[k].float() for k in PREDICT_COLUMNS}
