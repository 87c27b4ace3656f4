"""The evidence report's tables and claims: per-seed results aggregated to mean +- std, one Markdown section
per family (CVR, coupon uplift, multi-treatment, ESCIM label-rate sweep), and the page writer. The runs
that produce the results are ``lib/pipelines/report.py``; the verdicts and reference rows are
``lib/evaluation/claims.py``.

Every table ends with the reference rows (oracle, constant, random) scored on the same test rows by
the same code; the best MODEL of a column is bold, never a reference row. Every claim is judged by
the 95 % paired t interval of its per-seed differences (holds / contradicted / inconclusive), and every
section says which of its metrics separate the oracle from the constant at this scale at all.
"""
from __future__ import annotations

import os
from functools import partial

import numpy as np

from liftlake.lib.evaluation.claims import (
    RANDOM,
    REFERENCE_ROWS,
    PerSeed,
    Series,
    better_of,
    claim,
    comparison,
    constant_series,
    finite_or_none,
    is_reference,
    mean_of,
    resolution_table,
    row_names,
    series,
    strongest,
    tally,
    with_references,
)

EXTERNAL_T_LEARNER = "sklift T-learner (external)"
EXTERNAL_GBDT_CVR = "sklearn gradient boosting, naive (external)"
PAPERS_SETTINGS = "each model with its paper's optimizer settings (conf/models/<name>.yaml)"
CLAIMS_HEADING = ["Claims, as measured (model - rival per seed; 95 % paired t interval over the seeds, or with "
                  "few seeds the paired bootstrap over the test rows):", ""]


def aggregate(per_seed: PerSeed, metric: str) -> dict[str, tuple[float, float, int]]:
    """row -> (mean, std, seeds) of one metric over the seeds that have it."""
    out = {}
    for row in row_names(per_seed):
        values = [v for v in series(per_seed, row, metric) if v is not None]
        if values:
            out[row] = (float(np.mean(values)), float(np.std(values)), len(values))
    return out


def _ordered_rows(per_seed: PerSeed) -> list[str]:
    """The models in first-seen order, then the reference rows in their fixed order."""
    names = row_names(per_seed)
    return [r for r in names if not is_reference(r)] + [r for r in REFERENCE_ROWS.values() if r in names]


def table(per_seed: PerSeed, columns: list[tuple[str, str]], best: dict[str, str] | None = None) -> list[str]:
    """Markdown table: one row per model, then the reference rows; 'mean ± std' per metric; the best
    model's mean in bold (``best``: metric -> 'max' / 'min' / 'absmin'; reference rows never win)."""
    stats = {m: aggregate(per_seed, m) for m, _ in columns}
    best = best or {}
    lines = ["| model | " + " | ".join(label for _, label in columns) + " |",
             "|---|" + "---|" * len(columns)]
    winners = {}
    for metric, _ in columns:
        models = {row: s for row, s in stats[metric].items() if not is_reference(row)}
        if models and metric in best:
            order = {"max": lambda m, s=models: -s[m][0], "min": lambda m, s=models: s[m][0],
                     "absmin": lambda m, s=models: abs(s[m][0])}[best[metric]]
            winners[metric] = min(models, key=order)
    for row in _ordered_rows(per_seed):
        cells = []
        for metric, _ in columns:
            if row in stats[metric]:
                mean, std, _ = stats[metric][row]
                cell = f"{mean:.4f} ± {std:.4f}"
                cells.append(f"**{cell}**" if winners.get(metric) == row else cell)
            else:
                cells.append("n/a")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def _present(per_seed: PerSeed, row: str) -> bool:
    return any(row in run for run in per_seed)


CVR_COLUMNS = [("cvr_entire_auc", "CVR AUC, all exposures (potential conversions)"),
               ("cvr_true_auc", "CVR AUC vs. true CVR"), ("cvr_auc", "CVR AUC, clicks"), ("ctcvr_auc", "CTCVR AUC"),
               ("cvr_true_logloss", "log-loss vs. true CVR"), ("cvr_true_ece", "ECE vs. true CVR"),
               ("cvr_entire_ece", "ECE vs. potential conversions"),
               ("cvr_true_bias", "bias (mean pred - true CVR)"),
               ("cvr_clicked_calibration", "mean pred / rate, clicks"), ("crr", "CRR")]
