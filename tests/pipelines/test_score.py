"""Batch scoring: idempotent days, equal to the model called directly, atomic under a kill,
refusing a day the model cannot read, old versions on old days."""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from liftlake.lib.cli.runner import InputError, JobContext
from liftlake.lib.config import load_config
from liftlake.lib.pipelines.build_features import build_features_days
from liftlake.lib.pipelines.score import recorded_versions
from liftlake.lib.pipelines.simulate import simulate_days
from liftlake.lib.storage.store import DeltaRsStore

DS = "2026-11-20"


def make_ctx(spark, warehouse, days, *overrides):
    sets = [f"warehouse.path={warehouse}", *overrides]
    config = load_config([], sets, env={})
    args = argparse.Namespace(conf=[], overrides=sets, json=False, model=None, quiet_config=True)
    return JobContext("test", config, args, days, _spark=spark, _store=DeltaRsStore(spark, warehouse))


@pytest.fixture(scope="module")
def world(spark, tmp_path_factory):
    from liftlake.lib.pipelines.train import train

    warehouse = str(tmp_path_factory.mktemp("wh"))
    ctx = make_ctx(spark, warehouse, [DS], "simulator.exposures=5000")
    simulate_days(ctx)
    build_features_days(ctx)
    versions = {}
    for model in ("dcmt", "unimvt"):
        run = make_ctx(spark, warehouse, [DS], f"model.name={model}", "train.epochs=1", "train.gate_min_cvr=0",
                       "train.gate_min_coupon=0")
        versions[model] = train(run, DS)["version"]
    return ctx, versions


def score(ctx, model=None, version=None):
    from liftlake.lib.pipelines.score import score_days

    return score_days(ctx, only_model=model, version=version)


@pytest.mark.reliability
def test_rerunning_a_finished_training_returns_its_version(world):
    # same rows, same settings: the same run key, so no second version with the same weights
    # (runs before the tests below rebuild the features, which changes the rows' table version)
    from liftlake.lib.artifacts.model_store import versions
    from liftlake.lib.pipelines.train import train

    ctx, trained = world
    before = versions(ctx.store.root, "dcmt")
    again = train(make_ctx(ctx.spark, ctx.store.root, [DS], "model.name=dcmt", "train.epochs=1",
                           "train.gate_min_cvr=0", "train.gate_min_coupon=0"), DS)
    assert again["reused"] and again["version"] == trained["dcmt"]
    assert versions(ctx.store.root, "dcmt") == before


@pytest.mark.reliability
def test_a_training_started_while_the_same_run_trains_waits_and_returns_its_version(world):
    # two `liftlake train` of one run at once: the second waits on the run's lock (held here, as
    # the first job would) instead of training into the same checkpoint folder, then finds the
    # version the first saved
    import threading

    from liftlake.lib.artifacts.model_store import versions
    from liftlake.lib.artifacts.publish import exclusive_lock
    from liftlake.lib.pipelines.train import train
    from liftlake.lib.training.plan import build_plan

    ctx, trained = world
    sets = ("model.name=dcmt", "train.epochs=1", "train.gate_min_cvr=0", "train.gate_min_coupon=0")
    second_ctx = make_ctx(ctx.spark, ctx.store.root, [DS], *sets)
    plan, _, _ = build_plan(second_ctx.store, second_ctx.config, DS)
    before = versions(ctx.store.root, "dcmt")
    outcome: dict = {}
    with exclusive_lock(os.path.join(plan.checkpoint_dir, ".run.lock")):
        second = threading.Thread(target=lambda: outcome.update(train(second_ctx, DS)))
        second.start()
        second.join(timeout=5)
        assert second.is_alive() and not outcome        # waiting for the lock, not training
    second.join(timeout=300)
    assert outcome["reused"] and outcome["version"] == trained["dcmt"]
    assert versions(ctx.store.root, "dcmt") == before


def test_scoring_a_day_twice_keeps_the_same_rows(world):
    ctx, versions = world
    score(ctx)
    first = {r.exposure_id: r.cvr for r in ctx.store.read("scores.cvr").collect()}
    users_first = ctx.store.read("scores.uplift_user").count()
    score(ctx)
    second = {r.exposure_id: r.cvr for r in ctx.store.read("scores.cvr").collect()}
    assert first == second and len(first) == ctx.store.partition_counts("features.samples")[DS]
    assert ctx.store.read("scores.uplift_user").count() == users_first
    coupon = ctx.store.read("scores.uplift_user").where(F.col("model") == "unimvt")
    grid = set(ctx.config.score.coupon_grid) | {0.0}
    assert {r.coupon_value for r in coupon.select("coupon_value").distinct().collect()} <= grid
    assert coupon.where(F.col("unit_uplift") < 0).count() == 0


