"""liftlake's log simulator: one day of raw logs, with the ground truth that real logs never carry.

Everything is a Spark column expression (no driver-side loops, no Python UDFs), and every random number
is a hash: ``xxhash64(seed, domain, [ds,] id, salt)`` mapped to (0, 1), normals by Box-Muller on two such
uniforms. The same (seed, ds, config) therefore gives the same rows however Spark partitions the work.
Users and items are one population (their attributes hash seed + id only, never ds); a day's
behaviour (exposures, clicks, coupons, strategies, responses) also hashes ds.

The world
---------
Users carry hidden latents: activity ``z_act``, wealth ``z_wealth``, age ``z_age``, purchase intent
``z_buy``, price sensitivity ``z_price``, a taste vector and value weights over the R response types.
``raw.users`` shows noisy proxies of them (age, gender, city, activity, income, segment, tenure,
orders in the last 30 days); the latents stay out of raw. Items carry a category, a brand, a price, a
hidden quality, attractiveness and taste vector, and a content type r in 1..R.

Exposures -> clicks -> conversions (ESCM2 II / III, DCMT II). Each exposure draws a user (heavy
tailed activity), a content type from the user's value weights, an item of that type (popularity),
a position, device and time. Its conversion affinity ``a = logit CVR`` mixes purchase intent, item
quality, user-item taste match, price and an exposure-level hidden shock; ``cvr_do_click_true =
sigmoid(a)`` is the CVR under do(click=1), known for every exposure, and ``conversion_potential`` is
its Bernoulli draw. The click logit contains ``selection_bias * (a - mean)``: users click what they
would buy, so E_O[R] > E_D[R] (the assumption of ESCM2 Theorem 1), a CVR model trained on clicks
over-estimates CVR over the exposure space, and part of the shared cause (the shock) is unobserved
(missing not at random). Observed conversion = click AND conversion_potential.

Coupons (UniMVT section 3, eq. 1-4). Per user-day: base outcome probability ``p0(x)`` and unit
uplift ``eta(x) >= 0`` (price-sensitive, less active users respond more);
``coupon_outcome ~ Bernoulli(clip(p0 + eta * t, 0, 1))`` with t the face value (0 untreated).
Outside the randomized slice the assignment is confounded by OBSERVED features only (so
unconfoundedness holds given x): high-value users (activity, income) are treated more often
(probit, so the treated share stays at the preset's ratio) and get higher tiers of the value grid.
On the randomized slice (``coupon_rct_share``) treatment is a coin with the same ratio and the value
is uniform over the grid. The value mix is multi-modal: with exact grid values (jitter 0) alternate
grid points carry weight 1 and 0.35; with jitter every grid point is a mode and values scatter
log-normally around it (rounded to cents).

Strategies (HMUM 5.1.1, 4.1). K strategies, R continuous responses >= 0. Baseline ``y0_r(x)``;
strategy k changes response r by ``tau_rk(x) = y0_r(x) * delta_rk(x)``, ``delta_rk = A_rk +
B * tanh(g_rk(x))`` with A_rk > 0 for the response strategy k targets (r = (k-1) mod R + 1) and
A_rk < 0 for the others: a strategy raises its response and on average lowers the others, with
heterogeneous (and for some users sign-flipping) effects. Observed ``response_r = (y0_r + tau_rk) *
LogNormal(mean 1)``, so the truth is the exact conditional mean. Assignment: uniform over 0..K on the
RCT slice (``treatment_rct_share``), a softmax of observed features elsewhere. Value shares are eq. 9
labels: ``value_share_r = V_r / V`` with V the user's exposures that day and V_r those whose item is
of type r; exposures pick the type from the user's latent value weights, which the truth reports as
``value_weight_r*_true`` (the expectation of the shares).

Presets (UniMVT Table 1; 8,000 of 88,000 samples are RCT, hence ``coupon_rct_share`` 0.1)
--------------------------------------------------------------------------------------------
==================  =====================  ============  =========================  ======================
preset              values (modes)         coupon ratio  value distribution         mean coupon_outcome
==================  =====================  ============  =========================  ======================
``default``         1, 2, 3, 5, 8, 10      35 %          exact grid values,         about 0.20
                                                         modes at 1, 3 and 8
``syn1``            [2.5]                  34.78 %       unimodal, log-sd 0.2       about 0.208 (Table 1)
``syn2``            [1.5]                  35.17 %       unimodal, log-sd 0.2       about 0.183 (Table 1)
``syn3``            [1.0, 1.6, 2.4, 4.0]   35.23 %       multimodal, log-sd 0.08    about 0.209 (Table 1)
``multi_treatment`` as default             35 %          as default                 about 0.20; strategies
                                                                                    with larger, more
                                                                                    conflicting effects and
                                                                                    stronger confounding
==================  =====================  ============  =========================  ======================

Table 1's "Avg. CTR" is the mean binary outcome, here ``coupon_outcome``; its 8-dimensional
correlated X is the user's 8 observed attributes. ``coupon_grid`` / ``coupon_ratio`` /
``coupon_value_jitter`` left at None take the preset's value; set, they win.

Rule breakers (``bad_row_rate > 0``)
------------------------------------
That share of exposures (and, separately, of user-days) is chosen by hash; each chosen row becomes
one kind of rule breaker, the kinds equally likely. Each kind breaks exactly one rule (no cascades):
the chosen exposure's own click / conversion is suppressed where it would muddle the rule. Truth
tables keep describing the causal model and are not corrupted.

* ``null_user_id`` - raw.exposures row with user_id NULL (its click and conversion are dropped).
* ``duplicate_exposure_id`` - an extra, identical copy of a raw.exposures row (a re-sent log line).
* ``click_without_exposure`` - a raw.clicks row whose exposure_id ``<ds>-orphan-<n>`` does not exist
  (the real exposure stays, unclicked).
* ``conversion_without_click`` - a raw.conversions row for an exposure with no click.
* ``conversion_before_click`` - a click and a conversion whose ts lies between exposure and click.
* ``bad_coupon_value`` - raw.treatments row with coupon_treated = 1 and coupon_value -v, 0 or NaN.
* ``treatment_id_out_of_range`` - raw.treatments row with treatment_id = K + 1.
* ``bad_response`` - raw.responses row with response_1 NaN or negative.

Columns added to the contract (all tables keep ``ds`` last): raw.users ``u_tenure_days`` int,
``u_orders_30d`` int; sim.truth_user ``coupon_propensity_true`` (P(coupon_treated = 1 | x)),
``treatment_propensity_true`` (P(treatment_id = assigned | x)), ``exposures_true`` (V).
Use ``raw_schemas(K, R)`` for the response / truth columns when K or R differ from 2.

Not modelled: coupons do not change exposure-level clicks (the coupon outcome is a user-day
outcome); rates drift a little from the targets when ``selection_bias``, the grid or the ratio are
changed (intercepts are calibrated for the presets).

``python -m liftlake.lib.sim.simulator [N]`` prints the throughput of simulating N exposures (noop sink).
"""
from __future__ import annotations

