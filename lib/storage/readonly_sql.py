"""Read-only SQL over the warehouse's Delta tables (``liftlake sql``).

Two engines, both read-only by construction rather than by string matching:

* ``duckdb`` (the default): an in-memory DuckDB with each platform table attached as a view
  ``namespace.table`` over the Parquet files of its Delta snapshot (read from the Delta log by
  delta-rs, optionally as of a version). Before the user's statement runs, external access is switched
  off and the configuration locked, so the statement can read no file, attach no database, load no
  extension and change no setting; and DuckDB's own parser must classify it as one SELECT (which
  covers WITH, SHOW, DESCRIBE, SUMMARIZE) or EXPLAIN.
* ``spark``: Spark SQL, for queries that need Spark's dialect. Spark's parser turns the statement
  into a logical plan, and the plan must be a query: no command node anywhere (writes, DDL, SET,
  ADD FILE, CACHE ...), every relation one of the platform's tables (no ``text.`/etc/passwd```, no
  file or path source, no table-valued function) and no JVM reflection function.
A refused statement raises ``SqlRefused`` (exit 2) naming the rule.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from liftlake.lib.storage.store import DeltaRsStore, TableError

ALLOWED_DUCKDB_TYPES = ("SELECT", "EXPLAIN")
# Spark logical-plan nodes a read-only query may hold (Catalyst class names, unresolved as parsed)
SPARK_QUERY_NODES = frozenset({
    "Project", "Filter", "Aggregate", "Sort", "GlobalLimit", "LocalLimit", "Offset", "Distinct",
    "Deduplicate", "Union", "Intersect", "Except", "Join", "SubqueryAlias", "UnresolvedWith", "WithCTE",
    "CTERelationDef", "CTERelationRef", "Window", "Expand", "Generate", "UnresolvedRelation", "OneRowRelation",
    "UnresolvedInlineTable", "LocalRelation", "Tail", "Sample", "RepartitionByExpression", "Pivot",
    "UnresolvedHaving", "Subquery", "LateralJoin", "UnresolvedSubqueryColumnAliases",
})
SPARK_REFLECTION = frozenset({"java_method", "reflect", "try_reflect"})


class SqlRefused(TableError):
    """A statement the read-only SQL surface does not run (one line: the rule it breaks)."""


def _delta_dataset(path: str, version: int | None):
    """A pyarrow dataset over the Parquet files of the table's snapshot (Hive partition columns)."""
    import pyarrow as pa
    import pyarrow.dataset as pds
    from deltalake import DeltaTable

    table = DeltaTable(path, version=version) if version is not None else DeltaTable(path)
    parts = table.metadata().partition_columns
    arrow = pa.schema(table.schema().to_arrow())
    files = [u[len("file://"):] if u.startswith("file://") else u for u in table.file_uris()]
    part_schema = pa.schema([arrow.field(p) for p in parts])
    data_schema = pa.schema([f for f in arrow if f.name not in parts] + list(part_schema))
    return pds.dataset(files, schema=data_schema, format="parquet",
                       partitioning=pds.partitioning(part_schema, flavor="hive") if parts else None,
                       partition_base_dir=path)


def parse_as_of(items: Sequence[str]) -> tuple[int | None, dict[str, int]]:
    """``--as-of N`` (every table at version N) and ``--as-of namespace.table=N`` (that table)."""
    everywhere, per_table = None, {}
    for item in items:
        name, sep, text = item.rpartition("=")
        if not re.fullmatch(r"[0-9]{1,12}", text):
            raise SqlRefused(f"--as-of {item}: expected VERSION or namespace.table=VERSION (a version number)")
        if sep:
            per_table[name] = int(text)
        else:
            everywhere = int(text)
    return everywhere, per_table


def _arrow_view_type_checks() -> None:
    """DuckDB 2 pushes a WHERE filter into the pyarrow dataset scan after asking
    ``pyarrow.types.is_string_view`` / ``is_binary_view`` / ``is_list_view`` / ``is_large_list_view``
    about each column; those arrived with the view types in pyarrow 16. The pinned pyarrow (14, for
    Petastorm) has no view types, so for it the answer is always False; without these every
    filtered query fails with AttributeError."""
    import pyarrow.types as pat

    for name in ("is_string_view", "is_binary_view", "is_list_view", "is_large_list_view"):
        if not hasattr(pat, name):
            setattr(pat, name, lambda _type: False)


