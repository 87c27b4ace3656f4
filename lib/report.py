"""The evidence report: do the five papers' claims hold on the simulator, measured against its truth?

For every seed the report simulates its own days, builds features, makes the ESCIM labels, trains
every listed model with the platform's own trainer (local launcher) and evaluates it on the test
split against ``sim.truth``. Tables give mean +- std over the seeds; figures come from the first seed.
Nothing is typed in by hand: the numbers are whatever this run measured, claims that fail included.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import asdict

import numpy as np

from liftlake.lib.config import load_config
from liftlake.lib.pipeline import build_features_days, log, simulate_days
from liftlake.lib.runner import JobContext
from liftlake.lib.store import DeltaRsStore


def _days(end: str, n: int) -> list[str]:
    import datetime as dt

    last = dt.date.fromisoformat(end)
    return [(last - dt.timedelta(days=n - 1 - i)).isoformat() for i in range(n)]


def _context(spark, args, warehouse: str, days: list[str], overrides: list[str]) -> JobContext:
    sets = list(args.overrides) + [f"warehouse.path={warehouse}", *overrides]
    config = load_config(args.conf, sets, env={})
    ns = argparse.Namespace(conf=args.conf, overrides=sets, json=False, model=None, quiet_config=True)
    return JobContext("report", config, ns, days, _spark=spark, _store=DeltaRsStore(spark, warehouse))


def _train_and_evaluate(ctx, model: str, seed: int, epochs: int, extra: list[str]) -> dict:
    from liftlake.lib.trainer import train

    run = _context(ctx.spark, ctx.args, ctx.store.root, ctx.days,
                   [f"model.name={model}", f"train.seed={seed}", f"train.epochs={epochs}",
                    "train.launcher=local", *extra])
    started = time.time()
    summary = train(run, ctx.days[-1])
    metrics = dict(summary["metrics"])
    metrics["train_seconds"] = time.time() - started
    metrics["version"] = summary["version"]  # which artifact the figures read
    return metrics


def _world(ctx_args, spark, workdir: str, preset: str, seed: int, cfg, end: str) -> JobContext:
    warehouse = os.path.join(workdir, f"{preset}-seed{seed}")
    return _context(spark, ctx_args, warehouse, _days(end, cfg.days),
                    [f"simulator.preset={preset}", f"simulator.seed={seed}", f"simulator.exposures={cfg.exposures}"])


def run_world(ctx_args, spark, workdir: str, preset: str, seed: int, cfg, end: str, models: list[str],
              extra_for: dict[str, list[str]], with_labels: bool, external_reference: bool = False) -> dict[str, dict]:
    """One simulated world (preset, seed): its tables and every model's test metrics."""
    ctx = _world(ctx_args, spark, workdir, preset, seed, cfg, end)
    days = ctx.days
    if not ctx.store.exists("features.samples") or set(days) - set(ctx.store.partition_counts("features.samples")):
        simulate_days(ctx)
        build_features_days(ctx)
    if with_labels and not ctx.store.exists("labels.escim_counterfactual"):
        from liftlake.lib.escim_labels import escim_labels

        escim_labels(ctx)
    results = {}
    for model in models:
        log(f"report: {preset} seed {seed}: {model}")
        results[model] = _train_and_evaluate(ctx, model, seed, cfg.epochs, extra_for.get(model, []))
    if external_reference and models:
        log(f"report: {preset} seed {seed}: {EXTERNAL_T_LEARNER}")
        external = external_t_learner(ctx, models[0])
        if external is not None:
            results[EXTERNAL_T_LEARNER] = external
    return results


EXTERNAL_T_LEARNER = "sklift T-learner (external)"


def latest_artifact(warehouse: str, model: str, version: str | None = None):
    """(artifact, batch layout) of the model's ``version`` (default its newest) in ``warehouse``, or None."""
    from liftlake.lib.evaluation import layout_for
    from liftlake.lib.features import FeatureSpec
    from liftlake.lib.model_store import load_artifact, versions

    have = versions(warehouse, model)
    if not have or (version is not None and version not in have):
        return None
    art = load_artifact(warehouse, model, version or have[-1])
    return art, layout_for(art.info, FeatureSpec.from_json(art.feature_spec_json), art.config)


