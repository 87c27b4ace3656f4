"""The steps of the daily pipeline as library calls; jobs/ only parse arguments and call these."""
from __future__ import annotations

import logging

from liftlake.lib.features.raw_logs import TABLE_COMMENTS, raw_schemas
from liftlake.lib.log import log_commits

logger = logging.getLogger(__name__)


def simulate_days(ctx) -> list:
    """The simulator's 9 tables of each day of ``ctx.days``, computed in this process and committed
    together (a day that is re-run replaces its partitions). No Spark session starts for it on the
    embedded default (``JobContext.store_for_arrow_rows``). The per-exposure tables go to the store
    chunk by chunk as they are computed (``DayWriter``), so a day's size is not bounded by memory."""
    from liftlake.lib.sim.simulator import STREAMED_TABLES, TABLES, simulate_day

    shape = ctx.config.data.num_treatments, ctx.config.data.num_responses
    schemas = raw_schemas(*shape)
    store = ctx.store_for_arrow_rows
    with store.commit_together() as batch:
        for ds in ctx.days:
            writers = {table: store.day_writer(table, schemas[table], ds, comment=TABLE_COMMENTS.get(table))
                       for table in STREAMED_TABLES}
            try:
                tables = simulate_day(ctx.config.simulator, ds, *shape,
                                      sink=lambda table, index, rows: writers[table].add(index, rows))
                for table in TABLES:
                    res = (writers[table].finish() if table in writers else
                           store.write_day(tables[table], table, schemas[table], ds, comment=TABLE_COMMENTS.get(table)))
                    logger.info(f"simulate {ds}: {table} rows={res.rows} staged")
            finally:
                for writer in writers.values():
                    writer.discard()
    log_commits(logger, "simulate", batch.results)
    return batch.results