import datetime as dt
import math
import random
import statistics
from dataclasses import dataclass
from typing import Optional

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

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


_PRESET = {
    "default": _Preset((1.0, 2.0, 3.0, 5.0, 8.0, 10.0), 0.35, 0.0, -1.62, 0.20, 0.06, 0.10, 0.04, 0.12, 1.0),
    "syn1": _Preset((2.5,), 0.3478, 0.2, -1.56, 0.208, 0.06, 0.10, 0.04, 0.12, 1.0),
    "syn2": _Preset((1.5,), 0.3517, 0.2, -1.73, 0.183, 0.06, 0.10, 0.04, 0.12, 1.0),
    "syn3": _Preset((1.0, 1.6, 2.4, 4.0), 0.3523, 0.08, -1.55, 0.209, 0.06, 0.10, 0.04, 0.12, 1.0),
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
    num_treatments: int = 2           # K
    num_responses: int = 2            # R
    selection_bias: float = 0.8       # weight of the conversion affinity in the click logit; 0: none
    bad_row_rate: float = 0.0         # > 0 injects rule-breaking rows (module docstring lists the kinds)

    def __post_init__(self) -> None:
        def fail(name: str, rule: str) -> None:
            raise ValueError(f"simulator.{name} {rule} (got {getattr(self, name)!r})")

        if not _is_int(self.exposures) or self.exposures < 1:
            fail("exposures", "must be an integer >= 1")
        if not _is_int(self.users) or self.users < 0 or self.users > 2**31 - 1:
            fail("users", "must be an integer in [0, 2^31 - 1] (0: max(1000, exposures // 20))")
        if not _is_int(self.num_treatments) or not 1 <= self.num_treatments <= 8:
            fail("num_treatments", "must be an integer in [1, 8]")
        if not _is_int(self.num_responses) or not 1 <= self.num_responses <= 8:
            fail("num_responses", "must be an integer in [1, 8]")
        if not _is_int(self.items) or self.items < self.num_responses or self.items > 2**31 - 1:
            fail("items", "must be an integer >= num_responses (every response type needs an item)")
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
    def treated_share(self) -> float:
        return self.coupon_ratio if self.coupon_ratio is not None else _PRESET[self.preset].coupon_ratio

    @property
    def value_jitter(self) -> float:
        return (self.coupon_value_jitter if self.coupon_value_jitter is not None
                else _PRESET[self.preset].coupon_value_jitter)


# ---------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------
def _schema(*cols: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(n, t, True) for n, t in cols] + [T.StructField("ds", T.StringType(), True)])


def raw_schemas(num_treatments: int = 2, num_responses: int = 2) -> dict[str, T.StructType]:
    """The schema of each table ``simulate_day`` returns, for K strategies and R responses."""
    L, D, I, S, TS = T.LongType(), T.DoubleType(), T.IntegerType(), T.StringType(), T.TimestampType()
    rs = range(1, num_responses + 1)
    ks = range(1, num_treatments + 1)
    return {
        "raw.users": _schema(("user_id", L), ("u_age", I), ("u_gender", S), ("u_city", S), ("u_activity", D),
                             ("u_income", D), ("u_segment", S), ("u_tenure_days", I), ("u_orders_30d", I)),
        "raw.items": _schema(("item_id", L), ("i_category", S), ("i_brand", S), ("i_price", D)),
        "raw.exposures": _schema(("exposure_id", S), ("user_id", L), ("item_id", L), ("ts", TS), ("position", I),
                                 ("device", S), ("hour", I)),
        "raw.clicks": _schema(("exposure_id", S), ("user_id", L), ("ts", TS)),
        "raw.conversions": _schema(("exposure_id", S), ("user_id", L), ("ts", TS), ("value", D)),
        "raw.treatments": _schema(("user_id", L), ("coupon_treated", I), ("coupon_value", D),
                                  ("coupon_randomized", I), ("treatment_id", I), ("treatment_randomized", I)),
        "raw.responses": _schema(("user_id", L), ("coupon_outcome", I), *[(f"response_{r}", D) for r in rs],
                                 *[(f"value_share_{r}", D) for r in rs]),
        "sim.truth": _schema(("exposure_id", S), ("ctr_true", D), ("cvr_do_click_true", D),
                             ("conversion_potential", I)),
        "sim.truth_user": _schema(("user_id", L), ("p0_true", D), ("eta_true", D), ("coupon_prob_true", D),
                                  *[(f"y0_r{r}_true", D) for r in rs],
                                  *[(f"tau_r{r}_k{k}_true", D) for r in rs for k in ks],
                                  *[(f"value_weight_r{r}_true", D) for r in rs],
                                  ("coupon_propensity_true", D), ("treatment_propensity_true", D),
                                  ("exposures_true", L)),
    }


RAW_SCHEMAS: dict[str, T.StructType] = raw_schemas(2, 2)


# ---------------------------------------------------------------------------------------------
# Random numbers from hashes
# ---------------------------------------------------------------------------------------------
_INV_2_53 = 1.0 / float(2**53)
_TWO_PI = 2.0 * math.pi


class _Stream:
    """Independent draws keyed by one 64-bit hash column; ``salt`` names the draw."""

    def __init__(self, key: str):
        self.key = F.col(key)

    def uniform(self, salt: int) -> Column:
        # top 53 bits -> (0, 1), never 0 or 1 (Box-Muller takes a log)
        h = F.xxhash64(self.key, F.lit(salt))
        return (F.shiftrightunsigned(h, 11).cast("double") + 0.5) * _INV_2_53

    def normals(self, salt: int) -> tuple[Column, Column]:
        """Two independent N(0, 1) by Box-Muller on the uniforms ``salt`` and ``salt + 1``."""
        radius = F.sqrt(F.log(self.uniform(salt)) * -2.0)
        angle = self.uniform(salt + 1) * _TWO_PI
        return radius * F.cos(angle), radius * F.sin(angle)

    def power(self, salt: int, exponent: float) -> Column:
        """u ** exponent for a uniform u (skews draws towards 0: popular ids first). exp(log) is several
        times faster than Spark's pow (StrictMath.pow)."""
        return F.exp(F.log(self.uniform(salt)) * float(exponent))

    def exponential(self, salt: int, mean: float) -> Column:
        return -F.log(self.uniform(salt)) * mean


