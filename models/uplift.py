"""Uplift baselines: S-Learner, T-Learner, TARNet, CFRNet, DESCN, DRNet, VCNet, EFIN, M3TN.

Two tasks, chosen by the ``task`` parameter of every baseline:

* ``coupon`` (UniMVT's setting): binary outcome, a coupon of face value ``t > 0`` on treated rows
  and ``t = 0`` on untreated ones. Binary-treatment learners are extended as UniMVT 5.1.2 does:
  the intensity is one more input of the treated pathway, and the unit uplift is read at t = 1
  (``unit_intensity``): eta(x) = max(p(x, 1) - p(x, 0), 0) / 1.
* ``multi_treatment`` (HMUM's setting): treatment id k in {0 = control, 1..K}, R continuous
  responses fit by squared error. As in HMUM 5.1.3, the S-Learner takes the treatment as an input
  and T-Learner / TARNet get one independent branch per treatment.

Each baseline only says how it encodes ``x`` (``encode``) and how it predicts the outcome of a
given arm (``outcome``); fitting, scoring and the output contract live once in ``UpliftBaseline``.
The batch checks shared with UniMVT and HMUM live here too.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from liftlake.models.base import BadBatchError, LiftlakeModel, LossOutput
from liftlake.models.layers import MLP, MMoE, FieldEmbedding
from liftlake.models.registry import ModelConfigError, register

TASKS = ("coupon", "multi_treatment")
COUPON_KEYS = ("x", "treated", "intensity", "outcome")
MULTI_TREATMENT_KEYS = ("x", "treatment_id", "responses")


# --------------------------------------------------------------------------------------------
# Batch checks shared by the whole uplift family (run after LiftlakeModel.check_batch).
# --------------------------------------------------------------------------------------------

def _check_rows(batch: dict[str, torch.Tensor], keys: Sequence[str]) -> int:
    rows = batch["x"].shape[0]
    for key in keys:
        if batch[key].shape[0] != rows:
            raise BadBatchError(f"{key} has {batch[key].shape[0]} rows, x has {rows}")
    return rows


def check_coupon_batch(batch: dict[str, torch.Tensor]) -> None:
    """Coupon rows: w in {0,1}, a face value t > 0 exactly where w = 1 and t = 0 elsewhere."""
    _check_rows(batch, ("treated", "intensity", "outcome"))
    for key in ("treated", "intensity", "outcome"):
        if batch[key].dim() != 1:
            raise BadBatchError(f"{key} must be a [batch] vector, got shape {list(batch[key].shape)}")
    treated = batch["treated"] == 1
    intensity = batch["intensity"]
    if (treated & (intensity <= 0)).any():
        raise BadBatchError("intensity must be > 0 (the coupon face value) on every treated row")
    if (~treated & (intensity != 0)).any():
        raise BadBatchError("intensity must be 0 on untreated rows (no coupon, no face value)")


def check_multi_treatment_batch(batch: dict[str, torch.Tensor], num_treatments: int,
                                num_responses: int, with_value_shares: bool = False) -> None:
    """Multi-treatment rows: treatment id in 0..K, R non-negative responses (and DDM's shares)."""
    keys = ("treatment_id", "responses") + (("value_shares",) if with_value_shares else ())
    _check_rows(batch, keys)
    tid = batch["treatment_id"]
    if tid.is_floating_point() or tid.dtype == torch.bool or tid.dim() != 1:
        raise BadBatchError(f"treatment_id must be an integer [batch] vector, got {tid.dtype} "
                            f"{list(tid.shape)}")
    if (tid < 0).any() or (tid > num_treatments).any():
        raise BadBatchError(f"treatment_id must lie in 0..{num_treatments} (0 = control)")
    responses = batch["responses"]
    if responses.dim() != 2 or responses.shape[1] != num_responses:
        raise BadBatchError(f"responses must be [batch, {num_responses}], got {list(responses.shape)}")
    if (responses < 0).any():
        raise BadBatchError("responses must be >= 0")
    if with_value_shares:
        shares = batch["value_shares"]
        if shares.shape != responses.shape:
            raise BadBatchError(f"value_shares must be [batch, {num_responses}], got {list(shares.shape)}")
        if (shares < 0).any() or (shares > 1).any() or not torch.allclose(
                shares.sum(dim=1), torch.ones_like(shares[:, 0]), atol=1e-3):
            raise BadBatchError("value_shares rows must be proportions V_r / V in [0, 1] summing to 1")


def select_arm(outputs: Sequence[torch.Tensor], arm_index: torch.Tensor) -> torch.Tensor:
    """Per row, the output of its arm: outputs[a] is [B, D] for arm a, arm_index [B] long."""
    stacked = torch.stack(list(outputs), dim=1)  # [B, A, D]
    index = arm_index.long().view(-1, 1, 1).expand(-1, 1, stacked.shape[-1])
    return stacked.gather(1, index).squeeze(1)


class _GradientReversal(torch.autograd.Function):
    """Identity forward, negated gradient backward (adversarial constraints)."""

    @staticmethod
    def forward(ctx, x):  # noqa: D401
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


# --------------------------------------------------------------------------------------------
# The shared frame.
# --------------------------------------------------------------------------------------------

@dataclass
class BaselineParams:
    task: str = "coupon"                 # "coupon" | "multi_treatment"
    embed_dim: int = 16
    hidden_dims: list[int] = field(default_factory=lambda: [128, 64])  # representation / experts
    head_dims: list[int] = field(default_factory=lambda: [32])         # outcome heads
    dropout: float = 0.0
    num_treatments: int = 2              # K (multi_treatment)
    num_responses: int = 2               # R (multi_treatment)
    t_min: float = 0.5                   # coupon face value range (coupon)
    t_max: float = 10.0
    unit_intensity: float = 1.0          # UniMVT 5.1.2: unit uplift read at t = 1

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.num_treatments < 1 or self.num_responses < 1:
            raise ValueError("num_treatments and num_responses must be >= 1")
        if not 0 < self.t_min < self.t_max:
            raise ValueError(f"need 0 < t_min < t_max, got {self.t_min}, {self.t_max}")
        if self.unit_intensity <= 0:
            raise ValueError("unit_intensity must be > 0")
        if self.embed_dim < 1 or not self.hidden_dims:
            raise ValueError("embed_dim must be >= 1 and hidden_dims non-empty")


class UpliftBaseline(LiftlakeModel):
    """An uplift learner over one of the two tasks.

    An *arm* is what the outcome is conditioned on: the coupon face value (float, 0 = no coupon)
    in the coupon task, the treatment id (long, 0 = control) in the multi-treatment task.
    Outcomes are logits [B, 1] (coupon) or response predictions [B, R] (multi-treatment).
    """

    family = "uplift"
    tasks: tuple[str, ...] = TASKS
    registry_name = ""

    def __init__(self, field_dims, params):
        super().__init__(field_dims, params)
        if params.task not in self.tasks:
            raise ModelConfigError(
                f"model {self.registry_name or type(self).__name__!r} supports task {self.tasks}, "
                f"not {params.task!r}")
        self.task = params.task
        self.is_coupon = params.task == "coupon"
        self.num_arms = 2 if self.is_coupon else params.num_treatments + 1
        self.out_dim = 1 if self.is_coupon else params.num_responses
        self.treatment_dim = 2 if self.is_coupon else self.num_arms
        if self.is_coupon:
            self.batch_keys, self.binary_keys = COUPON_KEYS, ("treated", "outcome")
        else:
            self.batch_keys, self.binary_keys = MULTI_TREATMENT_KEYS, ()
        self.embedding = FieldEmbedding(field_dims, params.embed_dim)

    # --- what a baseline defines -------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def outcome(self, rep: dict[str, torch.Tensor], arm: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def auxiliary_outputs(self, batch, rep) -> dict[str, torch.Tensor]:
        return {}

    def auxiliary_losses(self, batch, out) -> dict[str, tuple[torch.Tensor, float]]:
        """Extra named loss terms with their weights."""
        return {}

    # --- arms ------------------------------------------------------------------------------
    def observed_arm(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["intensity"].float() if self.is_coupon else batch["treatment_id"].long()

    def arm_group(self, arm: torch.Tensor) -> torch.Tensor:
        """0 for control, 1 for a coupon, k for treatment k."""
        return (arm > 0).long() if self.is_coupon else arm.long()

    def treatment_features(self, arm: torch.Tensor) -> torch.Tensor:
        """Coupon: [w, t] (intensity as an input, UniMVT 5.1.2); multi: one-hot treatment id."""
        if self.is_coupon:
            return torch.stack([(arm > 0).float(), arm.float()], dim=-1)
        return F.one_hot(arm.long(), self.num_arms).float()

    def full_arm(self, x: torch.Tensor, value: float) -> torch.Tensor:
        if self.is_coupon:
            return torch.full((x.shape[0],), float(value), device=x.device)
        return torch.full((x.shape[0],), int(value), dtype=torch.long, device=x.device)

    def make_heads(self, input_dim: int, head_dims: Sequence[int]) -> nn.ModuleList:
        """One outcome head per arm; the treated coupon head also reads [w, t]."""
        p = self.params
        if self.is_coupon:
            return nn.ModuleList([MLP(input_dim, head_dims, 1, p.dropout),
                                  MLP(input_dim + self.treatment_dim, head_dims, 1, p.dropout)])
        return nn.ModuleList(MLP(input_dim, head_dims, self.out_dim, p.dropout) for _ in range(self.num_arms))

    def run_heads(self, heads: nn.ModuleList, rep: torch.Tensor, arm: torch.Tensor) -> torch.Tensor:
        if self.is_coupon:
            outs = [heads[0](rep), heads[1](torch.cat([rep, self.treatment_features(arm)], dim=-1))]
        else:
            outs = [head(rep) for head in heads]
        return select_arm(outs, self.arm_group(arm))

    # --- fitting ---------------------------------------------------------------------------
    def check_batch(self, batch):
        super().check_batch(batch)
        if self.is_coupon:
            check_coupon_batch(batch)
        else:
            check_multi_treatment_batch(batch, self.params.num_treatments, self.params.num_responses)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        rep = self.encode(batch["x"])
        out = {"outcome": self.outcome(rep, self.observed_arm(batch))}
        out.update(self.auxiliary_outputs(batch, rep))
        return out

    def factual_losses(self, batch, out) -> dict[str, tuple[torch.Tensor, float]]:
        if self.is_coupon:
            bce = F.binary_cross_entropy_with_logits(out["outcome"].squeeze(-1), batch["outcome"].float())
            return {"outcome_bce": (bce, 1.0)}
        mse = ((out["outcome"] - batch["responses"].float()) ** 2).sum(dim=1).mean()
        return {"response_mse": (mse, 1.0)}

    def compute_loss(self, batch, out) -> LossOutput:
        self.check_batch(batch)
        terms = {**self.factual_losses(batch, out), **self.auxiliary_losses(batch, out)}
        total = sum(weight * value for value, weight in terms.values())
        return LossOutput(total, {name: value for name, (value, _) in terms.items()})

    # --- scoring ---------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch["x"]
        rep = self.encode(x)
        if self.is_coupon:
            unit = self.params.unit_intensity
            p0 = torch.sigmoid(self.outcome(rep, self.full_arm(x, 0.0))).squeeze(-1)
            p_unit = torch.sigmoid(self.outcome(rep, self.full_arm(x, unit))).squeeze(-1)
            # The contract's eta is never negative; a learner that predicts a coupon hurts ranks
            # those rows last (tied at 0).
            return {"p0": p0, "unit_uplift": torch.clamp(p_unit - p0, min=0.0) / unit}
        per_arm = [self.outcome(rep, self.full_arm(x, k)) for k in range(self.num_arms)]
        result = {}
        for r in range(self.out_dim):
            result[f"y0_r{r + 1}"] = per_arm[0][:, r]
            for k in range(1, self.num_arms):
                result[f"tau_r{r + 1}_k{k}"] = per_arm[k][:, r] - per_arm[0][:, r]
        return result

    @torch.no_grad()
    def prob_at(self, batch: dict[str, torch.Tensor], values: torch.Tensor) -> torch.Tensor:
        """Outcome probability under each coupon value (0 = no coupon): [B, G]."""
        if not self.is_coupon:
            raise ModelConfigError("prob_at is defined for the coupon task only")
        x = batch["x"]
        rep = self.encode(x)
        cols = [torch.sigmoid(self.outcome(rep, self.full_arm(x, float(q)))).squeeze(-1)
                for q in torch.as_tensor(values).flatten().tolist()]
        return torch.stack(cols, dim=1)


# --------------------------------------------------------------------------------------------
# Meta-learners.
# --------------------------------------------------------------------------------------------

@register("s_learner", family="uplift")
class SLearner(UpliftBaseline):
    """One network on [x, treatment]; the effect is the difference of two of its predictions."""

    registry_name = "s_learner"
    Params = BaselineParams

    def __init__(self, field_dims, params):
        super().__init__(field_dims, params)
        self.net = MLP(self.embedding.output_dim + self.treatment_dim, params.hidden_dims,
                       self.out_dim, params.dropout)

    def encode(self, x):
        return {"e": self.embedding.flat(x)}

    def outcome(self, rep, arm):
        return self.net(torch.cat([rep["e"], self.treatment_features(arm)], dim=-1))


@register("t_learner", family="uplift")
class TLearner(UpliftBaseline):
    """Independent networks (embedding included) per arm, each fit on its own arm's rows."""

    registry_name = "t_learner"
    Params = BaselineParams

    def __init__(self, field_dims, params):
        super().__init__(field_dims, params)
        # arm 0 reuses self.embedding; every other arm gets its own table.
        self.arm_embeddings = nn.ModuleList(FieldEmbedding(field_dims, params.embed_dim)
                                            for _ in range(self.num_arms - 1))
        dim = self.embedding.output_dim
        self.nets = nn.ModuleList()
        for a in range(self.num_arms):
            extra = self.treatment_dim if (self.is_coupon and a == 1) else 0
            self.nets.append(MLP(dim + extra, params.hidden_dims, self.out_dim, params.dropout))

    def encode(self, x):
        rep = {"e0": self.embedding.flat(x)}
        for a, emb in enumerate(self.arm_embeddings, start=1):
            rep[f"e{a}"] = emb.flat(x)
        return rep

    def outcome(self, rep, arm):
        outs = []
        for a, net in enumerate(self.nets):
            inp = rep[f"e{a}"]
            if self.is_coupon and a == 1:
                inp = torch.cat([inp, self.treatment_features(arm)], dim=-1)
            outs.append(net(inp))
        return select_arm(outs, self.arm_group(arm))


# --------------------------------------------------------------------------------------------
# Representation learners: TARNet, CFRNet, DRNet, VCNet.
# --------------------------------------------------------------------------------------------

@register("tarnet", family="uplift")
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


@register("cfrnet", family="uplift")
class CFRNet(TARNet):
    """TARNet whose representation is balanced between arms by an IPM (linear MMD)."""

    registry_name = "cfrnet"
    Params = CFRNetParams

    def auxiliary_outputs(self, batch, rep):
        return {"phi": rep["phi"]}

    def auxiliary_losses(self, batch, out):
        group = self.arm_group(self.observed_arm(batch))
        return {"ipm": (linear_mmd(out["phi"], group, self.num_arms), self.params.ipm_weight)}


@dataclass
class DRNetParams(BaselineParams):
    num_strata: int = 5   # E: the treated face-value range [t_min, t_max] split into E heads

    def __post_init__(self):
        super().__post_init__()
        if self.num_strata < 1:
            raise ValueError("num_strata must be >= 1")


@register("drnet", family="uplift")
class DRNet(UpliftBaseline):
    """Dose-response network: shared base layers, a control head and one head per dose stratum;
    each treated head also reads the dose."""

    registry_name = "drnet"
    tasks = ("coupon",)
    Params = DRNetParams

    def __init__(self, field_dims, params):
        super().__init__(field_dims, params)
        self.representation = MLP(self.embedding.output_dim, params.hidden_dims, dropout=params.dropout)
        dim = self.representation.output_dim
        self.control_head = MLP(dim, params.head_dims, 1, params.dropout)
        self.stratum_heads = nn.ModuleList(MLP(dim + self.treatment_dim, params.head_dims, 1, params.dropout)
                                           for _ in range(params.num_strata))

    def stratum(self, t: torch.Tensor) -> torch.Tensor:
        p = self.params
        position = (t - p.t_min) / (p.t_max - p.t_min) * p.num_strata
        return position.floor().long().clamp(0, p.num_strata - 1)

    def encode(self, x):
        return {"phi": self.representation(self.embedding.flat(x))}

    def outcome(self, rep, arm):
        phi = rep["phi"]
        with_dose = torch.cat([phi, self.treatment_features(arm)], dim=-1)
        outs = [self.control_head(phi)] + [head(with_dose) for head in self.stratum_heads]
        index = torch.where(arm > 0, 1 + self.stratum(arm), torch.zeros_like(arm, dtype=torch.long))
        return select_arm(outs, index)


def truncated_power_basis(s: torch.Tensor, degree: int, knots: Sequence[float]) -> torch.Tensor:
    """[1, s, ..., s^d, (s - k1)_+^d, ...] for s in [0, 1]: [B, degree + 1 + len(knots)]."""
    cols = [s ** p for p in range(degree + 1)]
    cols += [torch.relu(s - k) ** degree for k in knots]
    return torch.stack(cols, dim=-1)


class VaryingCoefficientLinear(nn.Module):
    """A linear layer whose weights are a spline in the treatment: W(s) = sum_b basis_b(s) W_b."""

    def __init__(self, in_dim: int, out_dim: int, num_basis: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(num_basis, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_basis, out_dim).uniform_(-bound, bound))

    def forward(self, h: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bi,kio,bk->bo", h, self.weight, basis) + basis @ self.bias


@dataclass
class VCNetParams(BaselineParams):
    spline_degree: int = 2
    spline_knots: list[float] = field(default_factory=lambda: [1 / 3, 2 / 3])
    density_grid: int = 10        # the conditional density of s = t / t_max on a grid of [0, 1]
    density_weight: float = 0.5   # alpha of VCNet's density-estimation loss

    def __post_init__(self):
        super().__post_init__()
        if self.spline_degree < 1 or self.density_grid < 1:
            raise ValueError("spline_degree and density_grid must be >= 1")


@register("vcnet", family="uplift")
class VCNet(UpliftBaseline):
    """Varying-coefficient network: a density head g(s | Phi) keeps the treatment information in
    Phi, and the prediction head's weights are splines in the normalized dose s = t / t_max
    (s = 0 is the untreated row)."""

    registry_name = "vcnet"
    tasks = ("coupon",)
    Params = VCNetParams

    def __init__(self, field_dims, params):
        super().__init__(field_dims, params)
        self.representation = MLP(self.embedding.output_dim, params.hidden_dims, dropout=params.dropout)
        dim = self.representation.output_dim
        self.density_head = nn.Linear(dim, params.density_grid + 1)
        num_basis = params.spline_degree + 1 + len(params.spline_knots)
        dims = [dim, *params.head_dims, 1]
        self.vc_layers = nn.ModuleList(VaryingCoefficientLinear(a, b, num_basis) for a, b in zip(dims[:-1], dims[1:]))

    def normalized_dose(self, t: torch.Tensor) -> torch.Tensor:
        return torch.clamp(t / self.params.t_max, 0.0, 1.0)

    def encode(self, x):
        return {"phi": self.representation(self.embedding.flat(x))}

    def outcome(self, rep, arm):
        p = self.params
        basis = truncated_power_basis(self.normalized_dose(arm), p.spline_degree, p.spline_knots)
        h = rep["phi"]
        for i, layer in enumerate(self.vc_layers):
            h = layer(h, basis)
            if i < len(self.vc_layers) - 1:
                h = torch.relu(h)
        return h

    def auxiliary_outputs(self, batch, rep):
        return {"density_logits": self.density_head(rep["phi"])}

    def auxiliary_losses(self, batch, out):
        grid = self.params.density_grid
        probs = torch.softmax(out["density_logits"], dim=-1)
        position = self.normalized_dose(batch["intensity"].float()) * grid
        lower = position.floor().long().clamp(max=grid - 1)
        frac = position - lower
        mass = probs.gather(1, lower[:, None]).squeeze(1) * (1 - frac) + \
            probs.gather(1, (lower + 1)[:, None]).squeeze(1) * frac
        density = mass * grid  # linear interpolation of grid masses, as a density on [0, 1]
        return {"density_nll": (-torch.log(density + 1e-8).mean(), self.params.density_weight)}


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


@register("descn", family="uplift")
class DESCN(UpliftBaseline):
    """Shared representation with propensity, treated / control response and pseudo-effect heads,
    trained over the entire space. Coupon-only: its losses are products of probabilities.
    Untreated rows have no face value; the treated pathway reads them at ``unit_intensity``."""

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
        dose = torch.where(t > 0, t, torch.full_like(t, self.params.unit_intensity))
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


# --------------------------------------------------------------------------------------------
# EFIN and M3TN (both tasks).
# --------------------------------------------------------------------------------------------

@dataclass
class EFINParams(BaselineParams):
    # intervention constraint (adversarial treatment classifier on the predicted uplifts); kept
    # small because it pulls on the uplift read at unit_intensity itself
    constraint_weight: float = 0.01


@register("efin", family="uplift")
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
            effects = self.uplift(rep, self.full_arm(x, self.params.unit_intensity))
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


@register("m3tn", family="uplift")
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
