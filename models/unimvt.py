"""UniMVT: Unified Multi-Valued Treatment Network (debiased base CTR + unit uplift for coupons).

Paper sections (shared/seeds 000): DCR layer 4.2 (eq. 5-9), HTE net 4.3 (eq. 10-20), inference 4.5
(eq. 25). The data: one row per user-day, ``treated`` w, coupon face value ``intensity`` t (> 0 iff
w = 1), binary ``outcome`` y.

Loss reduction: the paper writes sums over the control group C and the treated group T; here each
such sum is divided by the batch size B, which keeps the groups' relative weight as in the paper
and the scale independent of B.

The space of eta. Definition 3.2 (eq. 4), the proof of Theorem 4.1 (eq. 22-24) and inference (eq. 25)
treat eta as a probability slope: p_t(x; t) = p0(x) + t * eta(x). Only eq. 16-17 put t * eta inside a
sigmoid, which makes the fitted eta a logit shift, not the slope eq. 25 multiplies by q. By default
(``uplift_space='probability'``) the X-network's counterfactuals use the probability form, so the eta
that is fitted is the eta that is written (``unit_uplift``) and priced by eq. 25. ``'logit'`` keeps
eq. 16-17 as printed and converts at inference, sigma(logit p0 + eta) - p0 = eta * ~p0 (1 - p0): the
order of users then depends on that factor too, and where the learned eta is shrunk toward one value
(little data per user) the factor decides; on a world whose effect is linear in probability and falls
as p0 rises (Definition 3.2's form, the simulator's) that order is backwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from liftlake.models.base import LiftlakeModel, LossOutput, in_eval_mode
from liftlake.models.layers import MLP, FieldEmbedding
from liftlake.models.registry import register
from liftlake.models.uplift_base import COUPON_KEYS, check_coupon_batch

# --------------------------------------------------------------------------------------------
# Pure pieces (tested on their own).
# --------------------------------------------------------------------------------------------

def orthogonality_penalty(layer_weights: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Eq. 9: sum over layers l and group pairs i < j of ||(Theta_i^l)^T Theta_j^l||_F^2.

    ``layer_weights[l][g]`` is group g's layer-l weight in torch's [out, in] layout, the experts of
    a group stacked along ``out``. The paper's Theta is [in, out], so (Theta_i)^T Theta_j is
    W_i @ W_j^T here: it vanishes when the groups read orthogonal input directions.
    """
    total = None
    for groups in layer_weights:
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                term = (groups[i] @ groups[j].T).pow(2).sum()
                total = term if total is None else total + term
    if total is None:
        raise ValueError("orthogonality_penalty needs at least one layer with two groups")
    return total


