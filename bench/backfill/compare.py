"""Step 4 of the backfill bench: is a backfilled day the same as its one-day run? Per table the daily
DAG writes and per day: row counts and order-independent row hashes in the two warehouses, the columns
that differ by design left out. tests/reliability/test_backfill_compare.py checks it on real tables."""
from __future__ import annotations

from typing import Iterable

from bench.backfill import log

# Columns that differ by design between two warehouses holding the same day.
EXCLUDED_COLUMNS = {
    "labels.escim_counterfactual": {
        "labeler_version": "a per-warehouse counter of fitted labelers (v0001, v0002, ...): the backfill's "
                           "warehouse holds one labeler per day, a one-day warehouse one in all",
    },
}
# Tables the daily DAG writes (a prefix ends with '.'); anything else found is compared as well.
DAILY_TABLE_PREFIXES = ("raw.", "sim.", "features.", "ops.quarantine", "labels.", "scores.")


def fingerprint(df, exclude: Iterable[str] = ()) -> dict:
    """Order-independent fingerprint of a DataFrame: its row count, the sum over rows of a 64-bit hash
    of every column (nulls marked, so ``(null, x)`` and ``(x, null)`` differ) and the same sum per
    column. Equal multisets of rows give equal fingerprints whatever their order or partitioning."""
    from pyspark.sql import functions as F

    excluded = set(exclude)
    cols = sorted(c for c in df.columns if c not in excluded)
    parts = []
    for c in cols:
        parts += [F.col(c), F.col(c).isNull()]
    exact = "decimal(38,0)"  # a sum of 64-bit hashes overflows a long; decimal(38,0) holds it exactly
    aggs = [F.count(F.lit(1)).alias("__rows"),
            F.coalesce(F.sum(F.xxhash64(*parts).cast(exact)), F.lit(0).cast(exact)).alias("__row_hash")]
    aggs += [F.coalesce(F.sum(F.xxhash64(F.col(c), F.col(c).isNull()).cast(exact)), F.lit(0).cast(exact))
             .alias(f"__col{i}") for i, c in enumerate(cols)] if cols else []
    row = df.agg(*aggs).collect()[0]
    return {"rows": int(row["__rows"]), "hash": str(row["__row_hash"]),
            "columns": {c: str(row[f"__col{i}"]) for i, c in enumerate(cols)},
            "schema": {f.name: f.dataType.simpleString() for f in df.schema.fields if f.name not in excluded}}


def compare_fingerprints(a: dict | None, b: dict | None) -> dict:
    """``match`` and, when they differ, why: a side missing, schema, row count, and which columns."""
    if a is None or b is None:
        return {"match": a is None and b is None, "reason": "missing in " + ("backfill" if a is None else "reference")
                if (a is None) != (b is None) else "", "columns": []}
    reasons, cols = [], []
    if a["schema"] != b["schema"]:
        reasons.append("schema differs")
    if a["rows"] != b["rows"]:
        reasons.append(f"rows {a['rows']} vs {b['rows']}")
    if a["hash"] != b["hash"]:
        cols = sorted(c for c in set(a["columns"]) | set(b["columns"]) if a["columns"].get(c) != b["columns"].get(c))
        reasons.append("content differs" + (f" in {', '.join(cols)}" if cols else " (same column sums: rows recombined)"))
    return {"match": not reasons, "reason": "; ".join(reasons), "columns": cols}


def table_fingerprint(store, table: str, ds: str | None, exclude: Iterable[str] = ()) -> dict | None:
    """Fingerprint of one day (``ds`` partition) of a table in a store, or None when the table or the
    partition is not there."""
    if not store.exists(table):
        return None
    if ds is not None:
        if ds not in store.partition_counts(table):
            return None
        df = store.read(table, partitions=[ds])
    else:
        df = store.read(table)
    return fingerprint(df, exclude)


def compare_table(store_a, store_b, table: str, ds: str | None, exclude: Iterable[str] = ()) -> dict:
    """One table's day in two warehouses: rows on each side, fingerprints, match and the reason."""
    exclude = sorted(exclude)
    fa, fb = table_fingerprint(store_a, table, ds, exclude), table_fingerprint(store_b, table, ds, exclude)
    out = {"table": table, "ds": ds, "rows_a": fa["rows"] if fa else None, "rows_b": fb["rows"] if fb else None,
           "hash_a": fa["hash"] if fa else None, "hash_b": fb["hash"] if fb else None, "excluded": exclude}
    out.update(compare_fingerprints(fa, fb))
    return out


def daily_tables(*stores) -> list[str]:
    names = set()
    for store in stores:
        names |= set(store.tables())
    return sorted(n for n in names if n.startswith(DAILY_TABLE_PREFIXES))


def compare_days(spark, backfill_wh: str, references: dict) -> dict:
    from liftlake.lib.storage.store import DeltaRsStore

    a = DeltaRsStore(spark, backfill_wh)
    out = {}
    for ds, ref in references.items():
        b = DeltaRsStore(spark, ref["warehouse"])
        rows = []
        for table in daily_tables(a, b):
            res = compare_table(a, b, table, ds, EXCLUDED_COLUMNS.get(table, {}).keys())
            rows.append(res)
        out[ds] = rows
        bad = [r for r in rows if not r["match"]]
        log(f"compare {ds}: {len(rows)} tables, {len(bad)} mismatch" +
            (": " + "; ".join(f"{r['table']} ({r['reason']})" for r in bad) if bad else ""))
    return out
