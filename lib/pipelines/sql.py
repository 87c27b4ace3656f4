"""The body of ``liftlake sql``: a query over the warehouse tables, printed as a table or JSON rows."""
from __future__ import annotations

import json
import sys


def print_query(store, query: str, as_json: bool = False, limit: int = 100, out=sys.stdout) -> list[dict]:
    df = store.sql(query)
    rows = [r.asDict(recursive=True) for r in df.limit(limit).collect()]
    if as_json:
        for row in rows:
            print(json.dumps(row, default=str, sort_keys=False), file=out)
    else:
        cols = df.columns
        widths = [max(len(c), *(len(_fmt(r[c])) for r in rows)) if rows else len(c) for c in cols]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths)), file=out)
        for r in rows:
            print("  ".join(_fmt(r[c]).ljust(w) for c, w in zip(cols, widths)), file=out)
    return rows


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