def _key(seed: int, domain: str, *cols: Column) -> Column:
    return F.xxhash64(F.lit(seed).cast("long"), F.lit(domain), *cols)


def _sigmoid(x: Column) -> Column:
    return F.lit(1.0) / (F.exp(-x) + 1.0)


def _normal_cdf(x: Column) -> Column:
    """Phi(x) through erf (Abramowitz-Stegun 7.1.26, |error| < 1.5e-7); Spark has no erf."""
    z = F.abs(x) / math.sqrt(2.0)
    t = F.lit(1.0) / (z * 0.3275911 + 1.0)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = F.lit(1.0) - poly * F.exp(-z * z)
    return F.when(x >= 0, (erf + 1.0) * 0.5).otherwise((F.lit(1.0) - erf) * 0.5)


def _categorical(u: Column, weights: list[Column]) -> Column:
    """Index in [0, len(weights)) drawn with probabilities proportional to ``weights`` (>= 0)."""
    total = weights[0]
    for w in weights[1:]:
        total = total + w
    target = u * total
    index = F.lit(0)
    running = None
    for w in weights[:-1]:
        running = w if running is None else running + w
        index = index + F.when(target >= running, 1).otherwise(0)
    return index


def _label(prefix: str, index: Column, size: int) -> Column:
    """``prefix`` + zero-padded ``index + 1`` from a literal array (format_string is ~50x slower)."""
    width = len(str(size))
    return F.element_at(F.array(*[F.lit(f"{prefix}{i + 1:0{width}d}") for i in range(size)]), index + 1)


def _stage_break(df: DataFrame, num_partitions: int) -> DataFrame:
    """End the whole-stage-code-generation stage here (Coalesce has no code generation; with the
    partition count unchanged it moves no data). A chain of projections otherwise compiles into one
    Java method far beyond HotSpot's 8,000-byte limit for JIT compilation, and runs interpreted:
    3-5x slower."""
    return df.coalesce(num_partitions)


def _pick(index: Column, values: list) -> Column:
    out = F.lit(values[-1])
    for i in range(len(values) - 2, -1, -1):
        out = F.when(index == i, F.lit(values[i])).otherwise(out)
    return out


# Salts. One namespace per key domain; normals take two consecutive salts.
class _U:  # user domain (seed, user_id)
    AGE_WEALTH, INTENT_PRICE, TASTE12, TASTE3_ACT, INCOME_TENURE, ORDERS = 10, 12, 14, 16, 18, 20
    GENDER, CITY, DEVICE, SEGMENT = 30, 31, 32, 33


class _I:  # item domain (seed, item_id)
    CATEGORY, BRAND = 1, 2
    PRICE_QUALITY, ATTRACT_TASTE1, TASTE23 = 10, 12, 14


class _E:  # exposure domain (seed, ds, exposure n)
    USER, TYPE, ITEM, POSITION, DEVICE_SWITCH, DEVICE, TIME = 1, 2, 3, 4, 5, 6, 7
    SHOCKS = 10
    CLICK, CONVERT, CLICK_DELAY, CONVERT_DELAY, VALUE = 20, 21, 22, 23, 24
    BAD, BAD_KIND = 40, 41


class _D:  # user-day domain (seed, ds, user_id)
    COUPON_RCT, COUPON_TREAT, COUPON_VALUE, COUPON_OUTCOME = 1, 2, 3, 4
    VALUE_JITTER = 10  # normal pair
    TREAT_RCT, TREAT_ARM = 20, 21
    RESPONSES = 30     # normal pairs from here on
    BAD, BAD_KIND, BAD_VARIANT = 90, 91, 92


# ---------------------------------------------------------------------------------------------
# Structure (fixed coefficients: a seed changes the draws, not the world's equations)
# ---------------------------------------------------------------------------------------------
_USER_ACTIVITY_EXPONENT = 1.6   # user index = floor(N * u^1.6): heavy-tailed exposure counts
_ITEM_POPULARITY_EXPONENT = 1.8
_END_MARGIN_US = 120_000_000    # exposures stop 2 minutes before midnight: clicks / conversions stay inside
_DAY_US = 86_400_000_000
_CVR_INTERCEPT = -3.2
_CTR_INTERCEPT = -3.35
_LOG_PRICE_MEAN = 3.85


def _value_weight_coefs(num_responses: int) -> list[tuple[float, float, float]]:
    """Coefficients of (z_act, z_wealth, z_age) in the logit of each response type's value weight.

    Type 1 is consumption (active, younger users), type 2 commercial (wealthier users)."""
    coefs = [(0.8, -0.4, -0.3), (-0.1, 0.8, 0.3)]
    rng = random.Random(9001)
    while len(coefs) < num_responses:
        coefs.append(tuple(round(rng.uniform(-0.6, 0.6), 3) for _ in range(3)))
    return coefs[:num_responses]


def _response_structure(num_treatments: int, num_responses: int, p: _Preset):
    """Baselines y0_r = base_r * exp(c . (z_act, z_wealth, z_age)) and delta_rk = A_rk + B tanh(g_rk . z)."""
    base = [45.0 / (r ** 0.8) for r in range(1, num_responses + 1)]      # minutes of use, views, ...
    y0_coefs = [(0.35, -0.1, -0.15), (0.2, 0.25, 0.05)]
    rng = random.Random(4242)
    while len(y0_coefs) < num_responses:
        y0_coefs.append(tuple(round(rng.uniform(-0.3, 0.3), 3) for _ in range(3)))
    effects = {}
    rng = random.Random(777)
    for r in range(1, num_responses + 1):
        for k in range(1, num_treatments + 1):
            target = (k - 1) % num_responses + 1
            shift = p.strategy_target if r == target else -p.strategy_side
            g = [rng.gauss(0.0, 1.0) for _ in range(4)]          # over (z_act, z_wealth, z_age, z_price)
            norm = math.sqrt(sum(x * x for x in g)) or 1.0
            effects[(r, k)] = (shift, [1.2 * x / norm for x in g])
    return base, y0_coefs[:num_responses], effects


def _grid_base_weights(grid: list[float], jitter: float) -> list[float]:
    """The observational value mix: with jitter every grid point is a mode; without, alternate points
    are the modes (1, 3, 8 of the default grid)."""
    if jitter > 0 or len(grid) < 3:
        return [1.0] * len(grid)
    return [1.0 if j % 2 == 0 else 0.35 for j in range(len(grid))]


