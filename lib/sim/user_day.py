"""A day's user-level tables: coupon assignment and outcome (UniMVT eq. 1-4), K strategies with R responses
(HMUM 4.1), value shares, and their truth (raw.treatments, raw.responses, sim.truth_user)."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pyarrow as pa

from liftlake.lib.sim.settings import _PRESET, BAD_USER_KINDS, SimulatorConfig
from liftlake.lib.sim.streams import _D, Stream, categorical, floor_int, key, normal_cdf, round_half_up, sigmoid
from liftlake.lib.sim.world import _grid_base_weights, _Population, _response_structure, observed_scores


# ---------------------------------------------------------------------------------------------
# Coupons, strategies, responses: one row per user active that day
# ---------------------------------------------------------------------------------------------
def user_day_tables(cfg: SimulatorConfig, ds: str, pop: _Population, latents: dict, users: dict,
                    type_counts: np.ndarray) -> dict[str, pa.Table]:
    """raw.treatments, raw.responses and sim.truth_user of the users with an exposure that day
    (``type_counts[r - 1, user_id - 1]``: the user's exposures of content type r)."""
    K, R = pop.num_treatments, pop.num_responses
    preset = _PRESET[cfg.preset]
    grid, jitter, ratio = cfg.grid, cfg.value_jitter, cfg.treated_share
    exposures = type_counts.sum(axis=0)
    rows = np.flatnonzero(exposures)          # the active users, by user_id - 1
    user_id = rows.astype(np.int64) + 1
    z_act, z_wealth, z_age, z_buy, z_price = (latents[k][rows] for k in ("z_act", "z_wealth", "z_age", "z_buy",
                                                                         "z_price"))
    s = Stream(key(cfg.seed, "user_day", user_id, ds))
    score = observed_scores(users, pop, rows)

    # -- coupons (UniMVT eq. 1-4) ----------------------------------------------------------------
    base_w = _grid_base_weights(grid, jitter)
    mean_t = sum(w * t for w, t in zip(base_w, grid)) / sum(base_w)
    eta_unit = preset.mean_uplift / mean_t
    heterogeneity = np.minimum(np.exp(z_price * 0.5 - z_act * 0.25 - 0.15625), 3.0)
    # high-value users (observed activity and income) are treated more often and with higher tiers
    value_score = (score["act"] + score["inc"]) * (0.6 * cfg.coupon_confounding)
    coupon_rct = s.uniform(_D.COUPON_RCT) < cfg.coupon_rct_share
    # probit assignment: treated iff value_score + N(0, 1) > threshold; E[treated] ~= ratio
    spread = math.sqrt(1.0 + (0.6 * cfg.coupon_confounding) ** 2 * 2.0)
    threshold = -statistics.NormalDist().inv_cdf(ratio) * spread
    treat_n, _ = s.normals(_D.COUPON_TREAT)
    treated = np.where(coupon_rct, s.uniform(_D.COUPON_TREAT + 5) < ratio, value_score + treat_n > threshold)
    G = len(grid)
    tier = [((j - (G - 1) / 2) / ((G - 1) / 2) if G > 1 else 0.0) for j in range(G)]
    u_value = s.uniform(_D.COUPON_VALUE)
    idx = np.where(coupon_rct, np.minimum(floor_int(u_value * G, np.int32), G - 1),
                   categorical(u_value, [np.exp(value_score * (1.2 * tier[j])) * base_w[j] for j in range(G)]))
    value = np.asarray(grid, dtype=np.float64)[idx]
    if jitter > 0:
        jitter_n, _ = s.normals(_D.VALUE_JITTER)
        value = np.maximum(round_half_up(value * np.exp(jitter_n * jitter), 2), 0.01)
    p0 = sigmoid(z_act * 0.5 + z_wealth * 0.35 + z_buy * 0.3 + preset.p0_intercept)
    eta = heterogeneity * eta_unit
    coupon_value = np.where(treated, value, 0.0)
    coupon_prob = np.minimum(np.maximum(p0 + eta * coupon_value, 0.0), 1.0)

    # -- strategies (HMUM): confounded softmax outside the RCT slice ---------------------------------
    strength = cfg.treatment_confounding * preset.strategy_confounding
    feats = [score["act"], score["inc"], score["age"]]
    arm_w = [np.ones(len(rows))] + [np.exp(feats[(k - 1) % 3] * (strength * (1 if (k - 1) // 3 % 2 == 0 else -1) * 0.8))
                                    for k in range(1, K + 1)]
    treat_rct = s.uniform(_D.TREAT_RCT) < cfg.treatment_rct_share
    u_arm = s.uniform(_D.TREAT_ARM)
    arm = np.where(treat_rct, np.minimum(floor_int(u_arm * (K + 1), np.int32), K), categorical(u_arm, arm_w))
    total_arm = arm_w[0]
    for w in arm_w[1:]:
        total_arm = total_arm + w
    chosen_arm = np.choose(arm, arm_w)

    base, y0_coefs, effects = _response_structure(K, R, preset)
    z = [z_act, z_wealth, z_age, z_price]
    y0 = [np.exp(z[0] * a + z[1] * b + z[2] * c) * base[r] for r, (a, b, c) in enumerate(y0_coefs)]
    tau = {}
    for r in range(1, R + 1):
        for k in range(1, K + 1):
            shift, g = effects[(r, k)]
            drive = z[0] * g[0]
            for zi, gi in zip(z[1:], g[1:]):
                drive = drive + zi * gi
            tau[(r, k)] = y0[r - 1] * (np.tanh(drive) * preset.strategy_spread + shift)   # delta_rk
    responses = []
    for r in range(1, R + 1):
        n1, _ = s.normals(_D.RESPONSES + 2 * r)
        effect = np.choose(arm, [np.zeros(len(rows))] + [tau[(r, k)] for k in range(1, K + 1)])
        responses.append((y0[r - 1] + effect) * np.exp(n1 * 0.4 - 0.08))
    truth = {"user_id": user_id, "p0_true": p0, "eta_true": eta, "coupon_prob_true": coupon_prob,
             **{f"y0_r{r}_true": y0[r - 1] for r in range(1, R + 1)},
             **{f"tau_r{r}_k{k}_true": tau[(r, k)] for r in range(1, R + 1) for k in range(1, K + 1)},
             **{f"value_weight_r{r}_true": latents["w"][r - 1][rows] for r in range(1, R + 1)},
             "coupon_propensity_true": np.where(coupon_rct, ratio, normal_cdf(value_score - threshold)),
             "treatment_propensity_true": np.where(treat_rct, 1.0 / (K + 1), chosen_arm / total_arm),
             "exposures_true": exposures[rows].astype(np.int64)}
    coupon_treated = treated.astype(np.int32)
    treatment_id = arm.astype(np.int32)

    # -- rule breakers: what the truth describes stays as the model drew it -----------------------
    if cfg.bad_row_rate > 0:
        bad = s.uniform(_D.BAD) < cfg.bad_row_rate
        kind = np.where(bad, floor_int(s.uniform(_D.BAD_KIND) * len(BAD_USER_KINDS), np.int32), -1)
        variant = floor_int(s.uniform(_D.BAD_VARIANT) * 3, np.int32)
        k_value, k_arm, k_resp = range(len(BAD_USER_KINDS))
        bad_value = np.where(variant == 0, -grid[0], np.where(variant == 1, 0.0, np.nan))
        coupon_treated = np.where(kind == k_value, 1, coupon_treated).astype(np.int32)
        coupon_value = np.where(kind == k_value, bad_value, coupon_value)
        treatment_id = np.where(kind == k_arm, K + 1, treatment_id).astype(np.int32)
        responses[0] = np.where((kind == k_resp) & (variant == 0), np.nan,
                                np.where(kind == k_resp, -responses[0] - 1.0, responses[0]))
    treatments = {"user_id": user_id, "coupon_treated": coupon_treated, "coupon_value": coupon_value,
                  "coupon_randomized": coupon_rct.astype(np.int32), "treatment_id": treatment_id,
                  "treatment_randomized": treat_rct.astype(np.int32)}
    outcomes = {"user_id": user_id, "coupon_outcome": (s.uniform(_D.COUPON_OUTCOME) < coupon_prob).astype(np.int32),
                **{f"response_{r}": responses[r - 1] for r in range(1, R + 1)},
                **{f"value_share_{r}": type_counts[r - 1][rows] / exposures[rows] for r in range(1, R + 1)}}
    return {"raw.treatments": pa.table(treatments), "raw.responses": pa.table(outcomes),
            "sim.truth_user": pa.table(truth)}