def coupon_decision(p0, unit_uplift, value_grid: Sequence[float], cost_per_unit: float,
                    min_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The coupon to issue per user (UniMVT 4.5), from p0 and eta (eq. 25).

    For each face value q of ``value_grid``:
      gain(q)  = min(p0 + eta * q, 1) - p0        extra responses per user a coupon of q buys
                                                  (eq. 25, capped where the probability hits 1)
      cost(q)  = cost_per_unit * q                what issuing it costs, in the unit in which one
                                                  response is worth 1 (cost_per_unit = the cost
                                                  of one unit of face value / value of a response)
      ratio(q) = gain(q) / cost(q)                uplift-to-cost; ratio >= 1 means break-even
    A value qualifies when gain(q) > 0 and ratio(q) >= ``min_ratio``. Among qualifying values the
    best ratio wins; values whose ratio ties with the best (relative 1e-6; under eq. 25 the ratio
    is constant in q until the cap) go to the largest of them, which buys the most responses at
    that efficiency. No qualifying value: 0.0 (no coupon), gain 0.

    Returns ``(chosen_value, expected_gain)``, float tensors [B]; ``chosen_value`` is always 0 or a
    member of ``value_grid`` and ``expected_gain = gain(chosen_value)``.
    """
    p0 = torch.as_tensor(p0, dtype=torch.float64).flatten()
    eta = torch.as_tensor(unit_uplift, dtype=torch.float64).flatten()
    grid = torch.as_tensor(list(value_grid), dtype=torch.float64).flatten()
    if p0.shape != eta.shape:
        raise ValueError(f"p0 and unit_uplift must have the same length, got {p0.numel()} and {eta.numel()}")
    if grid.numel() == 0 or (grid <= 0).any() or not torch.isfinite(grid).all():
        raise ValueError("value_grid must be a non-empty list of positive face values")
    if not cost_per_unit > 0:
        raise ValueError("cost_per_unit must be > 0")
    p0_col, eta_col = p0[:, None], torch.clamp(eta, min=0.0)[:, None]
    gain = torch.clamp(p0_col + eta_col * grid[None, :], max=1.0) - p0_col  # [B, G]
    ratio = gain / (cost_per_unit * grid[None, :])
    ok = (gain > 0) & (ratio >= min_ratio) & torch.isfinite(ratio)
    best = torch.where(ok, ratio, torch.full_like(ratio, -torch.inf)).max(dim=1, keepdim=True).values
    tied = ok & (ratio >= best - 1e-6 * best.abs())
    pick_value = torch.where(tied, grid[None, :].expand_as(ratio), torch.full_like(ratio, -1.0))
    chosen = pick_value.max(dim=1).values
    issue = chosen > 0
    index = torch.where(issue[:, None], tied & (grid[None, :] == chosen[:, None]), torch.zeros_like(tied))
    chosen_gain = torch.where(issue, (gain * index).sum(dim=1), torch.zeros_like(p0))
    return (torch.where(issue, chosen, torch.zeros_like(chosen)).float(), chosen_gain.float())


def linear_outcome_prob(p0: torch.Tensor, unit_uplift: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Eq. 25: p_t(x; q) = p0 + eta * q for each q, clipped to [0, 1]: [B, G]."""
    return torch.clamp(p0[:, None] + unit_uplift[:, None] * values[None, :], 0.0, 1.0)


# --------------------------------------------------------------------------------------------
# The network.
# --------------------------------------------------------------------------------------------

class TreatmentGatedTower(nn.Module):
    """The treatment tower: an MLP whose hidden layers are rescaled by the TA-gate (eq. 10),
    a^(l) = 2 * sigmoid(W_g^(l) e_t + b_g^(l)) in (0, 2), h~^(l) = a^(l) * h^(l), on every hidden
    layer but not the output."""

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], treatment_dim: int, dropout: float = 0.0):
        super().__init__()
        dims = [input_dim, *hidden_dims]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.gates = nn.ModuleList(nn.Linear(treatment_dim, b) for b in dims[1:])
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output = nn.Linear(dims[-1], 1)

    def forward(self, u: torch.Tensor, treatment: torch.Tensor) -> torch.Tensor:
        h = u
        for layer, gate in zip(self.layers, self.gates):
            h = torch.relu(layer(h))
            h = 2.0 * torch.sigmoid(gate(treatment)) * h  # eq. 10
            h = self.dropout(h)
        return self.output(h).squeeze(-1)


UPLIFT_SPACES = ("probability", "logit")


