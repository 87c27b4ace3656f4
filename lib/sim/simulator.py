"""liftlake's log simulator: one day of raw logs, with the ground truth that real logs never carry.

Everything is vectorised numpy over the whole population and over chunks of the day's exposures (threads,
one per core: numpy and Arrow release the GIL), and every random number is a hash: Spark SQL's
``xxhash64(seed, domain, [ds,] id, salt)`` mapped to (0, 1), normals by Box-Muller on two such uniforms
(lib/sim/streams.py). The same (seed, ds, config) therefore gives the same rows however the day is
chunked, and each draw can be recomputed in Spark SQL. Users and items are one population (their
attributes hash seed + id only, never ds); a day's behaviour (exposures, clicks, coupons, strategies,
responses) also hashes ds.

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

``python -m liftlake.lib.sim.simulator [N]`` prints the time of simulating N exposures (no write).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from liftlake.lib.sim.exposures import _day_start_us, exposure_chunk, exposure_tables
from liftlake.lib.sim.settings import SimulatorConfig, _is_int
from liftlake.lib.sim.user_day import user_day_tables
from liftlake.lib.sim.world import _Population, item_latents, observed_users, user_latents

TABLES = ("raw.users", "raw.items", "raw.exposures", "raw.clicks", "raw.conversions", "raw.treatments",
          "raw.responses", "sim.truth", "sim.truth_user")
CHUNK_ROWS = 1_000_000   # exposures computed together: about 1 GB of numpy temporaries at most
# the per-exposure tables of a day that a sink can take chunk by chunk (clicks and conversions are a
# few percent of the exposures: they stay in memory)
STREAMED_TABLES = ("raw.exposures", "sim.truth")


def simulate_day(cfg: SimulatorConfig, ds: str, num_treatments: int = 2, num_responses: int = 2,
                 chunk_rows: int = CHUNK_ROWS, threads: int | None = None,
                 sink: Callable[[str, int, pa.Table], None] | None = None) -> dict[str, pa.Table]:
    """One day of raw logs and ground truth as Arrow tables, keyed by table name (``TABLES`` order),
    without the ``ds`` column (the day's partition). ``chunk_rows`` and ``threads`` (default: one per
    core) change only how the work is split, never the rows. ``num_treatments`` (K) and
    ``num_responses`` (R) are the data shape (``data.*``), which every later job reads too.

    Without ``sink`` the day is held in this process's memory: about 170 MB per million exposures.
    With it, ``sink(table, index, rows)`` takes each chunk of the ``STREAMED_TABLES`` as it is computed
    (from the worker threads; ``index`` orders the chunks in the day) and those tables are left out of
    the result, so memory stays at the chunks in flight whatever the day's size."""
    if not isinstance(cfg, SimulatorConfig):
        raise TypeError(f"cfg must be a SimulatorConfig (got {type(cfg).__name__})")
    _day_start_us(ds)
    if not _is_int(chunk_rows) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be an integer >= 1 (got {chunk_rows!r})")
    if not (_is_int(num_treatments) and 1 <= num_treatments <= 8 and _is_int(num_responses)
            and 1 <= num_responses <= cfg.items and num_responses <= 8):
        raise ValueError(f"num_treatments must be in [1, 8] and num_responses in [1, min(8, simulator.items)] "
                         f"(got {num_treatments!r}, {num_responses!r})")
    pop = _Population.of(cfg, num_treatments, num_responses)
    latents, items = user_latents(cfg, pop), item_latents(cfg, pop)
    users = observed_users(latents, pop)
    bounds = [(first, min(first + chunk_rows, cfg.exposures)) for first in range(0, cfg.exposures, chunk_rows)]

    def chunk(index: int) -> tuple[dict[str, pa.Table], np.ndarray]:
        core = exposure_chunk(cfg, ds, pop, latents, items, *bounds[index])
        # V_r of eq. 9: each user's exposures of content type r
        counts = np.stack([np.bincount(core["user_id"][core["type"] == r] - 1, minlength=pop.n_users)
                           for r in range(1, num_responses + 1)])
        tables = exposure_tables(core, ds)
        if sink is not None:
            for name in STREAMED_TABLES:
                sink(name, index, tables.pop(name))
        return tables, counts

    workers = max(1, min(threads or os.cpu_count() or 1, len(bounds)))
    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(chunk, range(len(bounds))))
    type_counts = np.sum([counts for _, counts in done], axis=0)
    out = {"raw.users": pa.table(users),
           "raw.items": pa.table({k: items[k] for k in ("item_id", "i_category", "i_brand", "i_price")}),
           **{name: pa.concat_tables([tables[name] for tables, _ in done])
              for name in ("raw.exposures", "raw.clicks", "raw.conversions", "sim.truth")
              if sink is None or name not in STREAMED_TABLES},
           **user_day_tables(cfg, ds, pop, latents, users, type_counts)}
    return {name: out[name] for name in TABLES if name in out}


def _bench(n: int) -> None:
    import time

    start = time.perf_counter()
    tables = simulate_day(SimulatorConfig(exposures=n), "2026-11-20")
    took = time.perf_counter() - start
    for name, table in tables.items():
        print(f"{name:<18} {table.num_rows:>12,} rows")
    print(f"all tables: {took:.2f} s for {n:,} exposures -> {n / took:,.0f} exposures/s")


if __name__ == "__main__":
    import sys

    _bench(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
