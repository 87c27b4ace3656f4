"""The simulated world's population: user and item latents (functions of seed and id only), the response
structure of the K strategies, and the observed attributes derived from the latents."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from liftlake.lib.sim.settings import BRANDS_PER_CATEGORY, DEVICES, NUM_CATEGORIES, NUM_CITIES, SimulatorConfig, _Preset
from liftlake.lib.sim.streams import _I, _U, _categorical, _key, _label, _pick, _stage_break, _Stream

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
        a, b, c = (round(rng.uniform(-0.6, 0.6), 3) for _ in range(3))
        coefs.append((a, b, c))
    return coefs[:num_responses]


def _response_structure(num_treatments: int, num_responses: int, p: _Preset):
    """Baselines y0_r = base_r * exp(c . (z_act, z_wealth, z_age)) and delta_rk = A_rk + B tanh(g_rk . z)."""
    base = [45.0 / (r ** 0.8) for r in range(1, num_responses + 1)]      # minutes of use, views, ...
    y0_coefs = [(0.35, -0.1, -0.15), (0.2, 0.25, 0.05)]
    rng = random.Random(4242)
    while len(y0_coefs) < num_responses:
        a, b, c = (round(rng.uniform(-0.3, 0.3), 3) for _ in range(3))
        y0_coefs.append((a, b, c))
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
    num_treatments: int  # K: the data shape, configured as data.* (not a simulator setting)
    num_responses: int   # R

    @classmethod
    def of(cls, cfg: SimulatorConfig, num_treatments: int = 2, num_responses: int = 2) -> "_Population":
        n = cfg.num_users
        mult = int(n * 0.6180339887498949) + 1
        while math.gcd(mult, n) != 1:
            mult += 1
        mult %= n
        mult = mult or 1
        inv = pow(mult, -1, n) if n > 1 else 0
        shift = (cfg.seed * 7919) % n
        return cls(n, cfg.items, mult, inv, shift, cfg.exposures / n, num_treatments, num_responses)

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
    coefs = _value_weight_coefs(pop.num_responses)
    logits = [F.col("_z_act") * a + F.col("_z_wealth") * b + F.col("_z_age") * c for a, b, c in coefs]
    df = df.select("*", *[F.exp(lg).alias(f"_ew{r}") for r, lg in enumerate(logits, start=1)])
    total = sum((F.col(f"_ew{r}") for r in range(2, pop.num_responses + 1)), F.col("_ew1"))
    device = _pick(_categorical(s.uniform(_U.DEVICE), [F.lit(0.47), F.lit(0.45), F.lit(0.08)]), list(DEVICES))
    df = df.select("*", *[(F.col(f"_ew{r}") / total).alias(f"_w{r}") for r in range(1, pop.num_responses + 1)],
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
