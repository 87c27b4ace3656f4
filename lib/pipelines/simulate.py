"""The steps of the daily pipeline as library calls; jobs/ only parse arguments and call these."""
from __future__ import annotations

import logging

from liftlake.lib.features.raw_logs import TABLE_COMMENTS, raw_schemas
from liftlake.lib.log import log_commits

logger = logging.getLogger(__name__)


def simulate_days(ctx) -> list:
    """The simulator's 9 tables of each day of ``ctx.days``, computed in this process and committed
    together (a day that is re-run replaces its partitions). No Spark session starts for it on the
    embedded default (``JobContext.store_for_arrow_rows``)."""
    from liftlake.lib.sim.simulator import simulate_day

    shape = ctx.config.data.num_treatments, ctx.config.data.num_responses
    schemas = raw_schemas(*shape)
    store = ctx.store_for_arrow_rows
    with store.commit_together() as batch:
        for ds in ctx.days:
            tables = simulate_day(ctx.config.simulator, ds, *shape)
            for table, rows in tables.items():
                res = store.write_day(rows, table, schemas[table], ds, comment=TABLE_COMMENTS.get(table))
                logger.info(f"simulate {ds}: {table} rows={res.rows} staged")
    log_commits(logger, "simulate", batch.results)
    return batch.results
