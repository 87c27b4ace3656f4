"""The log simulator: deterministic rows, the declared schemas, and empirical rates that match the
ground truth it writes beside them (within sampling error: tolerances are 4 standard errors)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from liftlake.lib.features.raw_logs import raw_schemas
from liftlake.lib.sim.settings import BAD_EXPOSURE_KINDS, PRESETS, SimulatorConfig
from liftlake.lib.sim.simulator import simulate_day

DS = "2026-11-20"


def _pandas(day, ds: str = DS) -> dict[str, pd.DataFrame]:
    """The day's tables as pandas frames with their ``ds`` column, times as naive UTC."""
    out = {}
    for name, table in day.items():
        df = table.to_pandas().assign(ds=ds)
        for col in df.columns:
            if isinstance(df[col].dtype, pd.DatetimeTZDtype):
                df[col] = df[col].dt.tz_convert("UTC").dt.tz_localize(None)
        out[name] = df
    return out


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def _se_mean(x: pd.Series) -> float:
    return float(x.std(ddof=1) / math.sqrt(len(x)))


@pytest.fixture(scope="module")
def world():
    """One day with large randomized slices so that the causal checks have power."""
    cfg = SimulatorConfig(exposures=100_000, users=20_000, coupon_rct_share=0.5, treatment_rct_share=0.5, seed=11)
    return cfg, _pandas(simulate_day(cfg, DS))


@pytest.fixture(scope="module")
def user_days(world):
    _, t = world
    return (t["raw.treatments"].merge(t["raw.responses"], on=["user_id", "ds"])
            .merge(t["sim.truth_user"], on=["user_id", "ds"])
            .merge(t["raw.users"].drop(columns="ds"), on="user_id"))


@pytest.fixture(scope="module")
def exposures(world):
    _, t = world
    ex = t["raw.exposures"].merge(t["sim.truth"], on=["exposure_id", "ds"])
    ex["click"] = ex["exposure_id"].isin(set(t["raw.clicks"]["exposure_id"])).astype(int)
    ex["conversion"] = ex["exposure_id"].isin(set(t["raw.conversions"]["exposure_id"])).astype(int)
    return ex


# -- determinism and contract ---------------------------------------------------------------------
def test_same_seed_gives_the_same_rows_whatever_the_chunks_or_threads():
    cfg = SimulatorConfig(exposures=4_000, seed=5, bad_row_rate=0.05)
    a = _pandas(simulate_day(cfg, DS, threads=1))
    b = _pandas(simulate_day(cfg, DS, chunk_rows=999, threads=3))
    assert list(a) == list(b)
    for name in a:
        assert len(a[name]) > 0, name
        pd.testing.assert_frame_equal(_sorted(a[name]), _sorted(b[name]), obj=name)


def test_another_seed_or_day_gives_other_rows():
    base = simulate_day(SimulatorConfig(exposures=2_000, seed=5), DS)["sim.truth"].to_pandas()
    reseeded = simulate_day(SimulatorConfig(exposures=2_000, seed=6), DS)["sim.truth"].to_pandas()
    next_day = simulate_day(SimulatorConfig(exposures=2_000, seed=5), "2026-11-21")["sim.truth"].to_pandas()
    assert not np.allclose(np.sort(base["cvr_do_click_true"]), np.sort(reseeded["cvr_do_click_true"]))
    assert not np.allclose(np.sort(base["cvr_do_click_true"]), np.sort(next_day["cvr_do_click_true"]))
    assert next_day["exposure_id"].str.startswith("2026-11-21").all()


def test_tables_have_the_declared_schemas_and_the_day(world):
    cfg, tables = world
    day = simulate_day(SimulatorConfig(exposures=1_000), DS, num_treatments=3, num_responses=1)
    for name, schema in raw_schemas(3, 1).items():
        # names, order and Arrow types of the declared columns; the day is the partition, not a column
        declared = to_arrow_schema(T.StructType([f for f in schema.fields if f.name != "ds"]))
        assert [(f.name, f.type) for f in day[name].schema] == [(f.name, f.type) for f in declared], name
    for name, df in tables.items():
        assert (df["ds"] == DS).all(), name
    assert tables["raw.exposures"]["exposure_id"].is_unique
    assert len(tables["sim.truth"]) == len(tables["raw.exposures"]) == cfg.exposures
    assert tables["raw.treatments"]["user_id"].is_unique


# -- exposures, clicks, conversions ---------------------------------------------------------------
def test_empirical_ctr_and_cvr_match_the_truth(exposures):
    ex = exposures
    n = len(ex)
    p = ex["ctr_true"].mean()
    assert abs(ex["click"].mean() - p) < 4 * math.sqrt(p * (1 - p) / n)
    clicked = ex[ex["click"] == 1]
    q = clicked["cvr_do_click_true"].mean()
    assert abs(clicked["conversion"].mean() - q) < 4 * math.sqrt(q * (1 - q) / len(clicked))
    # conversions happen only after a click, and only where the potential outcome says so
    assert (ex.loc[ex["conversion"] == 1, "click"] == 1).all()
    assert (ex.loc[ex["conversion"] == 1, "conversion_potential"] == 1).all()
    assert (ex["conversion"] == ex["click"] * ex["conversion_potential"]).all()
    # the potential outcome is a draw of the CVR under do(click=1), over ALL exposures
    r = ex["cvr_do_click_true"].mean()
    assert abs(ex["conversion_potential"].mean() - r) < 4 * math.sqrt(r * (1 - r) / n)


