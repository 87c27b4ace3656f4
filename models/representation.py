"""Representation learners: TARNet and CFRNet (a shared representation, one head per arm, CFRNet
balanced by an IPM) and DESCN (entire-space cross network)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from liftlake.models.layers import MLP
from liftlake.models.registry import register
from liftlake.models.uplift_base import BaselineParams, UpliftBaseline


@register("tarnet")
class TARNet(UpliftBaseline):
    """A shared representation Phi(x) and one outcome head per arm."""

    registry_name = "tarnet"
    Params = BaselineParams

    def __init__(self, field_dims, params):
        super().__init__(field_dims, params)
        self.representation = MLP(self.embedding.output_dim, params.hidden_dims, dropout=params.dropout)
        self.heads = self.make_heads(self.representation.output_dim, params.head_dims)

    def encode(self, x):
        return {"phi": self.representation(self.embedding.flat(x))}

    def outcome(self, rep, arm):
        return self.run_heads(self.heads, rep["phi"], arm)


@dataclass
class CFRNetParams(BaselineParams):
    ipm_weight: float = 1.0   # alpha: weight of the representation-balancing term


def linear_mmd(phi: torch.Tensor, group: torch.Tensor, num_arms: int) -> torch.Tensor:
    """Linear-kernel MMD between each treated arm's representations and the control's:
    sum_a || mean(Phi | arm a) - mean(Phi | control) ||^2 (a term is 0 when a group is empty)."""
    total = phi.new_zeros(())
    control = group == 0
    if not control.any():
        return total
    control_mean = phi[control].mean(dim=0)
    for a in range(1, num_arms):
        rows = group == a
        if rows.any():
            total = total + ((phi[rows].mean(dim=0) - control_mean) ** 2).sum()
    return total


@register("cfrnet")
class CFRNet(TARNet):
    """TARNet whose representation is balanced between arms by an IPM (linear MMD)."""

    registry_name = "cfrnet"
    Params = CFRNetParams

    def auxiliary_outputs(self, batch, rep):
        return {"phi": rep["phi"]}

    def auxiliary_losses(self, batch, out):
        group = self.arm_group(self.observed_arm(batch))
        return {"ipm": (linear_mmd(out["phi"], group, self.num_arms), self.params.ipm_weight)}



# --------------------------------------------------------------------------------------------
# DESCN (entire-space cross network).
# --------------------------------------------------------------------------------------------

@dataclass
class DESCNParams(BaselineParams):
    propensity_weight: float = 1.0      # pi(x) = P(w = 1 | x)
    es_treated_weight: float = 1.0      # ESTR: pi * mu1 against y * w
    es_control_weight: float = 1.0      # ESCR: (1 - pi) * mu0 against y * (1 - w)
    cross_treated_weight: float = 1.0   # sigma(logit mu0 + tau') against y on treated rows
    cross_control_weight: float = 1.0   # sigma(logit mu1 - tau') against y on control rows


@register("descn")
class DESCN(UpliftBaseline):
    """Shared representation with propensity, treated / control response and pseudo-effect heads,
    trained over the entire space. Coupon-only: its losses are products of probabilities.

    Untreated rows have no face value, yet the entire-space terms read the treated response mu1 on
    them too: ESTR fits pi * mu1 to y * w over all rows, which holds (E[y w | x] = pi(x) mu1(x)) only
    if mu1 on an untreated row is the treated response at a face value a coupon would have had. Each
    untreated row therefore reads the treated pathway at a face value drawn from the batch's treated
    rows (the read-out face value, read_intensity(), when the batch has none). Read at one fixed value instead, ESTR's zeros
    on every untreated row pulled mu1 at that value far down (p(x, 1) at 0.4x the truth, the unit
    uplift of a world with near-zero effects at -0.26) and the other values up to compensate."""

    registry_name = "descn"
    tasks = ("coupon",)
    Params = DESCNParams

    def __init__(self, field_dims, params):
        super().__init__(field_dims, params)
        self.representation = MLP(self.embedding.output_dim, params.hidden_dims, dropout=params.dropout)
        dim = self.representation.output_dim
        self.propensity_head = MLP(dim, params.head_dims, 1, params.dropout)
        self.control_head = MLP(dim, params.head_dims, 1, params.dropout)
        self.treated_head = MLP(dim + self.treatment_dim, params.head_dims, 1, params.dropout)
        self.effect_head = MLP(dim + self.treatment_dim, params.head_dims, 1, params.dropout)

    def encode(self, x):
        return {"phi": self.representation(self.embedding.flat(x))}

    def outcome(self, rep, arm):
        phi = rep["phi"]
        treated = self.treated_head(torch.cat([phi, self.treatment_features(arm)], dim=-1))
        return torch.where((arm > 0)[:, None], treated, self.control_head(phi))

    def auxiliary_outputs(self, batch, rep):
        phi = rep["phi"]
        t = batch["intensity"].float()
        given = t[t > 0]
        if given.numel():
            would_have = given[torch.randint(0, given.numel(), t.shape, device=t.device)]
        else:
            would_have = torch.full_like(t, self.read_intensity())
        dose = torch.where(t > 0, t, would_have)
        with_dose = torch.cat([phi, self.treatment_features(dose)], dim=-1)
        return {"propensity_logit": self.propensity_head(phi).squeeze(-1),
                "mu0_logit": self.control_head(phi).squeeze(-1),
                "mu1_logit": self.treated_head(with_dose).squeeze(-1),
                "pseudo_effect": self.effect_head(with_dose).squeeze(-1)}

    def factual_losses(self, batch, out):
        p = self.params
        w, y = batch["treated"].float(), batch["outcome"].float()
        pi = torch.sigmoid(out["propensity_logit"])
        mu0, mu1 = torch.sigmoid(out["mu0_logit"]), torch.sigmoid(out["mu1_logit"])
        eps = 1e-7
        estr = F.binary_cross_entropy((pi * mu1).clamp(eps, 1 - eps), y * w)
        escr = F.binary_cross_entropy(((1 - pi) * mu0).clamp(eps, 1 - eps), y * (1 - w))
        cross_t = F.binary_cross_entropy_with_logits(out["mu0_logit"] + out["pseudo_effect"], y, reduction="none")
        cross_c = F.binary_cross_entropy_with_logits(out["mu1_logit"] - out["pseudo_effect"], y, reduction="none")
        return {
            "propensity_bce": (F.binary_cross_entropy_with_logits(out["propensity_logit"], w), p.propensity_weight),
            "es_treated": (estr, p.es_treated_weight),
            "es_control": (escr, p.es_control_weight),
            "cross_treated": ((cross_t * w).sum() / len(y), p.cross_treated_weight),
            "cross_control": ((cross_c * (1 - w)).sum() / len(y), p.cross_control_weight),
        }
