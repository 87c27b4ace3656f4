"""Naive CVR and ESMM (ESCM² V-A baselines): the CVR arm trained on clicks only, or only through
CTCVR = CTR x CVR over all exposures."""
from __future__ import annotations

from dataclasses import dataclass

from liftlake.models.base import LossOutput
from liftlake.models.cvr_base import (
    CvrModel,
    CvrParams,
    ctcvr_risk,
    ctr_risk,
    naive_cvr_risk,
)
from liftlake.models.registry import register


@dataclass
class NaiveParams(CvrParams):
    pass


@register("naive")
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


@register("esmm")
class ESMM(CvrModel):
    """CTR and CTCVR over all exposures; the CVR arm learns only through CTCVR = CTR x CVR (eq. 4)."""

    Params = EsmmParams

    def compute_loss(self, batch, out) -> LossOutput:
        self.check_labels(batch)
        click, conversion = batch["click"], batch["conversion"]
        parts = {"ctr": ctr_risk(out["ctr"], click),
                 "ctcvr": ctcvr_risk(out["ctcvr"], click, conversion)}
        return LossOutput(parts["ctr"] + parts["ctcvr"], parts)