@dataclass(frozen=True)
class _Population:
    """Constants of the user population and of the id bijections, computed once on the driver."""
    n_users: int
    n_items: int
    mult: int       # user_id = (mult * rank + shift) mod N + 1: activity is not sorted by id
    mult_inv: int
    shift: int
    exposures_per_user: float

    @classmethod
    def of(cls, cfg: SimulatorConfig) -> "_Population":
        n = cfg.num_users
        mult = int(n * 0.6180339887498949) + 1
        while math.gcd(mult, n) != 1:
            mult += 1
        mult %= n
        mult = mult or 1
        inv = pow(mult, -1, n) if n > 1 else 0
        shift = (cfg.seed * 7919) % n
        return cls(n, cfg.items, mult, inv, shift, cfg.exposures / n)

    # log of the observed activity, and its mean / sd (for the observed, standardized score)
    @property
    def log_activity_mean(self) -> float:
        g = _USER_ACTIVITY_EXPONENT
        return math.log(self.exposures_per_user / (g * 6.0)) + (1 - 1 / g) - 0.045

    @property
    def log_activity_sd(self) -> float:
        g = _USER_ACTIVITY_EXPONENT
        return math.sqrt((1 - 1 / g) ** 2 + 0.09)


# ---------------------------------------------------------------------------------------------
# Users and items: functions of (seed, id) only
# ---------------------------------------------------------------------------------------------
def _with_user_latents(df: DataFrame, cfg: SimulatorConfig, pop: _Population, observed: bool,
                       num_partitions: int | None = None) -> DataFrame:
    """Add the user's hidden latents (``_z_*``, ``_taste*``, ``_w*``, ``_device0``) and, with
    ``observed``, the raw.users attributes; everything hashes (seed, user_id)."""
    uid = F.col("user_id")
    df = df.withColumn("_uk", _key(cfg.seed, "user", uid))
    s = _Stream("_uk")
    rank = F.pmod((uid - 1 - pop.shift) * F.lit(pop.mult_inv).cast("long"), F.lit(pop.n_users).cast("long"))
    age_n, wealth_n = s.normals(_U.AGE_WEALTH)
    intent_n, price_n = s.normals(_U.INTENT_PRICE)
    taste1, taste2 = s.normals(_U.TASTE12)
    taste3, act_noise = s.normals(_U.TASTE3_ACT)
    df = df.select(
        "*",
        # -log(q) - 1 with q the activity quantile: mean 0, sd 1, right-skewed (heavy users)
        (-F.log((rank.cast("double") + 0.5) / pop.n_users) - 1.0).alias("_z_act_raw"),
        age_n.alias("_z_age"),
        (age_n * 0.35 + wealth_n * math.sqrt(1 - 0.35**2)).alias("_z_wealth"),
        intent_n.alias("_intent_n"), price_n.alias("_price_n"),
        taste1.alias("_taste1"), taste2.alias("_taste2"), taste3.alias("_taste3"),
        act_noise.alias("_act_noise"),
    )
    z_act = F.least(F.col("_z_act_raw"), F.lit(3.5))
    df = df.select(
        "*",
        z_act.alias("_z_act"),
        # purchase intent and price sensitivity: hidden, partly explained by activity and wealth
        (z_act * 0.35 + F.col("_z_wealth") * 0.3 + F.col("_intent_n") * 0.88).alias("_z_buy"),
        (F.col("_z_wealth") * -0.5 + F.col("_price_n") * math.sqrt(0.75)).alias("_z_price"),
    )
    # latent value weights over the R response types (softmax)
    coefs = _value_weight_coefs(cfg.num_responses)
    logits = [F.col("_z_act") * a + F.col("_z_wealth") * b + F.col("_z_age") * c for a, b, c in coefs]
    df = df.select("*", *[F.exp(lg).alias(f"_ew{r}") for r, lg in enumerate(logits, start=1)])
    total = sum((F.col(f"_ew{r}") for r in range(2, cfg.num_responses + 1)), F.col("_ew1"))
    device = _pick(_categorical(s.uniform(_U.DEVICE), [F.lit(0.47), F.lit(0.45), F.lit(0.08)]), list(DEVICES))
    df = df.select("*", *[(F.col(f"_ew{r}") / total).alias(f"_w{r}") for r in range(1, cfg.num_responses + 1)],
                   device.alias("_device0"))
    if not observed:
        return df
    if num_partitions:
        df = _stage_break(df, num_partitions)
    income_n, tenure_n = s.normals(_U.INCOME_TENURE)
    orders_n, _ = s.normals(_U.ORDERS)
    city = F.floor(s.power(_U.CITY, 1.6) * NUM_CITIES).cast("int")  # big cities first
    tier_effect = F.when(city < 3, 0.25).when(city < 8, 0.1).otherwise(0.0)
    g = _USER_ACTIVITY_EXPONENT
    log_activity = (math.log(pop.exposures_per_user / (g * 6.0)) + (1 - 1 / g) * (F.col("_z_act_raw") + 1.0)
                    + F.col("_act_noise") * 0.3 - 0.045)
    tenure = F.least(F.greatest(F.exp(F.col("_z_act") * 0.5 + tenure_n * 0.9 + 5.6), F.lit(1.0)), F.lit(3650.0))
    vip = F.col("_z_wealth") + F.col("_z_act") * 0.4 + (s.uniform(_U.SEGMENT) - 0.5) * 0.6 > 1.5
    gender_u = s.uniform(_U.GENDER)
    return df.select(
        "*",
        F.least(F.greatest(F.round(F.col("_z_age") * 11.0 + 36.0), F.lit(18.0)), F.lit(70.0)).cast("int")
        .alias("u_age"),
        F.when(gender_u < 0.49, "F").when(gender_u < 0.97, "M").otherwise("U").alias("u_gender"),
        _label("city_", city, NUM_CITIES).alias("u_city"),
        F.round(F.exp(log_activity), 3).alias("u_activity"),
        F.round(F.exp(F.col("_z_wealth") * 0.45 + tier_effect + income_n * 0.15 + 9.3), 2).alias("u_income"),
        F.when(tenure < 60, "new").when(vip, "vip").when(F.col("_z_act") > 0.6, "loyal").otherwise("casual")
        .alias("u_segment"),
        F.floor(tenure).cast("int").alias("u_tenure_days"),
        F.floor(F.exp(F.col("_z_buy") * 0.6 + F.col("_z_act") * 0.25 + orders_n * 0.5 + 0.3)).cast("int")
        .alias("u_orders_30d"),
    )


def _observed_scores(pop: _Population) -> dict[str, Column]:
    """Standardized scores of OBSERVED user attributes: the only inputs of the confounded assignments."""
    act = (F.log(F.greatest(F.col("u_activity"), F.lit(1e-3))) - pop.log_activity_mean) / pop.log_activity_sd
    inc = (F.log(F.col("u_income")) - 9.39) / 0.50
    age = (F.col("u_age").cast("double") - 36.0) / 11.0
    return {"act": act, "inc": inc, "age": age}