def _scored_and_direct(ctx, model: str, version: str, table: str, key: str):
    """Score ``model`` on the day through the job, then (the day's rows ordered by ``key``, the
    artifact's predictions called directly on those rows with the labels as zeros)."""
    from liftlake.lib.artifacts.model_store import load_artifact
    from liftlake.lib.evaluation.evaluate import layout_for
    from liftlake.lib.features.spec import FeatureSpec
    from liftlake.lib.training.batch import batch_columns, predict_frame

    score(ctx, model, version)
    art = load_artifact(ctx.store.root, model, version)
    layout = layout_for(art.info, FeatureSpec.from_json(art.feature_spec_json), art.config)
    rows = ctx.store.read(table, partitions=[DS]).select(key, *layout.feature_columns).orderBy(key).toPandas()
    cols = {c: rows[c].to_numpy() for c in layout.feature_columns}
    cols.update({c: np.zeros(len(rows)) for c in batch_columns(layout) if c not in cols and c != "row_id"})
    return rows, predict_frame(art.model, layout, cols)


def test_spark_scores_equal_the_model_called_directly(world):
    ctx, versions = world
    rows, direct = _scored_and_direct(ctx, "dcmt", versions["dcmt"], "features.samples", "exposure_id")
    spark_scores = ctx.store.read("scores.cvr").where(F.col("model") == "dcmt").orderBy("exposure_id").toPandas()
    assert list(spark_scores.exposure_id) == list(rows.exposure_id)
    for k in ("ctr", "cvr", "ctcvr"):
        np.testing.assert_allclose(spark_scores[k].to_numpy(), direct[k], rtol=1e-5, atol=1e-7)


def test_uplift_scores_equal_the_model_called_directly_and_other_tasks_columns_stay_null(world):
    from liftlake.models.unimvt import coupon_decision

    ctx, versions = world
    rows, direct = _scored_and_direct(ctx, "unimvt", versions["unimvt"], "features.user_samples", "user_id")
    conf = ctx.config.score
    value, gain = coupon_decision(direct["p0"], direct["unit_uplift"], conf.coupon_grid,
                                  max(conf.coupon_cost_per_unit, 1e-12), conf.coupon_min_ratio)
    got = ctx.store.read("scores.uplift_user").where(F.col("model") == "unimvt").orderBy("user_id").toPandas()
    assert list(got.user_id) == list(rows.user_id)
    for k, want in (("p0", direct["p0"]), ("unit_uplift", direct["unit_uplift"]), ("coupon_value", value.numpy()),
                    ("expected_gain", gain.numpy())):
        np.testing.assert_allclose(got[k].to_numpy(), want, rtol=1e-5, atol=1e-7)
    assert got[["tau_r1_k1", "decision_k1", "w_r1"]].isna().all().all()  # the multi-treatment task's columns
    assert set(got.version) == {versions["unimvt"]} and set(got.ds) == {DS}


@pytest.mark.parametrize("model, table, key", [("dcmt", "scores.cvr", "exposure_id"),
                                                 ("unimvt", "scores.uplift_user", "user_id")])
@pytest.mark.parametrize("driver_max_rows", [0, 2_000_000], ids=["spark-tasks", "in-driver"])
def test_the_staged_score_files_hold_what_spark_s_writer_would(world, model, table, key, driver_max_rows):
    # the embedded default's paths (the feature files read and the score files written with pyarrow,
    # by Spark tasks or, for a small day, by the driver; delta-rs commits them) against delta-spark's
    # (mapInArrow, Spark's writer) on the same day
    import dataclasses

    from liftlake.lib.scoring.scorer import score_model_day

    ctx, versions = world
    ctx = make_ctx(ctx.spark, ctx.store.root, [DS], f"score.driver_max_rows={driver_max_rows}")
    sc = ctx.spark.sparkContext
    sc.setJobGroup(f"score-{driver_max_rows}-{model}", "scoring under test")
    try:
        score(ctx, model, versions[model])
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
    spark_jobs = sc.statusTracker().getJobIdsForGroup(f"score-{driver_max_rows}-{model}")
    assert (len(spark_jobs) == 0) == bool(driver_max_rows)  # the driver's path starts no Spark job
    written = ctx.store.read(table, partitions=[DS]).where(F.col("model") == model).orderBy(key).toPandas()
    _, frame = score_model_day(ctx.store, ctx.store.root, model, versions[model], DS,
                               dataclasses.asdict(ctx.config.score), ctx.config.data.num_responses,
                               ctx.config.data.num_treatments)
    assert ctx.store.spark_schema(table) == frame.select(*written.columns).schema
    through_spark = frame.orderBy(key).toPandas()[list(written.columns)]
    assert len(written) == ctx.store.partition_counts("features.samples" if model == "dcmt"
                                                      else "features.user_samples")[DS]
    pd.testing.assert_frame_equal(written, through_spark, rtol=1e-6, atol=1e-9)
    files = [f for f in ctx.store.referenced_files(table) if f"model={model}/" in f and f"ds={DS}/" in f]
    if driver_max_rows:
        assert len(files) == 1  # the driver writes one file
    else:
        assert 1 <= len(files) <= ctx.spark.sparkContext.defaultParallelism  # a file per task, none empty