def test_clicks_are_selected_on_the_conversion_affinity():
    """E_O[R] > E_D[R] (ESCM2 Theorem 1's assumption), and the gap grows with selection_bias.
    Computed on the truth itself, so there is no sampling error in the comparison."""
    def clicked_over_all(selection_bias: float) -> float:
        t = simulate_day(SimulatorConfig(exposures=20_000, selection_bias=selection_bias, seed=3),
                         DS)["sim.truth"].to_pandas()
        on_clicks = (t["ctr_true"] * t["cvr_do_click_true"]).sum() / t["ctr_true"].sum()
        return on_clicks / t["cvr_do_click_true"].mean()

    unbiased, biased = clicked_over_all(0.0), clicked_over_all(0.8)
    assert biased > 1.5
    assert biased > unbiased + 0.3


def test_event_times_are_ordered_and_inside_the_day(world):
    _, t = world
    start, end = pd.Timestamp(DS), pd.Timestamp(DS) + pd.Timedelta(days=1)
    ts = t["raw.exposures"].set_index("exposure_id")["ts"]
    clicks = t["raw.clicks"].set_index("exposure_id")["ts"]
    conversions = t["raw.conversions"].set_index("exposure_id")["ts"]
    for series in (ts, clicks, conversions):
        assert series.between(start, end, inclusive="left").all()
    assert (clicks > ts.loc[clicks.index]).all()
    assert (conversions > clicks.loc[conversions.index]).all()


# -- coupons (UniMVT) -------------------------------------------------------------------------------
def test_coupon_outcome_matches_its_true_probability(user_days):
    u = user_days
    p = u["coupon_prob_true"]
    assert abs(u["coupon_outcome"].mean() - p.mean()) < 4 * math.sqrt((p * (1 - p)).sum()) / len(u)
    treated = u[u["coupon_treated"] == 1]
    expected = np.clip(treated["p0_true"] + treated["eta_true"] * treated["coupon_value"], 0, 1)
    np.testing.assert_allclose(treated["coupon_prob_true"], expected, atol=1e-9)
    untreated = u[u["coupon_treated"] == 0]
    np.testing.assert_allclose(untreated["coupon_prob_true"], untreated["p0_true"], atol=1e-9)
    assert (untreated["coupon_value"] == 0).all() and (u["eta_true"] >= 0).all()


def test_randomized_slice_recovers_the_true_coupon_uplift(user_days):
    rct = user_days[user_days["coupon_randomized"] == 1]
    treated, control = rct[rct["coupon_treated"] == 1], rct[rct["coupon_treated"] == 0]
    empirical = treated["coupon_outcome"].mean() - control["coupon_outcome"].mean()
    true = (treated["coupon_prob_true"] - treated["p0_true"]).mean()
    se = math.hypot(_se_mean(treated["coupon_outcome"]), _se_mean(control["coupon_outcome"]))
    assert true > 0.03
    assert abs(empirical - true) < 4 * se


def test_coupons_are_confounded_outside_the_randomized_slice_only(user_days):
    def treated_over_untreated_income(df: pd.DataFrame) -> float:
        return (df.loc[df["coupon_treated"] == 1, "u_income"].mean()
                / df.loc[df["coupon_treated"] == 0, "u_income"].mean())

    observational = user_days[user_days["coupon_randomized"] == 0]
    randomized = user_days[user_days["coupon_randomized"] == 1]
    assert treated_over_untreated_income(observational) > 1.2
    assert abs(treated_over_untreated_income(randomized) - 1) < 0.1
    # the truth reports the propensity the assignment used
    assert abs(observational["coupon_treated"].mean() - observational["coupon_propensity_true"].mean()) < 0.03


# -- strategies and responses (HMUM) -------------------------------------------------------------------
@pytest.mark.parametrize("response", [1, 2])
def test_randomized_strategy_arms_recover_the_true_effects(user_days, response):
    rct = user_days[user_days["treatment_randomized"] == 1]
    y = f"response_{response}"
    control = rct[rct["treatment_id"] == 0]
    for k in (1, 2):
        arm = rct[rct["treatment_id"] == k]
        conditional_mean = arm[f"y0_r{response}_true"] + arm[f"tau_r{response}_k{k}_true"]
        assert abs(arm[y].mean() - conditional_mean.mean()) < 4 * _se_mean(arm[y])
        empirical_effect = arm[y].mean() - control[y].mean()
        true_effect = rct[f"tau_r{response}_k{k}_true"].mean()
        assert abs(empirical_effect - true_effect) < 4 * math.hypot(_se_mean(arm[y]), _se_mean(control[y]))


