"""The steps of the daily pipeline as library calls; jobs/ only parse arguments and call these."""
from __future__ import annotations

import logging

from liftlake.lib.features.raw_logs import TABLE_COMMENTS
from liftlake.lib.log import log_commits

logger = logging.getLogger(__name__)


def simulate_days(ctx) -> list:
    from liftlake.lib.sim.simulator import simulate_day

    with ctx.store.commit_together() as batch:
        for ds in ctx.days:
            # cached: the day's exposures are computed once, not once per table derived from them
            frames = simulate_day(ctx.spark, ctx.config.simulator, ds, cache=True,
                                  num_treatments=ctx.config.data.num_treatments,
                                  num_responses=ctx.config.data.num_responses)
            try:
                for table, df in frames.items():
                    res = ctx.store.write(df, table, mode="overwrite_partitions", partition_values=[ds],
                                          comment=TABLE_COMMENTS.get(table))
                    logger.info(f"simulate {ds}: {table} rows={res.rows} staged")
            finally:
                frames.unpersist()
    log_commits(logger, "simulate", batch.results)
    return batch.results


