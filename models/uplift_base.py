"""The uplift baselines' shared frame (S-Learner, T-Learner, TARNet, CFRNet, DESCN, DRNet, VCNet,
EFIN, M3TN live by kind in ``meta_learners``, ``representation``, ``dose_response``,
``interaction``).

Two tasks, chosen by the ``task`` parameter of every baseline:

* ``coupon`` (UniMVT's setting): binary outcome, a coupon of face value ``t > 0`` on treated rows
  and ``t = 0`` on untreated ones. Binary-treatment learners are extended as UniMVT 5.1.2 does:
  the intensity is one more input of the treated pathway, and the unit uplift is the slope read at
  a face value t_read: eta(x) = (p(x, t_read) - p(x, 0)) / t_read, negative where the learner predicts
  that a coupon hurts (the score job issues none there; clipping at 0 would tie all those users).
  t_read is the face value of the treated training rows nearest their mean (``unit_intensity`` when
  set; ``read_intensity``). UniMVT 5.1.2 reads at t = 1, but a world whose coupons are all about 2.5
  (Syn-1) never shows the treated pathway a 1, and the slope read there is an extrapolation, not the
  effect: the T-Learner's unit uplift was biased +0.10 for a true mean of 0.013 there (sqrt-PEHE
  0.111 against 0.048 for scikit-uplift's TwoModels on the same rows, read at the mean face value).
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

from liftlake.models.base import BadBatchError, LiftlakeModel, LossOutput, in_eval_mode
from liftlake.models.layers import MLP, FieldEmbedding
from liftlake.models.registry import ModelConfigError

TASKS = ("coupon", "multi_treatment")
COUPON_KEYS = ("x", "treated", "intensity", "outcome")
MULTI_TREATMENT_KEYS = ("x", "treatment_id", "responses")
FACE_VALUE_BINS = 32  # histogram of the treated face values over [t_min, t_max] (read_intensity)


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
    # the face value the unit uplift is read at; None: the mean face value of the treated training rows
    unit_intensity: float | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.num_treatments < 1 or self.num_responses < 1:
            raise ValueError("num_treatments and num_responses must be >= 1")
        if not 0 < self.t_min < self.t_max:
            raise ValueError(f"need 0 < t_min < t_max, got {self.t_min}, {self.t_max}")
        if self.unit_intensity is not None and not (
                isinstance(self.unit_intensity, (int, float)) and 0 < self.unit_intensity < math.inf):
            raise ValueError("unit_intensity must be > 0 (or null: the mean face value of the treated rows)")
        if self.embed_dim < 1 or not self.hidden_dims:
            raise ValueError("embed_dim must be >= 1 and hidden_dims non-empty")


class UpliftBaseline(LiftlakeModel):
    """An uplift learner over one of the two tasks.

    An *arm* is what the outcome is conditioned on: the coupon face value (float, 0 = no coupon)
    in the coupon task, the treatment id (long, 0 = control) in the multi-treatment task.
    Outcomes are logits [B, 1] (coupon) or response predictions [B, R] (multi-treatment); a coupon
    learner whose outcome is the probability itself overrides ``coupon_probability`` and
    ``coupon_outcome_loss`` (VCNet's identity link).
    """

    family = "uplift"
    tasks: tuple[str, ...] = TASKS
    registry_name = ""
    treated_face_values: torch.Tensor  # a buffer (register_buffer in __init__)

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
        # (count, sum) of the treated training rows' face values per bin: read_intensity's default
        self.register_buffer("treated_face_values", torch.zeros(FACE_VALUE_BINS, 2, dtype=torch.float64))

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

    # --- the face value the unit uplift is read at ----------------------------------------------
    def read_intensity(self) -> float:
        """``unit_intensity`` if set, else a face value the treated training rows had, the one nearest
        their mean: the mean of the histogram bin (``FACE_VALUE_BINS`` over [t_min, t_max]) closest
        to the overall mean. The mean itself can fall between the values a world uses (coupons of 1
        and 4 only), where a pathway with a head per dose range (DRNet) never trained; 1.0 for a model
        that saw none (one saved before the face values were counted)."""
        if self.params.unit_intensity is not None:
            return float(self.params.unit_intensity)
        count, total = self.treated_face_values[:, 0], self.treated_face_values[:, 1]
        seen = count > 0
        if not seen.any():
            return 1.0
        mean = total.sum() / count.sum()
        bin_means = torch.where(seen, total / count.clamp_min(1.0), torch.full_like(total, math.inf))
        return float(bin_means[torch.argmin((bin_means - mean).abs())])

    def _count_face_values(self, batch: dict[str, torch.Tensor]) -> None:
        p = self.params
        given = batch["intensity"][batch["treated"] == 1].double()
        position = ((given - p.t_min) / (p.t_max - p.t_min) * FACE_VALUE_BINS).floor()
        index = position.long().clamp(0, FACE_VALUE_BINS - 1)
        counts = torch.zeros(FACE_VALUE_BINS, dtype=torch.float64, device=given.device)
        self.treated_face_values[:, 0] += counts.index_add(0, index, torch.ones_like(given))
        self.treated_face_values[:, 1] += counts.index_add(0, index, given)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before the face values were counted read at 1.0, as they did
        state_dict.setdefault(prefix + "treated_face_values", torch.zeros(FACE_VALUE_BINS, 2, dtype=torch.float64))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

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
        if self.is_coupon and self.training:
            self._count_face_values(batch)
        rep = self.encode(batch["x"])
        out = {"outcome": self.outcome(rep, self.observed_arm(batch))}
        out.update(self.auxiliary_outputs(batch, rep))
        return out

    def coupon_probability(self, outcome: torch.Tensor) -> torch.Tensor:
        """The outcome probability of a coupon arm's outcome [B, 1] -> [B]."""
        return torch.sigmoid(outcome).squeeze(-1)

    def coupon_outcome_loss(self, outcome: torch.Tensor, y: torch.Tensor) -> dict[str, tuple[torch.Tensor, float]]:
        return {"outcome_bce": (F.binary_cross_entropy_with_logits(outcome.squeeze(-1), y), 1.0)}

    def factual_losses(self, batch, out) -> dict[str, tuple[torch.Tensor, float]]:
        if self.is_coupon:
            return self.coupon_outcome_loss(out["outcome"], batch["outcome"].float())
        mse = ((out["outcome"] - batch["responses"].float()) ** 2).sum(dim=1).mean()
        return {"response_mse": (mse, 1.0)}

    def compute_loss(self, batch, out) -> LossOutput:
        self.check_batch(batch)
        terms = {**self.factual_losses(batch, out), **self.auxiliary_losses(batch, out)}
        total = sum(weight * value for value, weight in terms.values())
        assert isinstance(total, torch.Tensor), "a baseline has at least its factual loss"
        return LossOutput(total, {name: value for name, (value, _) in terms.items()})

    # --- scoring ---------------------------------------------------------------------------
    @in_eval_mode
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch["x"]
        rep = self.encode(x)
        if self.is_coupon:
            unit = self.read_intensity()
            p0 = self.coupon_probability(self.outcome(rep, self.full_arm(x, 0.0)))
            p_unit = self.coupon_probability(self.outcome(rep, self.full_arm(x, unit)))
            # Signed: a predicted harm keeps its size, so those users still rank among themselves
            # (and the score job's decision needs a positive gain to issue anything).
            return {"p0": p0, "unit_uplift": (p_unit - p0) / unit}
        per_arm = [self.outcome(rep, self.full_arm(x, k)) for k in range(self.num_arms)]
        result = {}
        for r in range(self.out_dim):
            result[f"y0_r{r + 1}"] = per_arm[0][:, r]
            for k in range(1, self.num_arms):
                result[f"tau_r{r + 1}_k{k}"] = per_arm[k][:, r] - per_arm[0][:, r]
        return result

    @in_eval_mode
    def prob_at(self, batch: dict[str, torch.Tensor], values: torch.Tensor) -> torch.Tensor:
        """Outcome probability under each coupon value (0 = no coupon): [B, G]."""
        if not self.is_coupon:
            raise ModelConfigError("prob_at is defined for the coupon task only")
        x = batch["x"]
        rep = self.encode(x)
        cols = [self.coupon_probability(self.outcome(rep, self.full_arm(x, float(q))))
                for q in torch.as_tensor(values).flatten().tolist()]
        return torch.stack(cols, dim=1)
