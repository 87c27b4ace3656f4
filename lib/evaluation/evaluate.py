"""Evaluate a saved model version on its test split, against the simulator's truth where it exists,
and write the numbers to ``ops.model_metrics`` (one row per metric).

With the truth, every test row is scored against it (``truth_metrics``), and so are three reference
predictions of the same rows (``truth_metrics.reference_predictions``): the oracle (the truth itself),
the constant (the truth's mean over the TRAIN split) and random (the truth shuffled over the rows).
They go through the same scoring code as the model and are stored beside its metrics as
``ref_<name>__<metric>`` (``reference_key``), so that a table can show what the best and the
uninformed prediction score on exactly these rows."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from pyspark.sql import functions as F
from pyspark.sql import types as T

from liftlake.lib.config import warehouse_path
from liftlake.lib.evaluation import cvr_metrics as M
from liftlake.lib.evaluation import policy
from liftlake.lib.evaluation import truth_metrics as TM
from liftlake.lib.evaluation import uplift_metrics as U
from liftlake.lib.features.spec import FeatureSpec
from liftlake.lib.training.batch import BatchLayout, batch_columns, predict_frame
from liftlake.lib.training.trainset import window_split

logger = logging.getLogger(__name__)

METRICS_SCHEMA = T.StructType([
    T.StructField("model", T.StringType(), False),
    T.StructField("version", T.StringType(), False),
    T.StructField("split", T.StringType(), False),
    T.StructField("metric", T.StringType(), False),
    T.StructField("value", T.DoubleType(), True),
    T.StructField("ds", T.StringType(), False),
])

REFERENCE_NAMES = ("oracle", "constant", "random")


def reference_key(name: str, metric: str) -> str:
    """Where reference row ``name``'s value of ``metric`` is stored: ref_<name>__<metric>."""
    return f"ref_{name}__{metric}"


def layout_for(info: dict, spec: FeatureSpec, config: dict) -> BatchLayout:
    level = "exposure" if info["task"] == "cvr" else "user"
    # the data shape the artifact was trained with (data.*; artifacts older than that section: simulator.*)
    sim = config.get("data") or config.get("simulator", {})
    return BatchLayout(task=info["task"], feature_columns=spec.columns(level),
                       num_responses=sim.get("num_responses", 2), num_treatments=sim.get("num_treatments", 2))


def _split_with_truth(store, info: dict, data: dict, split: str):
    """(the pinned ``split`` left-joined with the truth when the simulator wrote it, has_truth, the
    truth columns to read)."""
    task = info["task"]
    table = "features.samples" if task == "cvr" else "features.user_samples"
    # the artifact's split rule (trained before train.split_by existed: by user)
    df = store.read(table, version=data["table_versions"][table], partitions=data["days"]) \
        .where(window_split(data["days"], data.get("split_by", "user")) == split)
    key = "exposure_id" if task == "cvr" else "user_id"
    truth_table = "sim.truth" if task == "cvr" else "sim.truth_user"
    has_truth = store.exists(truth_table)
    truth_cols: list[str] = []
    if has_truth:
        truth = store.read(truth_table, partitions=data["days"])
        keys = [key] if task == "cvr" else [key, "ds"]
        df = df.join(truth, keys, "left")
        truth_cols = ["cvr_do_click_true", "conversion_potential", "ctr_true"] if task == "cvr" else \
            [c for c in df.columns if c.endswith("_true")]
    return df, has_truth, truth_cols


def test_rows(store, info: dict, data: dict, layout: BatchLayout, max_rows: int, split: str = "test"):
    """The pinned ``split`` (test unless told) joined with the truth (when the simulator wrote it), as
    numpy columns."""
    df, has_truth, truth_cols = _split_with_truth(store, info, data, split)
    cols = [c for c in batch_columns(layout) if c not in ("row_id", "cf_label")]
    pdf = df.select(*cols, *truth_cols).limit(max_rows).toPandas()
    return {c: pdf[c].to_numpy() for c in pdf.columns}, has_truth


