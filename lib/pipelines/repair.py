"""The body of ``liftlake repair``: finish the table batches of jobs that died inside their commit
loop (the manifests under ``<warehouse>/_commits/``; lib/storage/store.py ``repair``). Every job
that writes tables does the same before its own commits; this is the command for doing it by hand
(after an outage, before analysts read)."""
from __future__ import annotations

import logging

from liftlake.lib.config import warehouse_path

logger = logging.getLogger(__name__)


def run(ctx) -> list[str]:
    from liftlake.lib.storage.store import DeltaRsStore

    lines = DeltaRsStore(None, warehouse_path(ctx.config)).repair()  # Delta logs and files: no Spark
    logger.info(f"repair: {len(lines)} half-committed batch(es) finished")
    return lines
