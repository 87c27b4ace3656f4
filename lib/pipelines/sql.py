"""The body of ``liftlake sql``: one read-only query over the warehouse tables, printed as a table or
as JSON rows. The engines and their rules are in lib/storage/readonly_sql.py."""
from __future__ import annotations

import json
import sys

from liftlake.lib.config import ConfigError, warehouse_path
from liftlake.lib.storage.readonly_sql import check_spark_query, duckdb_query


def run(ctx) -> list[dict]:
    args, cfg = ctx.args, ctx.config.sql
    if not 1 <= args.limit <= cfg.max_rows:
        raise ConfigError(f"--limit {args.limit}: must be in [1, {cfg.max_rows}] (rule: sql.max_rows)")
    engine = args.engine or cfg.engine
    if engine == "duckdb":
        columns, rows = duckdb_query(warehouse_path(ctx.config), args.query, args.limit, args.as_of)
    else:
        if args.as_of:
            raise ConfigError("--as-of reads a Delta version through the duckdb engine; drop --engine spark")
        check_spark_query(ctx.spark, args.query, set(ctx.store.tables()))
        df = ctx.store.sql(args.query)
        columns, rows = df.columns, [tuple(r) for r in df.limit(args.limit).collect()]
    return print_rows(columns, rows, args.json)


def print_rows(columns: list[str], rows: list[tuple], as_json: bool = False, out=None) -> list[dict]:
    out = out or sys.stdout  # read when called: a default bound at import outlives a swapped stdout
    records = [dict(zip(columns, row)) for row in rows]
    if as_json:
        for record in records:
            print(json.dumps(record, default=str, sort_keys=False), file=out)
        return records
    widths = [max(len(c), *(len(_fmt(r[i])) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)), file=out)
    for row in rows:
        print("  ".join(_fmt(v).ljust(w) for v, w in zip(row, widths)), file=out)
    return records


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