def _with_item_latents(df: DataFrame, cfg: SimulatorConfig, observed: bool) -> DataFrame:
    iid = F.col("item_id")
    df = df.withColumn("_ik", _key(cfg.seed, "item", iid))
    s = _Stream("_ik")
    cat = F.floor(s.power(_I.CATEGORY, 1.4) * NUM_CATEGORIES).cast("int")
    price_n, quality = s.normals(_I.PRICE_QUALITY)
    attract_n, e1 = s.normals(_I.ATTRACT_TASTE1)
    e2, e3 = s.normals(_I.TASTE23)
    df = df.select("*", cat.alias("_cat"), quality.alias("_quality"),
                   (quality * 0.5 + attract_n * math.sqrt(0.75)).alias("_attract"),
                   e1.alias("_e1"), e2.alias("_e2"), e3.alias("_e3"),
                   F.round(F.exp(F.lit(2.3) + cat.cast("double") * 0.16 + price_n * 0.55), 2).alias("_price"))
    if not observed:
        return df
    brand = F.col("_cat") * BRANDS_PER_CATEGORY + F.floor(s.power(_I.BRAND, 2.0) * BRANDS_PER_CATEGORY)
    return df.select("*", _label("cat_", F.col("_cat"), NUM_CATEGORIES).alias("i_category"),
                     _label("brand_", brand.cast("int"), NUM_CATEGORIES * BRANDS_PER_CATEGORY).alias("i_brand"),
                     F.col("_price").alias("i_price"))


# ---------------------------------------------------------------------------------------------
# Exposures, clicks, conversions
# ---------------------------------------------------------------------------------------------
def _day_start_us(ds: str) -> int:
    try:
        day = dt.date.fromisoformat(ds)
    except (TypeError, ValueError):
        raise ValueError(f"ds must be a date YYYY-MM-DD (got {ds!r})") from None
    if day.isoformat() != ds:
        raise ValueError(f"ds must be a date YYYY-MM-DD (got {ds!r})")
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000


_ITEM_LATENTS = ("_quality", "_attract", "_e1", "_e2", "_e3", "_price")
_USER_LATENTS = ("_z_act", "_z_wealth", "_z_buy", "_taste1", "_taste2", "_taste3", "_device0")
_BROADCAST_USERS_MAX = 2_000_000


def _join_user_latents(df: DataFrame, spark: SparkSession, cfg: SimulatorConfig, pop: _Population,
                       num_partitions: int) -> DataFrame:
    """Attach the user latents to each exposure. Up to ``_BROADCAST_USERS_MAX`` users they are computed
    once per user and broadcast (ids are dense, so the lookup is an array index); above, per exposure.
    The same function computes them either way, so the rows do not depend on the path."""
    names = _USER_LATENTS + tuple(f"_w{r}" for r in range(1, cfg.num_responses + 1))
    if pop.n_users > _BROADCAST_USERS_MAX:
        return _stage_break(_with_user_latents(df, cfg, pop, observed=False), num_partitions)
    parts = max(1, min(num_partitions, math.ceil(pop.n_users / 250_000)))
    users = spark.range(1, pop.n_users + 1, 1, parts).withColumnRenamed("id", "user_id")
    users = _with_user_latents(users, cfg, pop, observed=False).select("user_id", *names)
    return df.join(F.broadcast(users), "user_id")


def _exposure_core(spark: SparkSession, cfg: SimulatorConfig, ds: str, pop: _Population,
                   num_partitions: int) -> DataFrame:
    """Every exposure of the day with its latent causes, probabilities, potential outcomes and times."""
    R = cfg.num_responses
    day_start = _day_start_us(ds)
    df = spark.range(0, cfg.exposures, 1, num_partitions).withColumnRenamed("id", "_n")
    df = df.withColumn("_ek", _key(cfg.seed, "exposure", F.lit(ds), F.col("_n")))
    s = _Stream("_ek")
    rank = F.least(F.floor(s.power(_E.USER, _USER_ACTIVITY_EXPONENT) * pop.n_users).cast("long"),
                   F.lit(pop.n_users - 1).cast("long"))
    df = df.withColumn("user_id", F.pmod(rank * pop.mult + pop.shift, F.lit(pop.n_users).cast("long")) + 1)
    df = _join_user_latents(df, spark, cfg, pop, num_partitions)

    # content type from the user's value weights (eq. 9's V_r counts these), then an item of that type
    rtype = _categorical(s.uniform(_E.TYPE), [F.col(f"_w{r}") for r in range(1, R + 1)]) + 1
    df = df.withColumn("_type", rtype)
    n_of_type = (F.lit(pop.n_items) - F.col("_type")) / R
    n_of_type = F.floor(n_of_type).cast("long") + 1
    within = F.least(F.floor(s.power(_E.ITEM, _ITEM_POPULARITY_EXPONENT) * n_of_type).cast("long"),
                     n_of_type - 1)
    df = df.withColumn("item_id", F.col("_type").cast("long") + within * R)
    items = spark.range(1, pop.n_items + 1, 1, 1).withColumnRenamed("id", "item_id")
    items = _with_item_latents(items, cfg, observed=False).select("item_id", *_ITEM_LATENTS)
    df = df.join(F.broadcast(items), "item_id")

    # context: position, device, time of day (evening peak)
    u_time = s.uniform(_E.TIME)
    frac = u_time - F.sin(u_time * _TWO_PI) * (0.6 / _TWO_PI) + 20.0 / 24.0
    frac = frac - F.floor(frac)
    switch = s.uniform(_E.DEVICE_SWITCH) < 0.1
    other_device = _pick(F.floor(s.uniform(_E.DEVICE) * 3).cast("int"), list(DEVICES))
    shock_conv, shock_click = s.normals(_E.SHOCKS)
    df = df.select(
        "*",
        (F.floor(s.power(_E.POSITION, 2.0) * 20).cast("int") + 1).alias("position"),
        F.when(switch, other_device).otherwise(F.col("_device0")).alias("device"),
        F.floor(frac * float(_DAY_US - _END_MARGIN_US)).cast("long").alias("_t_us"),
        shock_conv.alias("_shock_conv"), shock_click.alias("_shock_click"),
    )
    match = (F.col("_taste1") * F.col("_e1") + F.col("_taste2") * F.col("_e2")
             + F.col("_taste3") * F.col("_e3")) / math.sqrt(3.0)
    log_price = F.log(F.col("_price")) - _LOG_PRICE_MEAN
    # conversion affinity = logit of CVR under do(click=1); the shock is unobserved (MNAR)
    affinity = (F.col("_z_buy") * 0.55 + F.col("_quality") * 0.35 + match * 0.45 - log_price * 0.35
                + F.col("_z_wealth") * log_price * 0.15 + F.col("_shock_conv") * 0.5)
    hour_of_day = F.col("_t_us").cast("double") / 3_600_000_000.0
    df = df.select("*", (F.floor(hour_of_day)).cast("int").alias("hour"), affinity.alias("_affinity"))
    df = _stage_break(df, num_partitions)
    click_logit = (F.lit(_CTR_INTERCEPT) + F.col("_affinity") * cfg.selection_bias
                   + F.col("_z_act") * 0.3 + F.col("_attract") * 0.4
                   - F.log(F.col("position").cast("double")) * 0.3
                   + F.when(F.col("device") == "web", -0.25).when(F.col("device") == "ios", 0.05).otherwise(0.0)
                   + F.cos((hour_of_day - 21.0) * (_TWO_PI / 24.0)) * 0.15
                   + F.col("_shock_click") * 0.3)
    df = df.select("*", _sigmoid(F.col("_affinity") + _CVR_INTERCEPT).alias("cvr_do_click_true"),
                   _sigmoid(click_logit).alias("ctr_true"))
    df = df.select(
        "*",
        (s.uniform(_E.CLICK) < F.col("ctr_true")).alias("_click"),
        (s.uniform(_E.CONVERT) < F.col("cvr_do_click_true")).cast("int").alias("conversion_potential"),
        F.concat(F.lit(f"{ds}-"), F.col("_n").cast("string")).alias("exposure_id"),
        (F.col("_t_us") + day_start).alias("_exp_us"),
    )
    # click 1 s + Exp(40 s) after the exposure, conversion 1 s + Exp(15 min) after the click; each
    # delay is capped at half the time left in the day, so both stay strictly inside the day.
    day_end = day_start + _DAY_US
    click_us = F.col("_exp_us") + F.least(s.exponential(_E.CLICK_DELAY, 40e6) + 1e6,
                                          (F.lit(day_end) - F.col("_exp_us")) / 2).cast("long")
    df = df.withColumn("_click_us", click_us)
    conv_us = F.col("_click_us") + F.least(s.exponential(_E.CONVERT_DELAY, 900e6) + 1e6,
                                           (F.lit(day_end) - F.col("_click_us")) / 2).cast("long")
    bad = (s.uniform(_E.BAD) < cfg.bad_row_rate) if cfg.bad_row_rate > 0 else F.lit(False)
    kind = F.floor(s.uniform(_E.BAD_KIND) * len(BAD_EXPOSURE_KINDS)).cast("int")
    value_n, _ = s.normals(_E.VALUE)
    df = df.select("*", conv_us.alias("_conv_us"),
                   F.round(F.col("_price") * F.exp(value_n * 0.25 - 0.03125), 2).alias("_value"),
                   F.when(bad, kind).otherwise(F.lit(-1)).alias("_bad"))
    return df


