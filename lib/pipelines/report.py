"""The evidence report: do the five papers' claims hold on the simulator, measured against its truth?

For every seed the report simulates its own days, builds features, makes the ESCIM labels, trains
every listed model with the platform's own trainer (local launcher) and evaluates it on the test
split against ``sim.truth``. Tables give mean +- std over the seeds; figures come from the first seed.
Nothing is typed in by hand: the numbers are whatever this run measured, claims that fail included.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from liftlake.lib.cli.runner import JobContext
from liftlake.lib.config import load_config
from liftlake.lib.config.sections import ReportConf
from liftlake.lib.evaluation.claims import (
    BOOTSTRAP_BELOW_SEEDS,
    REPLICATES,
    decision_summary,
    judged_under,
    recording_verdicts,
)
from liftlake.lib.evaluation.report import (
    EXTERNAL_GBDT_CVR,
    EXTERNAL_T_LEARNER,
    coupon_section,
    cvr_section,
    multi_section,
    sweep_section,
    write_report,
)
from liftlake.lib.pipelines.build_features import build_features_days
from liftlake.lib.pipelines.simulate import simulate_days
from liftlake.lib.sim.settings import SimulatorConfig
from liftlake.lib.storage.store import DeltaRsStore

logger = logging.getLogger(__name__)
ONE_OPTIMIZER = "one optimizer for every model"  # the summary's tag of the common-optimizer sections' claims


def _days(end: str, n: int) -> list[str]:
    import datetime as dt

    last = dt.date.fromisoformat(end)
    return [(last - dt.timedelta(days=n - 1 - i)).isoformat() for i in range(n)]


def _context(spark, args, warehouse: str, days: list[str], overrides: list[str]) -> JobContext:
    sets = list(args.overrides) + [f"warehouse.path={warehouse}", *overrides]
    config = load_config(args.conf, sets, env={})
    ns = argparse.Namespace(conf=args.conf, overrides=sets, json=False, model=None, quiet_config=True)
    return JobContext("report", config, ns, days, _spark=spark, _store=DeltaRsStore(spark, warehouse))


def _train_and_evaluate(ctx, model: str, seed: int, cfg, extra: list[str]) -> dict:
    from liftlake.lib.pipelines.train import train

    run = _context(ctx.spark, ctx.args, ctx.store.root, ctx.days,
                   [f"model.name={model}", f"train.seed={seed}", f"train.epochs={cfg.epochs}",
                    f"train.min_steps={cfg.min_steps}", "train.launcher=local", *extra])
    started = time.time()
    summary = train(run, ctx.days[-1])
    metrics = dict(summary["metrics"])
    metrics["train_seconds"] = time.time() - started
    metrics["version"] = summary["version"]  # which artifact the figures read
    return metrics


def world_settings(preset: str, seed: int, cfg) -> list[str]:
    """The simulator settings of the report's world (preset, seed): the CVR world at report.exposures,
    split by report.cvr_split_by (its models and ESCIM's labeler train on the same rows); the
    user-level worlds also at their own user count and randomized shares."""
    sets = [f"simulator.preset={preset}", f"simulator.seed={seed}", f"simulator.exposures={cfg.exposures}"]
    if preset == "default":
        sets.append(f"train.split_by={cfg.cvr_split_by}")
    else:
        sets += [f"simulator.users={cfg.uplift_users}", f"simulator.coupon_rct_share={cfg.coupon_rct_share}",
                 f"simulator.treatment_rct_share={cfg.treatment_rct_share}"]
    if preset.startswith("syn"):
        # decisions choose among the world's own coupon values, at its cost of a unit of face value
        world = SimulatorConfig(preset=preset)
        sets += [f"score.coupon_grid=[{','.join(f'{v:g}' for v in world.grid)}]",
                 f"score.coupon_cost_per_unit={world.coupon_cost_per_unit:g}"]
    return sets


def _world(ctx_args, spark, workdir: str, preset: str, seed: int, cfg, end: str) -> JobContext:
    warehouse = os.path.join(workdir, f"{preset}-seed{seed}")
    return _context(spark, ctx_args, warehouse, _days(end, cfg.days), world_settings(preset, seed, cfg))


WORLD_STAMP = "_report_world.json"


# Read-only consumers of a world: they re-run on every report, so a change to them keeps the worlds.
_NOT_WORLD_CODE = ("evaluation", os.path.join("pipelines", "report.py"))


def code_version() -> str:
    """sha256 over the platform's source that makes a world's tables and artifacts (lib/ and models/
    but the evaluation and this report): what a cached world and the model versions trained in it
    were made with. The train run key names rows and settings, not code, so a world made by other
    code is rebuilt rather than its old artifacts re-used."""
    import hashlib

    import liftlake.lib
    import liftlake.models

    digest = hashlib.sha256()
    for package in (liftlake.lib, liftlake.models):
        root = os.path.dirname(os.path.abspath(str(package.__file__)))
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(folder, name)
                if package is liftlake.lib and os.path.relpath(path, root).startswith(_NOT_WORLD_CODE):
                    continue
                digest.update(os.path.relpath(path, root).encode() + b"\0")
                with open(path, "rb") as fh:
                    digest.update(fh.read())
    return digest.hexdigest()


def world_stamp(ctx) -> dict:
    """What a world's tables are made of: its days, simulator and data settings, ESCIM labeler
    params and the split its labeler trains on, and the code version. A cached world whose stamp
    differs is rebuilt from scratch."""
    cfg = ctx.config
    return {"days": list(ctx.days), "simulator": asdict(cfg.simulator), "data": asdict(cfg.data),
            "features": asdict(cfg.features), "escim_labels": asdict(cfg.escim_labels),
            "split_by": cfg.train.split_by, "code": code_version()}


def _reset_stale_world(ctx) -> None:
    import json
    import shutil

    from liftlake.lib.artifacts.publish import write_text_atomic

    stamp_path = os.path.join(ctx.store.root, WORLD_STAMP)
    want = json.loads(json.dumps(world_stamp(ctx), default=str))
    try:
        with open(stamp_path, encoding="utf-8") as fh:
            have = json.load(fh)
    except (OSError, ValueError):
        have = None
    if have == want:
        return
    if os.path.isdir(ctx.store.root):
        logger.info(f"report: {ctx.store.root} was made with other settings or code; rebuilding it")
        shutil.rmtree(ctx.store.root)
    os.makedirs(ctx.store.root, exist_ok=True)
    simulate_days(ctx)
    build_features_days(ctx)
    write_text_atomic(stamp_path, json.dumps(want, indent=1))


def run_world(ctx_args, spark, workdir: str, preset: str, seed: int, cfg, end: str, models: list[str],
              extra_for: dict[str, list[str]], with_labels: bool, external_reference: bool = False) -> dict[str, dict]:
    """One simulated world (preset, seed): its tables and every model's test metrics."""
    ctx = _world(ctx_args, spark, workdir, preset, seed, cfg, end)
    _reset_stale_world(ctx)
    if with_labels and not ctx.store.exists("labels.escim_counterfactual"):
        from liftlake.lib.pipelines.escim_labels import escim_labels

        escim_labels(ctx)
    results = {}
    for model in models:
        logger.info(f"report: {preset} seed {seed}: {model}")
        results[model] = _train_and_evaluate(ctx, model, seed, cfg, extra_for.get(model, []))
    if models and cfg.bootstrap_replicates and len(cfg.seeds) < BOOTSTRAP_BELOW_SEEDS:
        logger.info(f"report: {preset} seed {seed}: every model on {cfg.bootstrap_replicates} bootstrap "
                    "resamples of the test rows")
        for model, replicates in world_bootstrap(ctx, results, seed, cfg.bootstrap_replicates).items():
            results[model][REPLICATES] = replicates
    if external_reference and models:  # the outside references, fitted on the first model's rows
        task = {"default": "cvr", "multi_treatment": "multi_treatment"}.get(preset, "coupon")
        if task != "multi_treatment":
            name, reference = ((EXTERNAL_T_LEARNER, external_t_learner) if task == "coupon"
                               else (EXTERNAL_GBDT_CVR, external_gbdt_cvr))
            logger.info(f"report: {preset} seed {seed}: {name}")
            external = reference(ctx, models[0], seed)
            if external is not None:
                results[name] = external
        if cfg.causalml and task != "cvr":
            logger.info(f"report: {preset} seed {seed}: CausalML's learners")
            results.update(external_causalml(ctx, models[0], seed, task))
    return results


def world_bootstrap(ctx, results: dict[str, dict], seed: int, n_boot: int) -> dict[str, dict[str, list[float]]]:
    """Every trained model's metrics (``results``: model -> metrics with its version) on the same
    ``n_boot`` bootstrap resamples of the world's test rows, read once through the first model's
    version (the models of a world share its split): ``evaluate.bootstrap_metrics``."""
    from liftlake.lib.evaluation.evaluate import bootstrap_metrics, test_rows, train_truth_means
    from liftlake.lib.training.batch import predict_frame

    loaded = {m: latest_artifact(ctx.store.root, m, r.get("version")) for m, r in results.items()}
    found = {m: got for m, got in loaded.items() if got is not None}
    if not found:
        return {}
    art, layout = next(iter(found.values()))
    test, has_truth = test_rows(ctx.store, art.info, art.data, layout, ctx.config.train.eval_max_rows)
    train_means = train_truth_means(ctx.store, art.info, art.data) if has_truth else None
    preds = {m: predict_frame(a.model, lay, test) for m, (a, lay) in found.items()}
    return bootstrap_metrics(art.info["task"], test, preds, has_truth, layout, n_boot, seed, ctx.config.score,
                             train_means, reference_seed=seed)


def latest_artifact(warehouse: str, model: str, version: str | None = None):
    """(artifact, batch layout) of the model's ``version`` (default its newest) in ``warehouse``, or None."""
    from liftlake.lib.artifacts.model_store import load_artifact, versions
    from liftlake.lib.evaluation.evaluate import layout_for
    from liftlake.lib.features.spec import FeatureSpec

    have = versions(warehouse, model)
    if not have or (version is not None and version not in have):
        return None
    art = load_artifact(warehouse, model, version or have[-1])
    return art, layout_for(art.info, FeatureSpec.from_json(art.feature_spec_json), art.config)


def same_rows_as(ctx, reference_model: str):
    """(train, test, has_truth, layout, train_means) of ``reference_model``'s newest artifact: the
    rows an external reference is fitted and judged on, so that it meets the models on their own
    split; None when the model has no version in this world."""
    from liftlake.lib.evaluation.evaluate import test_rows, train_truth_means

    latest = latest_artifact(ctx.store.root, reference_model)
    if latest is None:
        return None
    art, layout = latest
    max_rows = ctx.config.train.eval_max_rows
    train, _ = test_rows(ctx.store, art.info, art.data, layout, max_rows, split="train")
    test, has_truth = test_rows(ctx.store, art.info, art.data, layout, max_rows)
    train_means = train_truth_means(ctx.store, art.info, art.data) if has_truth else None
    return train, test, has_truth, layout, train_means


def external_t_learner(ctx, reference_model: str, seed: int) -> dict | None:
    """scikit-uplift's TwoModels (one-hot features, a logistic regression per arm) fitted on the same
    train split as ``reference_model``'s artifact and judged by the same code on the same test rows
    (reference rows included, shuffled with the world's ``seed`` as the models' evaluations do):
    a sanity check of the platform's own baselines by a library nobody here wrote. The binary
    uplift it predicts becomes a unit uplift by dividing by the mean coupon value of the treated."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder
    from sklift.models import TwoModels

    from liftlake.lib.evaluation.evaluate import compute_metrics

    rows = same_rows_as(ctx, reference_model)
    if rows is None:
        return None
    train, test, has_truth, layout, train_means = rows

    def features(cols):
        return np.column_stack([cols[c] for c in layout.feature_columns])

    def arm():
        return make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression(max_iter=1000))

    two = TwoModels(estimator_trmnt=arm(), estimator_ctrl=arm(), method="vanilla")
    two.fit(features(train), train["outcome"], train["treated"])
    uplift = two.predict(features(test))
    mean_value = float(np.mean(train["intensity"][train["treated"] == 1]))
    pred = {"p0": two.ctrl_preds_, "unit_uplift": uplift / mean_value}
    return compute_metrics("coupon", test, pred, has_truth, layout, ctx.config.score, train_means=train_means,
                           reference_seed=seed)


def external_causalml(ctx, reference_model: str, seed: int, task: str) -> dict[str, dict]:
    """CausalML's uplift learners (lib/evaluation/causalml_references.py) fitted on the same train
    split as ``reference_model``'s artifact and judged by the same code on the same test rows, as
    {table row name: metrics}; {} when the model has no version in this world."""
    from liftlake.lib.evaluation import causalml_references as causalml
    from liftlake.lib.evaluation.evaluate import compute_metrics

    rows = same_rows_as(ctx, reference_model)
    if rows is None:
        return {}
    train, test, has_truth, layout, train_means = rows
    features = list(layout.feature_columns)
    if task == "coupon":
        preds = causalml.coupon_predictions(train, test, features, seed)
    else:
        preds = causalml.multi_predictions(train, test, features, layout.num_treatments, layout.num_responses, seed)
    return {causalml.NAMES[name]: compute_metrics(task, test, pred, has_truth, layout, ctx.config.score,
                                                  train_means=train_means, reference_seed=seed)
            for name, pred in preds.items()}


def external_gbdt_cvr(ctx, reference_model: str, seed: int) -> dict | None:
    """scikit-learn's histogram gradient boosting on the same features and train split as
    ``reference_model``'s artifact: the industry's usual pair, a CTR model on every train exposure
    and a CVR model on the clicked ones (naive: it never sees the non-clicked space), judged by the
    same code on the same test rows. Columns of at most 255 values are categorical; ids stay
    numeric codes (the trees split their hashed ranges)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from liftlake.lib.evaluation.evaluate import compute_metrics

    rows = same_rows_as(ctx, reference_model)
    if rows is None:
        return None
    train, test, has_truth, layout, train_means = rows
    names = list(layout.feature_columns)
    x_train = np.column_stack([train[c] for c in names]).astype(np.float64)
    x_test = np.column_stack([test[c] for c in names]).astype(np.float64)
    categorical = [bool(x_train[:, j].max() < 255 and x_train[:, j].min() >= 0) for j in range(len(names))]

    def fit(x, y):
        model = HistGradientBoostingClassifier(categorical_features=categorical, max_iter=200,
                                               early_stopping=True, validation_fraction=0.1, random_state=seed)
        return model.fit(x, y)

    clicked = train["click"] == 1
    ctr_model = fit(x_train, train["click"])
    ctr = ctr_model.predict_proba(x_test)[:, 1]
    cvr = fit(x_train[clicked], train["conversion"][clicked]).predict_proba(x_test)[:, 1]
    pred = {"ctr": ctr, "cvr": cvr, "ctcvr": ctr * cvr}
    metrics = compute_metrics("cvr", test, pred, has_truth, layout, ctx.config.score, train_means=train_means,
                              reference_seed=seed)
    if has_truth:
        metrics.update(selection_reach(train, ctr_model.predict_proba(x_train)[:, 1]))
    return metrics


def selection_reach(train: dict, ctr_on_features: np.ndarray) -> dict[str, float]:
    """How far propensity weighting can take the mean CVR in this world, on the train split: the
    true mean CVR under do(click = 1), the clicked rows' conversion rate (what a model of clicks
    alone learns), and the SNIPS means with a CTR fitted on the features and with the simulator's
    true CTR (which also sees the unobserved shock). The features' SNIPS mean less the truth is the
    bias left to any CVR model whose correction runs through a CTR on the features."""
    from liftlake.lib.evaluation.truth_metrics import snips_mean

    click, conversion = train["click"], train["conversion"]
    return {"reach_true_mean": float(np.mean(train["cvr_do_click_true"])),
            "reach_clicked_rate": float(np.mean(conversion[click == 1])),
            "reach_snips_features": snips_mean(conversion, click, np.clip(ctr_on_features, 1e-6, 1.0)),
            "reach_snips_true_ctr": snips_mean(conversion, click, train["ctr_true"])}


LABEL_TRANSFORMS = {"max": "label_max", "ratio": "label_ratio"}


def label_rates(ctx) -> dict[str, dict[str, float]]:
    """How the max and the ratio transforms labelled the world's non-clicked exposures, per transform:
    ``truth_metrics.label_quality`` against the true CVR under do(click=1) (labelled_share, the
    labelled rows' labelled_true_rate, base_rate, lift, recall, counts), and the same against the
    0/1 potential conversions as potential_labelled_true_rate / potential_base_rate / potential_lift."""
    from liftlake.lib.evaluation.truth_metrics import label_quality

    samples = ctx.store.read("features.samples", partitions=ctx.days).select("exposure_id", "click")
    labels = ctx.store.read("labels.escim_counterfactual", partitions=ctx.days).select(
        "exposure_id", *LABEL_TRANSFORMS.values())
    truth = ctx.store.read("sim.truth", partitions=ctx.days).select(
        "exposure_id", "cvr_do_click_true", "conversion_potential")
    rows = labels.join(samples, "exposure_id").join(truth, "exposure_id").drop("exposure_id").toPandas()
    out = {}
    for name, column in LABEL_TRANSFORMS.items():
        quality = label_quality(rows[column], rows["cvr_do_click_true"], rows["click"])
        potential = label_quality(rows[column], rows["conversion_potential"], rows["click"])
        out[name] = quality | {f"potential_{k}": potential[k] for k in ("labelled_true_rate", "base_rate", "lift")}
    return out


def escim_sweep(ctx_args, spark, workdir: str, seed: int, cfg, end: str, common: list[str]) -> dict:
    """ESCIM Fig. 3 on one default world: escim_ratio's towers trained with the label cut-off at each
    of ``report.escim_label_rates`` (top share of non-clicked rows by pcvr_cf), plus the rates the
    max and ratio transforms themselves gave on that world."""
    ctx = _world(ctx_args, spark, workdir, "default", seed, cfg, end)
    runs = {}
    for rate in cfg.escim_label_rates:
        logger.info(f"report: ESCIM label-rate sweep, seed {seed}: rate {rate:g}")
        runs[f"{rate:g}"] = _train_and_evaluate(ctx, "escim_ratio", seed, cfg,
                                                [*common, f"model.params.label_rate={rate}"])
    quality = label_rates(ctx)
    return {"rates": runs, "transform_rates": {name: q["labelled_share"] for name, q in quality.items()},
            "label_quality": quality}


def run_report(ctx) -> str:
    """Body of ``liftlake report``: every world, every model, the Markdown page under report.out."""
    import json
    from importlib.metadata import version as installed_version

    import torch

    cfg = ctx.config.report
    end = ctx.days[-1] if ctx.days else ctx.config.quickstart.end
    workdir = os.path.join(cfg.out, "_work")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    clock = time.monotonic()
    coupon_runs: dict[str, list[dict]] = {p: [] for p in cfg.coupon_presets}
    cvr_runs: list[dict] = []
    multi_runs: list[dict] = []
    cvr_common: list[dict] = []
    label_quality: list[dict] = []  # per seed: label_rates of the CVR world's ESCIM labels
    multi_common: list[dict] = []
    sweeps: list[dict] = []
    escim = [m for m in cfg.cvr_models if m.startswith("escim")]
    multi_extra = {m: ["model.params.task=multi_treatment"] for m in cfg.multi_models if m not in ("hmum", "hum_no_kl")}
    common = ["train.optimizer=adam", f"train.learning_rate={cfg.common_learning_rate}",
              f"train.batch_size={cfg.common_batch_size}"]
    cvr_test = "; the CVR world: its last day, trained on the earlier ones" if cfg.cvr_split_by == "day" else ""
    for seed in cfg.seeds:
        if cfg.cvr_models:
            cvr_runs.append(run_world(ctx.args, ctx.spark, workdir, "default", seed, cfg, end, cfg.cvr_models,
                                      {}, with_labels=bool(escim),
                                      external_reference=True))
            if escim:
                label_quality.append(label_rates(_world(ctx.args, ctx.spark, workdir, "default", seed, cfg, end)))
            if cfg.common_optimizer:
                cvr_common.append(run_world(ctx.args, ctx.spark, workdir, "default", seed, cfg, end, cfg.cvr_models,
                                            {m: common for m in cfg.cvr_models},
                                            with_labels=bool(escim)))
            if escim and cfg.escim_label_rates and seed in cfg.seeds[:cfg.sweep_seeds]:
                sweeps.append(escim_sweep(ctx.args, ctx.spark, workdir, seed, cfg, end, common))
        for preset in cfg.coupon_presets:
            if cfg.coupon_models:
                coupon_runs[preset].append(run_world(ctx.args, ctx.spark, workdir, preset, seed, cfg, end,
                                                     cfg.coupon_models, {}, with_labels=False,
                                                     external_reference=True))
        if cfg.multi_models:
            multi_runs.append(run_world(ctx.args, ctx.spark, workdir, "multi_treatment", seed, cfg, end,
                                        cfg.multi_models, multi_extra, with_labels=False, external_reference=True))
            if cfg.common_optimizer:
                multi_common.append(run_world(ctx.args, ctx.spark, workdir, "multi_treatment", seed, cfg, end,
                                              cfg.multi_models,
                                              {m: [*multi_extra.get(m, []), *common] for m in cfg.multi_models},
                                              with_labels=False))
    rows = len(_days(end, cfg.days)) * cfg.exposures
    uplift_users = (f"{cfg.uplift_users:,}" if cfg.uplift_users
                    else f"~{SimulatorConfig(exposures=cfg.exposures).num_users:,} (the simulator's default)")
    header = ["# liftlake evidence report", "",
              f"Run {started} by `liftlake report`; {platform.platform()}, {os.cpu_count()} cores; "
              f"pyspark {installed_version('pyspark')}, torch {torch.__version__}.",  # pyspark-client shadows __version__
              f"Seeds {cfg.seeds} ({len(cfg.seeds)} per cell); each world: {cfg.days} simulated day(s) x "
              f"{cfg.exposures:,} exposures = {rows:,} exposure rows; the coupon and multi-treatment worlds "
              f"with {uplift_users} users, randomized shares {cfg.coupon_rct_share:g} (coupons) and "
              f"{cfg.treatment_rct_share:g} (strategies); {cfg.epochs} epoch(s) per model, at least "
              f"{cfg.min_steps} optimizer steps (report.min_steps), local launcher; metrics on the test split "
              f"(10% of users{cvr_test}) against "
              f"the simulator's truth. Mean ± std over the seeds; the best model's mean in bold.", "",
              ("Every table ends with three reference rows scored by the same code on the same test rows: "
               "oracle (truth) predicts the simulator's truth itself, constant (train mean) its mean over the "
               "train split, random (shuffled truth) the truth of a randomly permuted row; they are never bold."),
              "",
              ("A claim's verdict comes from the per-seed differences model - rival (every seed is one world in "
               "which both were trained and scored on the same rows): their mean and 95 % Student-t interval; "
               "holds if the interval excludes 0 on the claimed side, contradicted if on the other, else "
               "inconclusive, with the smallest difference this many seeds detect (power 0.8). "
               + (f"With fewer than {BOOTSTRAP_BELOW_SEEDS} seeds the interval is instead the paired bootstrap "
                  f"over each world's test rows ({cfg.bootstrap_replicates} resamples, the same rows for every "
                  "model; report.bootstrap_replicates): it measures the test rows' sampling noise, not the "
                  "spread between trainings on other seeds. "
                  if cfg.bootstrap_replicates and len(cfg.seeds) < BOOTSTRAP_BELOW_SEEDS else "n/a with one seed. ")
               + "Before its claims, each section says which metrics separate the oracle from an uninformed "
               "prediction at this scale at all. The first section gathers the verdicts: what holds, what is "
               "contradicted, and how many seeds would decide what stays inconclusive."), "",
              "A claim that does not hold here is a finding on this simulator at this scale, not tuned away.", ""]
    same = (f"with one optimizer for every model: Adam, learning rate {cfg.common_learning_rate:g}, batch "
            f"{cfg.common_batch_size}, {cfg.epochs} epoch(s) (report.common_*)")
    sections, sweep_figure = [], None
    with recording_verdicts() as judged:
        if cvr_runs:
            sections.append(cvr_section(cvr_runs, cfg.cvr_models, label_quality=label_quality))
        with judged_under(ONE_OPTIMIZER):
            if cvr_common:
                sections.append(cvr_section(cvr_common, cfg.cvr_models, "## CVR, one optimizer for every model",
                                            same))
            if sweeps:
                lines, sweep_figure = sweep_section(sweeps, cvr_common, same)
                sections.append(lines)
        if any(coupon_runs.values()):
            sections.append(coupon_section({p: r for p, r in coupon_runs.items() if r}, cfg.coupon_models))
        if multi_runs:
            sections.append(multi_section(multi_runs, cfg.multi_models))
        if multi_common:
            with judged_under(ONE_OPTIMIZER):
                sections.append(multi_section(multi_common, cfg.multi_models, heading="## Multi-treatment uplift, "
                                              "one optimizer for every model", settings=same))
    sections.insert(0, decision_summary(judged, len(cfg.seeds)))
    first_seed = {"default": cvr_runs[0] if cvr_runs else {}, "multi_treatment": multi_runs[0] if multi_runs else {},
                  **{p: r[0] for p, r in coupon_runs.items() if r}}
    sections.append(figures(ctx, workdir, cfg, first_seed, sweep_figure))
    changed = {k: v for k, v in asdict(cfg).items() if k != "out" and v != asdict(ReportConf())[k]}
    if changed:
        header.append("Run with these report settings changed from their defaults (lib/config/sections.py, "
                      "ReportConf): " + "; ".join(f"`report.{k}={v}`" for k, v in changed.items()) + ".")
    header.append(f"This run took {(time.monotonic() - clock) / 60:.1f} minutes.")
    header.append("")
    path = write_report(os.path.join(cfg.out, "report.md"), header, sections)
    with open(os.path.join(cfg.out, "report.json"), "w", encoding="utf-8") as fh:
        json.dump({"config": asdict(cfg), "cvr": cvr_runs, "coupon": coupon_runs, "multi": multi_runs,
                   "cvr_common_optimizer": cvr_common, "multi_common_optimizer": multi_common,
                   "escim_label_quality": label_quality,
                   "escim_label_rate_sweep": sweeps}, fh, indent=1, default=float)
    logger.info(f"report written: {path}")
    return path


def figures(ctx, workdir: str, cfg, first_seed: dict[str, dict], sweep: dict | None = None) -> list[str]:
    """PNG figures from the first seed's worlds, of the artifacts trained with the papers' settings
    (``first_seed``: preset -> model -> metrics with its version): calibration of the CVR models
    against the true CVR (equal-width bins with their counts, as the tables' ECE),
    cumulative-slope curves of the coupon models, Qini curves of the multi-treatment models, the true
    gain of targeting by each uplift model on all test rows (mean and min..max band over every seed,
    with the oracle and random targeting), and the ESCIM label-rate sweep (mean over its seeds)."""
    from liftlake.lib.evaluation import plots
    from liftlake.lib.evaluation import uplift_metrics as U
    from liftlake.lib.evaluation.evaluate import test_rows
    from liftlake.lib.evaluation.truth_metrics import ece
    from liftlake.lib.training.batch import predict_frame

    seed = cfg.seeds[0]
    out_dir = os.path.join(cfg.out, "figures")
    lines = [f"## Figures (seed {seed}; the true-gain curves: every seed)", ""]

    made: dict[tuple[str, str, int], Any] = {}  # the seed-1 curves and the bands read the same rows once

    def predictions(preset, model, world_seed=seed):
        key = (preset, model, world_seed)
        if key not in made:
            made[key] = predict_world(preset, model, world_seed)
        return made[key]

    def predict_world(preset, model, world_seed):
        warehouse = os.path.join(workdir, f"{preset}-seed{world_seed}")
        pinned = first_seed.get(preset, {}).get(model, {}).get("version") if world_seed == seed else None
        latest = latest_artifact(warehouse, model, pinned)
        if latest is None:
            return None
        art, layout = latest
        store = DeltaRsStore(ctx.spark, warehouse)
        cols, _ = test_rows(store, art.info, art.data, layout, ctx.config.train.eval_max_rows)
        return cols, predict_frame(art.model, layout, cols)

    def true_gain_bands(preset, models, predicted, truth):
        """Per model, the true gain curve of targeting by its prediction on every seed's test rows,
        with the oracle's (the truth's own ranking) and random targeting's (a constant score)."""
        from liftlake.lib.evaluation.truth_metrics import true_uplift_curve

        bands: dict[str, list[np.ndarray]] = {}
        for world_seed in cfg.seeds:
            truth_cols = None
            for model in models:
                got = predictions(preset, model, world_seed)
                if got is None:
                    continue
                cols, pred = got
                truth_cols = cols
                bands.setdefault(model, []).append(plots.gain_on_shares(*true_uplift_curve(pred[predicted], cols[truth])))
            if truth_cols is not None:
                tau = truth_cols[truth]
                bands.setdefault("oracle", []).append(plots.gain_on_shares(*true_uplift_curve(tau, tau)))
                bands.setdefault("random", []).append(plots.gain_on_shares(*true_uplift_curve(np.zeros_like(tau), tau)))
        return bands

    shown = cfg.cvr_models[:4] + [m for m in cfg.cvr_models if m.startswith(("dcmt", "escim"))][:2]
    for model in dict.fromkeys(shown):  # a model in both lists gets one figure
        got = predictions("default", model)
        if got:
            cols, pred = got
            bins = ece(pred["cvr"], cols["cvr_do_click_true"])  # the bins of the table's ECE vs. true CVR
            path = plots.plot_calibration_bins(bins, os.path.join(out_dir, f"calibration_{model}.png"),
                                               title=f"{model}: CVR over all exposures vs. true CVR under do(click=1)")
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
        bands = true_gain_bands(preset, cfg.coupon_models, "unit_uplift", "eta_true")
        if bands:
            path = plots.plot_gain_band(bands, os.path.join(out_dir, f"true_gain_{preset}.png"),
                                        title=f"{preset}: true gain of targeting by each model, all test users",
                                        ylabel="true extra outcomes per user, per unit of coupon value")
            lines.append(f"![true gain {preset}](figures/{os.path.basename(path)})")
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
    bands = true_gain_bands("multi_treatment", cfg.multi_models, "tau_r1_k1", "tau_r1_k1_true")
    if bands:
        path = plots.plot_gain_band(bands, os.path.join(out_dir, "true_gain_r1_k1.png"),
                                    title="Strategy 1 on response 1: true gain of targeting, all test users",
                                    ylabel="true extra response 1 per user")
        lines.append(f"![true gain r1 k1](figures/{os.path.basename(path)})")
    if sweep:
        path = plots.plot_label_rate_sweep(sweep["curves"], os.path.join(out_dir, "escim_label_rate.png"),
                                           markers=sweep["markers"],
                                           title="ESCIM: AUC vs. counterfactual label rate (mean over seeds)")
        lines.append(f"![escim label rate](figures/{os.path.basename(path)})")
    return lines + [""]