def train_truth_means(store, info: dict, data: dict) -> dict[str, float]:
    """Mean of every truth column over the whole pinned train split (one Spark aggregate over the
    same join as ``test_rows``): the constant reference row predicts these. {} without the truth."""
    df, has_truth, truth_cols = _split_with_truth(store, info, data, "train")
    if not has_truth or not truth_cols:
        return {}
    row = df.agg(*[F.avg(c).alias(c) for c in truth_cols]).first()
    return {c: float(row[c]) for c in truth_cols if row is not None and row[c] is not None}


# --------------------------------------------------------------------------- reference rows
def reference_scores(truths: dict[str, np.ndarray], train_means: dict[str, float] | None, seed: int,
                     score: Callable[[dict[str, np.ndarray]], dict[str, float]]) -> dict[str, float]:
    """Each reference row's predictions of every truth column in ``truths`` (name -> per-row truth),
    scored by ``score`` (prediction per truth column -> metrics), as ``ref_<name>__<metric>``.

    Every column is shuffled with the same seed, hence the same permutation: the random row predicts
    for each row the whole truth of one other row. Without a train mean for every column there is
    no constant row (the test rows' own mean would leak the answer into it)."""
    means = train_means or {}
    missing = sorted(c for c in truths if c not in means)
    if missing:
        logger.info(f"no constant reference row: no train mean of {missing}")
    names = [n for n in REFERENCE_NAMES if n != "constant" or not missing]
    rows: dict[str, dict[str, np.ndarray]] = {name: {} for name in names}
    for column, truth in truths.items():
        references = TM.reference_predictions(truth, means.get(column, 0.0), seed)
        for name in names:
            rows[name][column] = references[name]
    out: dict[str, float] = {}
    for name, predictions in rows.items():
        out.update({reference_key(name, metric): value for metric, value in score(predictions).items()})
    return out


# --------------------------------------------------------------------------- per-task scoring
def cvr_scores(columns: dict, has_truth: bool, pred_cvr: np.ndarray, pred_ctr: Any = None,
               pred_ctcvr: Any = None) -> dict[str, float]:
    """``cvr_report`` (click space, exposure space, IEB, CRR) and, with the truth, ``cvr_truth_report``."""
    out = M.cvr_report(columns["click"], columns["conversion"], pred_cvr, pred_ctr=pred_ctr, pred_ctcvr=pred_ctcvr,
                       true_cvr=columns["cvr_do_click_true"] if has_truth else None,
                       potential_conversion=columns["conversion_potential"] if has_truth else None)
    if has_truth:
        out.update(TM.cvr_truth_report(pred_cvr, columns["cvr_do_click_true"],
                                       potential_conversion=columns["conversion_potential"]))
    return out


def coupon_effect_scores(columns: dict, has_truth: bool, unit_uplift: np.ndarray) -> dict[str, float]:
    """A unit-uplift score's ranking on the RCT slice (CS-AUUC / CS-Qini per row) and, with the truth,
    ``effect_truth_report`` against eta on all test rows (eta_sqrt_pehe, eta_spearman, eta_true_auuc...)."""
    out: dict[str, float] = {}
    rct = columns["rct_coupon"] == 1
    if rct.sum() > 10:
        out["cs_auuc_rct"] = U.cs_auuc_score(columns["outcome"][rct], columns["intensity"][rct],
                                             unit_uplift[rct]) / rct.sum()
        out["cs_qini_rct"] = U.cs_qini_score(columns["outcome"][rct], columns["intensity"][rct],
                                             unit_uplift[rct]) / rct.sum()
    if has_truth:
        out.update(TM.effect_truth_report(unit_uplift, columns["eta_true"], prefix="eta"))
    return out