@dataclass
class UniMVTParams:
    embed_dim: int = 16
    num_shared_experts: int = 2
    num_base_experts: int = 2
    num_treated_experts: int = 2
    expert_dims: list[int] = field(default_factory=lambda: [128, 64])
    tower_dims: list[int] = field(default_factory=lambda: [64, 32])
    intensity_head_dims: list[int] = field(default_factory=lambda: [32])
    uplift_head_dims: list[int] = field(default_factory=lambda: [32])
    dropout: float = 0.0
    t_min: float = 0.5                    # [t_min, t_max]: the range eq. 13 maps t-hat into
    t_max: float = 10.0
    lambda_base: float = 1.0              # eq. 20 weights
    lambda_treat: float = 1.0
    lambda_t: float = 1.0
    lambda_x: float = 1.0
    lambda_o: float = 1e-3
    lambda_1: float = 1.0                 # eq. 14: squared error weight
    lambda_2: float = 1.0                 # eq. 14: absolute error weight
    # The space eta is fitted (X-network, eq. 16-19) and read (eq. 25) in, one for both (module
    # docstring): "probability" (eq. 4 / 25) or "logit" (eq. 16-17 as printed). Left empty it is
    # "probability", or what the former name ``inference_space`` says (configs that set it build).
    uplift_space: str = ""
    inference_space: str = ""
    x_treat_dose: str = "observed"        # dose of eq. 16 on treated rows: "observed" t or "predicted" t-hat
    eta_init: float = 0.02                # initial unit uplift, the same for every user

    def __post_init__(self):
        if not 0 < self.t_min < self.t_max:
            raise ValueError(f"need 0 < t_min < t_max, got {self.t_min}, {self.t_max}")
        if min(self.num_shared_experts, self.num_base_experts, self.num_treated_experts) < 1:
            raise ValueError("every expert group needs at least one expert")
        if not self.expert_dims or not self.tower_dims:
            raise ValueError("expert_dims and tower_dims must be non-empty")
        weights = (self.lambda_base, self.lambda_treat, self.lambda_t, self.lambda_x, self.lambda_o,
                   self.lambda_1, self.lambda_2)
        if min(weights) < 0:
            raise ValueError("loss weights must be non-negative")
        for name in ("uplift_space", "inference_space"):
            if getattr(self, name) not in ("", *UPLIFT_SPACES):
                raise ValueError(f"{name} must be one of {UPLIFT_SPACES}, got {getattr(self, name)!r}")
        if self.uplift_space and self.inference_space and self.uplift_space != self.inference_space:
            raise ValueError(f"uplift_space {self.uplift_space!r} and its former name inference_space "
                             f"{self.inference_space!r} disagree; set uplift_space only")
        self.uplift_space = self.uplift_space or self.inference_space or "probability"
        self.inference_space = self.uplift_space
        if self.x_treat_dose not in ("observed", "predicted"):
            raise ValueError("x_treat_dose must be 'observed' or 'predicted'")
        if self.eta_init < 0:
            raise ValueError("eta_init must be >= 0")


