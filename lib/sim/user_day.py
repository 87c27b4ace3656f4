"""A day's user-level tables: coupon assignment and outcome (UniMVT eq. 1-4), K strategies with R responses
(HMUM 4.1), value shares, and their truth (raw.treatments, raw.responses, sim.truth_user)."""
from __future__ import annotations

import math
import statistics

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from liftlake.lib.sim.settings import _PRESET, BAD_USER_KINDS, SimulatorConfig
from liftlake.lib.sim.streams import _D, _categorical, _key, _normal_cdf, _pick, _sigmoid, _stage_break, _Stream
from liftlake.lib.sim.world import (
    _grid_base_weights,
    _observed_scores,
    _Population,
    _response_structure,
    _with_user_latents,
)


# ---------------------------------------------------------------------------------------------
# Coupons, strategies, responses: one row per user active that day
# ---------------------------------------------------------------------------------------------
def _user_day_frame(core: DataFrame, cfg: SimulatorConfig, ds: str, pop: _Population) -> DataFrame:
    K, R = pop.num_treatments, pop.num_responses
    preset = _PRESET[cfg.preset]
    grid, jitter, ratio = cfg.grid, cfg.value_jitter, cfg.treated_share
    active = core.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("exposures_true"),
        *[F.sum((F.col("_type") == r).cast("long")).alias(f"_v{r}") for r in range(1, R + 1)])
    parts = int(active.sparkSession.conf.get("spark.sql.shuffle.partitions") or 8)
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