def duckdb_query(root: str, query: str, limit: int, as_of: Sequence[str] = ()) -> tuple[list[str], list[tuple]]:
    """Run one read-only statement in a locked in-memory DuckDB; (column names, its first ``limit`` rows)."""
    import duckdb

    _arrow_view_type_checks()

    everywhere, per_table = parse_as_of(as_of)
    store = DeltaRsStore(None, root)
    tables = store.tables()
    unknown = sorted(set(per_table) - set(tables))
    if unknown:
        raise SqlRefused(f"--as-of names {unknown}, not tables of the warehouse {root}")
    con = duckdb.connect(":memory:")
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise SqlRefused(f"sql: cannot parse the statement as DuckDB SQL ({_first_line(exc)}; "
                         f"--engine spark reads Spark's dialect)") from None
    if len(statements) != 1:
        raise SqlRefused(f"sql: {len(statements)} statements; give exactly one (rule: one read-only query)")
    kind = str(statements[0].type).rsplit(".", 1)[-1]
    if kind not in ALLOWED_DUCKDB_TYPES:
        raise SqlRefused(f"sql: a {kind} statement is not allowed (rule: read-only, SELECT / WITH / SHOW / "
                         f"DESCRIBE / EXPLAIN only)")
    for name in tables:
        namespace, table = name.split(".")
        version = per_table.get(name, everywhere)
        try:
            dataset = _delta_dataset(store.path(name), version)
        except Exception as exc:  # noqa: BLE001 - a version the table does not have, a broken log
            if version is not None or name in per_table:
                raise SqlRefused(f"table {name}: cannot read version {version} ({_first_line(exc)})") from None
            raise TableError(f"table {name}: cannot read its Delta log ({_first_line(exc)})") from None
        view = f"{namespace}__{table}"
        con.register(view, dataset)
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{namespace}"')
        con.execute(f'CREATE VIEW "{namespace}"."{table}" AS SELECT * FROM "{view}"')
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    try:
        result = con.execute(query)
        columns = [d[0] for d in result.description or []]
        rows = result.fetchmany(limit)
    except duckdb.Error as exc:
        raise SqlRefused(f"sql: {_first_line(exc)}") from None
    finally:
        con.close()
    return columns, rows


def check_spark_query(spark, query: str, known_tables: set[str]) -> None:
    """Refuse anything but a read-only query over the platform's tables, judged on Spark's parsed plan."""
    jvm_session = spark._jsparkSession  # noqa: SLF001 - the parser is not exposed to Python
    try:
        plan = jvm_session.sessionState().sqlParser().parsePlan(query)
    except Exception as exc:  # noqa: BLE001 - py4j wraps Spark's ParseException
        message = str(exc).split("\n")[0].split(": ", 1)[-1] or "syntax error"
        raise SqlRefused(f"sql: cannot parse the statement ({message[:200]})") from None
    stack: list[Any] = [plan]
    cte_names: set[str] = set()  # WITH a AS (...): `a` is a relation of the query, not a table
    while stack:
        node = stack.pop()
        kind = node.getClass().getSimpleName()
        if kind not in SPARK_QUERY_NODES:
            raise SqlRefused(f"sql: a {kind} is not allowed (rule: read-only queries over the platform's "
                             f"tables only)")
        if kind == "UnresolvedWith":
            relations = node.cteRelations()
            cte_names.update(str(relations.apply(i)._1()).lower() for i in range(relations.size()))
        if kind == "UnresolvedRelation":
            ident = node.multipartIdentifier()
            parts = [str(ident.apply(i)) for i in range(ident.size())]
            name = ".".join(parts).lower()
            if len(parts) == 1 and name in cte_names:
                pass
            elif len(parts) != 2 or name not in known_tables:
                raise SqlRefused(f"sql: {'.'.join(parts)} is not a table of the warehouse (rule: namespace.table "
                                 f"of `liftlake tables`, no file or path sources)")
        expressions = node.expressions()
        for i in range(expressions.size()):
            _check_spark_expression(expressions.apply(i))
        children = node.children()
        stack.extend(children.apply(i) for i in range(children.size()))
        for nested in (node.innerChildren(), node.subqueries()):  # CTE definitions, subqueries in expressions
            stack.extend(nested.apply(i) for i in range(nested.size()))


def _check_spark_expression(expr) -> None:
    stack = [expr]
    while stack:
        e = stack.pop()
        kind = e.getClass().getSimpleName()
        if kind == "UnresolvedFunction":
            name = str(e.nameParts().last()).lower()
            if name in SPARK_REFLECTION:
                raise SqlRefused(f"sql: function {name} is not allowed (rule: no JVM reflection)")
        children = e.children()
        stack.extend(children.apply(i) for i in range(children.size()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]

