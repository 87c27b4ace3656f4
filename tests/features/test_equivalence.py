"""The feature job's speed-ups (issue 20) keep its outputs: on two simulated days with bad rows, the
features.samples, features.user_samples and ops.quarantine rows are the ones the code before them
(tests/features/frozen_build.py, frozen at 456c622) computes from the same raw tables and spec; the
one-pass spec fit has the old fit's vocabularies and quantile boundaries within approxQuantile's
error; and no whole-stage-codegen method of the day's plans is over HotSpot's 8,000-byte JIT limit."""
from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from liftlake.lib.artifacts.feature_specs import load_spec
from liftlake.lib.cli.runner import JobContext
from liftlake.lib.config import load_config
from liftlake.lib.features.build import build_feature_day
from liftlake.lib.pipelines.build_features import build_features_days
from liftlake.lib.pipelines.simulate import simulate_days
from liftlake.lib.storage.store import DeltaRsStore

DAYS = ["2026-11-20", "2026-11-21"]
JIT_LIMIT = 8000  # HotSpot's HugeMethodLimit: a larger method is never JIT-compiled


def frozen():
    """tests/features/frozen_build.py as a module (the suite imports test files by path, not as a package)."""
    name = "liftlake_tests_frozen_build"
    if name not in sys.modules:
        path = os.path.join(os.path.dirname(__file__), "frozen_build.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up while they are defined
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    warehouse = str(tmp_path_factory.mktemp("wh"))
    overrides = [f"warehouse.path={warehouse}", "simulator.exposures=6000", "simulator.bad_row_rate=0.04"]
    config = load_config([], overrides, env={})
    args = argparse.Namespace(conf=[], overrides=overrides, json=False, model=None, quiet_config=True)
    ctx = JobContext("test", config, args, DAYS, _spark=spark, _store=DeltaRsStore(spark, warehouse))
    simulate_days(ctx)
    summary = build_features_days(ctx)
    return ctx, summary


def same_rows(got: DataFrame, want: DataFrame, what: str) -> None:
    assert got.columns == want.columns, (what, got.columns, want.columns)
    assert [f.dataType for f in got.schema.fields] == [f.dataType for f in want.schema.fields], what
    n_got, n_want = got.count(), want.count()
    assert n_got == n_want > 0, (what, n_got, n_want)
    extra, missing = got.exceptAll(want), want.exceptAll(got)
    assert extra.count() == 0 and missing.count() == 0, (what, extra.limit(3).collect(), missing.limit(3).collect())


def test_the_one_pass_spec_is_the_old_fit_up_to_the_quantile_error(built):
    # Vocabularies and hash fields are exact: identical to the old fit's. Bucket boundaries come from
    # approxQuantile, whose summaries Spark merges in the order its tasks finish, so no two plans (and
    # not always two runs of one) promise the same approximation: each boundary must be a value whose
    # rank in the window is within the documented bound (relative error 0.001) of its probability.
    ctx, summary = built
    cfg = ctx.config.features
    fb = frozen()
    old = fb.fit_window_spec(ctx.store, cfg, DAYS[0])
    new = load_spec(ctx.store.root)
    assert {s["feature_spec"] for s in summary.values()} == {new.version}
    assert new.fitted_on == old.fitted_on and sorted(new.fields) == sorted(old.fields)
    window = fb.exposure_rows(
        ctx.store.read("raw.exposures", partitions=old.fitted_on).where(F.col("user_id").isNotNull()),
        ctx.store.read("raw.users", partitions=old.fitted_on).dropDuplicates(["user_id"]),
        ctx.store.read("raw.items", partitions=old.fitted_on).dropDuplicates(["item_id"]))
    probs = [i / cfg.numeric_buckets for i in range(1, cfg.numeric_buckets)]
    for name, field in new.fields.items():
        was = old.fields[name]
        if field.kind != "bucket":
            assert field == was, name
            continue
        assert field.boundaries == sorted(set(field.boundaries)) and field.size == len(field.boundaries) + 2, name
        value = F.col(name).cast("double")
        finite = window.select(value.alias("v")).where(F.col("v").isNotNull() & ~F.isnan("v")
                                                       & ~F.col("v").isin(float("inf"), float("-inf")))
        n = finite.count()
        ranks = finite.agg(*[F.sum((F.col("v") < b).cast("long")).alias(f"lt{i}") for i, b in enumerate(field.boundaries)],
                           *[F.sum((F.col("v") <= b).cast("long")).alias(f"le{i}")
                             for i, b in enumerate(field.boundaries)]).first()
        for i, b in enumerate(field.boundaries):
            lo, hi = ranks[f"lt{i}"], ranks[f"le{i}"]  # b's rank is any of (lo, hi]
            assert any(lo < math.ceil((p + 0.001) * n) + 1 and hi >= math.floor((p - 0.001) * n)
                       for p in probs), (name, b, lo, hi, n)
        assert abs(len(field.boundaries) - len(was.boundaries)) <= 1, (name, field.boundaries, was.boundaries)


@pytest.mark.parametrize("ds", DAYS)
def test_the_day_tables_are_the_old_code_paths_rows(built, ds):
    ctx, _ = built
    cfg = ctx.config
    spec = load_spec(ctx.store.root)
    samples, user_samples, quarantine = frozen().feature_day(ctx.store, cfg.features, ds, spec,
                                                            cfg.data.num_treatments, cfg.data.num_responses)
    same_rows(ctx.store.read("features.samples", partitions=[ds]), samples, f"features.samples {ds}")
    same_rows(ctx.store.read("features.user_samples", partitions=[ds]), user_samples, f"features.user_samples {ds}")
    # the quarantine table's schema is the store's (non-null flags dropped on the way): compare as rows
    stored = ctx.store.read("ops.quarantine", partitions=[ds])
    same_rows(stored, quarantine.select(*stored.columns).to(stored.schema), f"ops.quarantine {ds}")


def max_codegen_method_bytes(df: DataFrame) -> dict[str, int]:
    """{whole-stage-codegen subtree: its largest generated method's bytecode size}, compiled by Spark's
    own code generator for the physical plan (non-adaptive, so that the stages exist before running)."""
    spark = df.sparkSession
    adaptive = spark.conf.get("spark.sql.adaptive.enabled")
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try:
        plan = df.select("*")._jdf.queryExecution().executedPlan()
        stages = spark._jvm.org.apache.spark.sql.execution.debug.package.codegenStringSeq(plan)
        out = {}
        for i in range(stages.size()):
            stage = stages.apply(i)
            out[f"#{i} " + stage._1().splitlines()[0][:160]] = int(stage._3().maxMethodCodeSize())
        return out
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", adaptive)


def test_generated_methods_stay_under_the_jit_limit(built):
    ctx, _ = built
    cfg = ctx.config
    day = build_feature_day(ctx.store, ctx.store.root, cfg.features, DAYS[0], cfg.data.num_treatments,
                            cfg.data.num_responses, log=lambda *_: None)
    try:
        for name, df in (("samples", day.samples), ("user_samples", day.user_samples),
                         ("quarantine", day.quarantine)):
            sizes = max_codegen_method_bytes(df)
            assert sizes, name
            too_big = {k: v for k, v in sizes.items() if v > JIT_LIMIT}
            assert not too_big, (name, too_big)
    finally:
        day.release()


def test_the_old_encoding_was_over_the_limit(built):
    # the check above can see the problem it guards against: the old plan's encoding stage is too big
    ctx, _ = built
    cfg = ctx.config
    spec = load_spec(ctx.store.root)
    samples, _, _ = frozen().feature_day(ctx.store, cfg.features, DAYS[0], spec, cfg.data.num_treatments,
                                         cfg.data.num_responses)
    assert max(max_codegen_method_bytes(samples).values()) > JIT_LIMIT


def test_a_vocabulary_of_awkward_strings_encodes_as_the_python_lookup(spark):
    # the vocabulary map is parsed from one SQL string (issue 20): quotes, backslashes, newlines and
    # escape-like text are keys like any other
    from liftlake.lib.features.spec import FieldSpec, encode_column

    values = ["a'b", "c\\d", "x\ny", "ü€", "\\'", "plain", "%_", "\\u0041", "''", "\\n"]
    vocab = {v: i + 1 for i, v in enumerate(values)}
    rows = spark.createDataFrame([(v,) for v in values + ["unseen", None]], "s string")
    field = FieldSpec("s", "vocab", len(vocab) + 1, vocab=vocab)
    got = {r.s: r.f for r in rows.select("s", encode_column(field, F.col("s")).alias("f")).collect()}
    assert got == {**vocab, "unseen": 0, None: 0}