def external_t_learner(ctx, reference_model: str) -> dict | None:
    """scikit-uplift's TwoModels (one-hot features, a logistic regression per arm) fitted on the same
    train split as ``reference_model``'s artifact and judged by the same code on the same test rows:
    a sanity check of the platform's own baselines by a library nobody here wrote. The binary
    uplift it predicts becomes a unit uplift by dividing by the mean coupon value of the treated."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklift.models import TwoModels

    from liftlake.lib.evaluation import compute_metrics, test_rows

    latest = latest_artifact(ctx.store.root, reference_model)
    if latest is None:
        return None
    art, layout = latest
    max_rows = ctx.config.train.eval_max_rows
    train, _ = test_rows(ctx.store, art.info, art.data, layout, max_rows, split="train")
    test, has_truth = test_rows(ctx.store, art.info, art.data, layout, max_rows)

    def features(cols):
        return np.column_stack([cols[c] for c in layout.feature_columns])

    def arm():
        return make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression(max_iter=1000))

    two = TwoModels(estimator_trmnt=arm(), estimator_ctrl=arm(), method="vanilla")
    two.fit(features(train), train["outcome"], train["treated"])
    uplift = two.predict(features(test))
    mean_value = float(np.mean(train["intensity"][train["treated"] == 1]))
    pred = {"p0": two.ctrl_preds_, "unit_uplift": np.clip(uplift, 0, None) / mean_value}
    return compute_metrics("coupon", test, pred, has_truth, layout, ctx.config.score)


def aggregate(per_seed: list[dict[str, dict]], metric: str) -> dict[str, tuple[float, float, int]]:
    """model -> (mean, std, seeds) of one metric over the seeds that have it."""
    out = {}
    for model in per_seed[0]:
        values = [run[model].get(metric) for run in per_seed if model in run]
        values = [v for v in values if v is not None and np.isfinite(v)]
        if values:
            out[model] = (float(np.mean(values)), float(np.std(values)), len(values))
    return out


def table(per_seed: list[dict[str, dict]], columns: list[tuple[str, str]], best: dict[str, str] | None = None) -> list[str]:
    """Markdown table: one row per model, 'mean +- std' per metric; the best mean in bold."""
    stats = {m: aggregate(per_seed, m) for m, _ in columns}
    best = best or {}
    lines = ["| model | " + " | ".join(label for _, label in columns) + " |",
             "|---|" + "---|" * len(columns)]
    winners = {}
    for metric, _ in columns:
        if stats[metric] and metric in best:
            order = {"max": lambda m, s=stats[metric]: -s[m][0], "min": lambda m, s=stats[metric]: s[m][0],
                     "absmin": lambda m, s=stats[metric]: abs(s[m][0])}[best[metric]]
            winners[metric] = min(stats[metric], key=order)
    for model in per_seed[0]:
        cells = []
        for metric, _ in columns:
            if model in stats[metric]:
                mean, std, n = stats[metric][model]
                cell = f"{mean:.4f} ± {std:.4f}"
                cells.append(f"**{cell}**" if winners.get(metric) == model else cell)
            else:
                cells.append("n/a")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _mean(per_seed, model, metric):
    s = aggregate(per_seed, metric).get(model)
    return None if s is None else s[0]


def verdict(ok: bool | None) -> str:
    return "n/a (not measured)" if ok is None else ("holds" if ok else "does not hold")


PAPERS_SETTINGS = "each model with its paper's optimizer settings (conf/models/<name>.yaml)"


def cvr_section(per_seed, models, heading: str = "## CVR over the entire exposure space (default preset)",
                settings: str = PAPERS_SETTINGS) -> list[str]:
    cols = [("cvr_entire_auc", "CVR AUC, all exposures (truth)"), ("cvr_auc", "CVR AUC, clicks"),
            ("ctcvr_auc", "CTCVR AUC"), ("ieb_bias", "IEB bias (mean pred - true CVR)"),
            ("ieb_mean_pred", "mean CVR estimate"), ("ieb_mean_true", "true mean CVR"), ("crr", "CRR")]
    lines = [heading, "", f"Trained {settings}.", ""]
    lines += table(per_seed, cols, {"cvr_entire_auc": "max", "cvr_auc": "max", "ctcvr_auc": "max",
                                    "ieb_bias": "absmin"})
    esmm, escm = _mean(per_seed, "esmm", "ieb_bias"), [_mean(per_seed, m, "ieb_bias") for m in ("escm2_ips", "escm2_dr")]
    claims = []
    if esmm is not None:
        claims.append(f"- ESMM over-estimates CVR over all exposures (ESCM² Theorem 1): bias {esmm:+.4f} -> "
                      f"{verdict(esmm > 0)}.")
        if all(e is not None for e in escm):
            claims.append(f"- ESCM²-IPS / -DR cut that bias: |bias| {abs(escm[0]):.4f} / {abs(escm[1]):.4f} vs. ESMM "
                          f"{abs(esmm):.4f} -> {verdict(max(abs(e) for e in escm) < abs(esmm))}.")
    crr = {m: _mean(per_seed, m, "crr_strength") for m in ("esmm", "escm2_ips", "escm2_dr")}
    if all(v is not None for v in crr.values()):
        claims.append(f"- ESCM² strengthens the click -> conversion causal link (ESCM² V-E), |CRR - 1|: ESMM "
                      f"{crr['esmm']:.4f}, ESCM²-IPS {crr['escm2_ips']:.4f}, ESCM²-DR {crr['escm2_dr']:.4f} -> "
                      f"{verdict(max(crr['escm2_ips'], crr['escm2_dr']) > crr['esmm'])}.")
    auc = {m: _mean(per_seed, m, "cvr_entire_auc") for m in models}
    if all(auc.get(m) is not None for m in ("dcmt", "escm2_ips", "escm2_dr", "dcmt_pd", "dcmt_cf")):
        rivals = max(auc[m] for m in ("escm2_ips", "escm2_dr", "dcmt_pd", "dcmt_cf"))
        claims.append(f"- DCMT beats ESCM² and its ablations in CVR AUC over all exposures (DCMT Table IV): "
                      f"{auc['dcmt']:.4f} vs. best rival {rivals:.4f} -> {verdict(auc['dcmt'] > rivals)}.")
    if all(auc.get(m) is not None for m in ("escim_max", "escim_ratio", "dcmt")):
        best_escim = max(auc["escim_max"], auc["escim_ratio"])
        claims.append(f"- ESCIM-max / -ratio beat DCMT (ESCIM Table I): {auc['escim_max']:.4f} / "
                      f"{auc['escim_ratio']:.4f} vs. {auc['dcmt']:.4f} -> {verdict(best_escim > auc['dcmt'])}.")
    return lines + ["", "Claims, as measured:", ""] + claims + [""]


def coupon_section(per_preset: dict[str, list], models) -> list[str]:
    lines = ["## Coupon uplift on Syn-1, Syn-2, Syn-3 (UniMVT Table 2 layout)", ""]
    cols = [("auc_base_rct", "base-CTR AUC (RCT)"), ("logloss_base_rct", "base-CTR LogLoss (RCT)"),
            ("cs_auuc_rct", "CS-AUUC"), ("cs_qini_rct", "CS-Qini"), ("eta_rmse", "unit-uplift RMSE"),
            ("coupon_policy_normalized", "decision value (0 random, 1 oracle)")]
    claims = []
    for preset, per_seed in per_preset.items():
        lines += [f"### {preset}", ""] + table(per_seed, cols, {"auc_base_rct": "max", "logloss_base_rct": "min",
                                                               "cs_auuc_rct": "max", "cs_qini_rct": "max",
                                                               "eta_rmse": "min",
                                                               "coupon_policy_normalized": "max"}) + [""]
        cs_all = aggregate(per_seed, "cs_auuc_rct")
        cs = {m: v for m, v in cs_all.items() if m in models}
        if "unimvt" in cs:
            lead = max(cs, key=lambda m: cs[m][0])
            claims.append(f"- {preset}: UniMVT leads CS-AUUC -> {verdict(lead == 'unimvt')} (leader {lead}, "
                          f"{cs[lead][0]:.4f}; UniMVT {cs['unimvt'][0]:.4f}).")
        pv = aggregate(per_seed, "coupon_policy_policy")
        rnd, orc = aggregate(per_seed, "coupon_policy_random"), aggregate(per_seed, "coupon_policy_oracle")
        if "unimvt" in pv:
            claims.append(f"- {preset}: UniMVT's coupon decisions (eq. 25) are worth {pv['unimvt'][0]:.5f} per user "
                          f"net of cost vs. random {rnd['unimvt'][0]:.5f} and the truth's best {orc['unimvt'][0]:.5f} "
                          f"-> pays over random: {verdict(pv['unimvt'][0] > rnd['unimvt'][0])}.")
        ours, ext = cs_all.get("t_learner"), cs_all.get(EXTERNAL_T_LEARNER)
        if ours and ext:
            claims.append(f"- {preset}: sanity check, the platform's T-Learner vs. scikit-uplift's TwoModels on the "
                          f"same rows: CS-AUUC {ours[0]:.4f} vs. {ext[0]:.4f}.")
    return lines + ["Claims, as measured:", ""] + claims + [""]


def multi_section(per_seed, models, num_responses: int = 2, num_treatments: int = 2,
                  heading: str = "## Multi-treatment uplift (HMUM Table 1 layout)",
                  settings: str = PAPERS_SETTINGS) -> list[str]:
    cols = []
    for r in range(1, num_responses + 1):
        for k in range(1, num_treatments + 1):
            cols += [(f"qini_r{r}_k{k}", f"Qini r{r} t{k}"), (f"auuc_r{r}_k{k}", f"AUUC r{r} t{k}")]
    lines = [heading, "", f"Trained {settings}.", ""]
    lines += table(per_seed, cols, {c: "max" for c, _ in cols})
    claims = []
    wins = 0
    total = 0
    for metric, _ in cols:
        stats = aggregate(per_seed, metric)
        if "hmum" in stats:
            total += 1
            wins += max(stats, key=lambda m: stats[m][0]) == "hmum"
    if total:
        claims.append(f"- HUM leads Qini / AUUC: it leads {wins} of {total} (response, treatment) metrics -> "
                      f"{verdict(wins == total)}.")
    kl = [(m, _mean(per_seed, "hmum", m), _mean(per_seed, "hum_no_kl", m)) for m, _ in cols]
    kl = [(m, a, b) for m, a, b in kl if a is not None and b is not None]
    if kl:
        better = sum(a > b for _, a, b in kl)
        claims.append(f"- the KL constraint helps: HUM beats HUM-without-KL on {better} of {len(kl)} metrics -> "
                      f"{verdict(better > len(kl) / 2)}.")
    sw = aggregate(per_seed, "switch_total_policy")
    if "hmum" in sw:
        best, alls, none = (aggregate(per_seed, f"switch_total_{k}").get("hmum") for k in ("best", "all_on", "all_off"))
        if best and alls and none:
            claims.append(f"- HMUM's switches (phi > sigma, eq. 11) are worth {sw['hmum'][0]:.4f} vs. the truth's best "
                          f"{best[0]:.4f}, all-on {alls[0]:.4f}, all-off {none[0]:.4f} -> beats all-or-nothing: "
                          f"{verdict(sw['hmum'][0] > max(alls[0], none[0]))}.")
    return lines + ["", "Claims, as measured:", ""] + claims + [""]


def label_rates(ctx) -> dict[str, float]:
    """Share of the world's non-clicked exposures that the max and the ratio transforms labelled 1."""
    from pyspark.sql import functions as F

    nonclicked = ctx.store.read("features.samples", partitions=ctx.days).where(F.col("click") == 0).select("exposure_id")
    labels = ctx.store.read("labels.escim_counterfactual", partitions=ctx.days)
    row = labels.join(nonclicked, "exposure_id").agg(F.avg("label_max").alias("max"),
                                                     F.avg("label_ratio").alias("ratio")).first()
    return {"max": float(row["max"] or 0.0), "ratio": float(row["ratio"] or 0.0)}