@register("unimvt")
class UniMVT(LiftlakeModel):
    """DCR layer (shared / base / treated experts, two gates) + HTE net (base tower, TA-gated
    treatment tower, intensity head, unit-uplift head, counterfactual X-network)."""

    family = "uplift"
    task = "coupon"            # which rows and batch keys the trainer feeds it
    batch_keys = COUPON_KEYS
    binary_keys = ("treated", "outcome")
    Params = UniMVTParams

    def __init__(self, field_dims, params: UniMVTParams):
        super().__init__(field_dims, params)
        p = params
        self.embedding = FieldEmbedding(field_dims, p.embed_dim)
        d_in = self.embedding.output_dim

        def group(n: int) -> nn.ModuleList:
            return nn.ModuleList(MLP(d_in, p.expert_dims, dropout=p.dropout) for _ in range(n))

        # eq. 5: three expert groups over the same input
        self.shared_experts = group(p.num_shared_experts)
        self.base_experts = group(p.num_base_experts)
        self.treated_experts = group(p.num_treated_experts)
        n_all = p.num_shared_experts + p.num_base_experts + p.num_treated_experts
        # eq. 6: gates psi_0 and psi_t
        self.base_gate = nn.Linear(d_in, n_all)
        self.treatment_gate = nn.Linear(d_in, n_all)
        d_u = p.expert_dims[-1]
        self.base_tower = MLP(d_u, p.tower_dims, 1, p.dropout)
        self.treatment_tower = TreatmentGatedTower(d_u, p.tower_dims, treatment_dim=1, dropout=p.dropout)
        self.intensity_head = MLP(d_u, p.intensity_head_dims, 1)
        self.uplift_head = MLP(d_u, p.uplift_head_dims, 1)
        # A probability slope is small (t_max * eta <= 1), so the head predicts t_max * eta, what the
        # largest coupon adds: an O(0.1-1) output like the towers' logits, which Adam's fixed-size
        # steps do not swamp. Still eq. 15: ReLU(MLP) / t_max is ReLU of the MLP with a rescaled last
        # layer. A logit shift per unit is O(0.1-1) already.
        self.eta_unit = 1.0 / p.t_max if p.uplift_space == "probability" else 1.0
        # u^t and the head's hidden units are post-ReLU (non-negative), so at a random init the
        # pre-activation of eq. 15 tends to share one sign over all rows; a negative draw would leave
        # eta = 0 with no gradient from the first step. Start it at eta_init > 0 for everyone.
        last = self.uplift_head.net[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.fill_(p.eta_init / self.eta_unit)

    # --- DCR (4.2) ---------------------------------------------------------------------------
    def represent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embedding.flat(x)
        h_b = torch.stack([m(e) for m in self.base_experts], dim=1)      # [B, n_b, D]
        h_s = torch.stack([m(e) for m in self.shared_experts], dim=1)
        h_t = torch.stack([m(e) for m in self.treated_experts], dim=1)
        g0 = torch.softmax(self.base_gate(e), dim=-1)                     # eq. 6
        gt = torch.softmax(self.treatment_gate(e), dim=-1)
        # Stop-gradient keeps each objective out of the other's private experts; the shared
        # experts learn from both.
        u0 = torch.einsum("be,bed->bd", g0, torch.cat([h_b, h_s, h_t.detach()], dim=1))  # eq. 7
        ut = torch.einsum("be,bed->bd", gt, torch.cat([h_b.detach(), h_s, h_t], dim=1))  # eq. 8
        return u0, ut

    def expert_layer_weights(self) -> list[list[torch.Tensor]]:
        """Per layer, each group's stacked expert weights (the Theta^l of eq. 9)."""
        groups = (self.shared_experts, self.base_experts, self.treated_experts)
        per_group = [[[m for m in expert.modules() if isinstance(m, nn.Linear)] for expert in g] for g in groups]
        n_layers = len(per_group[0][0])
        return [[torch.cat([expert[l].weight for expert in g], dim=0) for g in per_group]
                for l in range(n_layers)]

    # --- HTE net (4.3) -------------------------------------------------------------------------
    def treatment_attributes(self, t: torch.Tensor) -> torch.Tensor:
        """e_t of eq. 10: the face value, scaled to the configured range."""
        return (t / self.params.t_max)[:, None]

    def intensity_hat(self, ut: torch.Tensor) -> torch.Tensor:
        """Eq. 13: t-hat in (t_min, t_max), reading u^t behind a stop-gradient."""
        p = self.params
        return torch.sigmoid(self.intensity_head(ut.detach()).squeeze(-1)) * (p.t_max - p.t_min) + p.t_min

    def unit_uplift(self, ut: torch.Tensor) -> torch.Tensor:
        """Eq. 15: eta = ReLU(MLP(u^t)) >= 0 (in units of ``eta_unit``)."""
        return torch.relu(self.uplift_head(ut).squeeze(-1)) * self.eta_unit

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        u0, ut = self.represent(batch["x"])
        t_hat = self.intensity_hat(ut)
        treated = batch["treated"] == 1
        # The treatment tower reads the observed face value on treated rows (eq. 12) and the
        # imputed one on control rows, where eq. 17 needs p_t(x; t-hat).
        dose = torch.where(treated, batch["intensity"].float(), t_hat.detach())
        return {
            "logit0": self.base_tower(u0).squeeze(-1),
            "logit_treat": self.treatment_tower(ut, self.treatment_attributes(dose)),
            "intensity_hat": t_hat,
            "unit_uplift": self.unit_uplift(ut),
            "orth_penalty": orthogonality_penalty(self.expert_layer_weights()),
        }

    def check_batch(self, batch):
        super().check_batch(batch)
        check_coupon_batch(batch)

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> LossOutput:
        self.check_batch(batch)
        p = self.params
        y = batch["outcome"].float()
        w = batch["treated"].float()
        c = 1.0 - w
        t = batch["intensity"].float()
        n = y.shape[0]
        loss_base = (F.binary_cross_entropy_with_logits(out["logit0"], y, reduction="none") * c).sum() / n  # eq. 11
        loss_treat = (F.binary_cross_entropy_with_logits(out["logit_treat"], y, reduction="none") * w).sum() / n  # eq. 12
        err = t - out["intensity_hat"]
        loss_t = ((p.lambda_1 * err ** 2 + p.lambda_2 * err.abs()) * w).sum() / n  # eq. 14
        # X-network (eq. 16-19). t-hat enters as a fixed dose: the intensity head learns from eq. 14
        # only, so the X-loss cannot bend t-hat to explain outcomes away. Control rows have no face
        # value and use t-hat (eq. 17). On treated rows the paper writes t-hat too; by default the
        # observed face value is used there instead (the t-hat -> t limit of Theorem 4.1), which
        # ranked eta far better on confounded synthetic data.
        t_hat = out["intensity_hat"].detach()
        dose_treated = t if p.x_treat_dose == "observed" else t_hat
        eta = out["unit_uplift"]
        if p.uplift_space == "probability":
            # eq. 16-17 with the effect added where eq. 4 and 25 add it. Not clipped to [0, 1]: a
            # squared error needs no probability, and a clip would cut the gradient that pulls an
            # overshooting eta back.
            p_cf_treat = torch.sigmoid(out["logit0"]) + dose_treated * eta           # eq. 15-16
            p_cf_base = torch.sigmoid(out["logit_treat"]) - t_hat * eta              # eq. 15, 17
        else:
            p_cf_treat = torch.sigmoid(out["logit0"] + dose_treated * eta)           # eq. 15-16
            p_cf_base = torch.sigmoid(out["logit_treat"] - t_hat * eta)              # eq. 15, 17
        loss_x_treat = (((y - p_cf_treat) ** 2) * w).sum() / n                         # eq. 18
        loss_x_base = (((y - p_cf_base) ** 2) * c).sum() / n                           # eq. 19
        loss_x = loss_x_treat + loss_x_base
        total = (p.lambda_base * loss_base + p.lambda_treat * loss_treat + p.lambda_t * loss_t
                 + p.lambda_x * loss_x + p.lambda_o * out["orth_penalty"])            # eq. 20
        return LossOutput(total, {"base": loss_base, "treat": loss_treat, "intensity": loss_t,
                                  "x_treat": loss_x_treat, "x_base": loss_x_base,
                                  "orthogonality": out["orth_penalty"]})

    # --- inference (4.5) -----------------------------------------------------------------------
    def _inference(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """logit p0 and the network's eta (eq. 15) for rows x."""
        u0, ut = self.represent(x)
        return self.base_tower(u0).squeeze(-1), self.unit_uplift(ut)

    @in_eval_mode
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """p0 and ``unit_uplift``, the outcome probability one unit of face value adds (the coupon
        contract every coupon model meets; the score job's eq. 25 decision reads it). In probability
        space that is the fitted eta itself; in logit space it is sigma(logit p0 + eta) - p0."""
        logit0, eta = self._inference(batch["x"])
        p0 = torch.sigmoid(logit0)
        if self.params.uplift_space == "logit":
            return {"p0": p0, "unit_uplift": torch.sigmoid(logit0 + eta) - p0}
        return {"p0": p0, "unit_uplift": eta}

    @in_eval_mode
    def prob_at(self, batch: dict[str, torch.Tensor], values: torch.Tensor) -> torch.Tensor:
        """Outcome probability under each coupon value q (0 = no coupon), [B, G]: eq. 25's
        p0 + eta * q clipped to [0, 1] in probability space, sigma(logit p0 + eta * q) (eq. 16's
        form) in logit space."""
        logit0, eta = self._inference(batch["x"])
        values = torch.as_tensor(values, dtype=torch.float32, device=logit0.device).flatten()
        if self.params.uplift_space == "logit":
            return torch.sigmoid(logit0[:, None] + eta[:, None] * values[None, :])
        return linear_outcome_prob(torch.sigmoid(logit0), eta, values)