def test_a_day_scored_in_the_driver_leaves_the_driver_s_torch_threads_as_they_were(world):
    # a kept warm driver runs the next steps after the score step: its torch settings are theirs
    import torch

    ctx, versions = world
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        score(ctx, "dcmt", versions["dcmt"])  # 2 threads (the session's cores) while it scores
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("driver_max_rows", [0, 2_000_000], ids=["spark-tasks", "in-driver"])
def test_a_device_the_scoring_process_lacks_is_refused_in_one_line_before_writing(world, driver_max_rows):
    import torch

    ctx, versions = world
    score(ctx, "dcmt", versions["dcmt"])
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the GPUs this host has (none here: cuda:0)
    on_gpu = make_ctx(ctx.spark, ctx.store.root, [DS], f"score.device={missing}",
                      f"score.driver_max_rows={driver_max_rows}")
    before = (ctx.store.version("scores.cvr"), ctx.store.referenced_files("scores.cvr"))
    with pytest.raises(InputError) as refused:
        score(on_gpu, "dcmt", versions["dcmt"])
    assert re.fullmatch(rf"scores refused, nothing written: score\.device={missing}: torch sees \d+ CUDA device\(s\) "
                        r"in this process \(rule: a device of the process that scores; cpu runs anywhere\)",
                        str(refused.value)), str(refused.value)
    assert (ctx.store.version("scores.cvr"), ctx.store.referenced_files("scores.cvr")) == before


