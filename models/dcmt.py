"""DCMT: direct entire-space causal multi-task CVR with a twin factual / counterfactual tower
(DCMT eq. 9, 11-14) and its two ablations, DCMT_PD and DCMT_CF (Table III)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from liftlake.models.base import LossOutput
from liftlake.models.cvr_base import (
    CvrModel,
    CvrParams,
    _check_clip,
    _require,
    ctcvr_risk,
    ctr_risk,
    log_loss,
    propensity,
)
from liftlake.models.registry import register


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


@register("dcmt", variant="full")
@register("dcmt_pd", variant="pd")
@register("dcmt_cf", variant="cf")
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
