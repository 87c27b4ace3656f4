"""The simulator's settings (``simulator.*``): presets (UniMVT Table 1 worlds), scale, confounding, selection
bias and rule breakers, validated on construction. Pure Python: loading a config never imports Spark."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

PRESETS = ("default", "syn1", "syn2", "syn3", "multi_treatment")


BAD_EXPOSURE_KINDS = ("null_user_id", "duplicate_exposure_id", "click_without_exposure",
                      "conversion_without_click", "conversion_before_click")


BAD_USER_KINDS = ("bad_coupon_value", "treatment_id_out_of_range", "bad_response")


DEVICES = ("android", "ios", "web")


NUM_CITIES = 20


NUM_CATEGORIES = 20


BRANDS_PER_CATEGORY = 10


@dataclass(frozen=True)
class _Preset:
    coupon_grid: tuple[float, ...]
    coupon_ratio: float
    coupon_value_jitter: float
    p0_intercept: float           # calibrated so that mean coupon_outcome hits the target below
    target_outcome: float         # UniMVT Table 1 "Avg. CTR"
    mean_uplift: float            # E[eta * t | treated], roughly
    strategy_target: float        # A_rk on the targeted response
    strategy_side: float          # -A_rk on the others
    strategy_spread: float        # B
    strategy_confounding: float   # multiplies SimulatorConfig.treatment_confounding
    # What a unit of coupon face value costs in this world (score.coupon_cost_per_unit of the report's
    # decisions): about the median unit uplift, so that coupons pay for about half the users and
    # the best single action for everybody is worth about half the oracle's value. Measured on one
    # day at 40,000 exposures and 20,000 users (best constant / oracle, share of users worth a
    # coupon): syn1 0.50 / 0.51, syn2 0.56 / 0.53, syn3 0.53 / 0.52; at the score default of 0.01
    # those were 0.98, 1.00 and 0.99 (everybody gets the largest coupon). The multi-treatment
    # world's switches need no such setting: switching a strategy on for everybody is worth 0.12
    # (k1) and 0 (k2) of the oracle's value there.
    coupon_cost: float = 0.01


_PRESET = {
    "default": _Preset((1.0, 2.0, 3.0, 5.0, 8.0, 10.0), 0.35, 0.0, -1.62, 0.20, 0.06, 0.10, 0.04, 0.12, 1.0),
    "syn1": _Preset((2.5,), 0.3478, 0.2, -1.56, 0.208, 0.06, 0.10, 0.04, 0.12, 1.0, coupon_cost=0.020),
    "syn2": _Preset((1.5,), 0.3517, 0.2, -1.73, 0.183, 0.06, 0.10, 0.04, 0.12, 1.0, coupon_cost=0.0325),
    "syn3": _Preset((1.0, 1.6, 2.4, 4.0), 0.3523, 0.08, -1.55, 0.209, 0.06, 0.10, 0.04, 0.12, 1.0,
                    coupon_cost=0.022),
    "multi_treatment": _Preset((1.0, 2.0, 3.0, 5.0, 8.0, 10.0), 0.35, 0.0, -1.62, 0.20, 0.06,
                               0.18, 0.10, 0.22, 1.5),
}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class SimulatorConfig:
    exposures: int = 200_000          # exposures per day
    users: int = 0                    # 0 -> max(1000, exposures // 20)
    items: int = 2_000
    preset: str = "default"           # default | syn1 | syn2 | syn3 | multi_treatment
    seed: int = 7
    # Coupon face values; None -> the preset's grid (default 1, 2, 3, 5, 8, 10; syn3 1.0, 1.6, 2.4, 4.0).
    coupon_grid: Optional[list[float]] = None
    coupon_ratio: Optional[float] = None          # share of users given a coupon; None -> preset
    coupon_value_jitter: Optional[float] = None   # log-sd of values around the grid; None -> preset
    coupon_rct_share: float = 0.1     # randomized slice of the coupon assignment
    coupon_confounding: float = 1.0   # strength of x -> (treated, value); 0: random everywhere
    treatment_rct_share: float = 0.2  # RCT slice of the K-strategy assignment
    treatment_confounding: float = 1.0
    selection_bias: float = 0.8       # weight of the conversion affinity in the click logit; 0: none
    bad_row_rate: float = 0.0         # > 0 injects rule-breaking rows (module docstring lists the kinds)

    def __post_init__(self) -> None:
        def fail(name: str, rule: str) -> None:
            raise ValueError(f"simulator.{name} {rule} (got {getattr(self, name)!r})")

        if not _is_int(self.exposures) or self.exposures < 1:
            fail("exposures", "must be an integer >= 1")
        if not _is_int(self.users) or self.users < 0 or self.users > 2**31 - 1:
            fail("users", "must be an integer in [0, 2^31 - 1] (0: max(1000, exposures // 20))")
        if not _is_int(self.items) or self.items < 1 or self.items > 2**31 - 1:
            fail("items", "must be an integer in [1, 2^31 - 1] (and >= data.num_responses)")
        if self.preset not in PRESETS:
            fail("preset", f"must be one of {' | '.join(PRESETS)}")
        if not _is_int(self.seed):
            fail("seed", "must be an integer")
        if self.coupon_grid is not None:
            if (not isinstance(self.coupon_grid, (list, tuple)) or not self.coupon_grid
                    or len(self.coupon_grid) > 32 or not all(_is_num(v) and v > 0 for v in self.coupon_grid)):
                fail("coupon_grid", "must be a non-empty list of at most 32 finite values > 0")
            self.coupon_grid = [float(v) for v in self.coupon_grid]
        if self.coupon_ratio is not None and (not _is_num(self.coupon_ratio) or not 0 < self.coupon_ratio < 1):
            fail("coupon_ratio", "must be in (0, 1)")
        if self.coupon_value_jitter is not None and (not _is_num(self.coupon_value_jitter)
                                                     or not 0 <= self.coupon_value_jitter <= 1):
            fail("coupon_value_jitter", "must be in [0, 1]")
        for name in ("coupon_rct_share", "treatment_rct_share"):
            v = getattr(self, name)
            if not _is_num(v) or not 0 <= v <= 1:
                fail(name, "must be in [0, 1]")
        for name in ("coupon_confounding", "treatment_confounding", "selection_bias"):
            v = getattr(self, name)
            if not _is_num(v) or not 0 <= v <= 5:
                fail(name, "must be in [0, 5]")
        if not _is_num(self.bad_row_rate) or not 0 <= self.bad_row_rate <= 0.5:
            fail("bad_row_rate", "must be in [0, 0.5]")

    # -- the values in effect (explicit settings win over the preset) ----------------------------
    @property
    def num_users(self) -> int:
        return self.users or max(1000, self.exposures // 20)

    @property
    def grid(self) -> list[float]:
        return list(self.coupon_grid) if self.coupon_grid is not None else list(_PRESET[self.preset].coupon_grid)

    @property
    def coupon_cost_per_unit(self) -> float:
        return _PRESET[self.preset].coupon_cost

    @property
    def treated_share(self) -> float:
        return self.coupon_ratio if self.coupon_ratio is not None else _PRESET[self.preset].coupon_ratio

    @property
    def value_jitter(self) -> float:
        return (self.coupon_value_jitter if self.coupon_value_jitter is not None
                else _PRESET[self.preset].coupon_value_jitter)