# the columns of the exposure core that the tables read (what a cache keeps)
_CORE_COLUMNS = ("_n", "exposure_id", "user_id", "item_id", "_type", "_exp_us", "_click_us", "_conv_us", "position",
                 "device", "hour", "ctr_true", "cvr_do_click_true", "conversion_potential", "_click", "_value", "_bad")


def _exposure_tables(core: DataFrame, cfg: SimulatorConfig, ds: str, schemas) -> dict[str, DataFrame]:
    bad = F.col("_bad")
    kinds = {name: i for i, name in enumerate(BAD_EXPOSURE_KINDS)}
    exposures = core.select(
        "exposure_id",
        F.when(bad == kinds["null_user_id"], F.lit(None).cast("long")).otherwise(F.col("user_id")).alias("user_id"),
        "item_id", F.timestamp_micros(F.col("_exp_us")).alias("ts"), "position", "device", "hour", "_bad")
    if cfg.bad_row_rate > 0:
        exposures = exposures.unionByName(_keep_rows(exposures, bad == kinds["duplicate_exposure_id"]))
    # the events of a clean row (and of a duplicated one) follow the model; the other kinds replace them
    follows_model = (bad < 0) | (bad == kinds["duplicate_exposure_id"])
    clicked = (F.col("_click") & follows_model) | bad.isin(kinds["click_without_exposure"],
                                                            kinds["conversion_before_click"])
    clicks = _keep_rows(core, clicked).select(
        F.when(bad == kinds["click_without_exposure"],
               F.concat(F.lit(f"{ds}-orphan-"), F.col("_n").cast("string"))).otherwise(F.col("exposure_id"))
        .alias("exposure_id"),
        "user_id", F.timestamp_micros(F.col("_click_us")).alias("ts"))
    converted = ((F.col("_click") & (F.col("conversion_potential") == 1) & follows_model)
                 | bad.isin(kinds["conversion_without_click"], kinds["conversion_before_click"]))
    conv_us = F.when(bad == kinds["conversion_before_click"],
                     F.col("_exp_us") + (F.col("_click_us") - F.col("_exp_us")) / 2).otherwise(F.col("_conv_us"))
    conversions = _keep_rows(core, converted).select(
        "exposure_id", "user_id", F.timestamp_micros(conv_us.cast("long")).alias("ts"), F.col("_value").alias("value"))
    truth = core.select("exposure_id", "ctr_true", "cvr_do_click_true", "conversion_potential")
    out = {"raw.exposures": exposures, "raw.clicks": clicks, "raw.conversions": conversions, "sim.truth": truth}
    return {name: _conform(df, schemas[name], ds) for name, df in out.items()}