CVR_BEST = {"cvr_entire_auc": "max", "cvr_true_auc": "max", "cvr_auc": "max", "ctcvr_auc": "max",
            "cvr_true_logloss": "min", "cvr_true_ece": "min", "cvr_entire_ece": "min", "cvr_true_bias": "absmin"}
CVR_RESOLUTION = [("cvr_entire_auc", "CVR AUC, all exposures", "max"), ("cvr_true_auc", "CVR AUC vs. true CVR", "max"),
                  ("cvr_auc", "CVR AUC, clicks", "max"), ("cvr_true_logloss", "log-loss vs. true CVR", "min"),
                  # a constant at the train mean is calibrated by construction (one bin, the right
                  # mean): ECE is there to reject a prediction whose values say nothing of its rows,
                  # the random row (the truth's values on the wrong rows). The bias has no uninformed
                  # rival at all (every row with the right mean has none), so it is not in this table.
                  ("cvr_true_ece", "ECE vs. true CVR", "min", RANDOM),
                  ("cvr_entire_ece", "ECE vs. potential conversions", "min", RANDOM)]
AUCS = [("cvr_entire_auc", "CVR AUC over all exposures"), ("cvr_true_auc", "CVR AUC vs. the true CVR")]
NAMES = {"escm2_ips": "ESCM²-IPS", "escm2_dr": "ESCM²-DR", "escim_max": "ESCIM-max", "escim_ratio": "ESCIM-ratio"}


def cvr_section(per_seed, models, heading: str = "## CVR over the entire exposure space (default preset)",
                settings: str = PAPERS_SETTINGS, label_quality: list[dict] | None = None) -> list[str]:
    """``label_quality``: per seed, ``label_rates`` of the world's ESCIM labels (their table)."""
    runs = with_references(per_seed)
    lines = [heading, "", f"Trained {settings}.", ""] + table(runs, CVR_COLUMNS, CVR_BEST) + [""]
    lines += label_quality_table([{"label_quality": q} for q in label_quality or []])
    true_mean = aggregate(runs, "ieb_mean_true")
    if true_mean:
        mean, std, _ = next(iter(true_mean.values()))
        lines += [(f"True mean CVR of the test exposures {mean:.4f} ± {std:.4f}; the oracle's log-loss is the "
                   "floor no prediction can beat (the true CVR's entropy)."), ""]
    lines += selection_reach_lines(runs)
    lines += resolution_table(runs, CVR_RESOLUTION)
    s = partial(series, runs)

    claims: list[str] = []
    if _present(runs, "esmm"):
        claims += claim("ESMM over-estimates CVR over all exposures (ESCM² Theorem 1)",
                        [comparison("ESMM", s("esmm", "cvr_true_bias"), "no bias", constant_series(runs, 0.0),
                                    "greater", "bias (mean pred - true CVR)")])
        escm = [m for m in ("escm2_ips", "escm2_dr") if _present(runs, m)]
        if escm:
            claims += claim("ESCM²-IPS / -DR cut that bias", [
                comparison(NAMES[m], s(m, "cvr_true_bias", abs), "ESMM", s("esmm", "cvr_true_bias", abs), "less",
                           "|bias|") for m in escm])
            claims += claim("ESCM² strengthens the click -> conversion causal link (ESCM² V-E)", [
                comparison(NAMES[m], s(m, "crr_strength"), "ESMM", s("esmm", "crr_strength"), "greater", "|CRR - 1|")
                for m in escm])
    rivals = [m for m in ("escm2_ips", "escm2_dr", "dcmt_pd", "dcmt_cf") if _present(runs, m)]
    if _present(runs, "dcmt") and rivals:
        parts = []
        for metric, label in AUCS:
            rival = strongest(runs, rivals, metric)
            if rival:
                parts.append(comparison("DCMT", s("dcmt", metric), rival, s(rival, metric), "greater",
                                        f"{label}, against the strongest rival by mean"))
        claims += claim("DCMT beats ESCM² and its ablations in CVR AUC over all exposures (DCMT Table IV)", parts)
    escim = [m for m in ("escim_max", "escim_ratio") if _present(runs, m)]
    if escim and _present(runs, "dcmt"):
        claims += claim("ESCIM-max / -ratio beat DCMT (ESCIM Table I)", [
            comparison(NAMES[m], s(m, metric), "DCMT", s("dcmt", metric), "greater", label)
            for m in escim for metric, label in AUCS])
    return lines + CLAIMS_HEADING + claims + [""]