def escim_sweep(ctx_args, spark, workdir: str, seed: int, cfg, end: str, common: list[str]) -> dict:
    """ESCIM Fig. 3 on one default world: escim_ratio's towers trained with the label cut-off at each
    of ``report.escim_label_rates`` (top share of non-clicked rows by pcvr_cf), plus the rates the
    max and ratio transforms themselves gave on that world."""
    ctx = _world(ctx_args, spark, workdir, "default", seed, cfg, end)
    runs = {}
    for rate in cfg.escim_label_rates:
        log(f"report: ESCIM label-rate sweep, seed {seed}: rate {rate:g}")
        runs[f"{rate:g}"] = _train_and_evaluate(ctx, "escim_ratio", seed, cfg.epochs,
                                                [*common, f"model.params.label_rate={rate}"])
    return {"rates": runs, "transform_rates": label_rates(ctx)}


def sweep_section(sweeps: list[dict], common_cvr: list[dict], settings: str) -> tuple[list[str], dict]:
    """ESCIM Fig. 3 as a table and a claim; returns the lines and the curves for the figure."""
    metrics = [("cvr_entire_auc", "CVR AUC, all exposures (truth)"), ("ctcvr_auc", "CTCVR AUC")]
    rates = list(sweeps[0]["rates"])
    lines = ["## ESCIM: AUC vs. the counterfactual label rate (ESCIM Fig. 3)", "",
             f"escim_ratio's towers trained {settings}, the cut-off set so that the given share of non-clicked "
             f"exposures is labelled 1; {len(sweeps)} seed(s). The max / ratio rows are escim_max / escim_ratio "
             "from the same-optimizer table, at the share their transform labelled.", "",
             "| label rate | " + " | ".join(label for _, label in metrics) + " |", "|---|" + "---|" * len(metrics)]
    curves, means = {}, {}
    for metric, label in metrics:
        values = [[run["rates"][r].get(metric, np.nan) for run in sweeps] for r in rates]
        means[metric] = [(float(np.nanmean(v)), float(np.nanstd(v))) for v in values]
        curves[label] = ([float(r) for r in rates], [m for m, _ in means[metric]])
    for i, rate in enumerate(rates):
        lines.append(f"| {rate} | " + " | ".join(f"{means[m][i][0]:.4f} ± {means[m][i][1]:.4f}" for m, _ in metrics) + " |")
    transform = {name: float(np.mean([run["transform_rates"][name] for run in sweeps])) for name in ("max", "ratio")}
    at_transform = {}
    for name in ("max", "ratio"):
        stats = {m: aggregate(common_cvr, m).get(f"escim_{name}") for m, _ in metrics} if common_cvr else {}
        if all(stats.values()) and stats:
            at_transform[name] = stats["cvr_entire_auc"][0]
            lines.append(f"| {name} transform ({transform[name]:.4g}) | "
                         + " | ".join(f"{stats[m][0]:.4f} ± {stats[m][1]:.4f}" for m, _ in metrics) + " |")
    best = int(np.argmax([m for m, _ in means["cvr_entire_auc"]]))
    best_mean, best_std = means["cvr_entire_auc"][best]
    lines += ["", "Claims, as measured:", ""]
    if at_transform:
        ours = max(at_transform.values())
        lines.append(f"- the max / ratio cut-offs sit near the best label rate (ESCIM Fig. 3): best swept rate "
                     f"{rates[best]} with CVR AUC {best_mean:.4f} ± {best_std:.4f}; max {at_transform.get('max', float('nan')):.4f}, "
                     f"ratio {at_transform.get('ratio', float('nan')):.4f} at rates {transform['max']:.4g} / "
                     f"{transform['ratio']:.4g} -> within one std of the best: {verdict(ours >= best_mean - best_std)}.")
    spread = max(m for m, _ in means["cvr_entire_auc"]) - min(m for m, _ in means["cvr_entire_auc"])
    lines += [f"- spread of CVR AUC over the swept rates: {spread:.4f}.", ""]
    return lines, {"curves": curves, "markers": {f"{k} transform": v for k, v in transform.items() if v > 0}}


