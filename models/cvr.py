"""The CVR family: post-click conversion rate over the entire exposure space D.

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

Tasks share the embedding. With ``sharing: towers`` each task has its own backbone (ESMM /
DCMT / ESCIM towers); with ``sharing: mmoe`` one backbone feeds an MMoE whose gates mix experts
per task (ESCM² V-A: "implemented as a standard MMoE").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from liftlake.models.backbones import BACKBONES, build_backbone
from liftlake.models.base import BadBatchError, LiftlakeModel, LossOutput
from liftlake.models.layers import MLP, MMoE, FieldEmbedding
from liftlake.models.registry import register

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


def _check_clip(clip: float) -> None:
    _require(0.0 < clip < 0.5, f"propensity_clip must be in (0, 0.5), got {clip}")


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


def dr_risks(cvr: torch.Tensor, click: torch.Tensor, conversion: torch.Tensor, q: torch.Tensor,
             imputed_error: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R_DR^err, R_DR^imp) of ESCM² eq. 10-11.

    The imputed error eps^ enters R_err without gradient (it only calibrates the CVR arm's error)
    and the true error eps enters R_imp without gradient (it is only the imputation's target),
    the two stop-gradients ESCM² IV-C prescribes for training stability.
    """
    error = log_loss(cvr, conversion)
    imputed_fixed = imputed_error.detach()
    err = (imputed_fixed + click * (error - imputed_fixed) / q).mean()  # eq. 10
    imp = (click * (error.detach() - imputed_error).pow(2) / q).mean()  # eq. 11
    return err, imp


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
            self.output_dim = self.towers[tasks[0]].output_dim
        else:
            self.bottom = build_backbone(params.backbone, embedding, params)
            self.mmoe = MMoE(self.bottom.output_dim, params.num_experts, params.expert_dims,
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
    batch_keys = ("x", "click", "conversion")
    binary_keys = ("click", "conversion")
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
        self.eval()
        try:
            out = self.forward({"x": batch["x"]})
        finally:
            self.train(was_training)
        return {k: out[k].float() for k in PREDICT_COLUMNS}


# --------------------------------------------------------------------------- Naive, ESMM
@dataclass
class NaiveParams(CvrParams):
    pass


@register("naive", family="cvr")
class NaiveCvr(CvrModel):
    """CTR over D and CVR over the clicked rows only (ESCM² V-A "Naive", eq. 3)."""

    Params = NaiveParams

    def compute_loss(self, batch, out) -> LossOutput:
        self.check_labels(batch)
        click, conversion = batch["click"], batch["conversion"]
        parts = {"ctr": ctr_risk(out["ctr"], click),
                 "cvr": naive_cvr_risk(out["cvr"], click, conversion)}
        return LossOutput(parts["ctr"] + parts["cvr"], parts)


@dataclass
class EsmmParams(CvrParams):
    pass


@register("esmm", family="cvr")
class ESMM(CvrModel):
    """CTR and CTCVR over all exposures; the CVR arm learns only through CTCVR = CTR x CVR (eq. 4)."""

    Params = EsmmParams

    def compute_loss(self, batch, out) -> LossOutput:
        self.check_labels(batch)
        click, conversion = batch["click"], batch["conversion"]
        parts = {"ctr": ctr_risk(out["ctr"], click),
                 "ctcvr": ctcvr_risk(out["ctcvr"], click, conversion)}
        return LossOutput(parts["ctr"] + parts["ctcvr"], parts)


# --------------------------------------------------------------------------- IPS / DR (MTL, ESCM²)
class CounterfactualRiskModel(CvrModel):
    """CTR arm, CVR arm and, for DR, an imputation arm; the CVR arm trained with an IPS or DR risk.

    Loss (ESCM² eq. 13): L_CTR + lambda_c * L_CVR + lambda_g * L_CTCVR, with L_CVR = R_IPS (eq. 9)
    or R_DR^err + R_DR^imp (eq. 12). The MTL baselines are the same with lambda_c = 1, lambda_g = 0.
    """

    ESTIMATORS = ("ips", "dr")
    lambda_c: float = 1.0
    lambda_g: float = 0.0

    def __init__(self, field_dims, params, estimator: str = "dr"):
        if estimator not in self.ESTIMATORS:
            raise ValueError(f"estimator must be one of {self.ESTIMATORS}, got {estimator!r}")
        heads = {"ctr": "ctr", "cvr": "cvr"}
        if estimator == "dr":
            heads["imputation"] = "imputation"
        super().__init__(field_dims, params, heads)
        self.estimator = estimator

    def compute_loss(self, batch, out) -> LossOutput:
        self.check_labels(batch)
        click, conversion = batch["click"], batch["conversion"]
        q = propensity(out["ctr"], self.params.propensity_clip)
        parts = {"ctr": ctr_risk(out["ctr"], click)}
        if self.estimator == "ips":
            parts["cvr_ips"] = ips_risk(out["cvr"], click, conversion, q)
            cvr_loss = parts["cvr_ips"]
        else:
            parts["cvr_dr"], parts["imputation"] = dr_risks(out["cvr"], click, conversion, q, out["imputation"])
            cvr_loss = parts["cvr_dr"] + parts["imputation"]  # eq. 12
        total = parts["ctr"] + self.lambda_c * cvr_loss
        if self.lambda_g > 0:
            parts["ctcvr"] = ctcvr_risk(out["ctcvr"], click, conversion)
            total = total + self.lambda_g * parts["ctcvr"]
        return LossOutput(total, parts)


@dataclass
class MtlParams(CvrParams):
    propensity_clip: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_clip(self.propensity_clip)


@register("mtl_ips", family="cvr", estimator="ips")
@register("mtl_dr", family="cvr", estimator="dr")
class MultiTaskCausal(CounterfactualRiskModel):
    """Multi-IPS / Multi-DR: CTR risk plus the IPS or DR CVR risk, no CTCVR term."""

    Params = MtlParams


@dataclass
class Escm2Params(CvrParams):
    embed_dim: int = 5  # ESCM² V-A
    hidden_dims: tuple[int, ...] = ()  # no layers below the MMoE: experts read the embeddings
    sharing: str = "mmoe"
    lambda_c: float = 0.1  # weight of the counterfactual risk (V-A, V-F)
    lambda_g: float = 1.0  # weight of the global CTCVR risk
    propensity_clip: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.lambda_c >= 0 and self.lambda_g >= 0, "lambda_c and lambda_g must be >= 0")
        _check_clip(self.propensity_clip)