def yardstick(runs: PerSeed, models, metric: str, label: str, best: str = "max") -> str | None:
    """One sentence: the best of CausalML's learners (rows ``CausalML ... (external)``) against the best
    of the platform's ``models`` on ``metric``, by mean over the seeds; None without both."""
    means = {row: v[0] for row, v in aggregate(runs, metric).items()}
    pick = max if best == "max" else min
    outside = {r: v for r, v in means.items() if r.startswith("CausalML ")}
    ours = {m: means[m] for m in models if m in means}
    if not outside or not ours:
        return None
    theirs, mine = pick(outside, key=outside.__getitem__), pick(ours, key=ours.__getitem__)
    return f"{label}: the platform's best {mine} {ours[mine]:.4f}, CausalML's best {theirs[len('CausalML '):]} " \
           f"{outside[theirs]:.4f}"


COUPON_COLUMNS = [("auc_base_rct", "base-CTR AUC (RCT)"), ("logloss_base_rct", "base-CTR LogLoss (RCT)"),
                  ("cs_auuc_rct", "CS-AUUC"), ("cs_qini_rct", "CS-Qini"), ("eta_sqrt_pehe", "unit-uplift sqrt-PEHE"),
                  ("eta_spearman", "Spearman with true uplift"), ("eta_true_auuc", "true AUUC (0 random, 1 oracle)"),
                  ("eta_bias", "unit-uplift bias"), ("coupon_policy_normalized", "decision value (0 random, 1 oracle)"),
                  ("coupon_policy_over_best_constant", "decision value over the best single coupon")]
COUPON_BEST = {"auc_base_rct": "max", "logloss_base_rct": "min", "cs_auuc_rct": "max", "cs_qini_rct": "max",
               "eta_sqrt_pehe": "min", "eta_spearman": "max", "eta_true_auuc": "max", "eta_bias": "absmin",
               "coupon_policy_normalized": "max", "coupon_policy_over_best_constant": "max"}
# true AUUC is 1 for the oracle and 0 for the constant by construction: it needs no resolution check.
COUPON_RESOLUTION = [("cs_auuc_rct", "CS-AUUC", "max"), ("cs_qini_rct", "CS-Qini", "max"),
                     ("eta_sqrt_pehe", "unit-uplift sqrt-PEHE", "min"),
                     ("eta_spearman", "Spearman with true uplift", "max")]


