"""The simulate section of bench.run (issue 20: "simulate within 3x of the pyarrow + numpy floor at 10M
exposures, cold") and that floor.

* platform  ``liftlake simulate --ds DAY`` in a fresh process into a fresh warehouse, as the daily DAG's
            task runs it cold (``bench.run.dag``'s per-step command and environment): Python, the Spark
            session and its JVM (the store's backend is the session's choice), the simulator's 9 tables
            computed in vectorised numpy (a thread per core), staged as Parquet by pyarrow and committed
            to Delta together.
* floor     ``python -m bench.run.simulate floor WAREHOUSE N`` in a fresh process: the same 9 tables
            (names, columns, Arrow types, row counts) from the same formulas and world parameters, in
            vectorised numpy, each written by pyarrow as one Parquet file under ``<schema>/<table>/ds=DAY/``.

The floor is a floor of cost, written apart from the simulator. It draws with numpy's generator, not
the platform's per-row xxhash64 streams, so its rows are other draws of the same model (the exposures,
users and items agree exactly; the active users, clicks and conversions within a few per cent); it writes
no Delta log (no commit, no staging, no statistics), models no rule breakers (``simulator.bad_row_rate``
0) and runs on one thread. Wall and CPU seconds of each process tree (``TreeCPU``), the CPU the
machine's other processes used meanwhile, and the rows of each table; ``python -m bench.run --only
simulate`` measures this section alone and rewrites only its part of the report.
"""
from __future__ import annotations

import glob
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.run import dag
from bench.run.common import Target, TreeCPU, day_files, run_driver, serve_driver, target_rows
from liftlake.lib.sim.simulator import TABLES
from liftlake.lib.sim.streams import categorical, labels, pick, sigmoid

BEGIN, END = "<!-- bench.run simulate: begin -->", "<!-- bench.run simulate: end -->"
TARGET_VS_FLOOR = 3.0
T = TypeVar("T")


# -- the floor: numpy math (the simulator's small transforms: categorical draws, labels, sigmoid) ------
def world_users(cfg, pop, rng: np.random.Generator) -> dict:
    """Every user's latents and raw.users attributes (``user_latents`` and ``observed_users``), once
    per user: the exposures and the user-day rows index them by ``user_id - 1``."""
    from liftlake.lib.sim.settings import NUM_CITIES
    from liftlake.lib.sim.world import _USER_ACTIVITY_EXPONENT, _value_weight_coefs

    n = pop.n_users
    user_id = np.arange(1, n + 1, dtype=np.int64)
    rank = ((user_id - 1 - pop.shift) * pop.mult_inv) % n
    age_n, wealth_n, intent_n, price_n, taste1, taste2, taste3, act_noise, income_n, tenure_n, orders_n = \
        rng.standard_normal((11, n))
    z_act_raw = -np.log((rank + 0.5) / n) - 1.0
    z_act = np.minimum(z_act_raw, 3.5)
    z_wealth = age_n * 0.35 + wealth_n * math.sqrt(1 - 0.35**2)
    z_buy = z_act * 0.35 + z_wealth * 0.3 + intent_n * 0.88
    weights = np.exp([z_act * a + z_wealth * b + age_n * c for a, b, c in _value_weight_coefs(pop.num_responses)])
    g = _USER_ACTIVITY_EXPONENT
    city = np.floor(rng.random(n) ** 1.6 * NUM_CITIES).astype(np.int64)
    log_activity = (math.log(pop.exposures_per_user / (g * 6.0)) + (1 - 1 / g) * (z_act_raw + 1.0)
                    + act_noise * 0.3 - 0.045)
    tenure = np.clip(np.exp(z_act * 0.5 + tenure_n * 0.9 + 5.6), 1.0, 3650.0)
    vip = z_wealth + z_act * 0.4 + (rng.random(n) - 0.5) * 0.6 > 1.5
    gender = rng.random(n)
    segment = np.select([tenure < 60, vip, z_act > 0.6], [0, 1, 2], 3)
    return {"user_id": user_id, "_z_act": z_act, "_z_wealth": z_wealth, "_z_age": age_n, "_z_buy": z_buy,
            "_z_price": z_wealth * -0.5 + price_n * math.sqrt(0.75), "_taste": np.stack([taste1, taste2, taste3]),
            "_w": weights / weights.sum(axis=0), "_device0": categorical(rng.random(n), [0.47, 0.45, 0.08]),
            "u_age": np.clip(np.round(age_n * 11.0 + 36.0), 18, 70).astype(np.int32),
            "u_gender": pick(("F", "M", "U"), (gender >= 0.49).astype(np.int64) + (gender >= 0.97)),
            "u_city": labels("city_", city, NUM_CITIES),
            "u_activity": np.round(np.exp(log_activity), 3),
            "u_income": np.round(np.exp(z_wealth * 0.45 + np.select([city < 3, city < 8], [0.25, 0.1], 0.0)
                                        + income_n * 0.15 + 9.3), 2),
            "u_segment": pick(("new", "vip", "loyal", "casual"), segment),
            "u_tenure_days": np.floor(tenure).astype(np.int32),
            "u_orders_30d": np.floor(np.exp(z_buy * 0.6 + z_act * 0.25 + orders_n * 0.5 + 0.3)).astype(np.int32)}