# ---------------------------------------------------------------------------------------------
# Coupons, strategies, responses: one row per user active that day
# ---------------------------------------------------------------------------------------------
def _user_day_frame(core: DataFrame, cfg: SimulatorConfig, ds: str, pop: _Population) -> DataFrame:
    K, R = cfg.num_treatments, cfg.num_responses
    preset = _PRESET[cfg.preset]
    grid, jitter, ratio = cfg.grid, cfg.value_jitter, cfg.treated_share
    active = core.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("exposures_true"),
        *[F.sum((F.col("_type") == r).cast("long")).alias(f"_v{r}") for r in range(1, R + 1)])
    parts = int(active.sparkSession.conf.get("spark.sql.shuffle.partitions"))
    df = _with_user_latents(active, cfg, pop, observed=True, num_partitions=parts)
    df = _stage_break(df, parts)
    df = df.withColumn("_dk", _key(cfg.seed, "user_day", F.lit(ds), F.col("user_id")))
    s = _Stream("_dk")
    score = _observed_scores(pop)

    # -- coupons (UniMVT eq. 1-4) ----------------------------------------------------------------
    base_w = _grid_base_weights(grid, jitter)
    mean_t = sum(w * t for w, t in zip(base_w, grid)) / sum(base_w)
    eta_unit = preset.mean_uplift / mean_t
    heterogeneity = F.least(F.exp(F.col("_z_price") * 0.5 - F.col("_z_act") * 0.25 - 0.15625), F.lit(3.0))
    # high-value users (observed activity and income) are treated more often and with higher tiers
    value_score = (score["act"] + score["inc"]) * (0.6 * cfg.coupon_confounding)
    z_ratio = statistics.NormalDist().inv_cdf(ratio)
    coupon_rct = s.uniform(_D.COUPON_RCT) < cfg.coupon_rct_share
    # probit assignment: treated iff value_score + N(0, 1) > threshold; E[treated] ~= ratio
    spread = math.sqrt(1.0 + (0.6 * cfg.coupon_confounding) ** 2 * 2.0)
    threshold = -z_ratio * spread
    treat_n, _ = s.normals(_D.COUPON_TREAT)
    treated = F.when(coupon_rct, s.uniform(_D.COUPON_TREAT + 5) < ratio).otherwise(
        F.col("_value_score") + treat_n > threshold)
    propensity = F.when(coupon_rct, F.lit(ratio)).otherwise(_normal_cdf(F.col("_value_score") - threshold))
    G = len(grid)
    tier = [((j - (G - 1) / 2) / ((G - 1) / 2) if G > 1 else 0.0) for j in range(G)]
    obs_weights = [F.exp(F.col("_value_score") * (1.2 * tier[j])) * base_w[j] for j in range(G)]
    idx = F.when(coupon_rct, F.least(F.floor(s.uniform(_D.COUPON_VALUE) * G).cast("int"), F.lit(G - 1))) \
        .otherwise(_categorical(s.uniform(_D.COUPON_VALUE), obs_weights))
    jitter_n, _ = s.normals(_D.VALUE_JITTER)
    value = _pick(idx, grid)
    if jitter > 0:
        value = F.greatest(F.round(value * F.exp(jitter_n * jitter), 2), F.lit(0.01))
    df = df.select("*", value_score.alias("_value_score"))
    df = df.select("*", coupon_rct.cast("int").alias("coupon_randomized"), treated.cast("int").alias("coupon_treated"),
                   propensity.alias("coupon_propensity_true"), value.alias("_value_if_treated"),
                   _sigmoid(F.col("_z_act") * 0.5 + F.col("_z_wealth") * 0.35 + F.col("_z_buy") * 0.3
                            + preset.p0_intercept).alias("p0_true"),
                   (heterogeneity * eta_unit).alias("eta_true"))
    coupon_value = F.when(F.col("coupon_treated") == 1, F.col("_value_if_treated")).otherwise(F.lit(0.0))
    df = df.withColumn("coupon_value", coupon_value)
    prob = F.least(F.greatest(F.col("p0_true") + F.col("eta_true") * F.col("coupon_value"), F.lit(0.0)), F.lit(1.0))
    df = df.withColumn("coupon_prob_true", prob)
    df = df.withColumn("coupon_outcome", (s.uniform(_D.COUPON_OUTCOME) < F.col("coupon_prob_true")).cast("int"))

    # -- strategies (HMUM): confounded softmax outside the RCT slice ---------------------------------
    df = _stage_break(df, parts)
    strength = cfg.treatment_confounding * preset.strategy_confounding
    feats = [score["act"], score["inc"], score["age"]]
    arm_logits = [F.lit(0.0)] + [feats[(k - 1) % 3] * (strength * (1 if (k - 1) // 3 % 2 == 0 else -1) * 0.8)
                                 for k in range(1, K + 1)]
    df = df.select("*", *[F.exp(lg).alias(f"_arm{k}") for k, lg in enumerate(arm_logits)])
    arm_w = [F.col(f"_arm{k}") for k in range(K + 1)]
    treat_rct = s.uniform(_D.TREAT_RCT) < cfg.treatment_rct_share
    arm = F.when(treat_rct, F.least(F.floor(s.uniform(_D.TREAT_ARM) * (K + 1)).cast("int"), F.lit(K))) \
        .otherwise(_categorical(s.uniform(_D.TREAT_ARM), arm_w))
    df = df.select("*", treat_rct.cast("int").alias("treatment_randomized"), arm.alias("treatment_id"))
    total_arm = sum(arm_w[1:], arm_w[0])
    chosen_arm = _pick_col(F.col("treatment_id"), arm_w)
    df = df.withColumn("treatment_propensity_true",
                       F.when(F.col("treatment_randomized") == 1, F.lit(1.0 / (K + 1))).otherwise(chosen_arm / total_arm))

    base, y0_coefs, effects = _response_structure(K, R, preset)
    df = _stage_break(df, parts)
    z = [F.col("_z_act"), F.col("_z_wealth"), F.col("_z_age"), F.col("_z_price")]
    cols = []
    for r in range(1, R + 1):
        a, b, c = y0_coefs[r - 1]
        cols.append((F.exp(z[0] * a + z[1] * b + z[2] * c) * base[r - 1]).alias(f"y0_r{r}_true"))
    df = df.select("*", *cols)
    cols = []
    for r in range(1, R + 1):
        for k in range(1, K + 1):
            shift, g = effects[(r, k)]
            delta = F.tanh(sum((zi * gi for zi, gi in zip(z, g)), F.lit(0.0))) * preset.strategy_spread + shift
            cols.append((F.col(f"y0_r{r}_true") * delta).alias(f"tau_r{r}_k{k}_true"))
    df = df.select("*", *cols)
    responses = []
    for r in range(1, R + 1):
        n1, _ = s.normals(_D.RESPONSES + 2 * r)
        effect = _pick_col(F.col("treatment_id"), [F.lit(0.0)] + [F.col(f"tau_r{r}_k{k}_true") for k in range(1, K + 1)])
        mean = F.col(f"y0_r{r}_true") + effect
        responses.append((mean * F.exp(n1 * 0.4 - 0.08)).alias(f"response_{r}"))
    df = df.select("*", *responses,
                   *[(F.col(f"_v{r}") / F.col("exposures_true")).alias(f"value_share_{r}") for r in range(1, R + 1)],
                   *[F.col(f"_w{r}").alias(f"value_weight_r{r}_true") for r in range(1, R + 1)])

    # -- rule breakers ---------------------------------------------------------------------------
    if cfg.bad_row_rate > 0:
        bad = s.uniform(_D.BAD) < cfg.bad_row_rate
        kind = F.when(bad, F.floor(s.uniform(_D.BAD_KIND) * len(BAD_USER_KINDS)).cast("int")).otherwise(-1)
        variant = F.floor(s.uniform(_D.BAD_VARIANT) * 3).cast("int")
        df = df.select("*", kind.alias("_bad"), variant.alias("_variant"))
        k_value, k_arm, k_resp = (BAD_USER_KINDS.index(n) for n in BAD_USER_KINDS)
        bad_value = F.when(F.col("_variant") == 0, -F.lit(grid[0])).when(F.col("_variant") == 1, F.lit(0.0)) \
            .otherwise(F.lit(float("nan")))
        df = (df.withColumn("coupon_treated", F.when(F.col("_bad") == k_value, 1).otherwise(F.col("coupon_treated")))
              .withColumn("coupon_value", F.when(F.col("_bad") == k_value, bad_value).otherwise(F.col("coupon_value")))
              .withColumn("treatment_id", F.when(F.col("_bad") == k_arm, K + 1).otherwise(F.col("treatment_id")))
              .withColumn("response_1", F.when((F.col("_bad") == k_resp) & (F.col("_variant") == 0),
                                               F.lit(float("nan")))
                          .when(F.col("_bad") == k_resp, -F.col("response_1") - 1.0)
                          .otherwise(F.col("response_1"))))
    return df


_USER_DAY_TABLES = ("raw.treatments", "raw.responses", "sim.truth_user")


def _pick_col(index: Column, values: list[Column]) -> Column:
    out = values[-1]
    for i in range(len(values) - 2, -1, -1):
        out = F.when(index == i, values[i]).otherwise(out)
    return out


def _keep_rows(df: DataFrame, condition: Column) -> DataFrame:
    """``df.where(condition)`` behind a barrier. A plain filter is pushed below the projections that
    compute ``condition`` and inlines every column it references, copying shared sub-expressions at
    each level: for the click decision that outgrows Java's 64 KB method limit and Spark falls back to
    interpreting the plan (~50x slower). An explode of a 0- or 1-element array keeps the projections
    computed once, in whole-stage code."""
    keep = F.when(condition, F.array(F.lit(True))).otherwise(F.array().cast("array<boolean>"))
    return df.select("*", F.explode(keep).alias("_kept")).drop("_kept")


def _conform(df: DataFrame, schema: T.StructType, ds: str) -> DataFrame:
    cols = [F.lit(ds).alias("ds") if f.name == "ds" else F.col(f.name).cast(f.dataType).alias(f.name)
            for f in schema.fields]
    return df.select(*cols)


# ---------------------------------------------------------------------------------------------
class SimulatedDay(dict):
    """The day's tables, ``{name: DataFrame}``; ``unpersist()`` frees what ``cache=True`` cached."""

    def __init__(self, frames: dict[str, DataFrame], cached: list[DataFrame] | None = None):
        super().__init__(frames)
        self._cached = list(cached or [])

    def unpersist(self) -> None:
        for df in self._cached:
            df.unpersist()
        self._cached = []


def simulate_day(spark: SparkSession, cfg: SimulatorConfig, ds: str, num_partitions: int | None = None,
                 cache: bool = False) -> SimulatedDay:
    """One day of raw logs and ground truth as DataFrames, keyed by table name (RAW_SCHEMAS order).

    Lazy by default: each frame recomputes its part of the day from the hashes when written
    (raw.exposures cheaply; sim.truth, raw.clicks, raw.conversions and the three user-day tables each
    re-derive the exposures' latent causes). ``cache=True`` persists the exposure core and the
    user-day frame (MEMORY_AND_DISK) on the first write, so the day is computed once; call
    ``unpersist()`` on the result after writing. The rows are the same either way.
    ``num_partitions`` (default: about one per million exposures, at least the default parallelism)
    changes only how Spark splits the work, never the rows.
    """
    if not isinstance(cfg, SimulatorConfig):
        raise TypeError(f"cfg must be a SimulatorConfig (got {type(cfg).__name__})")
    _day_start_us(ds)
    if num_partitions is None:
        parallel = spark.sparkContext.defaultParallelism
        num_partitions = max(parallel, math.ceil(cfg.exposures / 1_000_000 / parallel) * parallel)
    if not _is_int(num_partitions) or num_partitions < 1:
        raise ValueError(f"num_partitions must be an integer >= 1 (got {num_partitions!r})")
    pop = _Population.of(cfg)
    schemas = raw_schemas(cfg.num_treatments, cfg.num_responses)
    cached: list[DataFrame] = []
    core = _exposure_core(spark, cfg, ds, pop, num_partitions)
    if cache:
        core = core.select(*_CORE_COLUMNS).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(core)
    user_day = _user_day_frame(core, cfg, ds, pop)
    if cache:
        needed = {f.name for name in _USER_DAY_TABLES for f in schemas[name].fields} - {"ds"}
        user_day = user_day.select(*[c for c in user_day.columns if c in needed]).persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(user_day)

    user_parts = max(1, min(num_partitions, math.ceil(pop.n_users / 250_000)))
    users = spark.range(1, pop.n_users + 1, 1, user_parts).withColumnRenamed("id", "user_id")
    users = _with_user_latents(users, cfg, pop, observed=True, num_partitions=user_parts)
    items = spark.range(1, pop.n_items + 1, 1, 1).withColumnRenamed("id", "item_id")
    items = _with_item_latents(items, cfg, observed=True)

    out = {"raw.users": _conform(users, schemas["raw.users"], ds),
           "raw.items": _conform(items, schemas["raw.items"], ds)}
    out.update(_exposure_tables(core, cfg, ds, schemas))
    out.update({name: _conform(user_day, schemas[name], ds) for name in _USER_DAY_TABLES})
    order = ("raw.users", "raw.items", "raw.exposures", "raw.clicks", "raw.conversions", "raw.treatments",
             "raw.responses", "sim.truth", "sim.truth_user")
    return SimulatedDay({name: out[name] for name in order}, cached)


# ---------------------------------------------------------------------------------------------
def _bench(n: int) -> None:
    import time

    from liftlake.lib.storage.spark import build_session

    spark = build_session("liftlake-simulator-bench", master="local[2]",
                          conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"})
    spark.sparkContext.setLogLevel("ERROR")
    cfg = SimulatorConfig(exposures=n)
    frames = simulate_day(spark, cfg, "2026-11-20")
    frames["raw.users"].write.format("noop").mode("overwrite").save()  # warm-up (JVM, codegen)
    total = 0.0
    for name, df in frames.items():
        start = time.perf_counter()
        df.write.format("noop").mode("overwrite").save()
        took = time.perf_counter() - start
        total += took
        print(f"{name:<18} {took:6.2f} s")
    print(f"all tables: {total:.2f} s for {n:,} exposures -> {n / total:,.0f} exposures/s")
    spark.stop()


if __name__ == "__main__":
    import sys

    _bench(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
