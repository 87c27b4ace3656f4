"""A day's exposures and what follows them: clicks from a CTR model with selection bias, conversions under
do(click=1), and the raw.exposures / raw.clicks / raw.conversions / sim.truth tables."""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from liftlake.lib.sim.settings import BAD_EXPOSURE_KINDS, DEVICES, SimulatorConfig
from liftlake.lib.sim.streams import _E, _TWO_PI, Stream, categorical, floor_int, key, pick, round_half_up, sigmoid
from liftlake.lib.sim.world import (
    _CTR_INTERCEPT,
    _CVR_INTERCEPT,
    _DAY_US,
    _END_MARGIN_US,
    _ITEM_POPULARITY_EXPONENT,
    _LOG_PRICE_MEAN,
    _USER_ACTIVITY_EXPONENT,
    _Population,
)


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


def exposure_chunk(cfg: SimulatorConfig, ds: str, pop: _Population, users: dict, items: dict,
                   first: int, stop: int) -> dict[str, np.ndarray]:
    """Exposures ``first`` .. ``stop - 1`` of the day with their latent causes, probabilities and
    potential outcomes (``users`` / ``items``: the population's latents, indexed by id - 1)."""
    R = pop.num_responses
    day_start = _day_start_us(ds)
    n = np.arange(first, stop, dtype=np.int64)
    s = Stream(key(cfg.seed, "exposure", n, ds))
    rank = np.minimum(floor_int(s.power(_E.USER, _USER_ACTIVITY_EXPONENT) * pop.n_users), pop.n_users - 1)
    user_id = (rank * pop.mult + pop.shift) % pop.n_users + 1
    u = user_id - 1

    # content type from the user's value weights (eq. 9's V_r counts these), then an item of that type
    rtype = categorical(s.uniform(_E.TYPE), [w[u] for w in users["w"]]) + 1
    n_of_type = floor_int((pop.n_items - rtype) / R) + 1
    within = np.minimum(floor_int(s.power(_E.ITEM, _ITEM_POPULARITY_EXPONENT) * n_of_type), n_of_type - 1)
    item_id = rtype.astype(np.int64) + within * R
    i = item_id - 1

    # context: position, device, time of day (evening peak)
    u_time = s.uniform(_E.TIME)
    frac = u_time - np.sin(u_time * _TWO_PI) * (0.6 / _TWO_PI) + 20.0 / 24.0
    frac = frac - np.floor(frac)
    switch = s.uniform(_E.DEVICE_SWITCH) < 0.1
    device = np.where(switch, floor_int(s.uniform(_E.DEVICE) * 3, np.int32), users["device0"][u])
    shock_conv, shock_click = s.normals(_E.SHOCKS)
    position = floor_int(s.power(_E.POSITION, 2.0) * 20, np.int32) + 1
    t_us = floor_int(frac * float(_DAY_US - _END_MARGIN_US))
    taste, e = users["taste"], items["taste"]
    match = (taste[0][u] * e[0][i] + taste[1][u] * e[1][i] + taste[2][u] * e[2][i]) / math.sqrt(3.0)
    log_price = np.log(items["price"][i]) - _LOG_PRICE_MEAN
    z_wealth = users["z_wealth"][u]
    # conversion affinity = logit of CVR under do(click=1); the shock is unobserved (MNAR)
    affinity = (users["z_buy"][u] * 0.55 + items["quality"][i] * 0.35 + match * 0.45 - log_price * 0.35
                + z_wealth * log_price * 0.15 + shock_conv * 0.5)
    hour_of_day = t_us.astype(np.float64) / 3_600_000_000.0
    device_effect = np.where(device == DEVICES.index("web"), -0.25, np.where(device == DEVICES.index("ios"), 0.05, 0.0))
    click_logit = (_CTR_INTERCEPT + affinity * cfg.selection_bias + users["z_act"][u] * 0.3 + items["attract"][i] * 0.4
                   - np.log(position.astype(np.float64)) * 0.3 + device_effect
                   + np.cos((hour_of_day - 21.0) * (_TWO_PI / 24.0)) * 0.15 + shock_click * 0.3)
    cvr = sigmoid(affinity + _CVR_INTERCEPT)
    ctr = sigmoid(click_logit)
    bad = (s.uniform(_E.BAD) < cfg.bad_row_rate) if cfg.bad_row_rate > 0 else np.zeros(len(n), dtype=bool)
    out = {"n": n, "user_id": user_id, "item_id": item_id, "type": rtype, "position": position, "device": device,
           "hour": floor_int(hour_of_day, np.int32), "exp_us": t_us + day_start,
           "ctr_true": ctr, "cvr_do_click_true": cvr,
           "click": s.uniform(_E.CLICK) < ctr,
           "conversion_potential": (s.uniform(_E.CONVERT) < cvr).astype(np.int32),
           "bad": np.where(bad, floor_int(s.uniform(_E.BAD_KIND) * len(BAD_EXPOSURE_KINDS), np.int32), -1)}
    return _with_events(out, s, ds, items, i)