def multi_effect_scores(columns: dict, has_truth: bool, layout: BatchLayout,
                        tau: dict[tuple[int, int], np.ndarray]) -> dict[str, float]:
    """Qini / AUUC per (r, k) on the RCT slice and, with the truth, ``effect_truth_report`` per (r, k)
    against tau_rk on ALL test rows (``tau_r<r>_k<k>_<metric>``); ``tau`` holds every row."""
    out: dict[str, float] = {}
    rct = columns["rct_treatment"] == 1
    responses = np.stack([columns[f"response_{r}"][rct] for r in range(1, layout.num_responses + 1)], axis=1)
    try:
        scores = U.multi_treatment_scores(columns["treatment_id"][rct], responses,
                                          {(r - 1, k): v[rct] for (r, k), v in tau.items()})
        out.update(_renumber(scores))
    except ValueError as exc:
        logger.info(f"qini / auuc skipped: {exc}")
    if has_truth:
        for (r, k), v in tau.items():
            out.update(TM.effect_truth_report(v, columns[f"tau_r{r}_k{k}_true"], prefix=f"tau_r{r}_k{k}"))
    return out


def compute_metrics(task: str, columns: dict, pred: dict, has_truth: bool, layout: BatchLayout,
                    score_conf=None, train_means: dict[str, float] | None = None,
                    reference_seed: int = 0) -> dict[str, float]:
    """The model's metrics on ``columns`` (numpy per column: ``test_rows``) from ``pred`` (numpy per
    model output: ``predict_frame``); with the truth also the reference rows' (``reference_scores``;
    ``train_means``: ``train_truth_means``, ``reference_seed``: the random row's shuffle)."""
    out: dict[str, float] = {"n_rows": float(len(columns[layout.feature_columns[0]]))}
    if task == "cvr":
        out.update(cvr_scores(columns, has_truth, pred["cvr"], pred["ctr"], pred["ctcvr"]))
        if has_truth:
            out.update(reference_scores({"cvr_do_click_true": columns["cvr_do_click_true"]}, train_means,
                                        reference_seed,
                                        lambda ref: cvr_scores(columns, True, ref["cvr_do_click_true"])))
        return out
    if task == "coupon":
        p_given = np.clip(pred["p0"] + pred["unit_uplift"] * columns["intensity"], 1e-6, 1 - 1e-6)
        out["auc_outcome"] = M.auc(columns["outcome"], p_given)
        out["logloss_outcome"] = M.log_loss(columns["outcome"], p_given)
        rct = columns["rct_coupon"] == 1
        base = rct & (columns["treated"] == 0)
        if len(np.unique(columns["outcome"][base])) == 2:
            out["auc_base_rct"] = M.auc(columns["outcome"][base], pred["p0"][base])
            out["logloss_base_rct"] = M.log_loss(columns["outcome"][base], np.clip(pred["p0"][base], 1e-6, 1 - 1e-6))
        out.update(coupon_effect_scores(columns, has_truth, pred["unit_uplift"]))
        if has_truth:
            err = policy.uplift_error(pred["unit_uplift"], columns["eta_true"])
            out.update({f"eta_{k}": v for k, v in err.items()})
            out["mean_eta_pred"] = float(np.mean(pred["unit_uplift"]))
            out["mean_eta_true"] = float(np.mean(columns["eta_true"]))
            out.update(reference_scores({"eta_true": columns["eta_true"]}, train_means, reference_seed,
                                        lambda ref: coupon_effect_scores(columns, True, ref["eta_true"])))
            if score_conf is not None:
                out.update(coupon_policy_value(pred, columns, score_conf))
        return out
    # multi-treatment: fit of the responses, Qini / AUUC per (r, k) on the RCT slice, effects vs. the truth
    pairs = [(r, k) for r in range(1, layout.num_responses + 1) for k in range(1, layout.num_treatments + 1)]
    r2 = []
    for r in range(1, layout.num_responses + 1):
        y = columns[f"response_{r}"]
        fitted = pred[f"y0_r{r}"].copy()
        for k in range(1, layout.num_treatments + 1):
            on = columns["treatment_id"] == k
            fitted[on] += pred[f"tau_r{r}_k{k}"][on]
        r2.append(1.0 - float(np.mean((fitted - y) ** 2) / max(np.var(y), 1e-12)))
    out["fit_r2"] = float(np.mean(r2))
    out.update(multi_effect_scores(columns, has_truth, layout, {(r, k): pred[f"tau_r{r}_k{k}"] for r, k in pairs}))
    if has_truth:
        rct = columns["rct_treatment"] == 1
        for r, k in pairs:  # the RCT-slice RMSE the tables printed before the all-rows sqrt-PEHE
            true = columns[f"tau_r{r}_k{k}_true"][rct]
            out[f"tau_rmse_r{r}_k{k}"] = policy.uplift_error(pred[f"tau_r{r}_k{k}"][rct], true)["rmse"]
        truth_columns = {f"tau_r{r}_k{k}_true": columns[f"tau_r{r}_k{k}_true"] for r, k in pairs}
        out.update(reference_scores(truth_columns, train_means, reference_seed, lambda ref: multi_effect_scores(
            columns, True, layout, {(r, k): ref[f"tau_r{r}_k{k}_true"] for r, k in pairs})))
        if "decision_k1" in pred:
            out.update(switch_policy_value(pred, columns, layout))
    return out


