"""The pipeline section of bench.run: simulate + build-features of one day at a size, the ESCIM label
step on it with its own peak memory, and the same feature SQL in DuckDB over the same Parquet files."""
from __future__ import annotations

import os
import shutil

from bench.run.common import PeakRSS, day_files, job_context, timed

DUCKDB_FEATURE_SQL = """
with e as (
  select * from (select *, row_number() over (partition by exposure_id order by ts, user_id) as rn
                 from read_parquet({exposures}) where user_id is not null and item_id is not null) where rn = 1
), c as (select distinct exposure_id from read_parquet({clicks})),
   v as (select distinct exposure_id from read_parquet({conversions}))
select e.exposure_id, e.user_id, e.item_id,
       (hash(cast(e.user_id as varchar)) % 4096) + 1 as f_user_id,
       (hash(cast(e.item_id as varchar)) % 2048) + 1 as f_item_id,
       u.u_gender, u.u_city, u.u_segment, u.u_age, u.u_activity, u.u_income,
       i.i_category, i.i_brand, i.i_price, e.device, e.hour, e.position,
       case when c.exposure_id is null then 0 else 1 end as click,
       case when v.exposure_id is null then 0 else 1 end as conversion
from e left join read_parquet({users}) u on e.user_id = u.user_id
       left join read_parquet({items}) i on e.item_id = i.item_id
       left join c on e.exposure_id = c.exposure_id
       left join v on e.exposure_id = v.exposure_id
"""


def bench_pipeline(spark, size: int, ds: str, root: str) -> dict:
    from liftlake.lib.pipelines.build_features import build_features_days
    from liftlake.lib.pipelines.escim_labels import escim_labels
    from liftlake.lib.pipelines.simulate import simulate_days

    warehouse = os.path.join(root, f"wh-{size}")
    shutil.rmtree(warehouse, ignore_errors=True)
    ctx = job_context(warehouse, [f"simulator.exposures={size}"], [ds], spark)
    out: dict = {"exposures": size}
    with PeakRSS() as mem:
        with timed(out, "simulate_s"):
            simulate_days(ctx)
        with timed(out, "build_features_s"):
            build_features_days(ctx)
    out["peak_rss_mib"] = round(mem.peak)
    out["simulate_rows_per_s"] = size / out["simulate_s"]
    out["build_features_rows_per_s"] = size / out["build_features_s"]
    out["both_rows_per_s"] = size / (out["simulate_s"] + out["build_features_s"])
    # the DAG's next step; its driver holds at most escim_labels.max_fit_rows rows of the day
    with PeakRSS() as mem:
        with timed(out, "escim_labels_s"):
            escim_labels(ctx)
    out["escim_labels_peak_rss_mib"] = round(mem.peak)
    out["escim_labels_worker_peak_rss_mib"] = round(mem.worker_peak)
    out["escim_labels_fit_rows"] = min(size, ctx.config.escim_labels.max_fit_rows)
    try:
        import duckdb
    except ImportError:
        out["duckdb_s"] = None
        return out
    store = ctx.store

    def files(table):
        return "[" + ", ".join(f"'{path}'" for path in day_files(store.path(table))) + "]"

    sql = DUCKDB_FEATURE_SQL.format(exposures=files("raw.exposures"), clicks=files("raw.clicks"),
                                    conversions=files("raw.conversions"), users=files("raw.users"),
                                    items=files("raw.items"))
    con = duckdb.connect()
    con.execute("set threads to 2")
    target = os.path.join(root, f"duck-{size}.parquet")
    with timed(out, "duckdb_s"):
        con.execute(f"copy ({sql}) to '{target}' (format parquet)")
    out["duckdb_rows"] = con.execute(f"select count(*) from read_parquet('{target}')").fetchall()[0][0]
    out["duckdb_rows_per_s"] = size / out["duckdb_s"]
    out["spark_vs_duckdb"] = out["duckdb_s"] / out["build_features_s"]
    return out
