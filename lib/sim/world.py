"""The simulated world's population: user and item latents (functions of seed and id only), the response
structure of the K strategies, and the observed attributes derived from the latents."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from liftlake.lib.sim.settings import BRANDS_PER_CATEGORY, NUM_CATEGORIES, NUM_CITIES, SimulatorConfig, _Preset
from liftlake.lib.sim.streams import _I, _U, Stream, categorical, floor_int, key, labels, round_half_up

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
# Users and items: functions of (seed, id) only, computed once per day for the whole population
# ---------------------------------------------------------------------------------------------
def user_latents(cfg: SimulatorConfig, pop: _Population) -> dict[str, np.ndarray]:
    """Every user's hidden latents (``z_*``, ``taste``, value weights ``w``, ``device0``) and the
    numbers behind the raw.users attributes, indexed by ``user_id - 1``; everything hashes (seed, user_id)."""
    uid = np.arange(1, pop.n_users + 1, dtype=np.int64)
    s = Stream(key(cfg.seed, "user", uid))
    rank = ((uid - 1 - pop.shift) * pop.mult_inv) % pop.n_users
    age_n, wealth_n = s.normals(_U.AGE_WEALTH)
    intent_n, price_n = s.normals(_U.INTENT_PRICE)
    taste1, taste2 = s.normals(_U.TASTE12)
    taste3, act_noise = s.normals(_U.TASTE3_ACT)
    # -log(q) - 1 with q the activity quantile: mean 0, sd 1, right-skewed (heavy users)
    z_act_raw = -np.log((rank.astype(np.float64) + 0.5) / pop.n_users) - 1.0
    z_wealth = age_n * 0.35 + wealth_n * math.sqrt(1 - 0.35**2)
    z_act = np.minimum(z_act_raw, 3.5)
    # purchase intent and price sensitivity: hidden, partly explained by activity and wealth
    z_buy = z_act * 0.35 + z_wealth * 0.3 + intent_n * 0.88
    z_price = z_wealth * -0.5 + price_n * math.sqrt(0.75)
    # latent value weights over the R response types (softmax)
    ew = [np.exp(z_act * a + z_wealth * b + age_n * c) for a, b, c in _value_weight_coefs(pop.num_responses)]
    total = ew[0]
    for e in ew[1:]:
        total = total + e
    income_n, tenure_n = s.normals(_U.INCOME_TENURE)
    orders_n, _ = s.normals(_U.ORDERS)
    return {"z_act_raw": z_act_raw, "z_act": z_act, "z_age": age_n, "z_wealth": z_wealth, "z_buy": z_buy,
            "z_price": z_price, "taste": (taste1, taste2, taste3), "act_noise": act_noise,
            "w": [e / total for e in ew],
            "device0": categorical(s.uniform(_U.DEVICE), [0.47, 0.45, 0.08]),   # index into DEVICES
            "income_n": income_n, "tenure_n": tenure_n, "orders_n": orders_n,
            "city": floor_int(s.power(_U.CITY, 1.6) * NUM_CITIES, np.int32),  # big cities first
            "segment_u": s.uniform(_U.SEGMENT), "gender_u": s.uniform(_U.GENDER)}


def observed_users(lat: dict[str, np.ndarray], pop: _Population) -> dict:
    """The raw.users attributes: noisy proxies of the latents."""
    city = lat["city"]
    tier_effect = np.where(city < 3, 0.25, np.where(city < 8, 0.1, 0.0))
    g = _USER_ACTIVITY_EXPONENT
    log_activity = (math.log(pop.exposures_per_user / (g * 6.0)) + (1 - 1 / g) * (lat["z_act_raw"] + 1.0)
                    + lat["act_noise"] * 0.3 - 0.045)
    tenure = np.minimum(np.maximum(np.exp(lat["z_act"] * 0.5 + lat["tenure_n"] * 0.9 + 5.6), 1.0), 3650.0)
    vip = lat["z_wealth"] + lat["z_act"] * 0.4 + (lat["segment_u"] - 0.5) * 0.6 > 1.5
    gender_u = lat["gender_u"]
    segment = np.where(tenure < 60, 0, np.where(vip, 1, np.where(lat["z_act"] > 0.6, 2, 3)))
    return {
        "user_id": np.arange(1, pop.n_users + 1, dtype=np.int64),
        "u_age": np.minimum(np.maximum(round_half_up(lat["z_age"] * 11.0 + 36.0, 0), 18.0), 70.0).astype(np.int32),
        "u_gender": pa.array(["F", "M", "U"]).take(pa.array((gender_u >= 0.49).astype(np.int8) + (gender_u >= 0.97))),
        "u_city": labels("city_", city, NUM_CITIES),
        "u_activity": round_half_up(np.exp(log_activity), 3),
        "u_income": round_half_up(np.exp(lat["z_wealth"] * 0.45 + tier_effect + lat["income_n"] * 0.15 + 9.3), 2),
        "u_segment": pa.array(["new", "vip", "loyal", "casual"]).take(pa.array(segment)),
        "u_tenure_days": floor_int(tenure, np.int32),
        "u_orders_30d": floor_int(np.exp(lat["z_buy"] * 0.6 + lat["z_act"] * 0.25 + lat["orders_n"] * 0.5 + 0.3),
                                  np.int32),
    }


def observed_scores(users: dict, pop: _Population, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Standardized scores of OBSERVED user attributes (of the users at ``rows``): the only inputs of
    the confounded assignments."""
    act = (np.log(np.maximum(users["u_activity"][rows], 1e-3)) - pop.log_activity_mean) / pop.log_activity_sd
    inc = (np.log(users["u_income"][rows]) - 9.39) / 0.50
    age = (users["u_age"][rows].astype(np.float64) - 36.0) / 11.0
    return {"act": act, "inc": inc, "age": age}


def item_latents(cfg: SimulatorConfig, pop: _Population) -> dict:
    """Every item's latents and raw.items attributes, indexed by ``item_id - 1``."""
    iid = np.arange(1, pop.n_items + 1, dtype=np.int64)
    s = Stream(key(cfg.seed, "item", iid))
    cat = floor_int(s.power(_I.CATEGORY, 1.4) * NUM_CATEGORIES, np.int32)
    price_n, quality = s.normals(_I.PRICE_QUALITY)
    attract_n, e1 = s.normals(_I.ATTRACT_TASTE1)
    e2, e3 = s.normals(_I.TASTE23)
    price = round_half_up(np.exp(2.3 + cat.astype(np.float64) * 0.16 + price_n * 0.55), 2)
    brand = cat * BRANDS_PER_CATEGORY + floor_int(s.power(_I.BRAND, 2.0) * BRANDS_PER_CATEGORY, np.int32)
    return {"item_id": iid, "quality": quality, "attract": quality * 0.5 + attract_n * math.sqrt(0.75),
            "taste": (e1, e2, e3), "price": price,
            "i_category": labels("cat_", cat, NUM_CATEGORIES),
            "i_brand": labels("brand_", brand, NUM_CATEGORIES * BRANDS_PER_CATEGORY), "i_price": price}