_KIND = {name: j for j, name in enumerate(BAD_EXPOSURE_KINDS)}   # a rule breaker's kind -> its code in ``bad``


def _with_events(core: dict, s: Stream, ds: str, items: dict, i: np.ndarray) -> dict:
    """The rows that click or convert (by the model, or as a rule breaker) and their times: a click
    1 s + Exp(40 s) after the exposure, a conversion 1 s + Exp(15 min) after the click, each delay
    capped at half the time left in the day, so both stay strictly inside the day."""
    bad = core["bad"]
    # the events of a clean row (and of a duplicated one) follow the model; the other kinds replace them
    follows_model = (bad < 0) | (bad == _KIND["duplicate_exposure_id"])
    clicked = (core["click"] & follows_model) | np.isin(bad, [_KIND["click_without_exposure"],
                                                              _KIND["conversion_before_click"]])
    converted = ((core["click"] & (core["conversion_potential"] == 1) & follows_model)
                 | np.isin(bad, [_KIND["conversion_without_click"], _KIND["conversion_before_click"]]))
    rows = np.flatnonzero(clicked | converted)
    events = s.take(rows)
    day_end = _day_start_us(ds) + _DAY_US
    exp_us = core["exp_us"][rows]
    click_us = exp_us + np.minimum(events.exponential(_E.CLICK_DELAY, 40e6) + 1e6,
                                   (day_end - exp_us) / 2).astype(np.int64)
    conv_us = click_us + np.minimum(events.exponential(_E.CONVERT_DELAY, 900e6) + 1e6,
                                    (day_end - click_us) / 2).astype(np.int64)
    conv_us = np.where(bad[rows] == _KIND["conversion_before_click"],
                       (exp_us + (click_us - exp_us) / 2).astype(np.int64), conv_us)
    value_n, _ = events.normals(_E.VALUE)
    return {**core, "event_rows": rows, "clicked": clicked[rows], "converted": converted[rows],
            "click_us": click_us, "conv_us": conv_us,
            "value": round_half_up(items["price"][i[rows]] * np.exp(value_n * 0.25 - 0.03125), 2)}


def exposure_tables(core: dict, ds: str) -> dict[str, pa.Table]:
    """raw.exposures, raw.clicks, raw.conversions and sim.truth of a chunk of exposures (no ``ds``
    column: the writer puts the rows in the day's partition)."""
    bad = core["bad"]
    exposure_id = _ids(f"{ds}-", core["n"])
    ts = pa.timestamp("us", tz="UTC")
    exposures = pa.table({
        "exposure_id": exposure_id,
        "user_id": pa.array(core["user_id"], mask=bad == _KIND["null_user_id"]),
        "item_id": core["item_id"], "ts": pa.array(core["exp_us"], ts), "position": core["position"],
        "device": pick(DEVICES, core["device"]), "hour": core["hour"]})
    resent = bad == _KIND["duplicate_exposure_id"]
    if resent.any():
        exposures = pa.concat_tables([exposures, exposures.filter(pa.array(resent))])
    rows = core["event_rows"]
    event_ids = exposure_id.take(pa.array(rows))
    orphan = pa.array(bad[rows] == _KIND["click_without_exposure"])
    clicks = pa.table({"exposure_id": pc.if_else(orphan, _ids(f"{ds}-orphan-", core["n"][rows]), event_ids),
                       "user_id": core["user_id"][rows], "ts": pa.array(core["click_us"], ts)})
    conversions = pa.table({"exposure_id": event_ids, "user_id": core["user_id"][rows],
                            "ts": pa.array(core["conv_us"], ts), "value": core["value"]})
    truth = pa.table({"exposure_id": exposure_id, "ctr_true": core["ctr_true"],
                      "cvr_do_click_true": core["cvr_do_click_true"],
                      "conversion_potential": core["conversion_potential"]})
    return {"raw.exposures": exposures, "raw.clicks": clicks.filter(pa.array(core["clicked"])),
            "raw.conversions": conversions.filter(pa.array(core["converted"])), "sim.truth": truth}


def _ids(prefix: str, n: np.ndarray) -> pa.Array:
    """``prefix`` + each exposure number, built in Arrow (no Python string per row)."""
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(n), pa.string()), "")
