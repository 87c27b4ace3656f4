"""HMUM: offline Hybrid Uplift Modeling (HUM) + online Dynamic Decision-Making (DDM).

Paper (shared/seeds 001): HUM 4.1 (eq. 1-5), DDM 4.2 (eq. 6-11), hyper-parameters A.1. The data:
one row per user-day with ``treatment_id`` k in {0 = control, 1..K}, R continuous responses, and
DDM's labels ``value_shares`` o_r = V_r / V (eq. 9).

One registered module holds both parts, trained jointly: HUM's loss (eq. 5) plus DDM's value-weight
loss. They share no parameter (DDM has its own embedding table), so the joint step is two
independent fits in one pass, and ``predict`` returns the whole decision (delta, w, phi, decision).
``hum_no_kl`` is the same module without the KL term of eq. 5 (the paper's "HUM w/o KL").

The KL of eq. 5 is between the branches' z^{0,k'}_r, "the output of the corresponding gate": the
gated mixture sum_m g(m) p_m^{k'} that branch k''s tower reads for response r on the control input
(4.1.2; 3.1 and 4.1.3 say the KL constrains "the representations induced by non-treatment across
branches"). Each z is made a distribution over its D units by a softmax, and compared with the
branches' mean of those distributions. (An earlier version compared the gate weights g over the M
experts: every branch has its own experts, so expert m of one branch and expert m of another have
nothing in common; the weights aligned, and the branches' control representations stayed as far
apart as without the KL.)

Scale. Eq. 5 adds squared errors and a KL divergence (at most log D) with weight 1, which balances
only for responses of order 1. The platform's are minutes and counts (tens): their raw squared
errors are ~10^3 and left the KL at ~10^-4 of the loss, and a tower starting at 0 spent its steps
reaching the responses' level instead of their differences. So (1) each squared error of eq. 5 is
taken in units of its response's batch mean, which makes the R responses weigh alike and the KL
commensurate with them, and (2) the towers h^k of eq. 4 predict the log of the (non-negative)
response, y-hat = exp(h^k(.)): the level is a shift of h, and a treatment's multiplicative effect,
the relative uplift delta of eq. 7, is a difference of two logs. (3) That log is taken relative to
the response's level: y-hat = level_r * exp(h^k(.)), level_r the mean of response r over the
training batches seen (a buffer, updated by ``compute_loss`` on each training step as BatchNorm
keeps its statistics, saved with the weights). Without it the towers started at exp(0) = 1 against
responses of ~30-55 and, at the paper's lr 1e-3, climbed to them for 5 of the report's 24 epochs
(~65 of its 312 steps at batch 4096; validation relative MSE 3.0 -> 0.84): the model left that
climb under-trained, with the validation error still falling at the last epoch, and where each
seed ended up depended on how the climb went. Measured on the report's multi-treatment world
(60,000 users, seeds 1-2, A.1's settings, 312 steps), Spearman with the true tau r1 t1 / r1 t2 /
r2 t1 / r2 t2: HMUM 0.63 / 0.80 / 0.54 / 0.46 (std over the two seeds 0.09-0.17) -> 0.76 / 0.87 /
0.66 / 0.56 (std 0.004-0.017); true AUUC 0.72 / 0.85 / 0.61 / 0.59 -> 0.80 / 0.89 / 0.72 / 0.68;
CausalML's LightGBM S-learner on the same rows: 0.74 / 0.87 / 0.67 / 0.77, true AUUC 0.79 / 0.89 /
0.72 / 0.83. What r2 t2 still lacks is steps: trained to 1,000 steps without early stopping it
reaches 0.75 (true AUUC 0.82). A version saved before the level existed loads with level 1, as it
was trained.

Read-out (3.1, eq. 6-7): y0* = mean_k' y-hat^{0,k'}, tau^k_r = y-hat^k_r - y0*_r, delta^k_r =
y-hat^k_r / y0*_r - 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from liftlake.models.base import LiftlakeModel, LossOutput, in_eval_mode
from liftlake.models.layers import MLP, FieldEmbedding, MMoE
from liftlake.models.registry import register
from liftlake.models.uplift_base import check_multi_treatment_batch

# --------------------------------------------------------------------------------------------
# Pure pieces (tested on their own).
# --------------------------------------------------------------------------------------------

def hum_masked_mse(responses: torch.Tensor, treatment_id: torch.Tensor, y_treat: torch.Tensor,
                   y_control: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The squared errors of eq. 5, summed over responses r and averaged over all N rows.

    responses [B, R]; treatment_id [B]; y_treat[:, k-1, r] = y-hat^k_r (branch k, treatment input);
    y_control[:, k-1, r] = y-hat^{0,k}_r (branch k, control input). A treated row (id k) trains only
    branch k's treated output; a control row trains every branch's control output; every other
    tower is masked out. Returns (treated part, control part).
    """
    n, num_branches = responses.shape[0], y_treat.shape[1]
    tid = treatment_id.long()
    y = responses.float()[:, None, :]                                            # [B, 1, R]
    arms = torch.arange(1, num_branches + 1, device=tid.device)
    treated_mask = (tid[:, None] == arms[None, :]).float()[:, :, None]          # [B, K, 1]
    control_mask = (tid == 0).float()[:, None, None]
    treated = (((y - y_treat) ** 2) * treated_mask).sum() / n
    control = (((y - y_control) ** 2) * control_mask).expand_as(y_control).sum() / n
    return treated, control