def write_report(path: str, header: list[str], sections: list[list[str]]) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(header + [line for s in sections for line in s]) + "\n")
    return path


def run_report(ctx) -> str:
    """Body of ``liftlake report``: every world, every model, the Markdown page under report.out."""
    import json

    from importlib.metadata import version as installed_version
    import torch

    cfg = ctx.config.report
    end = ctx.days[-1] if ctx.days else ctx.config.quickstart.end
    workdir = os.path.join(cfg.out, "_work")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    cvr_runs, coupon_runs, multi_runs = [], {p: [] for p in cfg.coupon_presets}, []
    cvr_common, multi_common, sweeps = [], [], []
    escim = [m for m in cfg.cvr_models if m.startswith("escim")]
    multi_extra = {m: ["model.params.task=multi_treatment"] for m in cfg.multi_models if m not in ("hmum", "hum_no_kl")}
    common = ["train.optimizer=adam", f"train.learning_rate={cfg.common_learning_rate}",
              f"train.batch_size={cfg.common_batch_size}"]
    for seed in cfg.seeds:
        if cfg.cvr_models:
            cvr_runs.append(run_world(ctx.args, ctx.spark, workdir, "default", seed, cfg, end, cfg.cvr_models, {},
                                      with_labels=bool(escim)))
            if cfg.common_optimizer:
                cvr_common.append(run_world(ctx.args, ctx.spark, workdir, "default", seed, cfg, end, cfg.cvr_models,
                                            {m: common for m in cfg.cvr_models}, with_labels=bool(escim)))
            if escim and cfg.escim_label_rates and seed in cfg.seeds[:cfg.sweep_seeds]:
                sweeps.append(escim_sweep(ctx.args, ctx.spark, workdir, seed, cfg, end, common))
        for preset in cfg.coupon_presets:
            if cfg.coupon_models:
                coupon_runs[preset].append(run_world(ctx.args, ctx.spark, workdir, preset, seed, cfg, end,
                                                     cfg.coupon_models, {}, with_labels=False,
                                                     external_reference=True))
        if cfg.multi_models:
            multi_runs.append(run_world(ctx.args, ctx.spark, workdir, "multi_treatment", seed, cfg, end,
                                        cfg.multi_models, multi_extra, with_labels=False))
            if cfg.common_optimizer:
                multi_common.append(run_world(ctx.args, ctx.spark, workdir, "multi_treatment", seed, cfg, end,
                                              cfg.multi_models,
                                              {m: [*multi_extra.get(m, []), *common] for m in cfg.multi_models},
                                              with_labels=False))
    rows = len(_days(end, cfg.days)) * cfg.exposures
    header = ["# liftlake evidence report", "",
              f"Run {started} by `liftlake report`; {platform.platform()}, {os.cpu_count()} cores; "
              f"pyspark {installed_version('pyspark')}, torch {torch.__version__}.",  # pyspark-client shadows __version__
              f"Seeds {cfg.seeds} ({len(cfg.seeds)} per cell); each world: {cfg.days} simulated day(s) x "
              f"{cfg.exposures:,} exposures = {rows:,} exposure rows (users ~ exposures / 20 per day); "
              f"{cfg.epochs} epoch(s) per model, local launcher; metrics on the test split (10% of users) against "
              f"the simulator's truth. Mean ± std over the seeds; best mean in bold.", "",
              "A claim that does not hold here is a finding on this simulator at this scale, not tuned away.", ""]
    same = (f"with one optimizer for every model: Adam, learning rate {cfg.common_learning_rate:g}, batch "
            f"{cfg.common_batch_size}, {cfg.epochs} epoch(s) (report.common_*)")
    sections, sweep_figure = [], None
    if cvr_runs:
        sections.append(cvr_section(cvr_runs, cfg.cvr_models))
    if cvr_common:
        sections.append(cvr_section(cvr_common, cfg.cvr_models, "## CVR, one optimizer for every model", same))
    if sweeps:
        lines, sweep_figure = sweep_section(sweeps, cvr_common, same)
        sections.append(lines)
    if any(coupon_runs.values()):
        sections.append(coupon_section({p: r for p, r in coupon_runs.items() if r}, cfg.coupon_models))
    if multi_runs:
        sections.append(multi_section(multi_runs, cfg.multi_models))
    if multi_common:
        sections.append(multi_section(multi_common, cfg.multi_models, heading="## Multi-treatment uplift, one "
                                      "optimizer for every model", settings=same))
    first_seed = {"default": cvr_runs[0] if cvr_runs else {}, "multi_treatment": multi_runs[0] if multi_runs else {},
                  **{p: r[0] for p, r in coupon_runs.items() if r}}
    sections.append(figures(ctx, workdir, cfg, first_seed, sweep_figure))
    path = write_report(os.path.join(cfg.out, "report.md"), header, sections)
    with open(os.path.join(cfg.out, "report.json"), "w", encoding="utf-8") as fh:
        json.dump({"config": asdict(cfg), "cvr": cvr_runs, "coupon": coupon_runs, "multi": multi_runs,
                   "cvr_common_optimizer": cvr_common, "multi_common_optimizer": multi_common,
                   "escim_label_rate_sweep": sweeps}, fh, indent=1, default=float)
    log(f"report written: {path}")
    return path


