"""A day's exposures and what follows them: clicks from a CTR model with selection bias, conversions under
do(click=1), and the raw.exposures / raw.clicks / raw.conversions / sim.truth tables."""
from __future__ import annotations

import datetime as dt
import math

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from liftlake.lib.sim.settings import BAD_EXPOSURE_KINDS, DEVICES, SimulatorConfig
from liftlake.lib.sim.streams import _E, _TWO_PI, _categorical, _key, _pick, _sigmoid, _stage_break, _Stream
from liftlake.lib.sim.user_day import _conform, _keep_rows
from liftlake.lib.sim.world import (
    _CTR_INTERCEPT,
    _CVR_INTERCEPT,
    _DAY_US,
    _END_MARGIN_US,
    _ITEM_POPULARITY_EXPONENT,
    _LOG_PRICE_MEAN,
    _USER_ACTIVITY_EXPONENT,
    _Population,
    _with_item_latents,
    _with_user_latents,
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


_ITEM_LATENTS = ("_quality", "_attract", "_e1", "_e2", "_e3", "_price")


_USER_LATENTS = ("_z_act", "_z_wealth", "_z_buy", "_taste1", "_taste2", "_taste3", "_device0")


_BROADCAST_USERS_MAX = 2_000_000


def _join_user_latents(df: DataFrame, spark: SparkSession, cfg: SimulatorConfig, pop: _Population,
                       num_partitions: int) -> DataFrame:
    """Attach the user latents to each exposure. Up to ``_BROADCAST_USERS_MAX`` users they are computed
    once per user and broadcast (ids are dense, so the lookup is an array index); above, per exposure.
    The same function computes them either way, so the rows do not depend on the path."""
    names = _USER_LATENTS + tuple(f"_w{r}" for r in range(1, pop.num_responses + 1))
    if pop.n_users > _BROADCAST_USERS_MAX:
        return _stage_break(_with_user_latents(df, cfg, pop, observed=False), num_partitions)
    parts = max(1, min(num_partitions, math.ceil(pop.n_users / 250_000)))
    users = spark.range(1, pop.n_users + 1, 1, parts).withColumnRenamed("id", "user_id")
    users = _with_user_latents(users, cfg, pop, observed=False).select("user_id", *names)
    return df.join(F.broadcast(users), "user_id")


def _exposure_core(spark: SparkSession, cfg: SimulatorConfig, ds: str, pop: _Population,
                   num_partitions: int) -> DataFrame:
    """Every exposure of the day with its latent causes, probabilities, potential outcomes and times."""
    R = pop.num_responses
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