def response_units(responses: torch.Tensor) -> torch.Tensor:
    """[R] scale of each response in a batch: its mean (1 where the batch's responses are all 0).
    Eq. 5's squared errors are divided by its square (see the module docstring)."""
    mean = responses.float().mean(dim=0)
    return torch.where(mean > 0, mean, torch.ones_like(mean))


def control_representation_kl(control_repr: torch.Tensor, treatment_id: torch.Tensor) -> torch.Tensor:
    """Eq. 5's constraint: on control rows, sum over branches k' and responses r of
    KL(z^{0,k'}_r || mean_k' z^{0,k'}_r), averaged over all N rows.

    control_repr [B, K, R, D]: z^{0,k'}_r, branch k''s gate output for response r on the control
    input (the gated mixture of its experts that its tower reads, eq. 4), each made a distribution
    over its D units by a softmax.
    """
    z = torch.softmax(control_repr.float(), dim=-1)
    mean = z.mean(dim=1, keepdim=True)
    kl = (z * (z.clamp_min(1e-12).log() - mean.clamp_min(1e-12).log())).sum(dim=-1)   # [B, K, R]
    control = (treatment_id.long() == 0).float()
    return (kl.sum(dim=(1, 2)) * control).sum() / control_repr.shape[0]


def value_weight_loss(shares_hat: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """DDM's value-weight loss (4.2.2): squared error of o-hat_r against o_r = V_r / V (eq. 9),
    summed over responses, averaged over rows."""
    return ((shares_hat - shares.float()) ** 2).sum(dim=1).mean()


def value_weights(shares_hat: torch.Tensor) -> torch.Tensor:
    """Eq. 10: w_r = o-hat_r / sum_r o-hat_r."""
    return shares_hat / shares_hat.sum(dim=1, keepdim=True).clamp_min(1e-12)


def decision_scores(y_treat: torch.Tensor, y_control: torch.Tensor, weights: torch.Tensor,
                    sigma: float, baseline_floor: float) -> dict[str, torch.Tensor]:
    """DDM 4.2.1 and 4.2.3 from HUM's outputs.

    y0* = mean over branches of y-hat^{0,k} (eq. 6: it lies between their min and max);
    delta_r^k = y-hat^k_r / y0*_r - 1 (eq. 7; y0* floored at ``baseline_floor`` so a response
    predicted at zero does not divide by zero); phi^k = sum_r w_r delta_r^k (eq. 11);
    decision^k = 1[phi^k > sigma]. Shapes: y_treat / y_control [B, K, R], weights [B, R].
    """
    y0 = y_control.mean(dim=1)                                                   # [B, R]
    delta = y_treat / y0.clamp_min(baseline_floor)[:, None, :] - 1.0             # [B, K, R]
    phi = (weights[:, None, :] * delta).sum(dim=-1)                              # [B, K]
    return {"y0": y0, "tau": y_treat - y0[:, None, :], "delta": delta, "phi": phi,
            "decision": (phi > sigma).float()}


# --------------------------------------------------------------------------------------------
# The network.
# --------------------------------------------------------------------------------------------

@dataclass
class HMUMParams:
    num_treatments: int = 2            # K
    num_responses: int = 2             # R
    embed_dim: int = 32                # d (A.1)
    num_experts: int = 4               # M experts per branch
    expert_dims: list[int] = field(default_factory=lambda: [64, 32])
    tower_dims: list[int] = field(default_factory=lambda: [32])
    kl_weight: float = 1.0             # eq. 5 adds the KL with weight 1
    dropout: float = 0.0
    ddm_embed_dim: int = 32            # d_s
    ddm_num_experts: int = 4
    ddm_expert_dims: list[int] = field(default_factory=lambda: [64, 32])
    ddm_tower_dims: list[int] = field(default_factory=lambda: [16])
    ddm_loss_weight: float = 1.0
    sigma: float = 0.0                 # decision threshold (A.1 default 0)
    baseline_floor: float = 1e-3       # eq. 7 denominator floor

    def __post_init__(self):
        if self.num_treatments < 1 or self.num_responses < 1:
            raise ValueError("num_treatments and num_responses must be >= 1")
        if self.num_experts < 1 or self.ddm_num_experts < 1:
            raise ValueError("num_experts and ddm_num_experts must be >= 1")
        if not self.expert_dims or not self.ddm_expert_dims:
            raise ValueError("expert_dims and ddm_expert_dims must be non-empty")
        if self.kl_weight < 0 or self.ddm_loss_weight < 0 or self.baseline_floor <= 0:
            raise ValueError("kl_weight and ddm_loss_weight must be >= 0, baseline_floor > 0")


class HUMBranch(nn.Module):
    """Branch k: treatment-guided feature selection (eq. 2-3), M experts with one gate and one
    tower per response (eq. 4), the tower predicting the log response. The same parameters serve
    the treated input (e_t of k) and the control input (e_t of 0)."""

    def __init__(self, num_fields: int, embed_dim: int, params: HMUMParams):
        super().__init__()
        self.selector = nn.Linear(embed_dim, num_fields)                  # W^k, b^k of eq. 2
        self.mmoe = MMoE(2 * embed_dim, params.num_experts, params.expert_dims, params.num_responses,
                         params.dropout)
        self.towers = nn.ModuleList(MLP(self.mmoe.output_dim, params.tower_dims, 1, params.dropout)
                                    for _ in range(params.num_responses))  # h^k per response

    def forward(self, e_x: torch.Tensor, e_t: torch.Tensor,
                level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """e_x [B, F, d], e_t [B, d], level [R] -> (predictions [B, R], gate outputs z [B, R, D])."""
        selection = torch.softmax(self.selector(e_t), dim=-1)             # eq. 2: w^k over fields
        e_xk = (selection[:, :, None] * e_x).sum(dim=1)                   # eq. 2: e_x^k
        f = torch.cat([e_xk, e_t], dim=-1)                                # eq. 3
        mixtures = self.mmoe(f)                                           # eq. 4: z = sum_m g(m) p_m
        log_preds = torch.cat([tower(m) for tower, m in zip(self.towers, mixtures)], dim=-1)
        return level * torch.exp(log_preds), torch.stack(mixtures, dim=1)


@register("hmum")
@register("hum_no_kl", use_kl=False)
class HMUM(LiftlakeModel):
    """HUM (K branches x R responses) + DDM (value weights) in one module."""

    family = "uplift"
    task = "multi_treatment"   # which rows and batch keys the trainer feeds it
    batch_keys = ("x", "treatment_id", "responses", "value_shares")
    binary_keys = ()
    Params = HMUMParams

    def __init__(self, field_dims, params: HMUMParams, use_kl: bool = True):
        super().__init__(field_dims, params)
        p = params
        self.use_kl = use_kl
        self.embedding = FieldEmbedding(field_dims, p.embed_dim)          # E_x of eq. 1
        self.treatment_embedding = nn.Embedding(p.num_treatments + 1, p.embed_dim)  # E_t of eq. 1
        self.branches = nn.ModuleList(HUMBranch(len(self.field_dims), p.embed_dim, p)
                                      for _ in range(p.num_treatments))
        # The towers' level: the mean of each response over the training steps' batches (a running
        # statistic, updated by compute_loss on a training step and used from the next forward on;
        # see the module docstring).
        self.response_level: torch.Tensor
        self.level_batches: torch.Tensor
        self.register_buffer("response_level", torch.ones(p.num_responses))
        self.register_buffer("level_batches", torch.zeros((), dtype=torch.long))
        # DDM (4.2.2): its own embedding of the pooled features, MMoE, one tower per response.
        self.ddm_embedding = FieldEmbedding(field_dims, p.ddm_embed_dim)
        self.ddm_mmoe = MMoE(self.ddm_embedding.output_dim, p.ddm_num_experts, p.ddm_expert_dims,
                             p.num_responses, p.dropout)
        self.ddm_towers = nn.ModuleList(MLP(self.ddm_mmoe.output_dim, p.ddm_tower_dims, 1, p.dropout)
                                        for _ in range(p.num_responses))

    @torch.no_grad()
    def track_level(self, responses: torch.Tensor) -> None:
        """Running mean of each response over the training batches (a batch's mean where it is > 0)."""
        seen = self.level_batches.item()
        batch_mean = response_units(responses)
        if seen == 0:
            self.response_level.copy_(batch_mean)
        else:
            self.response_level.add_((batch_mean - self.response_level) / (seen + 1))
        self.level_batches.add_(1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a version saved before the level existed predicts exp(h) as it was trained to: level 1
        for name, value in (("response_level", torch.ones_like(self.response_level)),
                            ("level_batches", torch.ones_like(self.level_batches))):
            state_dict.setdefault(prefix + name, value)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def hum(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        e_x = self.embedding(x)
        level = self.response_level.clone()  # a training step updates the buffer after this forward
        n = x.shape[0]
        control_t = self.treatment_embedding(torch.zeros(n, dtype=torch.long, device=x.device))
        y_treat, y_control, control_repr = [], [], []
        for k, branch in enumerate(self.branches, start=1):
            treat_t = self.treatment_embedding(torch.full((n,), k, dtype=torch.long, device=x.device))
            pred_k, _ = branch(e_x, treat_t, level)
            pred_0k, z_0k = branch(e_x, control_t, level)
            y_treat.append(pred_k)
            y_control.append(pred_0k)
            control_repr.append(z_0k)
        return {"y_treat": torch.stack(y_treat, dim=1),                   # [B, K, R]
                "y_control": torch.stack(y_control, dim=1),               # [B, K, R]
                "control_repr": torch.stack(control_repr, dim=1)}         # [B, K, R, D]

    def ddm(self, x: torch.Tensor) -> torch.Tensor:
        """o-hat_r in (0, 1) per response. Eq. 8 average-pools each field over the request's
        candidates; a row here carries one value per field, so the pool is that embedding."""
        mixtures = self.ddm_mmoe(self.ddm_embedding.flat(x))
        return torch.sigmoid(torch.cat([tower(m) for tower, m in zip(self.ddm_towers, mixtures)], dim=-1))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self.hum(batch["x"])
        out["shares_hat"] = self.ddm(batch["x"])
        return out

    def check_batch(self, batch):
        super().check_batch(batch)
        check_multi_treatment_batch(batch, self.params.num_treatments, self.params.num_responses,
                                    with_value_shares=True)

    def compute_loss(self, batch: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> LossOutput:
        self.check_batch(batch)
        if self.training and torch.is_grad_enabled():   # a training step: the level follows its targets
            self.track_level(batch["responses"])
        p = self.params
        units = response_units(batch["responses"])
        mse_treated, mse_control = hum_masked_mse(batch["responses"] / units, batch["treatment_id"],
                                                  out["y_treat"] / units, out["y_control"] / units)
        kl = control_representation_kl(out["control_repr"], batch["treatment_id"])
        ddm = value_weight_loss(out["shares_hat"], batch["value_shares"])
        total = mse_treated + mse_control + p.ddm_loss_weight * ddm
        if self.use_kl:
            total = total + p.kl_weight * kl
        return LossOutput(total, {"mse_treated": mse_treated, "mse_control": mse_control,
                                  "kl": kl, "value_weight": ddm})

    @in_eval_mode
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = batch["x"]
        hum = self.hum(x)
        weights = value_weights(self.ddm(x))
        scores = decision_scores(hum["y_treat"], hum["y_control"], weights, self.params.sigma,
                                 self.params.baseline_floor)
        result: dict[str, torch.Tensor] = {}
        for r in range(self.params.num_responses):
            result[f"y0_r{r + 1}"] = scores["y0"][:, r]
            result[f"w_r{r + 1}"] = weights[:, r]
            for k in range(1, self.params.num_treatments + 1):
                result[f"tau_r{r + 1}_k{k}"] = scores["tau"][:, k - 1, r]
                result[f"delta_r{r + 1}_k{k}"] = scores["delta"][:, k - 1, r]
        for k in range(1, self.params.num_treatments + 1):
            result[f"phi_k{k}"] = scores["phi"][:, k - 1]
            result[f"decision_k{k}"] = scores["decision"][:, k - 1]
        return result
