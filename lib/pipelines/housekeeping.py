"""The body of ``liftlake housekeeping``: remove what killed and finished jobs leave under the
warehouse, past the retention of ``housekeeping.*``.

* Delta tables: first compacted (OPTIMIZE: a partition's small files rewritten as fewer larger ones,
  one commit that changes no row; ``housekeeping.compact``), then the data files that no version
  within the retention references go (a full vacuum: the files of overwritten partitions, and files a
  killed writer left in the table folder), and the table's ``_staging/<txn>`` folders of writes that
  never committed.
* ``_staging-*`` folders of artifacts that never published (model versions, feature specs, ESCIM
  labelers, train caches: lib/artifacts/publish.py).
* ``_train_cache/<key>``: training rows unused (``_DONE.json`` is touched on each use) for the retention.
* ``_models/<name>/_checkpoints/<run>``: resume points not written for the retention.

Model versions (``vNNNN``), ``CURRENT`` pointers and feature spec versions are never touched.
``--dry-run`` lists what would go and removes nothing.
"""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field

from liftlake.lib.artifacts.publish import STAGING_PREFIX
from liftlake.lib.config import warehouse_path
from liftlake.lib.storage.store import DeltaRsStore, TableError, newest_mtime

logger = logging.getLogger(__name__)

@dataclass
class Sweep:
    removed: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, path: str) -> None:
        self.removed.setdefault(kind, []).append(path)


def _older_than(path: str, hours: float, now: float) -> bool:
    return now - newest_mtime(path) > hours * 3600


def _remove(path: str, dry_run: bool) -> None:
    if dry_run:
        return
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        os.remove(path)


def _children(folder: str) -> list[str]:
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)) if os.path.isdir(folder) else []


def sweep_artifacts(root: str, retention_hours: float, grace_hours: float, dry_run: bool, now: float,
                    sweep: Sweep) -> None:
    """Staging folders, train caches and checkpoints under ``root`` (the warehouse)."""
    for top in ("_models", "_train_cache", "_features"):
        for folder, dirs, _ in os.walk(os.path.join(root, top)):
            for name in list(dirs):
                path = os.path.join(folder, name)
                if name.startswith(STAGING_PREFIX):
                    dirs.remove(name)
                    if _older_than(path, grace_hours, now):
                        sweep.add("staging", path)
                        _remove(path, dry_run)
    for path in _children(os.path.join(root, "_train_cache")):
        done = os.path.join(path, "_DONE.json")
        if os.path.basename(path).startswith(STAGING_PREFIX) or not os.path.isdir(path):
            continue
        last_use = os.lstat(done).st_mtime if os.path.exists(done) else newest_mtime(path)
        if now - last_use > retention_hours * 3600:
            sweep.add("train_cache", path)
            _remove(path, dry_run)
    for model in _children(os.path.join(root, "_models")):
        for run in _children(os.path.join(model, "_checkpoints")):
            if _older_than(run, retention_hours, now):
                sweep.add("checkpoint", run)
                _remove(run, dry_run)


def sweep_tables(store, retention_hours: int, grace_hours: float, dry_run: bool, sweep: Sweep,
                 compact_target_bytes: int | None = None) -> None:
    """Compact (when ``compact_target_bytes``), then vacuum every Delta table (lib/storage/store.py:
    small files; unreferenced files, stale write staging). A compaction that loses to a job's commit
    changed nothing and waits for the next run."""
    for name in store.tables():
        if compact_target_bytes:
            try:
                for partition in store.optimize(name, compact_target_bytes, dry_run=dry_run):
                    sweep.add("compacted_partition", f"{name}/{partition}")
            except TableError as exc:
                logger.warning(f"housekeeping: {exc}")
        for rel in store.vacuum(name, retention_hours, staging_grace_hours=grace_hours, dry_run=dry_run):
            sweep.add("table_staging" if rel.startswith("_staging/") else "table_file", f"{name}/{rel}")


def run(ctx) -> Sweep:
    cfg = ctx.config.housekeeping
    root = warehouse_path(ctx.config)
    store = DeltaRsStore(None, root)  # the Delta logs and files alone: no Spark session
    dry_run = bool(ctx.args.dry_run)
    now = time.time()
    sweep = Sweep()
    sweep_artifacts(root, cfg.retention_hours, cfg.staging_grace_hours, dry_run, now, sweep)
    sweep_tables(store, cfg.retention_hours, cfg.staging_grace_hours, dry_run, sweep,
                 cfg.compact_target_mb * 1024 * 1024 if cfg.compact else None)
    for kind in ("compacted_partition", "table_file", "table_staging", "staging", "train_cache", "checkpoint"):
        paths = sweep.removed.get(kind, [])
        verb = ("would compact" if dry_run else "compacted") if kind == "compacted_partition" else \
            ("would remove" if dry_run else "removed")
        what = "partition" if kind == "compacted_partition" else kind.replace("_", " ")
        logger.info(f"housekeeping: {verb} {len(paths)} {what}(s)")
        for p in paths:
            logger.debug(f"housekeeping: {verb} {p}")
    return sweep
