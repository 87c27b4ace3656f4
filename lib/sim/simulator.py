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

import math

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from liftlake.lib.features.raw_logs import raw_schemas
from liftlake.lib.sim.exposures import _CORE_COLUMNS, _day_start_us, _exposure_core, _exposure_tables
from liftlake.lib.sim.settings import SimulatorConfig, _is_int
from liftlake.lib.sim.user_day import _USER_DAY_TABLES, _conform, _user_day_frame
from liftlake.lib.sim.world import _Population, _with_item_latents, _with_user_latents


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
                 cache: bool = False, num_treatments: int = 2, num_responses: int = 2) -> SimulatedDay:
    """One day of raw logs and ground truth as DataFrames, keyed by table name (RAW_SCHEMAS order).

    Lazy by default: each frame recomputes its part of the day from the hashes when written
    (raw.exposures cheaply; sim.truth, raw.clicks, raw.conversions and the three user-day tables each
    re-derive the exposures' latent causes). ``cache=True`` persists the exposure core and the
    user-day frame (MEMORY_AND_DISK) on the first write, so the day is computed once; call
    ``unpersist()`` on the result after writing. The rows are the same either way.
    ``num_partitions`` (default: about one per million exposures, at least the default parallelism)
    changes only how Spark splits the work, never the rows. ``num_treatments`` (K) and
    ``num_responses`` (R) are the data shape (``data.*``), which every later job reads too.
    """
    if not isinstance(cfg, SimulatorConfig):
        raise TypeError(f"cfg must be a SimulatorConfig (got {type(cfg).__name__})")
    _day_start_us(ds)
    if num_partitions is None:
        parallel = spark.sparkContext.defaultParallelism
        num_partitions = max(parallel, math.ceil(cfg.exposures / 1_000_000 / parallel) * parallel)
    if not _is_int(num_partitions) or num_partitions < 1:
        raise ValueError(f"num_partitions must be an integer >= 1 (got {num_partitions!r})")
    if not (_is_int(num_treatments) and 1 <= num_treatments <= 8 and _is_int(num_responses)
            and 1 <= num_responses <= cfg.items and num_responses <= 8):
        raise ValueError(f"num_treatments must be in [1, 8] and num_responses in [1, min(8, simulator.items)] "
                         f"(got {num_treatments!r}, {num_responses!r})")
    pop = _Population.of(cfg, num_treatments, num_responses)
    schemas = raw_schemas(num_treatments, num_responses)
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