def world_items(pop, rng: np.random.Generator) -> dict:
    """Every item's latents and raw.items attributes (``_with_item_latents`` with ``observed``)."""
    from liftlake.lib.sim.settings import BRANDS_PER_CATEGORY, NUM_CATEGORIES

    n = pop.n_items
    cat = np.floor(rng.random(n) ** 1.4 * NUM_CATEGORIES).astype(np.int64)
    price_n, quality, attract_n, e1, e2, e3 = rng.standard_normal((6, n))
    price = np.round(np.exp(2.3 + cat * 0.16 + price_n * 0.55), 2)
    brand = cat * BRANDS_PER_CATEGORY + np.floor(rng.random(n) ** 2.0 * BRANDS_PER_CATEGORY).astype(np.int64)
    return {"item_id": np.arange(1, n + 1, dtype=np.int64), "_quality": quality,
            "_attract": quality * 0.5 + attract_n * math.sqrt(0.75), "_e": np.stack([e1, e2, e3]), "_price": price,
            "i_category": labels("cat_", cat, NUM_CATEGORIES),
            "i_brand": labels("brand_", brand, NUM_CATEGORIES * BRANDS_PER_CATEGORY), "i_price": price}


def day_exposures(cfg, pop, users: dict, items: dict, ds: str, rng: np.random.Generator) -> dict:
    """The day's exposures and their clicks and conversions (``exposure_chunk`` / ``exposure_tables``):
    user by activity, content type by the user's value weights, item by popularity, context, the
    conversion affinity, CTR and CVR under do(click=1), the Bernoulli draws, the event times."""
    from liftlake.lib.sim.exposures import _day_start_us
    from liftlake.lib.sim.settings import DEVICES
    from liftlake.lib.sim.world import (_CTR_INTERCEPT, _CVR_INTERCEPT, _DAY_US, _END_MARGIN_US,
                                        _ITEM_POPULARITY_EXPONENT, _LOG_PRICE_MEAN, _USER_ACTIVITY_EXPONENT)

    n, R = cfg.exposures, pop.num_responses
    rank = np.minimum(np.floor(rng.random(n) ** _USER_ACTIVITY_EXPONENT * pop.n_users), pop.n_users - 1)
    user_id = (rank.astype(np.int64) * pop.mult + pop.shift) % pop.n_users + 1
    u = user_id - 1
    rtype = categorical(rng.random(n), list(users["_w"][:, u])) + 1
    n_of_type = (pop.n_items - rtype) // R + 1
    within = np.minimum(np.floor(rng.random(n) ** _ITEM_POPULARITY_EXPONENT * n_of_type), n_of_type - 1)
    item_id = rtype + within.astype(np.int64) * R
    i = item_id - 1

    u_time = rng.random(n)
    frac = u_time - np.sin(u_time * 2 * math.pi) * (0.6 / (2 * math.pi)) + 20.0 / 24.0
    t_us = np.floor((frac - np.floor(frac)) * float(_DAY_US - _END_MARGIN_US)).astype(np.int64)
    device = np.where(rng.random(n) < 0.1, np.floor(rng.random(n) * 3).astype(np.int64), users["_device0"][u])
    position = (np.floor(rng.random(n) ** 2.0 * 20) + 1).astype(np.int32)
    shock_conv, shock_click = rng.standard_normal((2, n))
    match = np.einsum("kn,kn->n", users["_taste"][:, u], items["_e"][:, i]) / math.sqrt(3.0)
    log_price = np.log(items["_price"][i]) - _LOG_PRICE_MEAN
    affinity = (users["_z_buy"][u] * 0.55 + items["_quality"][i] * 0.35 + match * 0.45 - log_price * 0.35
                + users["_z_wealth"][u] * log_price * 0.15 + shock_conv * 0.5)
    hour_of_day = t_us / 3_600_000_000.0
    device_effect = np.array([{"web": -0.25, "ios": 0.05}.get(d, 0.0) for d in DEVICES])[device]
    click_logit = (_CTR_INTERCEPT + affinity * cfg.selection_bias + users["_z_act"][u] * 0.3
                   + items["_attract"][i] * 0.4 - np.log(position) * 0.3 + device_effect
                   + np.cos((hour_of_day - 21.0) * (2 * math.pi / 24.0)) * 0.15 + shock_click * 0.3)
    ctr, cvr = sigmoid(click_logit), sigmoid(affinity + _CVR_INTERCEPT)
    click = rng.random(n) < ctr
    potential = rng.random(n) < cvr

    # the event times and the value only for the rows that click: the floor skips what no table keeps
    day_start = _day_start_us(ds)
    day_end = day_start + _DAY_US
    exp_us = t_us + day_start
    clicked = np.flatnonzero(click)
    click_us = exp_us[clicked] + np.minimum(rng.exponential(40e6, len(clicked)) + 1e6,
                                            (day_end - exp_us[clicked]) / 2).astype(np.int64)
    conv_us = click_us + np.minimum(rng.exponential(900e6, len(clicked)) + 1e6,
                                    (day_end - click_us) / 2).astype(np.int64)
    value = np.round(items["_price"][i[clicked]] * np.exp(rng.standard_normal(len(clicked)) * 0.25 - 0.03125), 2)
    converted = potential[clicked]
    exposure_id = pc.binary_join_element_wise(ds, pc.cast(pa.array(np.arange(n)), pa.string()), "-")
    click_ids = exposure_id.take(pa.array(clicked))
    return {
        "raw.exposures": {"exposure_id": exposure_id, "user_id": user_id, "item_id": item_id, "ts": exp_us,
                          "position": position, "device": pick(DEVICES, device),
                          "hour": np.floor(hour_of_day).astype(np.int32)},
        "raw.clicks": {"exposure_id": click_ids, "user_id": user_id[clicked], "ts": click_us},
        "raw.conversions": {"exposure_id": click_ids.filter(pa.array(converted)),
                            "user_id": user_id[clicked][converted], "ts": conv_us[converted],
                            "value": value[converted]},
        "sim.truth": {"exposure_id": exposure_id, "ctr_true": ctr, "cvr_do_click_true": cvr,
                      "conversion_potential": potential.astype(np.int32)},
        "_type": rtype,
    }


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