def figures(ctx, workdir: str, cfg, first_seed: dict[str, dict], sweep: dict | None = None) -> list[str]:
    """PNG figures from the first seed's worlds, of the artifacts trained with the papers' settings
    (``first_seed``: preset -> model -> metrics with its version): calibration of the CVR models,
    cumulative-slope curves of the coupon models, Qini curves of the multi-treatment models, and
    the ESCIM label-rate sweep (mean over its seeds)."""
    from liftlake.lib import plots
    from liftlake.lib import uplift_metrics as U
    from liftlake.lib.evaluation import predict_frame, test_rows

    seed = cfg.seeds[0]
    out_dir = os.path.join(cfg.out, "figures")
    lines = ["## Figures (seed %d)" % seed, ""]

    def predictions(preset, model):
        warehouse = os.path.join(workdir, f"{preset}-seed{seed}")
        latest = latest_artifact(warehouse, model, first_seed.get(preset, {}).get(model, {}).get("version"))
        if latest is None:
            return None
        art, layout = latest
        store = DeltaRsStore(ctx.spark, warehouse)
        cols, _ = test_rows(store, art.info, art.data, layout, ctx.config.train.eval_max_rows)
        return cols, predict_frame(art.model, layout, cols)

    for model in cfg.cvr_models[:4] + [m for m in cfg.cvr_models if m.startswith(("dcmt", "escim"))][:2]:
        got = predictions("default", model)
        if got:
            cols, pred = got
            path = plots.plot_calibration(cols["conversion_potential"], pred["cvr"],
                                          os.path.join(out_dir, f"calibration_{model}.png"),
                                          title=f"{model}: CVR over all exposures vs. conversion under do(click=1)",
                                          strategy="quantile")
            lines.append(f"![calibration {model}](figures/{os.path.basename(path)})")
    for preset in cfg.coupon_presets[:1]:
        curves = {}
        for model in cfg.coupon_models:
            got = predictions(preset, model)
            if got:
                cols, pred = got
                rct = cols["rct_coupon"] == 1
                curves[model] = U.cumulative_slope_curve(cols["outcome"][rct], cols["intensity"][rct],
                                                         pred["unit_uplift"][rct])
        if curves:
            path = plots.plot_cumulative_slope(curves, os.path.join(out_dir, f"cumulative_slope_{preset}.png"),
                                               title=f"Cumulative slope on the randomized slice, {preset}")
            lines.append(f"![cumulative slope](figures/{os.path.basename(path)})")
    curves = {}
    for model in cfg.multi_models:
        got = predictions("multi_treatment", model)
        if got:
            cols, pred = got
            on = (cols["rct_treatment"] == 1) & np.isin(cols["treatment_id"], [0, 1])
            curves[model] = U.qini_curve(cols["response_1"][on], pred["tau_r1_k1"][on],
                                         (cols["treatment_id"][on] == 1).astype(int), continuous=True)
    if curves:
        path = plots.plot_qini_curves(curves, os.path.join(out_dir, "qini_r1_k1.png"),
                                      title="Qini, response 1 under treatment 1 (RCT slice)")
        lines.append(f"![qini](figures/{os.path.basename(path)})")
    if sweep:
        path = plots.plot_label_rate_sweep(sweep["curves"], os.path.join(out_dir, "escim_label_rate.png"),
                                           markers=sweep["markers"],
                                           title="ESCIM: AUC vs. counterfactual label rate (mean over seeds)")
        lines.append(f"![escim label rate](figures/{os.path.basename(path)})")
    return lines + [""]