def test_each_strategy_raises_its_own_response_on_average(user_days):
    u = user_days
    assert u["tau_r1_k1_true"].mean() > 0 and u["tau_r2_k2_true"].mean() > 0
    assert u["tau_r2_k1_true"].mean() < 0 and u["tau_r1_k2_true"].mean() < 0
    # heterogeneous: some users respond against the average
    assert (u["tau_r1_k1_true"] < 0).any() or (u["tau_r2_k1_true"] > 0).any()
    assert (u[["response_1", "response_2"]] >= 0).all().all()


def test_value_shares_are_shares_of_the_days_exposures(user_days, world):
    _, t = world
    u = user_days
    np.testing.assert_allclose(u["value_share_1"] + u["value_share_2"], 1.0, atol=1e-9)
    counts = t["raw.exposures"].groupby("user_id").size()
    np.testing.assert_array_equal(u.set_index("user_id")["exposures_true"].loc[counts.index], counts.values)
    assert abs(u["value_share_1"].mean() - u["value_weight_r1_true"].mean()) < 0.02


# -- presets, bad rows, configuration ---------------------------------------------------------------------
@pytest.mark.parametrize("preset,modes", [("syn1", [2.5]), ("syn2", [1.5]), ("syn3", [1.0, 1.6, 2.4, 4.0]),
                                          ("default", [1.0, 2.0, 3.0, 5.0, 8.0, 10.0])])
def test_presets_give_their_coupon_values_and_rates(preset, modes):
    day = simulate_day(SimulatorConfig(exposures=60_000, preset=preset, seed=2), DS)
    u = day["raw.treatments"].to_pandas().merge(day["raw.responses"].to_pandas(), on="user_id")
    values = u.loc[u["coupon_treated"] == 1, "coupon_value"].to_numpy()
    nearest = np.array(modes)[np.abs(np.log(values[:, None] / np.array(modes)[None, :])).argmin(axis=1)]
    # values scatter log-normally around the modes with the preset's log-sd; every mode is used
    jitter = SimulatorConfig(preset=preset).value_jitter
    log_distance = np.log(values / nearest)
    assert np.mean(np.abs(log_distance) < 2.5 * jitter + 0.01) > 0.95
    if len(modes) == 1:
        assert abs(log_distance.std() - jitter) < 0.2 * jitter
    assert set(np.unique(nearest)) == set(modes)
    assert abs(u["coupon_treated"].mean() - SimulatorConfig(preset=preset).treated_share) < 0.05
    assert 0.12 < u["coupon_outcome"].mean() < 0.30
    if preset == "default":
        assert set(np.unique(values)) <= set(modes)  # exact grid values


def test_bad_row_rate_injects_each_kind_of_rule_breaker():
    cfg = SimulatorConfig(exposures=20_000, bad_row_rate=0.05, seed=4)
    t = _pandas(simulate_day(cfg, DS))
    ex, clicks, conv = t["raw.exposures"], t["raw.clicks"], t["raw.conversions"]
    assert ex["user_id"].isna().sum() > 0
    assert ex["exposure_id"].duplicated().sum() > 0
    assert (~clicks["exposure_id"].isin(ex["exposure_id"])).sum() > 0
    assert (~conv["exposure_id"].isin(clicks["exposure_id"])).sum() > 0
    both = conv.merge(clicks, on="exposure_id", suffixes=("_conv", "_click"))
    assert (both["ts_conv"] < both["ts_click"]).sum() > 0
    tr, resp = t["raw.treatments"], t["raw.responses"]
    treated = tr[tr["coupon_treated"] == 1]
    assert ((treated["coupon_value"] <= 0) | treated["coupon_value"].isna()).sum() > 0
    assert (tr["treatment_id"] == 2 + 1).sum() > 0  # K = 2
    assert (resp["response_1"].isna() | (resp["response_1"] < 0)).sum() > 0
    # the truth still describes every real exposure once
    assert t["sim.truth"]["exposure_id"].is_unique
    assert len(BAD_EXPOSURE_KINDS) == 5

    clean = _pandas(simulate_day(SimulatorConfig(exposures=20_000, seed=4), DS))
    assert clean["raw.exposures"]["user_id"].notna().all()
    assert clean["raw.conversions"]["exposure_id"].isin(clean["raw.clicks"]["exposure_id"]).all()


@pytest.mark.parametrize("kwargs,key", [
    ({"exposures": 0}, "simulator.exposures"),
    ({"preset": "syn9"}, "simulator.preset"),
    ({"coupon_grid": []}, "simulator.coupon_grid"),
    ({"coupon_grid": [1.0, -2.0]}, "simulator.coupon_grid"),
    ({"coupon_ratio": 1.0}, "simulator.coupon_ratio"),
    ({"selection_bias": -0.1}, "simulator.selection_bias"),
    ({"bad_row_rate": 0.9}, "simulator.bad_row_rate"),
    ({"items": 0}, "simulator.items"),
    ({"exposures": True}, "simulator.exposures"),
])
def test_invalid_settings_are_refused_with_the_key_and_the_rule(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.") + " must"):
        SimulatorConfig(**kwargs)


def test_presets_are_all_valid():
    for preset in PRESETS:
        assert SimulatorConfig(preset=preset).grid
