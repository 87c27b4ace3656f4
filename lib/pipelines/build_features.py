"""The body of ``liftlake build-features``: each day's features.samples, features.user_samples and
ops.quarantine, committed together at the end."""
from __future__ import annotations

import json
import logging

from liftlake.lib.config import warehouse_path
from liftlake.lib.features.build import SAMPLES_COMMENTS, USER_SAMPLES_COMMENTS, build_feature_day
from liftlake.lib.log import log_commits

logger = logging.getLogger(__name__)


def build_features_days(ctx, refit: bool = False) -> dict:
    """Build features for each day; returns {ds: {table: rows, 'quarantine': {rule: count}}}. The
    days' tables commit together at the end (a failure on any day leaves every table as before)."""
    warehouse = warehouse_path(ctx.config)
    summary = {}
    with ctx.store.commit_together() as batch:
        for i, ds in enumerate(ctx.days):
            summary[ds] = build_features_day(ctx, warehouse, ds, refit=refit and i == 0)
    log_commits(logger, "build-features", batch.results)
    return summary


def build_features_day(ctx, warehouse: str, ds: str, refit: bool) -> dict:
    """Stage one day's feature tables and quarantine; returns the day's summary."""
    cfg = ctx.config
    day = build_feature_day(ctx.store, warehouse, cfg.features, ds, cfg.data.num_treatments,
                            cfg.data.num_responses, refit=refit, log=logger.info)
    try:
        q = ctx.store.write(day.quarantine, "ops.quarantine", mode="overwrite_partitions", partition_values=[ds],
                            comment="raw rows rejected by a job, with the rule they break")
        counts = {f"{r['source_table']}:{r['rule']}": int(r["count"]) for r in
                  day.quarantine.groupBy("source_table", "rule").count().orderBy("source_table", "rule").collect()}
        s = ctx.store.write(day.samples, "features.samples", mode="overwrite_partitions", partition_values=[ds],
                            comment="one row per exposure: encoded features, click, conversion, split",
                            column_comments=SAMPLES_COMMENTS)
        u = ctx.store.write(day.user_samples, "features.user_samples", mode="overwrite_partitions",
                            partition_values=[ds],
                            comment="one row per user-day: encoded user features, treatments, responses",
                            column_comments=USER_SAMPLES_COMMENTS)
    finally:
        day.release()  # the day's tables are staged (or failed): its cached tagged raw tables are not read again
    logger.info(f"build-features {ds}: samples={s.rows} user_samples={u.rows} quarantined={q.rows} {json.dumps(counts)} "
        f"staged")
    return {"features.samples": s.rows, "features.user_samples": u.rows, "ops.quarantine": q.rows,
            "quarantined_by_rule": counts, "feature_spec": day.spec.version}
