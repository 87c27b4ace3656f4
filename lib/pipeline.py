"""The steps of the daily pipeline as library calls; jobs/ only parse arguments and call these."""
from __future__ import annotations

import json
import sys

from pyspark import StorageLevel


from liftlake.lib.config import warehouse_path
from liftlake.lib.features import SAMPLES_COMMENTS, USER_SAMPLES_COMMENTS, build_feature_day


def log(msg: str) -> None:
    print(f"[liftlake] {msg}", file=sys.stderr, flush=True)


def log_commits(step: str, results) -> None:
    """One line per table a ``commit_together()`` block committed, once it has."""
    for res in results:
        log(f"{step}: committed {res.table} v{res.version} ({res.rows} rows, partitions {list(res.partitions)})")


TABLE_COMMENTS = {
    "raw.exposures": "simulated exposure log (one row per impression)",
    "raw.clicks": "simulated click log",
    "raw.conversions": "simulated conversion log",
    "raw.users": "user attributes, snapshot per day",
    "raw.items": "item attributes, snapshot per day",
    "raw.treatments": "per user-day coupon and strategy assignment",
    "raw.responses": "per user-day coupon outcome, continuous responses and value shares",
    "sim.truth": "simulator ground truth per exposure: true CTR, CVR under do(click=1)",
    "sim.truth_user": "simulator ground truth per user-day: p0, unit uplift, per-treatment effects",
}


def simulate_days(ctx) -> list:
    from liftlake.lib.simulator import simulate_day

    with ctx.store.commit_together() as batch:
        for ds in ctx.days:
            # cached: the day's exposures are computed once, not once per table derived from them
            frames = simulate_day(ctx.spark, ctx.config.simulator, ds, cache=True)
            try:
                for table, df in frames.items():
                    res = ctx.store.write(df, table, mode="overwrite_partitions", partition_values=[ds],
                                          comment=TABLE_COMMENTS.get(table))
                    log(f"simulate {ds}: {table} rows={res.rows} staged")
            finally:
                frames.unpersist()
    log_commits("simulate", batch.results)
    return batch.results


def build_features_days(ctx, refit: bool = False) -> dict:
    """Build features for each day; returns {ds: {table: rows, 'quarantine': {rule: count}}}. The
    days' tables commit together at the end (a failure on any day leaves every table as before)."""
    warehouse = warehouse_path(ctx.config)
    summary = {}
    with ctx.store.commit_together() as batch:
        for i, ds in enumerate(ctx.days):
            summary[ds] = build_features_day(ctx, warehouse, ds, refit=refit and i == 0)
    log_commits("build-features", batch.results)
    return summary


def build_features_day(ctx, warehouse: str, ds: str, refit: bool) -> dict:
    """Stage one day's feature tables and quarantine; returns the day's summary."""
    cfg = ctx.config
    day = build_feature_day(ctx.store, warehouse, cfg.features, ds, cfg.simulator.num_treatments,
                            cfg.simulator.num_responses, refit=refit, log=log)
    quarantine = day.quarantine.persist(StorageLevel.MEMORY_AND_DISK)
    q = ctx.store.write(quarantine, "ops.quarantine", mode="overwrite_partitions", partition_values=[ds],
                        comment="raw rows rejected by a job, with the rule they break")
    counts = {f"{r['source_table']}:{r['rule']}": int(r["count"]) for r in
              quarantine.groupBy("source_table", "rule").count().orderBy("source_table", "rule").collect()}
    quarantine.unpersist()
    s = ctx.store.write(day.samples, "features.samples", mode="overwrite_partitions", partition_values=[ds],
                        comment="one row per exposure: encoded features, click, conversion, split",
                        column_comments=SAMPLES_COMMENTS)
    u = ctx.store.write(day.user_samples, "features.user_samples", mode="overwrite_partitions",
                        partition_values=[ds],
                        comment="one row per user-day: encoded user features, treatments, responses",
                        column_comments=USER_SAMPLES_COMMENTS)
    log(f"build-features {ds}: samples={s.rows} user_samples={u.rows} quarantined={q.rows} {json.dumps(counts)} "
        f"staged")
    return {"features.samples": s.rows, "features.user_samples": u.rows, "ops.quarantine": q.rows,
            "quarantined_by_rule": counts, "feature_spec": day.spec.version}


def print_tables(store, as_json: bool = False, out=sys.stdout) -> list[dict]:
    infos = [store.table_info(name) for name in store.tables()]
    for info in infos:
        if as_json:
            print(json.dumps(info, sort_keys=True), file=out)
        else:
            parts = ", ".join(f"{k}={v}" for k, v in info["rows_per_partition"].items())
            print(f"{info['name']:<32} v{info['version']:<4} by {info['partition_column']}: {parts}", file=out)
    return infos


def print_query(store, query: str, as_json: bool = False, limit: int = 100, out=sys.stdout) -> list[dict]:
    df = store.sql(query)
    rows = [r.asDict(recursive=True) for r in df.limit(limit).collect()]
    if as_json:
        for row in rows:
            print(json.dumps(row, default=str, sort_keys=False), file=out)
    else:
        cols = df.columns
        widths = [max(len(c), *(len(_fmt(r[c])) for r in rows)) if rows else len(c) for c in cols]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths)), file=out)
        for r in rows:
            print("  ".join(_fmt(r[c]).ljust(w) for c, w in zip(cols, widths)), file=out)
    return rows


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def sql_rows(store, query: str):
    return [r.asDict(recursive=True) for r in store.sql(query).collect()]