def coupon_section(per_preset: dict[str, list], models) -> list[str]:
    lines = ["## Coupon uplift on Syn-1, Syn-2, Syn-3 (UniMVT Table 2 layout)", ""]
    claims: list[str] = []
    for preset, per_seed in per_preset.items():
        runs = with_references(per_seed)
        lines += [f"### {preset}", ""] + table(runs, COUPON_COLUMNS, COUPON_BEST) + [""]
        lines += resolution_table(runs, COUPON_RESOLUTION)
        s = partial(series, runs)

        rivals = [m for m in models if m != "unimvt" and _present(runs, m)]
        if _present(runs, "unimvt") and rivals:
            parts = []
            for metric, label in (("cs_auuc_rct", "CS-AUUC"), ("eta_true_auuc", "true AUUC, all test rows")):
                rival = strongest(runs, rivals, metric)
                if rival:
                    parts.append(comparison("UniMVT", s("unimvt", metric), rival, s(rival, metric), "greater",
                                            f"{label}, against the strongest rival by mean"))
            claims += claim(f"{preset}: UniMVT leads CS-AUUC", parts)
        if _present(runs, "unimvt") and mean_of(s("unimvt", "coupon_policy_policy")) is not None:
            oracle = mean_of(s("unimvt", "coupon_policy_oracle"))
            value = s("unimvt", "coupon_policy_policy")
            claims += claim(f"{preset}: UniMVT's coupon decisions (eq. 25) pay, net of cost per user (the truth's "
                            f"best {oracle if oracle is not None else float('nan'):.4g})", [
                comparison("UniMVT", value, "random", s("unimvt", "coupon_policy_random"), "greater", "over random"),
                comparison("UniMVT", value, "best single coupon", s("unimvt", "coupon_policy_best_constant"),
                           "greater", "over the best single coupon for everybody")])
        cs_auuc, pehe = aggregate(runs, "cs_auuc_rct"), aggregate(runs, "eta_sqrt_pehe")
        ours, ext = cs_auuc.get("t_learner"), cs_auuc.get(EXTERNAL_T_LEARNER)
        if ours and ext:
            tail = ""
            if "t_learner" in pehe and EXTERNAL_T_LEARNER in pehe:
                tail = f"; unit-uplift sqrt-PEHE {pehe['t_learner'][0]:.4f} vs. {pehe[EXTERNAL_T_LEARNER][0]:.4f}"
            claims.append(f"- {preset}: sanity check, the platform's T-Learner vs. scikit-uplift's TwoModels on the "
                          f"same rows: CS-AUUC {ours[0]:.4f} vs. {ext[0]:.4f}{tail}.")
        outside = [line for line in (yardstick(runs, models, "eta_spearman", "Spearman with the true uplift"),
                                     yardstick(runs, models, "eta_true_auuc", "true AUUC"),
                                     yardstick(runs, models, "cs_auuc_rct", "CS-AUUC")) if line]
        if outside:
            claims.append(f"- {preset}: outside yardstick, CausalML's learners fitted on the same rows "
                          f"(mean over seeds): " + "; ".join(outside) + ".")
    return lines + CLAIMS_HEADING + claims + [""]


def multi_section(per_seed, models, num_responses: int = 2, num_treatments: int = 2,
                  heading: str = "## Multi-treatment uplift (HMUM Table 1 layout)",
                  settings: str = PAPERS_SETTINGS) -> list[str]:
    runs = with_references(per_seed)
    pairs = [(r, k) for r in range(1, num_responses + 1) for k in range(1, num_treatments + 1)]
    observed = [col for r, k in pairs for col in ((f"qini_r{r}_k{k}", f"Qini r{r} t{k}"),
                                                   (f"auuc_r{r}_k{k}", f"AUUC r{r} t{k}"))]
    true_auuc = [(f"tau_r{r}_k{k}_true_auuc", f"true AUUC r{r} t{k}") for r, k in pairs]
    pehe = [(f"tau_r{r}_k{k}_sqrt_pehe", f"sqrt-PEHE r{r} t{k}") for r, k in pairs]
    truth_cols = [col for pair in zip(true_auuc, pehe) for col in pair]
    lines = [heading, "", f"Trained {settings}.", "", "Observed, on the randomized slice:", ""]
    lines += table(runs, observed, {c: "max" for c, _ in observed})
    lines += ["", "Against the true effects, on all test rows:", ""]
    lines += table(runs, truth_cols, {c: "max" for c, _ in true_auuc} | {c: "min" for c, _ in pehe}) + [""]
    lines += resolution_table(runs, [(c, label, "max") for c, label in observed]
                              + [(c, label, "min") for c, label in pehe])
    s = partial(series, runs)

    claims: list[str] = []
    rivals = [m for m in models if m != "hmum" and _present(runs, m)]
    if _present(runs, "hmum") and rivals:
        for metrics, what in ((observed, "Qini / AUUC on the randomized slice"),
                              (true_auuc, "true AUUC, all test rows")):
            parts = []
            for metric, label in metrics:
                rival = strongest(runs, rivals, metric)
                if rival and mean_of(s("hmum", metric)) is not None:
                    parts.append(comparison("HUM", s("hmum", metric), rival, s(rival, metric), "greater", label))
            if parts:
                claims += claim(f"HUM leads {what} against the strongest other model per metric (HMUM Table 1): "
                                f"{tally(parts)}", parts)
    if _present(runs, "hmum") and _present(runs, "hum_no_kl"):
        parts = [comparison("HUM", s("hmum", m), "without KL", s("hum_no_kl", m), "greater", label)
                 for m, label in observed + true_auuc if mean_of(s("hmum", m)) is not None]
        if parts:
            claims += claim(f"the KL constraint helps, HUM vs. HUM without KL: {tally(parts)}", parts)
    policy = s("hmum", "switch_total_policy")
    if mean_of(policy) is not None:
        on, off = s("hmum", "switch_total_all_on"), s("hmum", "switch_total_all_off")
        all_or_nothing = better_of(on, off)
        oracle = mean_of(s("hmum", "switch_total_oracle"))
        claims += claim(f"HMUM's switches (phi > sigma, eq. 11) beat all-or-nothing (the truth's best "
                        f"{oracle if oracle is not None else float('nan'):.4f}, all-on {mean_of(on) or 0.0:.4f}, "
                        f"all-off {mean_of(off) or 0.0:.4f})",
                        [comparison("HMUM", policy, "better of all-on / all-off", all_or_nothing, "greater")])
    outside = [line for r, k in pairs for line in (
        yardstick(runs, models, f"tau_r{r}_k{k}_spearman", f"Spearman with the true tau r{r} t{k}"),) if line]
    if outside:
        claims.append("- outside yardstick, CausalML's learners fitted on the same rows (mean over seeds): "
                      + "; ".join(outside) + ".")
    return lines + CLAIMS_HEADING + claims + [""]