def bootstrap_metrics(task: str, columns: dict, preds: dict[str, dict], has_truth: bool, layout: BatchLayout,
                      n_boot: int, seed: int, score_conf=None, train_means: dict[str, float] | None = None,
                      reference_seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Per model of ``preds`` (model -> ``predict_frame`` output on ``columns``): every metric of
    ``compute_metrics`` (reference rows included) on ``n_boot`` resamples of the rows, drawn with
    replacement from ``seed``: replicate b draws the same rows for every model, so differences stay
    paired. model -> metric -> its n_boot values (NaN where a replicate has no value of it)."""
    n = len(columns[layout.feature_columns[0]])
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, list[float]]] = {name: {} for name in preds}
    for b in range(n_boot):
        index = rng.integers(0, n, size=n)
        drawn = {k: v[index] for k, v in columns.items()}
        for name, pred in preds.items():
            metrics = compute_metrics(task, drawn, {k: v[index] for k, v in pred.items()}, has_truth, layout,
                                      score_conf, train_means, reference_seed)
            values = out[name]
            for key, value in metrics.items():
                values.setdefault(key, [math.nan] * b).append(float(value))
            for key, kept in values.items():  # a metric this replicate has no value of
                if len(kept) == b:
                    kept.append(math.nan)
    return out


COUPON_POLICY_KEYS = ("policy", "oracle", "random", "regret", "normalized", "oracle_agreement", "always_0",
                      "best_constant", "best_constant_action", "over_best_constant")


def coupon_policy_value(pred: dict, columns: dict, score_conf) -> dict[str, float]:
    """UniMVT eq. 25 decisions priced with the truth: value of action q = the true extra outcome
    probability p(q) - p0 minus its cost; against the truth's best, random and constant policies,
    and the best single coupon value for everybody (``policy_truth_report``)."""
    from liftlake.models.unimvt import coupon_decision

    grid = np.asarray(score_conf.coupon_grid, dtype=np.float64)
    cost = score_conf.coupon_cost_per_unit
    chosen, _ = coupon_decision(pred["p0"], pred["unit_uplift"], grid.tolist(), max(cost, 1e-12),
                                score_conf.coupon_min_ratio)
    actions = np.concatenate([[0.0], grid])
    p0, eta = columns["p0_true"], columns["eta_true"]
    value = np.clip(p0[:, None] + eta[:, None] * actions[None, :], 0, 1) - p0[:, None] - cost * actions[None, :]
    index = np.searchsorted(actions, chosen.numpy())
    res = TM.policy_truth_report(index, value, [f"{a:g}" for a in actions])
    return {f"coupon_policy_{k}": v for k, v in res.items() if k in COUPON_POLICY_KEYS} | {
        "coupon_policy_always_max": res[f"always_{actions[-1]:g}"], "coupon_share_offered": float(np.mean(chosen.numpy() > 0))}


def switch_policy_value(pred: dict, columns: dict, layout: BatchLayout) -> dict[str, float]:
    """HMUM eq. 11 switches priced with the truth: the gain of turning treatment k on is the
    value-weighted relative uplift sum_r w_r tau_rk / y0_r of the simulator."""

    K, R = layout.num_treatments, layout.num_responses
    decision = np.stack([pred[f"decision_k{k}"] for k in range(1, K + 1)], axis=1)
    gain = np.stack([sum(columns[f"value_weight_r{r}_true"] * columns[f"tau_r{r}_k{k}_true"]
                         / np.maximum(columns[f"y0_r{r}_true"], 1e-9) for r in range(1, R + 1))
                     for k in range(1, K + 1)], axis=1)
    res = policy.compare_switch_policies(decision, gain)
    return {f"switch_{k}": v for k, v in res.items() if isinstance(v, float)}


def _renumber(scores: dict) -> dict:
    """multi_treatment_scores numbers responses by column index from 0; tables use 1..R."""
    out = {}
    for key, value in scores.items():
        metric, r, k = key.rsplit("_", 2)
        out[f"{metric}_r{int(r[1:]) + 1}_{k}"] = value
    return out


def evaluate_version(ctx, name: str, version: str, ds: str) -> dict[str, float]:
    from liftlake.lib.artifacts import model_store

    warehouse = warehouse_path(ctx.config)
    art = model_store.load_artifact(warehouse, name, version)
    spec = FeatureSpec.from_json(art.feature_spec_json)
    layout = layout_for(art.info, spec, art.config)
    columns, has_truth = test_rows(ctx.store, art.info, art.data, layout, ctx.config.train.eval_max_rows)
    train_means = train_truth_means(ctx.store, art.info, art.data) if has_truth else None
    pred = predict_frame(art.model, layout, columns)
    metrics = compute_metrics(art.info["task"], columns, pred, has_truth, layout, ctx.config.score,
                              train_means=train_means, reference_seed=ctx.config.train.seed)
    write_metrics(ctx.store, name, version, "test", ds, metrics)
    shown = {k: round(v, 4) for k, v in metrics.items()
             if not k.startswith("ref_") and any(s in k for s in ("auc", "ieb_bias", "fit_r2", "qini"))}
    logger.info(f"evaluate {name} {version} on test ({int(metrics['n_rows'])} rows): {shown}")
    return metrics


def metrics_on_rows_of(ctx, name: str, version: str, rows_of: str) -> dict[str, float] | None:
    """``version``'s metrics on the test split version ``rows_of`` is evaluated on: the gate compares
    a challenger with the champion on the same rows. None when the two read different feature specs
    (the champion cannot read rows encoded for the challenger). Not written to ops.model_metrics."""
    from liftlake.lib.artifacts import model_store

    warehouse = warehouse_path(ctx.config)
    art = model_store.load_artifact(warehouse, name, version)
    owner = model_store.load_artifact(warehouse, name, rows_of)
    spec = FeatureSpec.from_json(art.feature_spec_json)
    if spec.version != FeatureSpec.from_json(owner.feature_spec_json).version:
        return None
    layout = layout_for(art.info, spec, art.config)
    columns, has_truth = test_rows(ctx.store, art.info, owner.data, layout, ctx.config.train.eval_max_rows)
    pred = predict_frame(art.model, layout, columns)
    return compute_metrics(art.info["task"], columns, pred, has_truth, layout, ctx.config.score)


# The day's metrics nest (model, version, split) inside the day: an evaluation replaces exactly its
# own rows, without reading the day, so concurrent evaluations of other models or versions stay.
METRICS_PARTITIONS = ("ds", "model", "version", "split")


def write_metrics(store, name: str, version: str, split: str, ds: str, metrics: dict[str, float]) -> None:
    """Replace this (model, version, split)'s rows of the day; every other row stays."""
    rows = [(name, version, split, k, float(v) if v is not None and np.isfinite(v) else None, ds)
            for k, v in sorted(metrics.items())]
    new = store.spark.createDataFrame(rows, METRICS_SCHEMA)
    store.write(new, "ops.model_metrics", mode="overwrite_partitions", partition_values=[ds],
                partition_by=METRICS_PARTITIONS,
                sub_partition_values={"model": [name], "version": [version], "split": [split]},
                comment="evaluation metrics per model version, split and day")
