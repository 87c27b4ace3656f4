"""The truth-based metrics wired into compute_metrics (model rows and reference rows), and the report's
sections on made-up per-seed results: reference rows, paired-t verdict lines, resolution tables."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from liftlake.lib.evaluation import truth_metrics as TM
from liftlake.lib.evaluation.claims import CONSTANT, ORACLE, RANDOM, with_references
from liftlake.lib.evaluation.evaluate import compute_metrics, reference_key
from liftlake.lib.evaluation.report import (
    EXTERNAL_GBDT_CVR,
    coupon_section,
    cvr_section,
    multi_section,
    sweep_section,
    table,
)
from liftlake.lib.training.batch import BatchLayout

SEED = 7
N = 600


# --------------------------------------------------------------------------- hand-made test rows
def cvr_rows():
    rng = np.random.default_rng(0)
    q = rng.uniform(0.02, 0.4, N)
    potential = (rng.uniform(size=N) < q).astype(int)
    click = (rng.uniform(size=N) < 0.3).astype(int)
    columns = {"f1": np.zeros(N, dtype=int), "click": click, "conversion": click * potential,
               "cvr_do_click_true": q, "conversion_potential": potential}
    pred = {"cvr": np.clip(q + rng.normal(0, 0.1, N), 0.001, 0.999), "ctr": np.full(N, 0.3),
            "ctcvr": np.full(N, 0.06)}
    return columns, pred, {"cvr_do_click_true": 0.2, "conversion_potential": 0.2}


def coupon_rows():
    rng = np.random.default_rng(1)
    eta = rng.normal(0.02, 0.015, N)
    p0 = rng.uniform(0.05, 0.3, N)
    treated = (rng.uniform(size=N) < 0.5).astype(int)
    intensity = treated * rng.choice([1.0, 2.0, 3.0], N)
    outcome = (rng.uniform(size=N) < np.clip(p0 + eta * intensity, 0, 1)).astype(int)
    columns = {"f1": np.zeros(N, dtype=int), "treated": treated, "intensity": intensity, "outcome": outcome,
               "rct_coupon": (rng.uniform(size=N) < 0.5).astype(int), "eta_true": eta, "p0_true": p0}
    pred = {"p0": np.clip(p0 + rng.normal(0, 0.02, N), 0.01, 0.99), "unit_uplift": eta + rng.normal(0, 0.01, N)}
    return columns, pred, {"eta_true": 0.018, "p0_true": 0.17}


MULTI = BatchLayout("multi_treatment", ["f1"], num_responses=2, num_treatments=2)
PAIRS = [(r, k) for r in (1, 2) for k in (1, 2)]


def multi_rows():
    rng = np.random.default_rng(2)
    treatment = rng.integers(0, 3, N)
    columns = {"f1": np.zeros(N, dtype=int), "treatment_id": treatment,
               "rct_treatment": (rng.uniform(size=N) < 0.5).astype(int)}
    pred = {}
    for r in (1, 2):
        y0 = rng.uniform(0.5, 2.0, N)
        columns[f"y0_r{r}_true"] = y0
        columns[f"value_weight_r{r}_true"] = np.full(N, 0.5)
        columns[f"value_share_{r}"] = np.full(N, 0.5)
        pred[f"y0_r{r}"] = y0 + rng.normal(0, 0.1, N)
        response = y0.copy()
        for k in (1, 2):
            tau = y0 * rng.normal(0.1 * k, 0.05, N)
            columns[f"tau_r{r}_k{k}_true"] = tau
            pred[f"tau_r{r}_k{k}"] = tau + rng.normal(0, 0.05, N)
            response = response + np.where(treatment == k, tau, 0.0)
        columns[f"response_{r}"] = response + rng.normal(0, 0.2, N)
    for k in (1, 2):
        pred[f"decision_k{k}"] = pred[f"tau_r1_k{k}"] > 0.1
    means = {f"tau_r{r}_k{k}_true": 0.1 * k for r, k in PAIRS}
    return columns, pred, means


# --------------------------------------------------------------------------- compute_metrics: CVR
def test_cvr_truth_keys_equal_truth_metrics_on_the_same_arrays():
    columns, pred, means = cvr_rows()
    out = compute_metrics("cvr", columns, pred, True, BatchLayout("cvr", ["f1"]), train_means=means,
                          reference_seed=SEED)
    expected = TM.cvr_truth_report(pred["cvr"], columns["cvr_do_click_true"],
                                   potential_conversion=columns["conversion_potential"])
    for key in ("cvr_true_auc", "cvr_true_logloss", "cvr_true_ece", "cvr_true_bias", "cvr_entire_ece"):
        assert out[key] == pytest.approx(expected[key])
    assert {"cvr_entire_auc", "ieb_bias", "ctcvr_auc", "crr"} <= set(out)  # the keys tables read before stay

    q = columns["cvr_do_click_true"]
    refs = TM.reference_predictions(q, means["cvr_do_click_true"], SEED)
    for name, values in refs.items():
        assert out[reference_key(name, "cvr_true_auc")] == pytest.approx(TM.expected_auc(values, q))
        assert out[reference_key(name, "cvr_true_logloss")] == pytest.approx(TM.soft_log_loss(values, q))
    assert reference_key("oracle", "cvr_entire_auc") in out  # the references go through cvr_report too
    # the oracle beats the constant; the constant ranks like random (AUC 1/2) and is off by the train mean
    assert out["ref_oracle__cvr_true_auc"] > out["ref_constant__cvr_true_auc"] == pytest.approx(0.5)
    assert out["ref_oracle__cvr_true_logloss"] == pytest.approx(out["cvr_true_entropy"])
    assert out["ref_oracle__cvr_true_logloss"] < out["ref_constant__cvr_true_logloss"]
    assert out["ref_constant__cvr_true_bias"] == pytest.approx(0.2 - q.mean())


def test_cvr_without_train_means_has_no_constant_row_and_without_truth_no_reference():
    columns, pred, _ = cvr_rows()
    layout = BatchLayout("cvr", ["f1"])
    out = compute_metrics("cvr", columns, pred, True, layout)
    assert "ref_oracle__cvr_true_auc" in out and "ref_random__cvr_true_auc" in out
    assert not any(k.startswith("ref_constant__") for k in out)
    observed = {k: v for k, v in columns.items() if k not in ("cvr_do_click_true", "conversion_potential")}
    out = compute_metrics("cvr", observed, pred, False, layout, train_means={"cvr_do_click_true": 0.2})
    assert not any(k.startswith(("ref_", "cvr_true_")) for k in out)


# --------------------------------------------------------------------------- compute_metrics: coupon
SCORE = SimpleNamespace(coupon_grid=[1.0, 2.0, 3.0], coupon_cost_per_unit=0.005, coupon_min_ratio=1.0)


def test_coupon_truth_keys_and_reference_rows():
    columns, pred, means = coupon_rows()
    out = compute_metrics("coupon", columns, pred, True, BatchLayout("coupon", ["f1"]), SCORE, train_means=means,
                          reference_seed=SEED)
    eta = columns["eta_true"]
    expected = TM.effect_truth_report(pred["unit_uplift"], eta, prefix="eta")
    for key in ("eta_sqrt_pehe", "eta_spearman", "eta_true_auuc", "eta_bias", "eta_pearson"):
        assert out[key] == pytest.approx(expected[key])
    assert out["eta_rmse"] == pytest.approx(out["eta_sqrt_pehe"])  # the old key stays
    assert {"cs_auuc_rct", "cs_qini_rct", "auc_base_rct", "coupon_policy_normalized"} <= set(out)

    refs = TM.reference_predictions(eta, means["eta_true"], SEED)
    for name, values in refs.items():
        report = TM.effect_truth_report(values, eta, prefix="eta")
        assert out[reference_key(name, "eta_sqrt_pehe")] == pytest.approx(report["eta_sqrt_pehe"])
        assert reference_key(name, "cs_auuc_rct") in out  # scored by the model's RCT-slice code as well
    assert out["ref_oracle__eta_true_auuc"] == pytest.approx(1.0)
    assert out["ref_constant__eta_true_auuc"] == pytest.approx(0.0, abs=1e-12)
    assert out["ref_oracle__eta_sqrt_pehe"] == 0.0 < out["ref_constant__eta_sqrt_pehe"]
    assert math.isnan(out["ref_constant__eta_spearman"])  # a constant has no ranking

    # the policy against the best single coupon for everybody, on the same value matrix
    actions = np.array([0.0, 1.0, 2.0, 3.0])
    p0 = columns["p0_true"]
    value = np.clip(p0[:, None] + eta[:, None] * actions, 0, 1) - p0[:, None] - SCORE.coupon_cost_per_unit * actions
    best = TM.best_constant_policy_value(value)
    assert out["coupon_policy_best_constant"] == pytest.approx(best["value"])
    assert out["coupon_policy_over_best_constant"] == pytest.approx(out["coupon_policy_policy"] - best["value"])
    assert out["coupon_policy_oracle"] >= out["coupon_policy_policy"]


# --------------------------------------------------------------------------- compute_metrics: multi-treatment
def test_multi_effects_on_all_rows_and_reference_rows():
    columns, pred, means = multi_rows()
    out = compute_metrics("multi_treatment", columns, pred, True, MULTI, train_means=means, reference_seed=SEED)
    rct = columns["rct_treatment"] == 1
    for r, k in PAIRS:
        truth = columns[f"tau_r{r}_k{k}_true"]
        expected = TM.effect_truth_report(pred[f"tau_r{r}_k{k}"], truth, prefix=f"tau_r{r}_k{k}")
        assert out[f"tau_r{r}_k{k}_true_auuc"] == pytest.approx(expected[f"tau_r{r}_k{k}_true_auuc"])
        assert out[f"tau_r{r}_k{k}_sqrt_pehe"] == pytest.approx(expected[f"tau_r{r}_k{k}_sqrt_pehe"])
        rct_only = TM.effect_accuracy(pred[f"tau_r{r}_k{k}"][rct], truth[rct])["sqrt_pehe"]
        assert out[f"tau_rmse_r{r}_k{k}"] == pytest.approx(rct_only)  # the RCT-slice key stays
        refs = TM.reference_predictions(truth, means[f"tau_r{r}_k{k}_true"], SEED)
        for name, values in refs.items():
            want = TM.effect_truth_report(values, truth, prefix="x")["x_sqrt_pehe"]
            assert out[reference_key(name, f"tau_r{r}_k{k}_sqrt_pehe")] == pytest.approx(want)
        assert out[f"ref_oracle__tau_r{r}_k{k}_true_auuc"] == pytest.approx(1.0)
        assert out[f"ref_oracle__tau_r{r}_k{k}_sqrt_pehe"] < out[f"ref_constant__tau_r{r}_k{k}_sqrt_pehe"]
        assert f"ref_oracle__qini_r{r}_k{k}" in out and f"qini_r{r}_k{k}" in out
    assert "switch_total_oracle" in out and "switch_total_policy" in out


# --------------------------------------------------------------------------- report sections on made-up seeds
def refs(prefix_values: dict[str, dict[str, float]]) -> dict[str, float]:
    """ref_<name>__<metric> keys as compute_metrics stores them."""
    return {reference_key(name, m): v for name, metrics in prefix_values.items() for m, v in metrics.items()}


def cvr_seed(i: int) -> dict[str, dict]:
    jitter = [0.0, 0.01, -0.01, 0.005][i]
    reference = refs({"oracle": {"cvr_true_auc": 0.70 + jitter / 10, "cvr_true_bias": 0.0},
                      "constant": {"cvr_true_auc": 0.5, "cvr_true_bias": 0.001 * (i - 1.5)},
                      "random": {"cvr_true_auc": 0.5 + jitter, "cvr_true_bias": 0.0}})
    return {"esmm": {"cvr_true_bias": 0.30 + jitter, "cvr_true_auc": 0.80, "cvr_entire_auc": 0.6, "crr_strength": 0.1,
                     "version": "v0001", **reference},
            "escm2_dr": {"cvr_true_bias": 0.40 + jitter, "cvr_true_auc": 0.60, "crr_strength": 0.1 + jitter},
            "escm2_ips": {"cvr_true_bias": 0.30 - 2 * jitter + 0.002, "cvr_true_auc": 0.61, "crr_strength": 0.1}}


def test_cvr_section_reference_rows_and_verdicts_with_intervals():
    text = "\n".join(cvr_section([cvr_seed(i) for i in range(4)], ["esmm", "escm2_dr", "escm2_ips"]))
    for label in (ORACLE, CONSTANT, RANDOM):
        assert f"| {label} |" in text
    assert "**0.8000 ± 0.0000**" in text  # ESMM's true AUC is bold, the oracle's 0.70 never is
    lines = text.splitlines()
    bias = next(line for line in lines if "ESMM over-estimates CVR" in line)
    assert "-> holds: +0.3" in bias and "95% CI [+0." in bias and "paired t over seeds, n = 4" in bias
    dr = next(line for line in lines if "ESCM²-DR" in line and "|bias|" in line)
    assert "-> contradicted: +0.1, 95% CI" in dr  # |bias| 0.40 vs. 0.30: the claimed cut is the other way
    ips = next(line for line in lines if "ESCM²-IPS" in line and "|bias|" in line)
    assert "-> inconclusive:" in ips and "detectable at this scale" in ips
    resolution = next(line for line in lines if line.startswith("| CVR AUC vs. true CVR |"))
    assert "| yes |" in resolution and "constant 0.5000" in resolution


def test_cvr_section_states_what_propensity_weighting_can_reach():
    seeds = [cvr_seed(i) for i in range(2)]
    assert "What propensity weighting can reach" not in "\n".join(cvr_section(seeds, ["esmm"]))
    for i, seed in enumerate(seeds):  # the external reference's row carries report.selection_reach
        seed[EXTERNAL_GBDT_CVR] = {"cvr_true_bias": 0.05, "reach_true_mean": 0.07 + 0.002 * i,
                                   "reach_clicked_rate": 0.14, "reach_snips_features": 0.12 + 0.002 * i,
                                   "reach_snips_true_ctr": 0.072}
    text = "\n".join(cvr_section(seeds, ["esmm", EXTERNAL_GBDT_CVR]))
    line = next(line for line in text.splitlines() if line.startswith("What propensity weighting can reach"))
    assert "true mean CVR is 0.0710" in line and "convert at 0.1400" in line
    assert "true CTR recovers 0.0720" in line and "on the features it recovers 0.1210" in line
    assert "left with a bias of about +0.0500" in line


def test_one_seed_gives_no_verdict():
    text = "\n".join(cvr_section([cvr_seed(0)], ["esmm", "escm2_dr"]))
    bias = next(line for line in text.splitlines() if "ESMM over-estimates CVR" in line)
    assert "-> n/a (1 seed): +0.3" in bias
    assert "| CVR AUC vs. true CVR | 0.7000 | constant 0.5000 | n/a (1 seed) |" in text


def test_table_keeps_reference_rows_last_and_never_bold():
    runs = with_references([{"a": {"m": 0.4, **refs({"oracle": {"m": 0.9}, "random": {"m": 0.1}})}, "b": {"m": 0.5}}])
    lines = table(runs, [("m", "metric")], {"m": "max"})
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| a", "| b", f"| {ORACLE}", f"| {RANDOM}"]
    assert "**0.5000 ± 0.0000**" in lines[3] and "**" not in lines[4]


def coupon_seed(i: int) -> dict[str, dict]:
    d = [0.002, 0.004, 0.003][i]
    reference = refs({"oracle": {"cs_auuc_rct": 0.05 + d, "eta_true_auuc": 1.0, "eta_spearman": 1.0},
                      "constant": {"cs_auuc_rct": 0.02 + d / 2, "eta_true_auuc": 0.0},
                      "random": {"cs_auuc_rct": 0.02 - d, "eta_spearman": 0.01 * (i - 1)}})
    unimvt = {"cs_auuc_rct": 0.03 + d, "eta_true_auuc": 0.5 + d, "coupon_policy_policy": 0.010 + d,
              "coupon_policy_random": 0.002, "coupon_policy_oracle": 0.02, "coupon_policy_best_constant": 0.011,
              **reference}
    return {"unimvt": unimvt, "t_learner": {"cs_auuc_rct": 0.02 + d / 2, "eta_true_auuc": 0.3 + 3 * d}}


def test_coupon_section_verdicts():
    text = "\n".join(coupon_section({"syn1": [coupon_seed(i) for i in range(3)]}, ["unimvt", "t_learner"]))
    assert "### syn1" in text and f"| {CONSTANT} |" in text
    lines = text.splitlines()
    lead = next(line for line in lines if line.startswith("  - CS-AUUC, against the strongest rival"))
    assert "UniMVT" in lead and "t_learner" in lead and "-> holds:" in lead
    assert any("over random: UniMVT" in line and "-> holds:" in line for line in lines)
    assert any("over the best single coupon" in line and "-> inconclusive:" in line for line in lines)
    # Spearman is judged against the random row (a constant has none)
    spearman = next(line for line in lines if line.startswith("| Spearman with true uplift |"))
    assert "random 0.0000" in spearman and "| yes |" in spearman


def multi_seed(i: int) -> dict[str, dict]:
    d = [0.01, 0.02, 0.015][i]
    hmum = {"switch_total_policy": 0.30 + d, "switch_total_oracle": 0.41, "switch_total_all_on": 0.25,
            "switch_total_all_off": 0.0, **refs({"oracle": {"qini_r1_k1": 0.5, "tau_r1_k1_sqrt_pehe": 0.0},
                                                 "constant": {"qini_r1_k1": 0.0 + d, "tau_r1_k1_sqrt_pehe": 0.3}})}
    other = {}
    for r, k in PAIRS:
        hmum |= {f"qini_r{r}_k{k}": 0.2 + d, f"auuc_r{r}_k{k}": 0.1, f"tau_r{r}_k{k}_true_auuc": 0.6 - d,
                 f"tau_r{r}_k{k}_sqrt_pehe": 0.1}
        other |= {f"qini_r{r}_k{k}": 0.1, f"auuc_r{r}_k{k}": 0.1 + 2 * d - 0.03,
                  f"tau_r{r}_k{k}_true_auuc": 0.7, f"tau_r{r}_k{k}_sqrt_pehe": 0.2}
    return {"hmum": hmum, "s_learner": other}


def test_multi_section_reads_the_switch_oracle_and_tallies_verdicts():
    text = "\n".join(multi_section([multi_seed(i) for i in range(3)], ["hmum", "s_learner"]))
    assert "true AUUC r1 t1" in text and "sqrt-PEHE r2 t2" in text and f"| {ORACLE} |" in text
    switch = next(line for line in text.splitlines() if "HMUM's switches" in line)
    assert "the truth's best 0.4100" in switch  # switch_total_oracle (compare_switch_policies has no *_best)
    assert "holds on 4, contradicted on 0, inconclusive on 4, n/a on 0 of 8" in text  # Qini holds, AUUC not
    assert "holds on 0, contradicted on 4, inconclusive on 0, n/a on 0 of 4" in text  # true AUUC: 0.6 vs 0.7


def test_sweep_section_label_quality_and_claim():
    def sweep(i):
        return {"rates": {"0.01": {"cvr_entire_auc": 0.60 + 0.01 * i, "cvr_true_auc": 0.62},
                          "0.1": {"cvr_entire_auc": 0.58, "cvr_true_auc": 0.61}},
                "transform_rates": {"max": 0.001, "ratio": 0.14},
                "label_quality": {name: {"labelled_share": share, "labelled_true_rate": 0.2, "base_rate": 0.07,
                                         "lift": 0.2 / 0.07} for name, share in (("max", 0.001), ("ratio", 0.14))}}

    common = [{"escim_max": {"cvr_entire_auc": 0.65 + 0.002 * i, "cvr_true_auc": 0.64, "ctcvr_auc": 0.7},
               "escim_ratio": {"cvr_entire_auc": 0.55 + 0.003 * i, "cvr_true_auc": 0.6, "ctcvr_auc": 0.7}}
              for i in range(3)]
    lines, figure = sweep_section([sweep(i) for i in range(3)], common, "with one optimizer")
    text = "\n".join(lines)
    assert "Counterfactual label quality" not in text  # the CVR section's table, drawn once
    cvr = "\n".join(cvr_section([cvr_seed(i) for i in range(3)], ["esmm"],
                                label_quality=[sweep(i)["label_quality"] for i in range(3)]))
    assert "| max | 0.001 ± 0 | 0.2 ± 0 | 0.07 ± 0 | 2.857 ± 0 |" in cvr
    assert "Counterfactual label quality" not in "\n".join(cvr_section([cvr_seed(0)], ["esmm"]))
    assert "the max / ratio cut-offs sit near the best label rate" in text
    assert any("max (0.001)" in line and "best swept rate 0.01" in line and "-> holds:" in line for line in lines)
    assert any("ratio (0.14)" in line and "-> contradicted:" in line for line in lines)
    assert set(figure["curves"]) == {"CVR AUC, all exposures (potential conversions)", "CVR AUC vs. true CVR"}


def test_calibration_figure_with_equal_width_bins(tmp_path):
    from liftlake.lib.evaluation.plots import plot_calibration_bins

    rng = np.random.default_rng(3)
    q = rng.uniform(0.0, 0.3, 500)
    bins = TM.ece(np.clip(q + 0.05, 0, 1), q)
    path = plot_calibration_bins(bins, tmp_path / "figs" / "calibration.png", title="test")
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="every bin is empty"):
        plot_calibration_bins(TM.CalibrationBins(0.0, np.linspace(0, 1, 3), np.zeros(2, dtype=int),
                                                 np.full(2, np.nan), np.full(2, np.nan)), tmp_path / "x.png")


# --------------------------------------------------------------------------- the per-world bootstrap
def test_bootstrap_metrics_draws_the_same_rows_for_every_model():
    from liftlake.lib.evaluation.evaluate import bootstrap_metrics

    columns, pred, means = cvr_rows()
    layout = BatchLayout("cvr", ["f1"])
    worse = {**pred, "cvr": np.clip(pred["cvr"] + np.random.default_rng(3).normal(0, 0.1, N), 0.001, 0.999)}
    reps = bootstrap_metrics("cvr", columns, {"a": pred, "twin": dict(pred), "worse": worse}, True, layout,
                             n_boot=40, seed=SEED, train_means=means, reference_seed=SEED)
    a, twin, worse_reps = (np.asarray(reps[m]["cvr_true_auc"]) for m in ("a", "twin", "worse"))
    assert a.shape == (40,) and np.array_equal(a, twin)  # same draws: a model equal to another ties on each
    assert np.all(a > worse_reps)  # paired: the noisier copy loses on every resample of these rows
    assert np.std(a) > 0  # the draws differ from one replicate to the next
    # replicate 0 by hand: the same generator's first draw, scored by compute_metrics
    index = np.random.default_rng(SEED).integers(0, N, size=N)
    first = compute_metrics("cvr", {k: v[index] for k, v in columns.items()}, {k: v[index] for k, v in pred.items()},
                            True, layout, train_means=means, reference_seed=SEED)
    assert reps["a"]["cvr_true_auc"][0] == pytest.approx(first["cvr_true_auc"])
    oracle = reference_key("oracle", "cvr_true_auc")
    assert reps["a"][oracle][0] == pytest.approx(first[oracle])  # the reference rows come along
    # the same seed draws the same replicates
    again = bootstrap_metrics("cvr", columns, {"a": pred}, True, layout, n_boot=40, seed=SEED, train_means=means,
                              reference_seed=SEED)
    assert again["a"]["cvr_true_auc"] == reps["a"]["cvr_true_auc"]


def test_one_seed_is_judged_on_its_worlds_bootstrap_replicates():
    from liftlake.lib.evaluation.claims import (
        REPLICATES,
        comparison,
        constant_series,
        decision_summary,
        judge,
        recording_verdicts,
        resolution_table,
        series,
    )
    from liftlake.lib.evaluation.verdicts import BOOTSTRAP_METHOD

    rng = np.random.default_rng(0)
    shared = rng.normal(0.0, 0.01, 200)  # what one resample does to every model's AUC alike
    own = rng.normal(0.0, 0.002, 200)
    run = {"a": {"auc": 0.72, "bias": -0.03, reference_key("oracle", "auc"): 0.80,
                 reference_key("constant", "auc"): 0.5,
                 REPLICATES: {"auc": list(0.72 + shared), "bias": list(-0.03 + own),
                              reference_key("oracle", "auc"): list(0.80 + shared),
                              reference_key("constant", "auc"): [0.5] * 200}},
           "b": {"auc": 0.70, REPLICATES: {"auc": list(0.70 + shared + own)}},
           "c": {"auc": 0.7195, REPLICATES: {"auc": list(0.7195 + shared + own)}}}
    runs = with_references([run])
    text, v = judge(series(runs, "a", "auc"), series(runs, "b", "auc"), "greater")
    diffs = 0.02 - own  # a - b per replicate: the shared part cancels
    low, high = np.quantile(diffs, [0.025, 0.975])
    assert v is not None and (v.method, v.verdict, v.n) == (BOOTSTRAP_METHOD, "holds", 1)
    assert (v.mean_diff, v.ci_low, v.ci_high) == pytest.approx((0.02, low, high))
    assert text.startswith("holds: +0.02, 95% CI")
    _, v = judge(series(runs, "a", "auc"), series(runs, "c", "auc"), "greater")
    assert v is not None and v.verdict == "inconclusive"  # a gap of 0.0005 within the rows' noise
    # the oracle's replicates come with the reference rows; |transform| applies to each replicate
    _, v = judge(series(runs, ORACLE, "auc"), series(runs, "a", "auc"), "greater")
    assert v is not None and v.verdict == "holds" and v.ci_low == pytest.approx(0.08)
    _, v = judge(series(runs, "a", "bias", abs), constant_series(runs, 0.0), "greater")
    assert v is not None and v.mean_diff == pytest.approx(0.03) and v.ci_low > 0.02
    # a row without replicates: one seed stays n/a
    assert judge(series(runs, "a", "auc"), series([{"d": {"auc": 0.7}}], "d", "auc"), "greater") == \
        ("n/a (1 seed): +0.02", None)
    # three seeds: the t interval over the seeds, replicates or not
    three = with_references([run, run, run])
    _, v = judge(series(three, "a", "auc"), series(three, "b", "auc"), "greater")
    assert v is not None and v.method == "paired t over seeds" and v.n == 3
    # the resolution table and the summary say what the bootstrap decided
    lines = resolution_table(runs, [("auc", "AUC", "max")])
    assert "| AUC | 0.8000 | constant 0.5000 | yes | +0.3 [+0.2" in next(x for x in lines if x.startswith("| AUC |"))
    with recording_verdicts() as judged:
        comparison("A", series(runs, "a", "auc"), "C", series(runs, "c", "auc"), "greater", "AUC")
    text = "\n".join(decision_summary(judged, seeds=1))
    v = judged[0].verdict
    assert v is not None
    assert f"times the test users" in text and f"about {(v.mdd / 0.0005) ** 2:,.1f} times" in text
