"""The quickstart: every step of the daily pipeline on the embedded default, then a look at the result."""
from __future__ import annotations

import dataclasses
import logging

from liftlake.lib.cli.runner import JobContext
from liftlake.lib.config import load_config
from liftlake.lib.pipelines.build_features import build_features_days
from liftlake.lib.pipelines.escim_labels import escim_labels
from liftlake.lib.pipelines.score import score_days
from liftlake.lib.pipelines.simulate import simulate_days
from liftlake.lib.pipelines.sql import print_rows
from liftlake.lib.pipelines.tables import print_tables
from liftlake.lib.pipelines.train import train
from liftlake.lib.storage.readonly_sql import duckdb_query

logger = logging.getLogger(__name__)

SHOWCASE_QUERIES = [
    """select s.ds, s.model, s.version, count(*) as exposures, round(avg(s.cvr), 4) as mean_cvr_pred,
       round(avg(t.cvr_do_click_true), 4) as mean_cvr_true
from scores.cvr s join sim.truth t on s.exposure_id = t.exposure_id and s.ds = t.ds
group by s.ds, s.model, s.version order by s.ds""",
    """select model, coupon_value, count(*) as users, round(avg(unit_uplift), 5) as mean_unit_uplift,
       round(sum(expected_gain), 2) as expected_extra_outcomes
from scores.uplift_user where unit_uplift is not null group by model, coupon_value order by coupon_value""",
]


def run_quickstart(ctx) -> int:
    q = ctx.config.quickstart
    logger.info(f"quickstart on {ctx.days[0]}..{ctx.days[-1]} into {ctx.store.root}")
    simulate_days(ctx)
    build_features_days(ctx)
    escim_labels(ctx)
    last = ctx.days[-1]
    trained = []
    for name in q.models:
        overrides = list(ctx.args.overrides) + [f"model.name={name}", f"train.launcher={q.launcher}",
                                                f"train.num_processes={q.num_processes}", f"train.epochs={q.epochs}"]
        model_ctx = JobContext(name="train", config=load_config(ctx.args.conf, overrides),
                               args=ctx.args, days=[last], _spark=ctx.spark, _store=ctx.store)
        logger.info(f"training {name} with {q.launcher} x{q.num_processes}")
        summary = train(model_ctx, last)
        trained.append((name, summary["version"]))
    for name, version in trained:
        score_ctx = dataclasses.replace(ctx, days=[last])
        score_days(score_ctx, only_model=name, version=version)
    print("\n== tables ==")
    print_tables(ctx.store)
    for query in SHOWCASE_QUERIES:
        print("\n== SQL ==\n" + query)
        print_rows(*duckdb_query(ctx.store.root, query, limit=20))
    return 0
