"""Read-only SQL over the warehouse's Delta tables (``liftlake sql``).

Two engines, both read-only by construction rather than by string matching:

* ``duckdb`` (the default): an in-memory DuckDB with each platform table attached as a view
  ``namespace.table`` over the Parquet files of its Delta snapshot (read from the Delta log by
  delta-rs, optionally as of a version). Before the user's statement runs, external access is switched
  off and the configuration locked, so the statement can read no file, attach no database, load no
  extension and change no setting; and DuckDB's own parser must classify it as one SELECT (which
  covers WITH, SHOW, DESCRIBE, SUMMARIZE) or EXPLAIN.
* ``spark``: Spark SQL, for queries that need Spark's dialect. Spark's parser (Delta's, in a session
  with the Delta jars) turns the statement into a logical plan, and the plan must be a query: no
  command node anywhere (writes, DDL, SET, ADD FILE, CACHE, VACUUM, RESTORE ...), every relation one
  of the platform's tables (no ``text.`/etc/passwd```, no ``delta.`/path```, no file or path source,
  no table-valued function) and no JVM reflection function; or EXPLAIN of such a query, SHOW TABLES
  IN a platform namespace, SHOW COLUMNS / DESCRIBE [HISTORY | DETAIL] of a platform table. The
  tables it reads are then named in Spark's catalog as themselves (external Delta tables,
  ``TableStore.register_in_catalog``) and the statement runs unchanged.
A refused statement raises ``SqlRefused`` (exit 2) naming the rule.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
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
    "RelationTimeTravel",  # scores.cvr VERSION AS OF 3 (its relation is checked as any other)
})
# SHOW / DESCRIBE of one table (the top node; its one child names the table)
SPARK_TABLE_METADATA = frozenset({
    "DescribeRelation", "DescribeColumn", "ShowColumns", "DescribeDeltaHistory", "DescribeDeltaDetailCommand",
})
SPARK_REFLECTION = frozenset({"java_method", "reflect", "try_reflect"})


class SqlRefused(TableError):
    """A statement the read-only SQL surface does not run (one line: the rule it breaks)."""


class MissingDataFile(Exception):
    """A Parquet file the table's snapshot lists is not on disk (deleted by hand, a failed copy)."""


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
    try:  # the dataset looks up every file once: a missing one is named here, not as a log error
        return pds.dataset(files, schema=data_schema, format="parquet",
                           partitioning=pds.partitioning(part_schema, flavor="hive") if parts else None,
                           partition_base_dir=path)
    except FileNotFoundError as exc:
        gone = str(exc).strip().splitlines()[0] if str(exc).strip() else "a listed file"
        raise MissingDataFile(f"a data file its Delta log lists is gone: "
                              f"{os.path.relpath(gone, path) if os.path.isabs(gone) else gone}") from None


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
    unreadable: dict[str, str] = {}
    for name in tables:
        namespace, table = name.split(".")
        version = per_table.get(name, everywhere)
        try:
            dataset = _delta_dataset(store.path(name), version)
        except Exception as exc:  # noqa: BLE001 - a version the table does not have, a broken log
            if version is not None or name in per_table:
                raise SqlRefused(f"table {name}: cannot read version {version} ({_first_line(exc)})") from None
            # not attached: a query of the other tables still runs, one of this table says why it fails
            what = "its snapshot is incomplete" if isinstance(exc, MissingDataFile) else "cannot read its Delta log"
            unreadable[name] = f"table {name}: {what} ({_first_line(exc)})"
            continue
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
        for name, why in unreadable.items():
            if isinstance(exc, duckdb.CatalogException) and name.split(".")[1] in str(exc):
                raise TableError(why) from None
        raise SqlRefused(f"sql: {_first_line(exc)}") from None
    finally:
        con.close()
    return columns, rows


@dataclass(frozen=True)
class SparkStatement:
    """What ``check_spark_query`` found: the statement's top node and the platform tables it reads
    (those to name in Spark's catalog; for ``SHOW TABLES IN ns``, the namespace's tables)."""
    kind: str
    tables: frozenset[str]