@register("escm2_ips", family="cvr", estimator="ips")
@register("escm2_dr", family="cvr", estimator="dr")
class ESCM2(CounterfactualRiskModel):
    """ESCM²: ESMM regularized by a counterfactual CVR risk (Alg. 1, eq. 13)."""

    Params = Escm2Params

    def __init__(self, field_dims, params: Escm2Params, estimator: str = "dr"):
        super().__init__(field_dims, params, estimator)
        self.lambda_c = params.lambda_c
        self.lambda_g = params.lambda_g


# --------------------------------------------------------------------------- DCMT
@dataclass
class DcmtParams(CvrParams):
    embed_dim: int = 32  # DCMT IV-A2
    hidden_dims: tuple[int, ...] = (64, 64)  # common deep part theta^d of the towers ...
    arm_dims: tuple[int, ...] = (32,)  # ... and each head's own last layer: [64-64-32] (AE setting)
    cf_reg_weight: float = 0.001  # lambda_1, counterfactual regularizer
    cvr_weight: float = 1.0  # w^cvr of eq. 14
    ctcvr_weight: float = 1.0  # w^ctcvr of eq. 14
    self_normalize: bool = True  # SNIPS weights, eq. 13
    propensity_clip: float = 1e-6  # o^ clipped into (0, 1) only to avoid NaN (III-F)

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.cf_reg_weight >= 0 and self.cvr_weight >= 0 and self.ctcvr_weight >= 0,
                 "cf_reg_weight, cvr_weight and ctcvr_weight must be >= 0")
        _check_clip(self.propensity_clip)


def weighted_average(values: torch.Tensor, weights: torch.Tensor, self_normalize: bool) -> torch.Tensor:
    """sum w * v / sum w (SNIPS, DCMT eq. 13), or sum w * v / |D| (eq. 9). 0 when all w are 0."""
    total = (weights * values).sum()
    if self_normalize:
        return total / weights.sum().clamp_min(1e-12)
    return total / values.shape[0]


@register("dcmt", family="cvr", variant="full")
@register("dcmt_pd", family="cvr", variant="pd")
@register("dcmt_cf", family="cvr", variant="cf")
class DCMT(CvrModel):
    """DCMT: a CTR tower and a twin CVR tower whose factual head r^ and counterfactual head r^*
    share the tower's common layers (eq. 11-12).

    CVR loss (eq. 9 with the SNIPS weights of eq. 13):
      factual loss over O with weights 1/o^, counterfactual loss over N* (label r* = 1 - r = 1)
      with weights 1/(1 - o^), and lambda_1 * mean_D |1 - (r^ + r^*)|.
    Ablations (IV-A4, Table III): ``pd`` keeps the propensity debiasing over O and N* without the
    counterfactual regularizer; ``cf`` keeps the counterfactual mechanism (twin tower, N* loss,
    regularizer) with unit weights instead of inverse propensities.
    Deployed CVR is the factual head.
    """

    Params = DcmtParams
    VARIANTS = ("full", "pd", "cf")

    def __init__(self, field_dims, params: DcmtParams, variant: str = "full"):
        if variant not in self.VARIANTS:
            raise ValueError(f"variant must be one of {self.VARIANTS}, got {variant!r}")
        super().__init__(field_dims, params, {"ctr": "ctr", "cvr": "cvr", "cvr_cf": "cvr"})
        self.variant = variant
        self.use_propensity = variant in ("full", "pd")
        self.use_regularizer = variant in ("full", "cf")

    def compute_loss(self, batch, out) -> LossOutput:
        self.check_labels(batch)
        p = self.params
        click, conversion = batch["click"], batch["conversion"]
        factual_error = log_loss(out["cvr"], conversion)  # e(r, r^) on O
        counterfactual_error = log_loss(out["cvr_cf"], 1.0 - conversion)  # e(r*, r^*), r* = 1 - r on N*
        if self.use_propensity:
            q = propensity(out["ctr"], p.propensity_clip)
            factual_weight, counterfactual_weight = click / q, (1.0 - click) / (1.0 - q)
        else:
            factual_weight, counterfactual_weight = click, 1.0 - click
        parts = {
            "ctr": ctr_risk(out["ctr"], click),
            "cvr_factual": weighted_average(factual_error, factual_weight, p.self_normalize),
            "cvr_counterfactual": weighted_average(counterfactual_error, counterfactual_weight,
                                                   p.self_normalize),
            "ctcvr": ctcvr_risk(out["ctcvr"], click, conversion),
        }
        cvr_loss = parts["cvr_factual"] + parts["cvr_counterfactual"]
        if self.use_regularizer:
            parts["cf_reg"] = (1.0 - (out["cvr"] + out["cvr_cf"])).abs().mean()  # L of eq. 9
            cvr_loss = cvr_loss + p.cf_reg_weight * parts["cf_reg"]
        total = parts["ctr"] + p.cvr_weight * cvr_loss + p.ctcvr_weight * parts["ctcvr"]  # eq. 14
        return LossOutput(total, parts)
