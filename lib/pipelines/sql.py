"""The body of ``liftlake sql``: one read-only query over the warehouse tables, printed as a table or
as JSON rows. The engines and their rules are in lib/storage/readonly_sql.py."""
from __future__ import annotations

import json
import logging
import sys

from liftlake.lib.config import ConfigError, warehouse_path
from liftlake.lib.storage.readonly_sql import SqlRefused, check_spark_query, duckdb_query


def run(ctx) -> list[dict]:
    args, cfg = ctx.args, ctx.config.sql
    if not 1 <= args.limit <= cfg.max_rows:
        raise ConfigError(f"--limit {args.limit}: must be in [1, {cfg.max_rows}] (rule: sql.max_rows)")
    engine = args.engine or cfg.engine
    if engine == "duckdb":
        columns, rows = duckdb_query(warehouse_path(ctx.config), args.query, args.limit, args.as_of)
    else:
        if args.as_of:
            raise ConfigError("--as-of is the duckdb engine's; on --engine spark write VERSION AS OF N after "
                              "the table name in the query (select ... from scores.cvr VERSION AS OF 3)")
        columns, rows = spark_query(ctx, args.query, args.limit)
    return print_rows(columns, rows, args.json)


def spark_query(ctx, query: str, limit: int) -> tuple[list[str], list[tuple]]:
    """Check the statement on Spark's parsed plan, name the tables it reads in Spark's catalog (external
    Delta tables under their own names: the session needs the Delta jars), run it unchanged."""
    from pyspark.errors.exceptions.captured import CapturedException
    from pyspark.logger import PySparkLogger
    from pyspark.sql import SparkSession

    from liftlake.lib.storage.spark import delta_jar_folder, delta_jar_paths, has_delta_extension, owner_decides_delta

    needs = (f"--engine spark reads the warehouse's tables as Delta tables of Spark's catalog and needs the "
             f"Delta jars: none in {delta_jar_folder()}")
    if SparkSession.getActiveSession() is None and not owner_decides_delta() and not delta_jar_paths():
        raise ConfigError(f"{needs} (run `make setup` to fetch them)")  # before a JVM starts without them
    ctx.delta_jars_on_request = True
    if not has_delta_extension(ctx.spark):
        raise ConfigError(f"{needs}, and this Spark session has none (run `make setup`, or start it with them)")
    known = set(ctx.store.tables())
    statement = check_spark_query(ctx.spark, query, known)
    ctx.store.register_in_catalog(statement.tables)
    # pyspark logs each analysis error with its JVM stack trace to stderr; here it is the one line below
    context_logger = PySparkLogger.getLogger("SQLQueryContextLogger")
    level = context_logger.level
    context_logger.setLevel(logging.CRITICAL)
    try:
        df = ctx.spark.sql(query)
        if statement.kind == "ShowTables":  # the catalog may hold more in that database: the warehouse's
            rows = [tuple(r) for r in df.collect() if not r[2] and f"{r[0]}.{r[1]}".lower() in statement.tables]
        else:
            rows = [tuple(r) for r in df.limit(limit).collect()]
        columns = list(df.columns)
    except CapturedException as exc:  # Spark's analysis / runtime errors: a missing column, an absent version
        raise SqlRefused(f"sql: {(str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]}") from None
    finally:
        context_logger.setLevel(level)
    return columns, rows[:limit]


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
