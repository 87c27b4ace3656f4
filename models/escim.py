"""ESCIM's CVR models (ESCIM III-C, eq. 16-18): ESMM towers trained with CTR + CTCVR + alpha_F *
factual IPS CVR risk + alpha_CF * counterfactual CVR risk on N*, the non-clicked rows with the
counterfactual labels of the labeler (models/escim_labeler.py, run by the escim-labels job):
``escim_max`` learns from the max transform's labels (Alg. 2), ``escim_ratio`` from the ratio
transform's (Alg. 3).
"""
from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class EscimParams(CvrParams):
    embed_dim: int = 5  # IV-A4, Ali-CCP
    hidden_dims: tuple[int, ...] = (512, 256, 128)  # appendix, MLP backbone on Ali-CCP
    dropout: float = 0.1
    alpha_f: float = 0.1  # factual CVR weight, as ESCM²'s lambda_c
    alpha_cf: float = 1e-4  # counterfactual CVR weight
    propensity_clip: float = 0.05
    # None: the variant's transform (max, Alg. 2 / ratio, Alg. 3). A share in (0, 1): label 1 for
    # that share of the window's non-clicked rows with the highest pcvr_cf instead -- the fixed
    # cut-offs Fig. 3 sweeps to see where max and ratio sit.
    label_rate: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.alpha_f >= 0 and self.alpha_cf >= 0, "alpha_f and alpha_cf must be >= 0")
        _check_clip(self.propensity_clip)
        _require(self.label_rate is None or 0.0 < self.label_rate < 1.0, "label_rate must be null or in (0, 1)")


class ESCIM(CvrModel):
    """ESMM towers trained over C, N and the generated N* (eq. 16):
    L_CTR + L_CTCVR + alpha_F * L_CVR-F + alpha_CF * L_CVR-CF.

    L_CVR-F (eq. 17) is ESCM²'s IPS risk, 1/|D| sum_D c * e(v^, v) / c^, so that alpha_CF = 0 gives
    ESCM²-IPS as III-C states. L_CVR-CF (eq. 18) is the same over the non-clicked rows with the
    counterfactual label: 1/|D| sum_D (1 - c) * e(v^, v*) / c^ -- weighted by 1/c^ as printed.
    The trainer feeds the labeler's ``cf_label_column`` (or, with ``label_rate``, the top share of
    pcvr_cf) as batch key ``cf_label``.
    """

    Params = EscimParams
    batch_keys = ("x", "click", "conversion", "cf_label")
    binary_keys = ("click", "conversion", "cf_label")
    cf_label_column = ""

    def compute_loss(self, batch, out) -> LossOutput:
        self.check_labels(batch)
        p = self.params
        click, conversion, cf_label = batch["click"], batch["conversion"], batch["cf_label"]
        q = propensity(out["ctr"], p.propensity_clip)
        parts = {
            "ctr": ctr_risk(out["ctr"], click),
            "ctcvr": ctcvr_risk(out["ctcvr"], click, conversion),
            "cvr_factual": ips_risk(out["cvr"], click, conversion, q),  # eq. 17
            "cvr_counterfactual": ((1.0 - click) * log_loss(out["cvr"], cf_label) / q).mean(),  # eq. 18
        }
        total = (parts["ctr"] + parts["ctcvr"] + p.alpha_f * parts["cvr_factual"]
                 + p.alpha_cf * parts["cvr_counterfactual"])  # eq. 16
        return LossOutput(total, parts)


@register("escim_max")
class EscimMax(ESCIM):
    """ESCIM-max: counterfactual labels from the max transform (Alg. 2)."""

    cf_label_column = "label_max"


@register("escim_ratio")
class EscimRatio(ESCIM):
    """ESCIM-ratio: counterfactual labels from the ratio transform (Alg. 3)."""

    cf_label_column = "label_ratio"