@pytest.mark.reliability
def test_scoring_job_killed_before_its_commit_changes_nothing(world):
    # killed while staging the second table (scores.uplift_user, after scores.cvr was staged): the
    # job's tables commit together at its end, so neither changes
    ctx, versions = world
    score(ctx)
    tables = ("scores.cvr", "scores.uplift_user")
    before = {t: (ctx.store.version(t), ctx.store.referenced_files(t)) for t in tables}
    env = dict(os.environ, LIFTLAKE_WAREHOUSE=ctx.store.root, LIFTLAKE_FAULT_BEFORE_COMMIT="scores.uplift_user",
               LIFTLAKE_FAULT_MODE="exit")
    proc = subprocess.run([sys.executable, "-m", "liftlake.lib.cli.main", "score", "--ds", DS, "--quiet-config",
                           "--set", "spark.master=local[1]"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 137, proc.stderr[-2000:]
    assert re.search(r"scores\.cvr dcmt v\d+ rows=\d+ staged", proc.stderr)  # staged before the kill
    assert {t: (ctx.store.version(t), ctx.store.referenced_files(t)) for t in tables} == before


@pytest.mark.reliability
def test_a_day_without_features_is_refused_before_writing(world):
    ctx, versions = world
    other = make_ctx(ctx.spark, ctx.store.root, ["2026-11-23"])
    version_before = ctx.store.version("scores.cvr") if ctx.store.exists("scores.cvr") else None
    with pytest.raises(InputError, match=r"features.samples: partition ds=2026-11-23 is missing"):
        score(other, "dcmt", versions["dcmt"])
    if version_before is not None:
        assert ctx.store.version("scores.cvr") == version_before


def test_old_model_version_scores_after_newer_tables_and_models(world):
    from liftlake.lib.pipelines.train import train

    ctx, versions = world
    # a newer feature-table version and a newer model version exist ...
    build_features_days(ctx)
    newer = train(make_ctx(ctx.spark, ctx.store.root, [DS], "model.name=dcmt", "train.epochs=1"), DS)["version"]
    assert newer != versions["dcmt"]
    # ... and the old version still scores the day and reads what it recorded
    score(ctx, "dcmt", versions["dcmt"])
    rows = ctx.store.read("scores.cvr").where((F.col("model") == "dcmt"))
    assert {r.version for r in rows.select("version").distinct().collect()} == {versions["dcmt"]}


def test_a_rerun_of_a_day_after_a_promotion_reproduces_its_scores(world):
    from liftlake.lib.artifacts.model_store import current_version, set_current
    from liftlake.lib.pipelines.train import train

    ctx, versions = world
    first = versions["dcmt"]
    set_current(ctx.store.root, "dcmt", first)

    def dcmt_scores():
        rows = ctx.store.read("scores.cvr").where(F.col("model") == "dcmt")
        return sorted(tuple(r) for r in rows.select("exposure_id", "ctr", "cvr", "ctcvr", "version").collect())

    try:
        score(ctx)
        before = dcmt_scores()
        # which version scored the day comes from the Delta log's statistics, no scores row read
        assert ("dcmt", first) in ctx.store.values_from_stats("scores.cvr", ["model", "version"], [DS])[DS]
        assert recorded_versions(ctx.store, [DS])[(DS, "dcmt")] == {first}
        promoted = train(make_ctx(ctx.spark, ctx.store.root, [DS], "model.name=dcmt", "train.epochs=1",
                                  "train.seed=5", "train.gate_tolerance=1"), DS)["version"]
        assert current_version(ctx.store.root, "dcmt") == promoted != first
        score(ctx)  # the day was scored by the first version: a re-run scores it with that one again
        assert dcmt_scores() == before and {r[-1] for r in before} == {first}
        score(make_ctx(ctx.spark, ctx.store.root, [DS], "score.rescore=current"))
        assert {r[-1] for r in dcmt_scores()} == {promoted}
        score(ctx)  # now the promoted version is what scored the day
        assert {r[-1] for r in dcmt_scores()} == {promoted}
    finally:
        set_current(ctx.store.root, "dcmt", first)


def test_the_gate_judges_a_challenger_against_the_champion_on_the_same_rows(world):
    from liftlake.lib.artifacts.model_store import current_version, promotion_history, set_current
    from liftlake.lib.evaluation.evaluate import metrics_on_rows_of
    from liftlake.lib.pipelines.train import train

    ctx, versions = world
    champion = versions["dcmt"]
    set_current(ctx.store.root, "dcmt", champion)

    def train_dcmt(seed, *sets):
        return train(make_ctx(ctx.spark, ctx.store.root, [DS], "model.name=dcmt", "train.epochs=1",
                              f"train.seed={seed}", *sets), DS)

    try:
        summary = train_dcmt(11, "train.gate_min_cvr=0")
        challenger = summary["version"]
        # the version's MLflow record (the default store under the warehouse) names it and its gate
        from mlflow import MlflowClient

        tracked = MlflowClient(tracking_uri=summary["mlflow"]["uri"]).get_run(summary["mlflow"]["run_id"])
        assert tracked.data.tags["liftlake.version"] == challenger
        assert f'"champion": "{champion}"' in tracked.data.tags["liftlake.gate"]
        entry = promotion_history(ctx.store.root, "dcmt")[-1 - summary["gate_passed"]]
        assert (entry["alias"], entry["to"], entry["champion"]) == ("challenger", challenger, champion)
        assert entry["value"] == pytest.approx(summary["metrics"]["ctcvr_auc"])
        same_rows = metrics_on_rows_of(ctx, "dcmt", champion, rows_of=challenger)
        assert entry["champion_value"] == pytest.approx(same_rows["ctcvr_auc"])
        assert summary["gate_passed"] == (entry["value"] >= entry["champion_value"])
        assert current_version(ctx.store.root, "dcmt") == (challenger if summary["gate_passed"] else champion)
        set_current(ctx.store.root, "dcmt", champion)
        # a floor no version reaches keeps the champion; a tolerance of 1 lets any challenger past it
        assert not train_dcmt(12, "train.gate_min_cvr=0.99", "train.gate_tolerance=1")["gate_passed"]
        assert current_version(ctx.store.root, "dcmt") == champion
        lenient = train_dcmt(13, "train.gate_min_cvr=0", "train.gate_tolerance=1")
        assert lenient["gate_passed"] and current_version(ctx.store.root, "dcmt") == lenient["version"]
        assert promotion_history(ctx.store.root, "dcmt")[-1]["by"] == "gate"
    finally:
        set_current(ctx.store.root, "dcmt", champion)


def test_retraining_with_other_settings_does_not_resume_the_earlier_run(world):
    # a finished run's checkpoint must only resume the same training: with another learning rate
    # the earlier weights coming back would be a silent no-op retrain
    import torch

    from liftlake.lib.artifacts.model_store import load_artifact
    from liftlake.lib.pipelines.train import train
    from liftlake.lib.training.plan import build_plan

    ctx, versions = world
    base = ["model.name=unimvt", "train.epochs=1", "train.gate_min_coupon=0"]
    same, _, _ = build_plan(ctx.store, make_ctx(ctx.spark, ctx.store.root, [DS], *base).config, DS)
    again, _, _ = build_plan(ctx.store, make_ctx(ctx.spark, ctx.store.root, [DS], *base).config, DS)
    assert same.checkpoint_dir == again.checkpoint_dir
    for other in ("train.learning_rate=0.01", "train.batch_size=256", "train.epochs=2", "model.params.eta_init=0.2"):
        changed, _, _ = build_plan(ctx.store, make_ctx(ctx.spark, ctx.store.root, [DS], *base, other).config, DS)
        assert changed.checkpoint_dir != same.checkpoint_dir, other
    retrained = train(make_ctx(ctx.spark, ctx.store.root, [DS], *base, "train.learning_rate=0.01"), DS)["version"]
    first = load_artifact(ctx.store.root, "unimvt", versions["unimvt"]).model.state_dict()
    second = load_artifact(ctx.store.root, "unimvt", retrained).model.state_dict()
    assert any(not torch.equal(first[k], second[k]) for k in first)


@pytest.mark.reliability
@pytest.mark.reliability
def test_the_day_split_on_a_one_day_window_is_refused_with_its_rule(world):
    from liftlake.lib.pipelines.train import train

    ctx, _ = world
    run = make_ctx(ctx.spark, ctx.store.root, [DS], "model.name=dcmt", "train.split_by=day")
    with pytest.raises(InputError, match=r"train\.split_by=day tests on the window's last day .*"
                                         r"\(rule: a window of at least 2 days; or train\.split_by=user\)"):
        train(run, DS)


def test_a_day_encoded_with_another_feature_spec_is_refused_before_writing(world):
    # runs last in this module: it re-encodes the day with a freshly fitted spec
    from liftlake.lib.artifacts.feature_specs import load_spec

    ctx, versions = world
    model_spec = load_spec(ctx.store.root).version
    score(ctx, "dcmt", versions["dcmt"])
    before = (ctx.store.version("scores.cvr"), ctx.store.partition_counts("scores.cvr"))
    # a spec refitted with another vocabulary cut-off re-encodes the day (the same settings on the same
    # day fit the same spec: its version is a hash of its content)
    build_features_days(make_ctx(ctx.spark, ctx.store.root, [DS], "features.min_count=50"), refit=True)
    day_spec = load_spec(ctx.store.root).version
    assert day_spec != model_spec
    with pytest.raises(InputError, match=rf"table features.samples: ds={DS} is encoded with feature spec "
                                         rf"\['{day_spec}'\], the model with {model_spec}"):
        score(ctx, "dcmt", versions["dcmt"])
    assert (ctx.store.version("scores.cvr"), ctx.store.partition_counts("scores.cvr")) == before


@pytest.mark.reliability
def test_the_escim_labeler_reads_a_day_with_the_spec_it_was_encoded_with(world):
    # after the previous test the day is encoded with a refitted spec; point CURRENT back at the
    # first one, as a later refit or a concurrent first day can leave it
    import json

    from liftlake.lib.artifacts.escim_labeler import labeler_dir
    from liftlake.lib.artifacts.feature_specs import load_spec, save_spec
    from liftlake.lib.artifacts.model_store import load_artifact
    from liftlake.lib.features.spec import FeatureSpec
    from liftlake.lib.pipelines.escim_labels import escim_labels, label_day

    ctx, versions = world
    day_spec = ctx.store.read("features.samples", partitions=[DS]).select("feature_spec_version").first()[0]
    model_spec = FeatureSpec.from_json(load_artifact(ctx.store.root, "dcmt", versions["dcmt"]).feature_spec_json)
    save_spec(ctx.store.root, model_spec)
    assert load_spec(ctx.store.root).version == model_spec.version != day_spec
    escim_labels(ctx)
    latest = sorted(v for v in os.listdir(labeler_dir(ctx.store.root)) if v.startswith("v"))[-1]
    with open(os.path.join(labeler_dir(ctx.store.root), latest, "labeler.json"), encoding="utf-8") as fh:
        assert json.load(fh)["feature_spec"] == day_spec
    with pytest.raises(InputError, match=rf"features.samples: ds={DS} is encoded with feature spec "
                                         rf"\['{day_spec}'\], the ESCIM labeler v0001 with {model_spec.version}"):
        label_day(ctx.store, ctx.config, DS, "v0001", None, model_spec.version)