SWEEP_METRICS = [("cvr_entire_auc", "CVR AUC, all exposures (potential conversions)"),
                 ("cvr_true_auc", "CVR AUC vs. true CVR"), ("ctcvr_auc", "CTCVR AUC")]
LABEL_QUALITY = [("labelled_share", "share of non-clicked labelled 1"),
                 ("labelled_true_rate", "true CVR of the labelled"),
                 ("base_rate", "true CVR of all non-clicked"), ("lift", "lift (labelled / all)")]


def selection_reach_lines(runs) -> list[str]:
    """What propensity weighting can reach in the world (``report.selection_reach`` on the external
    reference's row): the yardstick for every model's bias over all exposures."""
    reach = {key: aggregate(runs, key).get(EXTERNAL_GBDT_CVR) for key in
             ("reach_true_mean", "reach_clicked_rate", "reach_snips_features", "reach_snips_true_ctr")}
    if any(v is None for v in reach.values()):
        return []
    mean = {key: v[0] for key, v in reach.items() if v is not None}
    floor = mean["reach_snips_features"] - mean["reach_true_mean"]
    return [(f"What propensity weighting can reach here (train split, mean over the seeds): the true mean CVR is "
             f"{mean['reach_true_mean']:.4f} and clicked exposures convert at {mean['reach_clicked_rate']:.4f}. "
             f"Self-normalised IPS with the simulator's true CTR recovers {mean['reach_snips_true_ctr']:.4f}; "
             f"with a gradient-boosted CTR on the features it recovers {mean['reach_snips_features']:.4f}, "
             "because part of what drives clicks and conversions together is not in the features (the "
             "exposure's hidden shock; for held-out users also their purchase intent). A model whose "
             f"correction runs through a CTR on the features is left with a bias of about {floor:+.4f}: a "
             "bias near it is that floor, one far below it comes from being uncalibrated on the clicks."), ""]


