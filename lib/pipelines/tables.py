"""The body of ``liftlake tables``: every table in the warehouse with its version and rows per partition.

On the delta-rs backend the answer comes from the Delta logs alone, so no Spark session is started."""
from __future__ import annotations

import json
import sys


def run(ctx) -> list[dict]:
    from liftlake.lib.config import warehouse_path
    from liftlake.lib.storage.store import DeltaRsStore

    store = ctx.store if ctx.config.warehouse.backend == "delta-spark" else DeltaRsStore(None, warehouse_path(ctx.config))
    return print_tables(store, ctx.args.json)


def print_tables(store, as_json: bool = False, out=None) -> list[dict]:
    from liftlake.lib.storage.store import TableError

    out = out or sys.stdout  # read when called, not at import
    # a table whose log cannot be read is named at the end (exit 2); the others are still listed
    infos, unreadable = [], []
    for name in store.tables():
        try:
            infos.append(store.table_info(name))
        except TableError as exc:
            unreadable.append(str(exc))
    for info in infos:
        if as_json:
            print(json.dumps(info, sort_keys=True), file=out)
        else:
            parts = ", ".join(f"{k}={v}" for k, v in info["rows_per_partition"].items())
            print(f"{info['name']:<32} v{info['version']:<4} by {info['partition_column']}: {parts}", file=out)
    if unreadable:
        more = f" (and {len(unreadable) - 1} more unreadable table(s))" if len(unreadable) > 1 else ""
        raise TableError(unreadable[0] + more)
    return infos
