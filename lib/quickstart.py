"""The quickstart: every step of the daily pipeline on the embedded default, then a look at the result."""
from __future__ import annotations

from liftlake.lib.pipeline import build_features_days, log, print_query, print_tables, simulate_days

SHOWCASE_QUERY = """
select ds, count(*) as exposures, round(avg(click), 4) as ctr,
       round(sum(conversion) / greatest(sum(click), 1), 4) as cvr_on_clicks
from features.samples group by ds order by ds
"""


def run_quickstart(ctx) -> int:
    log(f"quickstart on {ctx.days[0]}..{ctx.days[-1]} into {ctx.store.root}")
    simulate_days(ctx)
    build_features_days(ctx)
    print("\n== tables ==")
    print_tables(ctx.store)
    print("\n== SQL ==" + SHOWCASE_QUERY)
    print_query(ctx.store, SHOWCASE_QUERY)
    return 0