def check_spark_query(spark, query: str, known_tables: set[str], parser=None) -> SparkStatement:
    """Refuse anything but a read-only query over the platform's tables, judged on Spark's parsed plan:
    a query (its relations platform tables, ``VERSION AS OF`` allowed), ``EXPLAIN`` of one, ``SHOW TABLES
    IN`` a platform namespace, a ``SHOW`` / ``DESCRIBE`` of a platform table, or ``USE`` of a platform
    namespace or ``default`` (what a JDBC client sends when it opens a session). ``parser``: the JVM
    parser to parse with (default: the session's; the sql-server's guard passes the one its own
    guarded parser wraps)."""
    if parser is None:
        parser = spark._jsparkSession.sessionState().sqlParser()  # noqa: SLF001 - not exposed to Python
    try:
        plan = parser.parsePlan(query)
    except Exception as exc:  # noqa: BLE001 - py4j wraps Spark's ParseException
        message = str(exc).split("\n")[0].split(": ", 1)[-1] or "syntax error"
        raise SqlRefused(f"sql: cannot parse the statement ({message[:200]})") from None
    kind = plan.getClass().getSimpleName()
    if kind == "ExplainCommand":  # its query is a field, not a child: checked as a query
        return SparkStatement(kind, _check_spark_plan(plan.logicalPlan(), known_tables))
    if kind == "ShowTables":
        namespace = plan.namespace()  # UnresolvedNamespace of SHOW TABLES IN ns, else CurrentNamespace
        parts = (_identifier(namespace.multipartIdentifier())
                 if namespace.getClass().getSimpleName() == "UnresolvedNamespace" else [])
        spaces = {name.split(".")[0] for name in known_tables}
        if len(parts) != 1 or parts[0].lower() not in spaces:
            raise SqlRefused(f"sql: SHOW TABLES needs IN one of the warehouse's namespaces {sorted(spaces)} "
                             f"(rule: SHOW / DESCRIBE of the platform's tables only)")
        return SparkStatement(kind, frozenset(n for n in known_tables if n.split(".")[0] == parts[0].lower()))
    if kind == "SetCatalogAndNamespace":
        namespace = plan.child()
        parts = (_identifier(namespace.multipartIdentifier())
                 if namespace.getClass().getSimpleName() == "UnresolvedNamespace" else [])
        spaces = {name.split(".")[0] for name in known_tables} | {"default"}
        if len(parts) != 1 or parts[0].lower() not in spaces:
            raise SqlRefused(f"sql: USE {'.'.join(parts)} is not allowed (rule: USE one of the warehouse's "
                             f"namespaces {sorted(spaces)})")
        return SparkStatement(kind, frozenset())
    if kind in SPARK_TABLE_METADATA:
        target = plan.children().apply(0)
        parts = (_identifier(target.multipartIdentifier())
                 if target.getClass().getSimpleName() in ("UnresolvedTableOrView", "UnresolvedTable") else [])
        name = ".".join(parts).lower()
        if len(parts) != 2 or name not in known_tables:
            shown = ".".join(parts) or target.getClass().getSimpleName()
            raise SqlRefused(f"sql: {shown} is not a table of the warehouse (rule: SHOW / DESCRIBE of the "
                             f"platform's tables only, namespace.table of `liftlake tables`)")
        expressions = plan.expressions()
        for i in range(expressions.size()):
            _check_spark_expression(expressions.apply(i))
        return SparkStatement(kind, frozenset({name}))
    return SparkStatement(kind, _check_spark_plan(plan, known_tables))


def _identifier(ident) -> list[str]:
    return [str(ident.apply(i)) for i in range(ident.size())]


def _check_spark_plan(plan, known_tables: set[str]) -> frozenset[str]:
    """The platform tables a query reads; SqlRefused at its first node that is not a query's."""
    read: set[str] = set()
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
            parts = _identifier(node.multipartIdentifier())
            name = ".".join(parts).lower()
            if len(parts) == 1 and name in cte_names:
                pass
            elif len(parts) != 2 or name not in known_tables:
                raise SqlRefused(f"sql: {'.'.join(parts)} is not a table of the warehouse (rule: namespace.table "
                                 f"of `liftlake tables`, no file or path sources)")
            else:
                read.add(name)
        if kind == "RelationTimeTravel":  # a leaf node: its relation is a field, checked as any relation
            stack.append(node.relation())
        expressions = node.expressions()
        for i in range(expressions.size()):
            _check_spark_expression(expressions.apply(i))
        children = node.children()
        stack.extend(children.apply(i) for i in range(children.size()))
        for nested in (node.innerChildren(), node.subqueries()):  # CTE definitions, subqueries in expressions
            stack.extend(nested.apply(i) for i in range(nested.size()))
    return frozenset(read)


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

