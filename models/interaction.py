"""Uplift networks that model the treatment-feature interaction explicitly: EFIN (treatment-aware
attention over the fields, an adversarial intervention constraint) and M3TN (MMoE with one gate
per arm, y(k) = mu_0 + tau_k)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from liftlake.models.layers import MLP, MMoE
from liftlake.models.registry import register
from liftlake.models.uplift_base import (
    BaselineParams,
    UpliftBaseline,
    _GradientReversal,
    select_arm,
)


@dataclass
class EFINParams(BaselineParams):
    # intervention constraint (adversarial treatment classifier on the predicted uplifts); kept
    # small because it pulls on the uplift read at the read-out face value itself
    constraint_weight: float = 0.01


@register("efin")
class EFIN(UpliftBaseline):
    """Explicit feature-interaction uplift network: the control response from self-attention over
    the field embeddings, the uplift from a treatment-aware attention over the same fields,
    y(arm) = control + uplift(arm) (logit space for coupons). The intervention constraint is a
    treatment classifier on the predicted uplifts behind gradient reversal, so the uplift
    distribution cannot tell treated from untreated users apart."""

    registry_name = "efin"
    Params = EFINParams

    def __init__(self, field_dims, params):
        super().__init__(field_dims, params)
        d, num_fields = params.embed_dim, len(field_dims)
        self.query, self.key, self.value = (nn.Linear(d, d) for _ in range(3))
        self.control_net = MLP(num_fields * d, params.hidden_dims, self.out_dim, params.dropout)
        if self.is_coupon:
            self.treatment_embedding: nn.Module = nn.Linear(self.treatment_dim, d)
        else:
            self.treatment_embedding = nn.Embedding(self.num_arms, d)
        self.att_field = nn.Linear(d, d, bias=False)
        self.att_treatment = nn.Linear(d, d)
        self.att_score = nn.Linear(d, 1, bias=False)
        self.uplift_net = MLP(num_fields * d + d, params.hidden_dims, self.out_dim, params.dropout)
        n_effects = (1 if self.is_coupon else params.num_treatments) * self.out_dim
        self.constraint = nn.Linear(n_effects, 1 if self.is_coupon else self.num_arms)

    def encode(self, x):
        e = self.embedding(x)  # [B, F, d]
        scores = self.query(e) @ self.key(e).transpose(1, 2) / math.sqrt(e.shape[-1])
        interacted = torch.softmax(scores, dim=-1) @ self.value(e)
        return {"e": e, "control": self.control_net(interacted.flatten(1))}

    def uplift(self, rep, arm):
        e = rep["e"]
        if self.is_coupon:
            e_t = self.treatment_embedding(self.treatment_features(arm))
        else:
            e_t = self.treatment_embedding(arm.long())
        scores = self.att_score(torch.tanh(self.att_field(e) + self.att_treatment(e_t)[:, None, :]))
        weights = torch.softmax(scores, dim=1)  # [B, F, 1] attention of the treatment on each field
        return self.uplift_net(torch.cat([(weights * e).flatten(1), e_t], dim=-1))

    def outcome(self, rep, arm):
        treated = (self.arm_group(arm) > 0).float()[:, None]
        return rep["control"] + treated * self.uplift(rep, arm)

    def auxiliary_outputs(self, batch, rep):
        x = batch["x"]
        if self.is_coupon:
            effects = self.uplift(rep, self.full_arm(x, self.read_intensity()))
        else:
            effects = torch.cat([self.uplift(rep, self.full_arm(x, k)) for k in range(1, self.num_arms)], dim=-1)
        return {"treatment_logits": self.constraint(_GradientReversal.apply(effects))}

    def auxiliary_losses(self, batch, out):
        group = self.arm_group(self.observed_arm(batch))
        if self.is_coupon:
            loss = F.binary_cross_entropy_with_logits(out["treatment_logits"].squeeze(-1), group.float())
        else:
            loss = F.cross_entropy(out["treatment_logits"], group)
        return {"intervention_constraint": (loss, self.params.constraint_weight)}


@dataclass
class M3TNParams(BaselineParams):
    num_experts: int = 4

    def __post_init__(self):
        super().__post_init__()
        if self.num_experts < 1:
            raise ValueError("num_experts must be >= 1")


@register("m3tn")
class M3TN(UpliftBaseline):
    """MMoE feature representation (one gate per arm) and a reparameterized output:
    y(arm k) = mu_0(x) + tau_k(x), with tau modelled explicitly (logit space for coupons)."""

    registry_name = "m3tn"
    Params = M3TNParams

    def __init__(self, field_dims, params):
        super().__init__(field_dims, params)
        self.mmoe = MMoE(self.embedding.output_dim, params.num_experts, params.hidden_dims,
                         self.num_arms, params.dropout)
        dim = self.mmoe.output_dim
        self.control_tower = MLP(dim, params.head_dims, self.out_dim, params.dropout)
        extra = self.treatment_dim if self.is_coupon else 0
        self.uplift_towers = nn.ModuleList(MLP(dim + extra, params.head_dims, self.out_dim, params.dropout)
                                           for _ in range(self.num_arms - 1))

    def encode(self, x):
        mixtures = self.mmoe(self.embedding.flat(x))
        return {f"m{a}": m for a, m in enumerate(mixtures)}

    def outcome(self, rep, arm):
        base = self.control_tower(rep["m0"])
        effects = [torch.zeros_like(base)]
        for a, tower in enumerate(self.uplift_towers, start=1):
            inp = rep[f"m{a}"]
            if self.is_coupon:
                inp = torch.cat([inp, self.treatment_features(arm)], dim=-1)
            effects.append(tower(inp))
        return base + select_arm(effects, self.arm_group(arm))
