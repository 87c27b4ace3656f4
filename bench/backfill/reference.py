"""The models and the reference of the backfill bench: the models trained on the day before the backfill
(``liftlake`` CLI) and made CURRENT, so that its ``score`` tasks score; the feature spec versions the
backfill used per day; and step 3, every finished day run alone (simulate -> build features -> ESCIM
labels -> score) in its own fresh warehouse, given that day's spec and a copy of the seeded models."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

from bench.backfill import REPO, log


def seed_models(conf_file: Path, warehouse: Path, seed_day: str, models: list[str], logdir: Path) -> dict:
    """Simulate and build the day before the backfill and train ``models`` on it, with the ``liftlake`` CLI
    (each command its own spark-submit-like process, like a person would run them); CURRENT of each model
    points at the new version afterwards, so that the backfill's ``score`` tasks have models to score with.

    The evaluation gate of ``liftlake train`` judges a model trained on one small day; where it holds CURRENT
    back the bench sets it anyway (said in the report): the bench measures scoring, not model quality."""
    from liftlake.lib.artifacts import model_store

    cli = str(Path(sys.executable).parent / "liftlake")
    common = ["--ds", seed_day, "--conf", str(conf_file), "--set", f"warehouse.path={warehouse}", "--quiet-config"]
    steps = [["simulate"], ["build-features"]] + [
        ["train", "--model", m, "--set", "train.launcher=local", "--set", "train.epochs=1"] for m in models]
    logdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for step in steps:
        log_file = logdir / f"seed-{'-'.join(step[:1] + step[2:3])}.log"
        log(f"seed {seed_day}: liftlake {' '.join(step[:3])} (log {log_file})")
        with open(log_file, "w", encoding="utf-8") as fh:
            rc = subprocess.run([cli, step[0], *common, *step[1:]], stdout=fh, stderr=subprocess.STDOUT,
                                cwd=str(REPO), timeout=1800).returncode
        if rc != 0:
            raise RuntimeError(f"seeding failed: liftlake {' '.join(step)} exited {rc}; see {log_file}")
    seeded = {}
    for m in models:
        latest = model_store.versions(str(warehouse), m)[-1]
        gate_passed = model_store.current_version(str(warehouse), m) == latest
        if not gate_passed:
            model_store.set_current(str(warehouse), m, latest)
        seeded[m] = {"version": latest, "gate_passed": gate_passed}
    seconds = time.time() - started
    log(f"seeded {seed_day} and models {seeded} in {seconds:.0f} s")
    return {"day": seed_day, "models": seeded, "seconds": seconds}


def seeded_models(backfill: dict) -> list[str]:
    """The models seed_models() trained for this backfill (none with ``--models ''``)."""
    return list((backfill.get("seed") or {}).get("models") or {})


def reference_days(spark, conf_file: Path, ref_root: Path, backfill_store, days: list[str],
                   models: Iterable[str] = ()) -> dict:
    import argparse as _argparse

    from liftlake.lib.artifacts.feature_specs import load_spec, save_spec
    from liftlake.lib.cli.runner import JobContext
    from liftlake.lib.config import load_config
    from liftlake.lib.pipelines.build_features import build_features_days
    from liftlake.lib.pipelines.escim_labels import escim_labels
    from liftlake.lib.pipelines.score import score_days
    from liftlake.lib.pipelines.simulate import simulate_days
    from liftlake.lib.storage.store import DeltaRsStore

    out = {}
    for i, ds in enumerate(days):
        started = time.time()
        wh = ref_root / ds
        wh.mkdir(parents=True)
        spec_version = None
        if backfill_store.exists("features.samples") and ds in backfill_store.partition_counts("features.samples"):
            rows = backfill_store.read("features.samples", partitions=[ds]).select("feature_spec_version") \
                .distinct().collect()
            if len(rows) == 1:
                spec_version = rows[0][0]
                save_spec(str(wh), load_spec(backfill_store.root, spec_version))
        for name in models:  # the backfill's trained models (artifacts and CURRENT), not its checkpoints
            shutil.copytree(Path(backfill_store.root) / "_models" / name, wh / "_models" / name,
                            ignore=shutil.ignore_patterns("_checkpoints"))
        sets = [f"warehouse.path={wh}"]
        config = load_config([str(conf_file)], sets, env={})
        ns = _argparse.Namespace(conf=[str(conf_file)], overrides=sets, json=False, model=None, quiet_config=True)
        ctx = JobContext("bench-reference", config, ns, [ds], _spark=spark, _store=DeltaRsStore(spark, str(wh)))
        simulate_days(ctx)
        build_features_days(ctx)
        escim_labels(ctx)
        score_days(ctx)
        out[ds] = {"warehouse": str(wh), "seeded_spec": spec_version, "seconds": time.time() - started}
        log(f"reference {i + 1}/{len(days)} {ds} in {out[ds]['seconds']:.1f} s")
    return out


def feature_specs(backfill_store, days: list[str]) -> dict[str, list[str]] | None:
    """{feature spec version: [days]} as the backfill's ``features.samples`` names them (None when it has
    no such table)."""
    from pyspark.sql import functions as F

    if not backfill_store.exists("features.samples"):
        return None
    specs: dict[str, list[str]] = {}
    for r in backfill_store.read("features.samples").where(F.col("ds").isin(days)) \
            .groupBy("feature_spec_version", "ds").count() \
            .orderBy("ds").collect():
        specs.setdefault(r["feature_spec_version"], []).append(r["ds"])
    return specs