def day_users(cfg, pop, users: dict, user_id: np.ndarray, rtype: np.ndarray, rng: np.random.Generator) -> dict:
    """One row per user active that day (``_user_day_frame``): value shares, the coupon assignment and
    outcome (UniMVT eq. 1-4), the K strategies and R responses (HMUM), and their truth."""
    from liftlake.lib.sim.settings import _PRESET
    from liftlake.lib.sim.world import _grid_base_weights, _response_structure

    K, R = pop.num_treatments, pop.num_responses
    preset = _PRESET[cfg.preset]
    per_type = np.bincount((user_id - 1) * R + rtype - 1, minlength=pop.n_users * R).reshape(pop.n_users, R)
    row = np.flatnonzero(per_type.sum(axis=1))  # users.*[row]: the active users' attributes
    v = per_type[row].T
    exposures = v.sum(axis=0)
    m = len(row)
    z_act, z_wealth, z_age, z_price = (users[k][row] for k in ("_z_act", "_z_wealth", "_z_age", "_z_price"))
    act = (np.log(np.maximum(users["u_activity"][row], 1e-3)) - pop.log_activity_mean) / pop.log_activity_sd
    inc = (np.log(users["u_income"][row]) - 9.39) / 0.50
    age = (users["u_age"][row] - 36.0) / 11.0

    # coupons: probit on observed value outside the randomized slice, value tier by the same score
    grid, jitter, ratio = cfg.grid, cfg.value_jitter, cfg.treated_share
    base_w = _grid_base_weights(grid, jitter)
    eta_unit = preset.mean_uplift / (sum(w * t for w, t in zip(base_w, grid)) / sum(base_w))
    value_score = (act + inc) * (0.6 * cfg.coupon_confounding)
    threshold = -statistics.NormalDist().inv_cdf(ratio) * math.sqrt(1.0 + (0.6 * cfg.coupon_confounding) ** 2 * 2.0)
    coupon_rct = rng.random(m) < cfg.coupon_rct_share
    treated = np.where(coupon_rct, rng.random(m) < ratio, value_score + rng.standard_normal(m) > threshold)
    G = len(grid)
    tier = [(j - (G - 1) / 2) / ((G - 1) / 2) if G > 1 else 0.0 for j in range(G)]
    u_value = rng.random(m)
    idx = np.where(coupon_rct, np.minimum(np.floor(u_value * G).astype(np.int64), G - 1),
                   categorical(u_value, [np.exp(value_score * (1.2 * tier[j])) * base_w[j] for j in range(G)]))
    value = np.asarray(grid)[idx]
    if jitter > 0:
        value = np.maximum(np.round(value * np.exp(rng.standard_normal(m) * jitter), 2), 0.01)
    coupon_value = np.where(treated, value, 0.0)
    p0 = sigmoid(z_act * 0.5 + z_wealth * 0.35 + users["_z_buy"][row] * 0.3 + preset.p0_intercept)
    eta = np.minimum(np.exp(z_price * 0.5 - z_act * 0.25 - 0.15625), 3.0) * eta_unit
    coupon_prob = np.clip(p0 + eta * coupon_value, 0.0, 1.0)

    # strategies: a softmax of observed features outside the RCT slice
    strength = cfg.treatment_confounding * preset.strategy_confounding
    feats = (act, inc, age)
    arm_w = np.exp([np.zeros(m)] + [feats[(k - 1) % 3] * (strength * (1 if (k - 1) // 3 % 2 == 0 else -1) * 0.8)
                                    for k in range(1, K + 1)])
    treat_rct = rng.random(m) < cfg.treatment_rct_share
    u_arm = rng.random(m)
    arm = np.where(treat_rct, np.minimum(np.floor(u_arm * (K + 1)).astype(np.int64), K),
                   categorical(u_arm, list(arm_w)))
    arm_propensity = np.where(treat_rct, 1.0 / (K + 1), arm_w[arm, np.arange(m)] / arm_w.sum(axis=0))

    base, y0_coefs, effects = _response_structure(K, R, preset)
    z = np.stack([z_act, z_wealth, z_age, z_price])
    out: dict = {"user_id": row + 1, "coupon_treated": treated.astype(np.int32), "coupon_value": coupon_value,
                 "coupon_randomized": coupon_rct.astype(np.int32), "treatment_id": arm.astype(np.int32),
                 "treatment_randomized": treat_rct.astype(np.int32),
                 "coupon_outcome": (rng.random(m) < coupon_prob).astype(np.int32),
                 "p0_true": p0, "eta_true": eta, "coupon_prob_true": coupon_prob,
                 "coupon_propensity_true": np.where(coupon_rct, ratio, _normal_cdf(value_score - threshold)),
                 "treatment_propensity_true": arm_propensity, "exposures_true": exposures}
    for r in range(1, R + 1):
        y0 = np.exp(np.dot(y0_coefs[r - 1], z[:3])) * base[r - 1]
        taus = [y0 * (np.tanh(np.dot(effects[(r, k)][1], z)) * preset.strategy_spread + effects[(r, k)][0])
                for k in range(1, K + 1)]
        out |= {f"y0_r{r}_true": y0, **{f"tau_r{r}_k{k}_true": tau for k, tau in enumerate(taus, start=1)},
                f"response_{r}": (y0 + np.choose(arm, [np.zeros(m), *taus]))
                * np.exp(rng.standard_normal(m) * 0.4 - 0.08),
                f"value_share_{r}": v[r - 1] / exposures, f"value_weight_r{r}_true": users["_w"][r - 1, row]}
    return out


# -- the floor: tables and Parquet ----------------------------------------------------------------
def arrow_schemas(num_treatments: int, num_responses: int) -> dict[str, pa.Schema]:
    """The Arrow schema of each table's Parquet files (the raw-log contract without ``ds``, which is the
    partition folder), converted as the platform's store converts it for its Delta schema."""
    from pyspark.sql.pandas.types import to_arrow_schema

    from liftlake.lib.features.raw_logs import raw_schemas

    return {name: pa.schema([f for f in to_arrow_schema(schema) if f.name != "ds"])
            for name, schema in raw_schemas(num_treatments, num_responses).items()}


def _table(schema: pa.Schema, columns: dict) -> pa.Table:
    """The contract's columns, in its order and types, picked from ``columns`` (a missing one raises)."""
    arrays = [columns[f.name].cast(f.type) if isinstance(columns[f.name], pa.Array)
              else pa.array(columns[f.name], type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def floor_tables(cfg, ds: str, num_treatments: int = 2, num_responses: int = 2) -> dict[str, pa.Table]:
    """One simulated day's 9 tables as Arrow tables, in the platform's order. The world (users, items)
    draws from ``cfg.seed`` alone and the day from the seed and the day, as the platform's hashes do."""
    from liftlake.lib.sim.world import _Population

    if cfg.bad_row_rate > 0:
        raise ValueError("the simulate floor models no rule breakers (simulator.bad_row_rate must be 0)")
    pop = _Population.of(cfg, num_treatments, num_responses)
    world = np.random.default_rng([cfg.seed, 0])
    day = np.random.default_rng([cfg.seed, 1 + int(ds.replace("-", ""))])
    users, items = world_users(cfg, pop, world), world_items(pop, world)
    columns = {"raw.users": users, "raw.items": items, **day_exposures(cfg, pop, users, items, ds, day)}
    user_day = day_users(cfg, pop, users, columns["raw.exposures"]["user_id"], columns.pop("_type"), day)
    columns |= {name: user_day for name in ("raw.treatments", "raw.responses", "sim.truth_user")}
    schemas = arrow_schemas(num_treatments, num_responses)
    return {name: _table(schemas[name], columns[name]) for name in TABLES}


def floor_file(warehouse: str, table: str, ds: str) -> str:
    """Where the floor writes ``table``'s day: the platform's table folder, its Hive ``ds=`` partition."""
    return os.path.join(warehouse, *table.split("."), f"ds={ds}", "part-00000.parquet")


def write_floor(tables: dict[str, pa.Table], warehouse: str, ds: str) -> None:
    for name, table in tables.items():
        path = floor_file(warehouse, name, ds)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pq.write_table(table, path)


def run_floor(warehouse: str, size: int, ds: str = dag.DS) -> dict:
    """The floor for a day of ``size`` exposures with the platform's configuration (conf/base.yaml, no
    LIFTLAKE_CONF): its math and its writes timed apart, the rows of each table."""
    from liftlake.lib.config import load_config

    config = load_config([], [f"simulator.exposures={size}"], env={}, check_model=False)
    start = time.perf_counter()
    tables = floor_tables(config.simulator, ds, config.data.num_treatments, config.data.num_responses)
    math_s = time.perf_counter() - start
    write_floor(tables, warehouse, ds)
    return {"math_s": math_s, "write_s": time.perf_counter() - start - math_s,
            "rows": {name: t.num_rows for name, t in tables.items()}}


def _drive(mode: str, warehouse: str, size: int) -> dict:
    if mode != "floor":
        raise SystemExit(f"python -m bench.run.simulate: unknown mode {mode!r} (floor)")
    return run_floor(warehouse, size)


# -- the measured steps ---------------------------------------------------------------------------
def _rows(files: list[str]) -> int:
    return sum(pq.read_metadata(f).num_rows for f in files)


def platform_rows(warehouse: str, ds: str = dag.DS) -> dict[str, int]:
    """Rows of each table's day, from the files its Delta log holds (read from the Parquet footers)."""
    return {name: _rows(day_files(os.path.join(warehouse, *name.split(".")), ds)) for name in TABLES}


def floor_rows(warehouse: str, ds: str = dag.DS) -> dict[str, int]:
    return {name: _rows(glob.glob(os.path.join(os.path.dirname(floor_file(warehouse, name, ds)), "*.parquet")))
            for name in TABLES}


def _machine_busy_s() -> float:
    """CPU seconds every process of the machine has used so far (all but idle, iowait and steal)."""
    import psutil  # type: ignore[import-untyped]  # no stubs in the venv

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq


def _cold(run: Callable[[], T]) -> tuple[dict, T]:
    """Wall and CPU seconds of ``run()`` (which starts a fresh process) and the CPU seconds the machine's
    other processes used meanwhile: on a shared machine, what says whether the step had its cores."""
    busy = _machine_busy_s()
    with TreeCPU() as cpu:
        out = run()
    others = max(0.0, _machine_busy_s() - busy - cpu.cpu)
    return {"wall_s": cpu.wall, "cpu_s": cpu.cpu, "others_cpu_s": others, "peak_rss_mib": cpu.started_peak_mib}, out


def bench_simulate(size: int, root: str, log=print) -> dict:
    """At ``size`` exposures: the platform's simulate step cold, then the floor cold, each a fresh process
    writing into a fresh folder; wall and CPU seconds of each process tree, and the rows of each table."""
    base = os.path.join(root, f"simulate-{size}")
    shutil.rmtree(base, ignore_errors=True)
    platform_wh, floor_wh = os.path.join(base, "platform"), os.path.join(base, "floor")
    result: dict = {"exposures": size, "load_before": os.getloadavg()[0]}
    log(f"[bench] simulate {size:,}: the platform's step, cold")
    result["platform"], _ = _cold(lambda: dag.run_liftlake(dag.step_args("simulate", size), dag.step_env(platform_wh)))
    result["platform"]["rows"] = platform_rows(platform_wh)
    log(f"[bench] simulate {size:,}: the numpy + pyarrow floor, cold")
    result["floor"], inner = _cold(lambda: run_driver("bench.run.simulate", ["floor", floor_wh, str(size)]))
    result["floor"] |= {"rows": floor_rows(floor_wh), "math_s": inner["math_s"], "write_s": inner["write_s"]}
    result["load_after"] = os.getloadavg()[0]
    result["ratio_wall"] = result["platform"]["wall_s"] / result["floor"]["wall_s"]
    result["ratio_cpu"] = result["platform"]["cpu_s"] / result["floor"]["cpu_s"]
    shutil.rmtree(base, ignore_errors=True)
    return result


# -- the report section ---------------------------------------------------------------------------
def targets(results: list[dict]) -> list[Target]:
    """Wall seconds of the cold step over its cold floor's, at each size (the CPU ratio beside it)."""
    return [Target(f"simulate <= {TARGET_VS_FLOOR:g}x the numpy + pyarrow floor at {r['exposures']:,}, cold (wall)",
                   f"{r['ratio_wall']:.2f}x (CPU {r['ratio_cpu']:.2f}x)", r["ratio_wall"] <= TARGET_VS_FLOOR)
            for r in results]


def _linear(results: list[dict], step: str, key: str) -> tuple[float, float]:
    """(fixed seconds, seconds per million exposures) through the smallest and the largest size."""
    lo, hi = min(results, key=lambda r: r["exposures"]), max(results, key=lambda r: r["exposures"])
    per_m = (hi[step][key] - lo[step][key]) / ((hi["exposures"] - lo["exposures"]) / 1e6)
    return lo[step][key] - per_m * lo["exposures"] / 1e6, per_m


def section(results: list[dict], info: dict) -> list[str]:
    from bench.run.report import fmt

    lines = [BEGIN, "## simulate vs. its floor: numpy + pyarrow, one day, cold", "",
             f"Measured {info['started']} by `{info['command']}` on {info['machine'].get('cpus', '?')} CPU cores "
             f"(pyspark {info['machine'].get('pyspark')}). Platform: `liftlake simulate --ds {dag.DS}` in a fresh "
             "process into a fresh warehouse, as the daily DAG's task runs it cold (`LIFTLAKE_WARM_DRIVER=0`): "
             "Python, the Spark session and JVM (the store's backend is the session's choice), the 9 tables "
             "computed in vectorised numpy by a thread per core, staged as Parquet by pyarrow and committed to "
             "Delta together. "
             "Floor: `python -m bench.run.simulate floor` in a fresh process: the same 9 tables (names, columns, "
             "Arrow types) from the same formulas and world parameters in vectorised numpy, one Parquet file per "
             "table written by pyarrow under the table's `ds=` folder, with no Delta commit. Wall seconds, "
             "CPU seconds of each process tree, and the CPU seconds the machine's other processes used while "
             "it ran (a shared machine: near 0 when the step had the cores to itself); peak resident memory of "
             "the step's processes, sampled every 0.1 s.", "",
             "| exposures | step | wall s | CPU s | other processes' CPU s meanwhile | peak RSS MiB | rows, 9 tables |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        p, f = r["platform"], r["floor"]
        lines += [f"| {r['exposures']:,} | simulate (platform, cold) | {fmt(p['wall_s'])} | {fmt(p['cpu_s'])} | "
                  f"{fmt(p['others_cpu_s'])} | {fmt(p.get('peak_rss_mib'))} | {sum(p['rows'].values()):,} |",
                  f"| {r['exposures']:,} | floor: numpy + pyarrow (cold; in it {fmt(f['math_s'])} s math and "
                  f"Arrow tables, {fmt(f['write_s'])} s Parquet writes) | {fmt(f['wall_s'])} | {fmt(f['cpu_s'])} | "
                  f"{fmt(f['others_cpu_s'])} | {fmt(f.get('peak_rss_mib'))} | {sum(f['rows'].values()):,} |"]
    head = " | ".join(f"platform at {r['exposures']:,} | floor at {r['exposures']:,}" for r in results)
    lines += ["", f"| table | {head} |", "|---|" + "---|---|" * len(results)]
    for name in TABLES:
        cells = " | ".join(f"{r['platform']['rows'][name]:,} | {r['floor']['rows'][name]:,}" for r in results)
        lines.append(f"| {name} | {cells} |")
    lines += ["", *target_rows(targets(results)), ""]
    if len({r["exposures"] for r in results}) > 1:
        fits = "; ".join(f"{name} {_linear(results, step, 'cpu_s')[0]:.1f} CPU s fixed + "
                         f"{_linear(results, step, 'cpu_s')[1]:.2f} per million exposures"
                         for step, name in (("platform", "platform"), ("floor", "floor")))
        lines += [f"Through the two sizes: {fits}.", ""]
    sizes = ",".join(str(r["exposures"]) for r in results)
    loads = ", ".join(f"{r['exposures']:,}: {r['load_before']:.2f} before, {r['load_after']:.2f} after"
                      for r in results)
    lines += ["The floor is a floor of cost, not a second simulator: numpy's generator instead of the platform's "
              "per-row xxhash64 streams (other draws of the same model: the exposures, users and items match "
              "exactly; the active users, clicks and conversions within a few per cent, its world's users and "
              "items being other draws too), no Delta log, no staging and no rule breakers; "
              "its process also counts its imports (numpy, pyarrow, and the simulator's constants from liftlake, "
              "which load pyspark's Python modules but start no JVM). It runs mostly on one core (numpy; pyarrow "
              "adds a few threads), the platform on both. The verdict is on wall seconds, the CPU ratio beside "
              f"it. Machine load (1-minute average) per size: {loads}. Regenerate: "
              f"`.venv/bin/python -m bench.run --only simulate --sizes {sizes}`.",
              END, ""]
    return lines


if __name__ == "__main__":
    serve_driver(_drive)
