"""ESCM² and the MTL baselines: the CVR arm trained with a counterfactual risk, IPS (eq. 9) or
doubly robust (eq. 10-12), over the entire exposure space; ESCM² adds the global CTCVR risk (eq. 13)."""
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
    ips_risk,
    log_loss,
    propensity,
)
from liftlake.models.registry import register


def dr_risks(cvr: torch.Tensor, click: torch.Tensor, conversion: torch.Tensor, q: torch.Tensor,
             imputed_error: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R_DR^err, R_DR^imp) of ESCM² eq. 10-11.

    The imputed error eps^ enters R_err without gradient (there the true errors correct it, they do
    not train it) and the true error eps enters R_imp without gradient (it is only the imputation's
    target): the two stop-gradients ESCM² IV-C prescribes for training stability.

    What follows for the gradients: eps^ is the imputation arm's output, no function of the CVR
    prediction, so the CVR arm learns from R_err's o * eps / o^ term alone -- R_IPS's gradient
    (eq. 9) -- and the imputation arm learns from R_imp alone. ESCM²-DR departs from ESCM²-IPS
    through the imputation arm's pull on the layers it shares with the CVR arm (MMoE experts,
    embedding), not through the CVR arm's own gradient.
    """
    error = log_loss(cvr, conversion)
    imputed_fixed = imputed_error.detach()
    err = (imputed_fixed + click * (error - imputed_fixed) / q).mean()  # eq. 10
    imp = (click * (error.detach() - imputed_error).pow(2) / q).mean()  # eq. 11
    return err, imp


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


@register("mtl_ips", estimator="ips")
@register("mtl_dr", estimator="dr")
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


@register("escm2_ips", estimator="ips")
@register("escm2_dr", estimator="dr")
class ESCM2(CounterfactualRiskModel):
    """ESCM²: ESMM regularized by a counterfactual CVR risk (Alg. 1, eq. 13)."""

    Params = Escm2Params

    def __init__(self, field_dims, params: Escm2Params, estimator: str = "dr"):
        super().__init__(field_dims, params, estimator)
        self.lambda_c = params.lambda_c
        self.lambda_g = params.lambda_g