def label_quality_table(runs: list[dict]) -> list[str]:
    """How good the max / ratio transforms' counterfactual labels are (``truth_metrics.label_quality``
    against the true CVR of every non-clicked exposure), mean ± std over the seeds of ``runs``."""
    found = [run["label_quality"] for run in runs if run.get("label_quality")]
    if not found:
        return []
    lines = ["Counterfactual label quality (non-clicked exposures, against the true CVR under do(click=1)):", "",
             "| transform | " + " | ".join(label for _, label in LABEL_QUALITY) + " |",
             "|---|" + "---|" * len(LABEL_QUALITY)]
    for name in ("max", "ratio"):
        cells = []
        for key, _ in LABEL_QUALITY:
            values = [float(q[name][key]) for q in found if name in q and np.isfinite(q[name].get(key, np.nan))]
            spread = float(np.std(values)) if len(set(values)) > 1 else 0.0  # equal values: exactly 0, no 1e-17
            cells.append(f"{np.mean(values):.4g} ± {spread:.2g}" if values else "n/a")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def sweep_section(sweeps: list[dict], common_cvr: list[dict], settings: str) -> tuple[list[str], dict]:
    """ESCIM Fig. 3 as a table and a claim; returns the lines and the curves for the figure."""
    rates = list(sweeps[0]["rates"])
    lines = ["## ESCIM: AUC vs. the counterfactual label rate (ESCIM Fig. 3)", "",
             (f"escim_ratio's towers trained {settings}, the cut-off set so that the given share of non-clicked "
              f"exposures is labelled 1; {len(sweeps)} seed(s). The max / ratio rows are escim_max / escim_ratio "
              "from the same-optimizer table, at the share their transform labelled."), "",
             "| label rate | " + " | ".join(label for _, label in SWEEP_METRICS) + " |",
             "|---|" + "---|" * len(SWEEP_METRICS)]
    curves, means = {}, {}
    for metric, label in SWEEP_METRICS:
        values = [[run["rates"][r].get(metric, np.nan) for run in sweeps] for r in rates]
        means[metric] = [(float(np.nanmean(v)), float(np.nanstd(v))) if np.isfinite(v).any() else (np.nan, np.nan)
                         for v in np.asarray(values, dtype=float)]
        if np.isfinite([m for m, _ in means[metric]]).all():  # a run without this metric draws no curve
            curves[label] = ([float(r) for r in rates], [m for m, _ in means[metric]])
    for i, rate in enumerate(rates):
        cells = [f"{means[m][i][0]:.4f} ± {means[m][i][1]:.4f}" if np.isfinite(means[m][i][0]) else "n/a"
                 for m, _ in SWEEP_METRICS]
        lines.append(f"| {rate} | " + " | ".join(cells) + " |")
    transform = {name: float(np.mean([run["transform_rates"][name] for run in sweeps])) for name in ("max", "ratio")}
    common = with_references(common_cvr[:len(sweeps)])  # common_cvr[i] and sweeps[i] are the same seed's world
    at_transform = []
    for name in ("max", "ratio"):
        stats = {m: aggregate(common, m).get(f"escim_{name}") for m, _ in SWEEP_METRICS} if common else {}
        if stats and all(stats.values()):
            at_transform.append(name)
            lines.append(f"| {name} transform ({transform[name]:.4g}) | "
                         + " | ".join(f"{st[0]:.4f} ± {st[1]:.4f}" for st in stats.values() if st) + " |")
    lines += [""] + CLAIMS_HEADING  # the labels' quality is the CVR section's table
    parts = []
    for metric, label in SWEEP_METRICS[:2]:
        if not np.isfinite([m for m, _ in means[metric]]).any():
            continue
        best = rates[int(np.nanargmax([m for m, _ in means[metric]]))]
        at_best = Series([finite_or_none(run["rates"][best].get(metric)) for run in sweeps])
        for name in at_transform:
            parts.append(comparison(f"{name} ({transform[name]:.4g})", series(common, f"escim_{name}", metric),
                                    f"best swept rate {best}", at_best, "greater", label))
    if parts:
        lines += claim("the max / ratio cut-offs sit near the best label rate (ESCIM Fig. 3; holds: better than "
                       "the best swept rate by mean, inconclusive: no difference detectable, contradicted: worse)",
                       parts)
    entire = [m for m, _ in means["cvr_entire_auc"]]
    lines += [f"- spread of CVR AUC over the swept rates: {np.nanmax(entire) - np.nanmin(entire):.4f}.", ""]
    return lines, {"curves": curves, "markers": {f"{k} transform": v for k, v in transform.items() if v > 0}}


def write_report(path: str, header: list[str], sections: list[list[str]]) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(header + [line for s in sections for line in s]) + "\n")
    return path
