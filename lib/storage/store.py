"""The table store: every table liftlake reads or writes, by name, as a Delta table.

Two backends share one interface (``read``, ``write``, ``history``, ``vacuum``, ``tables``, and
``register_in_catalog``: each table named in Spark's catalog as itself, for Spark SQL):

* ``DeltaRsStore`` (the embedded default): Spark writes Parquet in parallel into a staging folder
  inside the table; the driver moves the files into their partition folders, reads their footers
  (row counts, null counts, min / max) and commits them in ONE Delta transaction through delta-rs.
  A partition overwrite commits the removes of the old files in that same transaction. Readers see
  all of a write or none of it; a write that dies before its commit leaves only unreferenced files,
  which ``vacuum`` removes. Inside ``store.commit_together()`` (every job that writes tables) the
  commits wait until the job's last table is staged and are made one after the other at its end:
  a job that fails while computing leaves every table as before, and a commit that fails there
  has the job's earlier commits undone (their partitions get their old files back).
* ``DeltaSparkStore`` (a session with the Delta jars: ``warehouse.backend: delta-spark``, or a cluster
  that ships delta-spark): Spark's own Delta writer, ``replaceWhere`` for a partition overwrite,
  Delta's optimistic concurrency (a conflicting commit is retried a bounded number of times, then
  fails loudly). Outside ``commit_together()`` a write is one Delta write. Inside it a write is
  staged as Parquet in ``_staging/<txn>`` (the computation runs there, as above) and committed at
  the block's end by a Delta write of the staged files: public delta-spark has no way to commit
  files written earlier, so this costs a copy of the staged rows, and buys the same all-or-nothing
  block, manifest, undo and ``repair`` as the delta-rs store (both backends share that code).

Both write the same Delta tables (the protocol, partition layout and the ``liftlake.txn`` of each
commit), so either backend, delta-rs or any other Delta reader reads what the other wrote.

Table names are ``<namespace>.<table>`` in ``[a-z0-9_]``; a name is a folder under the warehouse, so
nothing else is accepted (no path or SQL escapes through a name).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:  # Spark is imported where a method needs it: the Delta log alone answers `liftlake tables`
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

logger = logging.getLogger(__name__)

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
PARTITION_VALUE = re.compile(r"^[A-Za-z0-9_\-:.]+$")
# Set to a table name to make the store die between moving its files and committing them
# (fault-injection tests; "exit" kills the process, anything else raises).
FAULT_ENV = "LIFTLAKE_FAULT_BEFORE_COMMIT"
FAULT_MODE_ENV = "LIFTLAKE_FAULT_MODE"
# Set to N to kill the process inside a commit_together() commit loop after its N-th commit
# (0: after the manifest, before the first commit).
FAULT_IN_COMMIT_LOOP_ENV = "LIFTLAKE_FAULT_IN_COMMIT_LOOP"
COMMITS_DIR = "_commits"  # <warehouse>/_commits/<batch>.json: the batches whose commit loop is running
# A manifest lives for the milliseconds of its commit loop; one this old belongs to a dead job even
# when its pid is in use again (or it was written on another host).
MANIFEST_STALE_S = 600
# the job in its commit loop touches its manifest this often (the liveness a job on another host sees)
MANIFEST_HEARTBEAT_S = 30.0
# OPTIMIZE's target: files under it are compacted into files of about this size (Delta's and delta-rs'
# own defaults are 1 GiB and 100 MiB; a day's partition of a score table is tens of MiB)
COMPACT_TARGET_BYTES = 128 * 1024 * 1024


class TableError(ValueError):
    """A table name, schema or partition that cannot be used; the message names what and why."""


class InjectedFault(RuntimeError):
    """Raised by the fault-injection hook of the tests."""


def sql_string(text: str) -> str:
    """``text`` as a Spark SQL string literal (backslash and quote escaped: a path may hold either)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _delta_at(path: str) -> str:
    """The Spark SQL name of the Delta table at ``path`` (a backtick in the path doubled)."""
    return "delta.`" + path.replace("`", "``") + "`"


def validate_table_name(name: str) -> str:
    if not isinstance(name, str) or not TABLE_NAME.match(name):
        raise TableError(
            f"table name {name!r} breaks the rule <namespace>.<table> with characters in [a-z0-9_] "
            "(no paths, no quoting)")
    return name


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int | None  # None while the commit waits for the end of ``commit_together()``
    rows: int
    files: int
    partitions: tuple[str, ...]


@dataclass
class _PendingCommit:
    result: WriteResult
    txn: str
    commit: Callable[[], None]
    discard: Callable[[], None]
    undo: Callable[[set[str]], None]
    mode: str = "append"
    parts: tuple[str, ...] = ()
    scope: list[tuple[str, str, list[str]]] = field(default_factory=list)
    committed: bool = False


def _undo_txn(batch_txns: set[str]) -> str:
    """The txn id the undo commits of a batch carry (one per batch, whatever the table)."""
    return f"undo-{min(batch_txns)}"


@dataclass
class CommitBatch:
    """What ``commit_together()`` yields: ``results`` holds the committed writes once it is left."""
    results: list[WriteResult] = field(default_factory=list)


def schema_mismatch(table: str, expected: StructType, got: StructType) -> str | None:
    """A message naming the columns that differ, or None when the schemas agree."""
    exp = {f.name: f.dataType.simpleString() for f in expected.fields}
    act = {f.name: f.dataType.simpleString() for f in got.fields}
    missing = sorted(set(exp) - set(act))
    extra = sorted(set(act) - set(exp))
    changed = sorted(f"{c} ({exp[c]} in the table, {act[c]} in the write)" for c in set(exp) & set(act)
                     if exp[c] != act[c])
    if not (missing or extra or changed):
        return None
    parts = []
    if missing:
        parts.append(f"missing column(s) {missing}")
    if extra:
        parts.append(f"unexpected column(s) {extra}")
    if changed:
        parts.append("type mismatch in " + ", ".join(changed))
    return f"schema of the write does not match table {table}: " + "; ".join(parts)


class TableStore:
    """Interface shared by both backends."""

    def __init__(self, spark: SparkSession | None, root: str):
        self._spark = spark
        self.root = os.path.abspath(root)
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise TableError(f"warehouse {self.root}: is a file (rule: warehouse.path names a folder, "
                             f"created on first write)")
        self._pending: list[_PendingCommit] | None = None

    @property
    def spark(self) -> SparkSession:
        """The session reads and writes run in; a store opened on the Delta logs alone (``liftlake
        tables``) has none."""
        if self._spark is None:
            raise TableError(f"the table store at {self.root} was opened without Spark (Delta logs only)")
        return self._spark

    @contextmanager
    def commit_together(self) -> Iterator[CommitBatch]:
        """Stage every write of the block (Spark writes the Parquet) and commit them all at its end,
        in the order written. Delta has no transaction across
        tables, so this is the next best: a failure while the block computes (the usual failure: a
        bad row, a lost executor, a full disk) commits nothing and removes the staged files; a commit
        that fails at the end undoes the block's commits made before it. For a kill inside the commit
        loop itself (milliseconds of delta-rs log writes; with delta-spark, the Delta writes of the
        staged files) a manifest of the batch is written before
        its first commit and removed after its last; ``repair`` (run before every batch, and by
        ``liftlake repair``) undoes a batch that a dead job left half-committed. Nested blocks join
        the outer one."""
        batch = CommitBatch()
        if self._pending is not None:
            yield batch
            return
        self.repair()  # a batch an earlier job left half-committed is finished before this one starts
        pending: list[_PendingCommit] = []
        self._pending = pending
        manifest = None
        heartbeat = None
        try:
            yield batch
            if pending:
                manifest = self._write_manifest(pending)
                heartbeat = _Heartbeat(manifest)  # a commit loop of any length is never taken for dead
            for i, p in enumerate(pending):
                _maybe_exit_in_commit_loop(i)
                p.commit()
                p.committed = True
                batch.results.append(replace(p.result, version=self.version(p.result.table)))
            _maybe_exit_in_commit_loop(len(pending))
            if heartbeat:
                heartbeat.stop()
            if manifest:
                os.remove(manifest)
        except BaseException:  # the heartbeat goes on through the undo: the manifest stays alive until done
            txns = {p.txn for p in pending}
            undone = True
            for p in reversed(pending):
                try:
                    p.undo(txns) if p.committed else p.discard()
                except Exception as undo_error:  # noqa: BLE001 - the original error is the one to raise
                    undone = False
                    logger.error(f"table {p.result.table}: could not undo the job's commit "
                                 f"({undo_error}); `liftlake repair` or the next job retries it")
            if heartbeat:
                heartbeat.stop()
            if manifest and undone:
                os.remove(manifest)
            raise
        finally:
            self._pending = None

    # -- the commit manifest: no half-committed batch outlives its job --------------------------
    def _manifest_dir(self) -> str:
        return os.path.join(self.root, COMMITS_DIR)

    def _write_manifest(self, pending: list[_PendingCommit]) -> str:
        """Record the batch's intended commits (and each table's version before them) before the first."""
        writes = [{"table": p.result.table, "txn": p.txn, "mode": p.mode, "parts": list(p.parts),
                   "scope": [[c, op, list(v)] for c, op, v in p.scope],
                   "version_before": self.version(p.result.table) if self.exists(p.result.table) else None}
                  for p in pending]
        batch = min(p.txn for p in pending)
        body = {"batch": batch, "host": socket.gethostname(), "pid": os.getpid(),
                "pid_started": _process_start(os.getpid()), "created": time.time(), "writes": writes}
        os.makedirs(self._manifest_dir(), exist_ok=True)
        path = os.path.join(self._manifest_dir(), f"{batch}.json")
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(body, fh)
        os.replace(tmp, path)  # a reader sees the whole manifest or none
        return path

    def _committed_txns(self, name: str) -> set[str]:
        if not self.exists(name):
            return set()
        return {t for t in (txn_of(h) for h in self.history(name)) if t}

    def repair(self) -> list[str]:
        """Finish every batch whose job died inside its commit loop (a manifest left in
        ``_commits/``): when some of its commits landed and others did not, the landed ones are
        undone (their partitions get the files of the version before back); when all or none
        landed, there is nothing to do; a rollback the job itself began is finished. Manifests of a
        live job are left alone. Returns one line per batch handled."""
        folder = self._manifest_dir()
        if not os.path.isdir(folder):
            return []
        lines = []
        for fname in sorted(f for f in os.listdir(folder) if f.endswith(".json")):
            path = os.path.join(folder, fname)
            try:
                with open(path, encoding="utf-8") as fh:
                    body = json.load(fh)
                writes = body["writes"]
                txns = {w["txn"] for w in writes}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise TableError(f"commit manifest {path}: unreadable ({exc}); move it away once the tables "
                                 f"it names are checked") from None
            if _manifest_alive(body, path):
                continue
            committed = {w["table"]: self._committed_txns(w["table"]) for w in writes}
            landed = [w for w in writes if w["txn"] in committed[w["table"]]]
            # the job's own rollback started (a commit failed) but did not finish: finish it
            rollback_started = any(_undo_txn(txns) in committed[w["table"]] for w in landed)
            if landed and (len(landed) < len(writes) or rollback_started):
                for w in reversed([w for w in landed if _undo_txn(txns) not in committed[w["table"]]]):
                    if w["mode"] != "overwrite_partitions":
                        raise TableError(f"commit manifest {path}: table {w['table']} got a {w['mode']} "
                                         f"write, which cannot be undone; re-run the job's day")
                    self._undo_partition_overwrite(w["table"], w["version_before"], tuple(w["parts"]),
                                                   [(c, op, list(v)) for c, op, v in w["scope"]], txns)
                outcome = (f"rolled back {[w['table'] for w in landed]} (the job died after "
                           f"{len(landed)} of {len(writes)} commits)")
            elif landed and len(landed) == len(writes):
                outcome = "complete (every commit had landed)"
            else:
                outcome = "nothing to undo"
            os.remove(path)
            line = f"commit batch {body.get('batch')} of pid {body.get('pid')}: {outcome}"
            logger.warning(line)
            lines.append(line)
        return lines

    # -- names and paths ---------------------------------------------------------------------
    def path(self, name: str) -> str:
        namespace, table = validate_table_name(name).split(".")
        return os.path.join(self.root, namespace, table)

    def tables(self) -> list[str]:
        found: list[str] = []
        if not os.path.isdir(self.root):
            return found
        for namespace in sorted(os.listdir(self.root)):
            ns_dir = os.path.join(self.root, namespace)
            if namespace.startswith(("_", ".")) or not os.path.isdir(ns_dir):
                continue
            for table in sorted(os.listdir(ns_dir)):
                if _has_commit(os.path.join(ns_dir, table, "_delta_log")):
                    name = f"{namespace}.{table}"
                    if TABLE_NAME.match(name):
                        found.append(name)
        return found

    def exists(self, name: str) -> bool:
        return _has_commit(os.path.join(self.path(name), "_delta_log"))

    # -- Spark's catalog ----------------------------------------------------------------------------
    def register_in_catalog(self, names: Iterable[str]) -> list[str]:
        """Name each table in the Spark session's catalog as itself, so that Spark SQL resolves
        ``namespace.table`` the way it resolves any table: database ``namespace`` (located at the
        namespace's folder), external Delta table ``namespace.table`` at the table's folder. Metadata
        only: no Delta commit, no file written. An entry of that name that points elsewhere (an earlier
        warehouse of a long-lived session) is re-pointed when it is an external Delta table (dropping an
        external table's entry leaves its files); any other entry of the name is refused. Needs the
        Delta jars in the session. The names registered, sorted."""
        from liftlake.lib.storage.spark import has_delta_extension

        names = sorted({validate_table_name(n) for n in names})
        if names and not has_delta_extension(self.spark):
            raise TableError("Spark's catalog of Delta tables needs a Spark session with the Delta jars and "
                             "extension (this one was started without them; run `make setup` for .venv/jars)")
        for name in names:
            namespace, table = name.split(".")
            location = os.path.abspath(self.path(name))
            self.spark.sql(f"CREATE DATABASE IF NOT EXISTS `{namespace}` "
                           f"LOCATION {sql_string(os.path.dirname(location))}")
            if self.spark.catalog.tableExists(name):
                entry = self._catalog_entry(namespace, table)
                if entry["location"] == location:
                    continue
                if entry["type"] != "EXTERNAL" or entry["provider"] != "delta":
                    raise TableError(f"table {name}: Spark's catalog holds a {entry['type'].lower()} "
                                     f"{entry['provider']} table of that name at {entry['location']}, not the "
                                     f"warehouse's table at {location}; liftlake leaves it alone")
                logger.debug(f"table {name}: catalog entry re-pointed from {entry['location']} to {location}")
                self.spark.sql(f"DROP TABLE `{namespace}`.`{table}`")
            self.spark.sql(f"CREATE TABLE IF NOT EXISTS `{namespace}`.`{table}` USING delta "
                           f"LOCATION {sql_string(location)}")
        return names

    def _catalog_entry(self, namespace: str, table: str) -> dict[str, str]:
        jvm = self.spark._jvm  # noqa: SLF001 - the catalog's table metadata is not exposed to Python
        assert jvm is not None  # register_in_catalog checked the Delta jars, which need a JVM
        ident = jvm.org.apache.spark.sql.catalyst.TableIdentifier.apply(table, jvm.scala.Some(namespace))
        meta = self.spark._jsparkSession.sessionState().catalog().getTableMetadata(ident)  # noqa: SLF001
        uri = meta.location()
        location = uri.getPath() if str(uri.getScheme() or "file") == "file" else str(uri.toString())
        provider = meta.provider()
        return {"location": os.path.normpath(location) if location else "", "type": str(meta.tableType().name()),
                "provider": str(provider.get()).lower() if provider.isDefined() else "none"}

    # -- to be provided by a backend -------------------------------------------------------------
    def read(self, name: str, version: int | None = None, partitions: Sequence[str] | None = None) -> DataFrame:
        raise NotImplementedError

    def write(self, df: DataFrame, name: str, mode: str = "append", partition_values: Sequence[str] | None = None,
              partition_by: str | Sequence[str] | None = "ds", comment: str | None = None,
              column_comments: dict[str, str] | None = None,
              sub_partition_values: dict[str, Sequence[str]] | None = None,
              checks: Mapping[str, str] | None = None) -> WriteResult:
        raise NotImplementedError

    def write_day(self, rows: pa.Table, name: str, schema: StructType, ds: str,
                  comment: str | None = None) -> WriteResult:
        """Replace day ``ds`` of ``name`` (partitioned by ``ds``) with ``rows``: Arrow columns named as
        ``schema``'s data columns, cast to its types (``arrow_data_rows``); the day is the partition,
        not a column of ``rows``. Here through Spark's DataFrame writer; delta-rs writes the Parquet
        files with pyarrow."""
        from pyspark.sql import functions as F

        df = self.spark.createDataFrame(arrow_data_rows(rows, name, schema)).withColumn("ds", F.lit(ds))
        return self.write(df.select(*schema.fieldNames()), name, mode="overwrite_partitions", partition_values=[ds],
                          comment=comment)

    def day_writer(self, name: str, schema: StructType, ds: str, comment: str | None = None) -> "DayWriter":
        """``write_day`` of rows handed over in pieces (``DayWriter``): here the pieces wait in memory
        for ``finish``; DeltaRsStore stages each as Parquet when it comes."""
        return DayWriter(self, name, schema, ds, comment)

    def version(self, name: str) -> int:
        raise NotImplementedError

    def history(self, name: str) -> list[dict]:
        raise NotImplementedError

    def vacuum(self, name: str, retention_hours: float = 168.0, staging_grace_hours: float | None = None,
               dry_run: bool = False) -> list[str]:
        raise NotImplementedError

    def optimize(self, name: str, target_file_bytes: int = COMPACT_TARGET_BYTES, dry_run: bool = False) -> list[str]:
        """Compact the table's small files (Delta's OPTIMIZE): in every partition holding two or more data
        files under ``target_file_bytes``, those files are rewritten as fewer, larger ones, in one commit
        that changes no row (``dataChange: false``; readers and time travel see the same rows, the old
        files go with a later vacuum). Returns the partitions compacted (``ds=.../model=...``), or that
        would be with ``dry_run``; [] and no commit when there is nothing to compact."""
        candidates = self._compaction_candidates(name, target_file_bytes)
        if candidates and not dry_run:
            self._compact(name, target_file_bytes)
        return candidates

    def _compaction_candidates(self, name: str, target_file_bytes: int) -> list[str]:
        from deltalake import DeltaTable

        actions = pa.table(DeltaTable(self._require(name)).get_add_actions(flatten=True))
        part_cols = [c for c in actions.column_names if c.startswith("partition.")]
        small: dict[str, int] = {}
        for row in actions.select(["size_bytes", *part_cols]).to_pylist():
            if row["size_bytes"] < target_file_bytes:
                key = "/".join(f"{c.split('.', 1)[1]}={row[c]}" for c in part_cols)
                small[key] = small.get(key, 0) + 1
        return sorted(key for key, files in small.items() if files >= 2)

    def _require(self, name: str) -> str:
        if not self.exists(name):
            raise TableError(f"table {name} does not exist under {self.root}")
        return self.path(name)

    def _compact(self, name: str, target_file_bytes: int) -> None:
        raise NotImplementedError

    def partition_counts(self, name: str, version: int | None = None) -> dict[str, int]:
        raise NotImplementedError

    def table_info(self, name: str) -> dict:
        counts = self.partition_counts(name)
        return {"name": name, "version": self.version(name), "partition_column": self.partition_column(name),
                "rows_per_partition": counts, "rows": sum(counts.values())}

    def partition_column(self, name: str) -> str | None:
        raise NotImplementedError

    def single_value_from_stats(self, name: str, column: str, partition: str) -> str | None:
        """The one value ``column`` holds in ``partition`` (of the first partition column), from the Delta
        log's statistics (``values_from_stats``); None when they cannot say or the partition holds
        no value or two: the caller reads the rows."""
        values = self.values_from_stats(name, [column], [partition])[partition]
        return values.pop()[0] if values is not None and len(values) == 1 else None

    def values_from_stats(self, name: str, columns: Sequence[str],
                          partitions: Sequence[str]) -> dict[str, set[tuple[str, ...]] | None]:
        """{partition: the distinct tuples of ``columns`` in it} for ``partitions`` (of the first partition
        column), read from the Delta log once, no data file opened: a partition column's value from
        each file's partition values, any other column's from the file's min / max statistics, where it
        must hold one value (min == max). None for a partition the log cannot say (a file without
        statistics or with two values), and for every one when a column is missing or the table is not
        partitioned: the caller reads the rows. A partition without files holds no tuple."""
        from deltalake import DeltaTable

        found: dict[str, set[tuple[str, ...]] | None] = {p: set() for p in partitions}
        table = DeltaTable(self._require(name))
        part_cols = list(table.metadata().partition_columns)
        if not part_cols:
            return dict.fromkeys(partitions)
        actions = pa.table(table.get_add_actions(flatten=True))
        bounds = [(f"partition.{c}",) * 2 if c in part_cols else (f"min.{c}", f"max.{c}") for c in columns]
        key_col = f"partition.{part_cols[0]}"
        if not {key_col, *(b for pair in bounds for b in pair)} <= set(actions.column_names):
            return dict.fromkeys(partitions)
        lows = [actions.column(lo).to_pylist() for lo, _ in bounds]
        highs = [actions.column(hi).to_pylist() for _, hi in bounds]
        for i, key in enumerate(actions.column(key_col).to_pylist()):
            values = found.get(str(key))
            if values is None:  # not asked for, or already unknown
                continue
            file_values = tuple(lo[i] for lo in lows)
            if any(v is None for v in file_values) or file_values != tuple(hi[i] for hi in highs):
                found[str(key)] = None
            else:
                values.add(tuple(str(v) for v in file_values))
        return found

    def referenced_files(self, name: str, version: int | None = None) -> set[str]:
        """Paths (relative to the table folder) of the data files a version is made of."""
        raise NotImplementedError

    def _undo_partition_overwrite(self, name: str, before: int | None, parts: tuple[str, ...],
                                  scope: list[tuple[str, str, list[str]]], batch_txns: set[str],
                                  schema=None) -> None:
        """Give the partitions ``scope`` of ``name`` their rows of version ``before`` back, in one commit
        carrying the batch's undo txn (``before=None``: the batch created the table)."""
        raise NotImplementedError

    # -- what both backends' writes share: Parquet staged inside the table, its scope checked ------
    def _staging_dir(self, name: str, txn: str) -> str:
        return os.path.join(self.path(name), "_staging", txn)

    def _stage_parquet(self, df: DataFrame, staging: str, parts: tuple[str, ...]) -> None:
        """Spark writes the rows as Parquet into ``staging`` (Hive partition folders); a failed write
        leaves no folder."""
        writer = df.write.mode("error")
        if parts:
            writer = writer.partitionBy(*parts)
        try:
            writer.parquet(staging)
        except BaseException as exc:
            # a failed Spark write (a lost executor past its retries, a bad row) leaves its folder
            shutil.rmtree(staging, ignore_errors=True)
            self._release_failed_task_files()
            _raise_if_check_failed(exc)
            raise

    @staticmethod
    def _check_staged_scope(name: str, staging: str, parts: tuple[str, ...],
                            scope: list[tuple[str, str, list[str]]]) -> None:
        """Refuse (and remove) a staged overwrite holding rows outside the partitions it replaces.
        Checked on the staged folders, not with a query before the write: that query would run the
        whole plan (a scoring UDF, a feature join) a second time."""
        stray: dict[str, set[str]] = {}
        for dirpath, _, _ in os.walk(staging):
            rel = os.path.relpath(dirpath, staging)
            if rel == "." or len(rel.split(os.sep)) != len(parts):
                continue
            values = _partition_values(rel, parts)
            for col, _, allowed in scope:
                if str(values[col]) not in allowed:
                    stray.setdefault(col, set()).add(str(values[col]))
        for col, _, allowed in scope:
            if col in stray:
                shutil.rmtree(staging, ignore_errors=True)
                raise TableError(f"table {name}: the write holds {col} values {sorted(stray[col])[:5]} "
                                 f"outside the partitions it replaces {allowed}")

    def _release_failed_task_files(self) -> None:
        """A Parquet writer whose close failed (disk full) keeps its file open in the JVM that ran
        the task, so the deleted staging files hold their space until that stream is collected. In
        local mode that JVM is this driver's: collect now, so that a session which goes on after the
        failure (a notebook, the report, a retry in-process) gets the space back. Executors on a
        cluster release theirs at their next GC; a spark-submit job exits and releases everything."""
        try:
            jvm = self.spark.sparkContext._jvm
            if jvm is not None:
                jvm.System.gc()
        except Exception:  # noqa: BLE001 - no JVM handle (Spark Connect): nothing to collect from here
            pass

    @staticmethod
    def _maybe_inject_fault(name: str) -> None:
        if os.environ.get(FAULT_ENV) == name:
            if os.environ.get(FAULT_MODE_ENV) == "exit":
                os._exit(137)  # as if the process were killed: no cleanup runs
            raise InjectedFault(f"injected failure before the commit of {name}")

    def _vacuum_staging(self, name: str, grace_hours: float, dry_run: bool) -> list[str]:
        """The table's ``_staging/<txn>`` folders untouched for ``grace_hours`` (a killed job's), removed
        unless ``dry_run``; their paths relative to the table."""
        removed = []
        staging_root = os.path.join(self.path(name), "_staging")
        cutoff = time.time() - grace_hours * 3600
        if os.path.isdir(staging_root):
            for txn in sorted(os.listdir(staging_root)):
                folder = os.path.join(staging_root, txn)
                if newest_mtime(folder) <= cutoff:
                    if not dry_run:
                        shutil.rmtree(folder, ignore_errors=True)
                    removed.append(os.path.relpath(folder, self.path(name)).replace(os.sep, "/"))
        return removed


def _has_commit(log_dir: str) -> bool:
    """Whether a ``_delta_log`` folder holds a commit: Spark's Delta writer makes the folder before
    its first commit, so a first write that failed leaves it empty, and that is no table."""
    try:
        with os.scandir(log_dir) as entries:
            return any(e.name.endswith((".json", ".parquet")) or e.name == "_last_checkpoint" for e in entries)
    except (FileNotFoundError, NotADirectoryError):
        return False


def txn_of(commit: dict) -> str | None:
    """The ``liftlake.txn`` a commit carries: delta-rs keeps custom metadata as commitInfo fields,
    Spark's Delta writer as the commitInfo's ``userMetadata`` (a JSON object here)."""
    txn = commit.get("liftlake.txn")
    if txn:
        return str(txn)
    meta = commit.get("userMetadata")
    if isinstance(meta, str) and meta.startswith("{"):
        try:
            txn = json.loads(meta).get("liftlake.txn")
        except (ValueError, AttributeError):
            return None
        return str(txn) if txn else None
    return None


def new_txn() -> str:
    return f"{int(time.time() * 1000)}-{uuid.uuid4().hex[:12]}"


def partition_columns_of(partition_by: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"ds"`` -> ``("ds",)``; a table may nest partitions, e.g. ``("ds", "model")``: the first column is
    the one days are read and counted by, the inner ones scope an overwrite."""
    if partition_by is None:
        return ()
    return (partition_by,) if isinstance(partition_by, str) else tuple(partition_by)


def overwrite_scope(parts: tuple[str, ...], partition_values: Sequence[str] | None,
                    sub_partition_values: dict[str, Sequence[str]] | None) -> list[tuple[str, str, list[str]]]:
    """The partitions a partition overwrite replaces, as delta-rs partition filters (all must hold):
    the first column's values, then each inner column's values. An inner column left out is replaced
    whole within the outer values."""
    scope = [(parts[0], "in", sorted({str(v) for v in partition_values or ()}))]
    for col, values in (sub_partition_values or {}).items():
        scope.append((col, "in", sorted({str(v) for v in values})))
    return scope


def _check_write_args(mode: str, parts: tuple[str, ...], partition_values: Sequence[str] | None,
                      sub_partition_values: dict[str, Sequence[str]] | None = None) -> None:
    if mode not in ("append", "overwrite_partitions", "overwrite"):
        raise TableError(f"write mode {mode!r} is not one of append | overwrite_partitions | overwrite")
    if mode == "overwrite_partitions":
        if not parts:
            raise TableError("overwrite_partitions needs a partition column")
        if not partition_values:
            raise TableError("overwrite_partitions needs the partition values it replaces (e.g. the day)")
    if sub_partition_values:
        if mode != "overwrite_partitions":
            raise TableError("sub_partition_values scope a partition overwrite; the mode is " + mode)
        unknown = sorted(set(sub_partition_values) - set(parts[1:]))
        if unknown:
            raise TableError(f"sub_partition_values name {unknown}, not inner partition columns of {list(parts)}")
    values = list(partition_values or ()) + [v for vs in (sub_partition_values or {}).values() for v in vs]
    if sub_partition_values and not all(sub_partition_values.values()):
        raise TableError("sub_partition_values need at least one value per column")
    for value in values:
        if not PARTITION_VALUE.match(str(value)):
            raise TableError(f"partition value {value!r} breaks the rule [A-Za-z0-9_-:.]+")


def _stats_from_footer(meta: pq.FileMetaData, columns: Iterable[str]) -> str:
    """Delta per-file statistics (numRecords, nullCount, min / max) from a Parquet footer."""
    wanted = set(columns)
    null_count: dict[str, int] = {}
    mins: dict[str, object] = {}
    maxs: dict[str, object] = {}
    complete: dict[str, bool] = {}
    for rg in range(meta.num_row_groups):
        group = meta.row_group(rg)
        for ci in range(group.num_columns):
            col = group.column(ci)
            name = col.path_in_schema
            if name not in wanted:
                continue
            st = col.statistics
            if st is None:
                complete[name] = False
                continue
            null_count[name] = null_count.get(name, 0) + (st.null_count or 0)
            usable = st.has_min_max and col.physical_type in ("INT32", "INT64", "DOUBLE", "FLOAT", "BYTE_ARRAY") \
                and st.logical_type.type in ("NONE", "STRING", "INT")
            if not usable:
                complete[name] = False
                continue
            lo, hi = st.min, st.max
            if isinstance(lo, bytes):
                lo, hi = lo.decode("utf-8", "replace"), hi.decode("utf-8", "replace")
            if isinstance(lo, float) and (lo != lo or hi != hi):
                complete[name] = False
                continue
            mins[name] = lo if name not in mins else min(mins[name], lo)
            maxs[name] = hi if name not in maxs else max(maxs[name], hi)
            complete.setdefault(name, True)
    keep = [c for c, ok in complete.items() if ok and c in mins]
    return json.dumps({
        "numRecords": meta.num_rows,
        "minValues": {c: mins[c] for c in keep},
        "maxValues": {c: maxs[c] for c in keep},
        "nullCount": null_count,
    })


def _actions(adds: list) -> list:
    """delta-rs takes add and remove actions in one list; the store only ever adds (removes come from
    the overwrite's partition filters)."""
    return list(adds)


def arrow_data_schema(schema: StructType) -> pa.Schema:
    """The Arrow schema of ``schema``'s columns other than ``ds`` (the day is the partition)."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    return to_arrow_schema(StructType([f for f in schema.fields if f.name != "ds"]))


def arrow_data_rows(rows: pa.Table, name: str, schema: StructType) -> pa.Table:
    """``rows``' columns in the order and Arrow types of ``schema``'s columns other than ``ds``."""
    target = arrow_data_schema(schema)
    missing = [c for c in target.names if c not in rows.column_names]
    if missing:
        raise TableError(f"table {name}: the rows to write have no column(s) {missing}")
    return rows.select(target.names).cast(target)


PARQUET_PART_ROWS = 1_000_000
# Spark splits a Parquet file for its readers only between row groups: groups of this size let a
# day's file feed a task per core (pyarrow's default, 1Mi rows, is one group per file here)
PARQUET_ROW_GROUP_ROWS = 131_072


def write_parquet_parts(rows: pa.Table, folder: str, rows_per_file: int = PARQUET_PART_ROWS, prefix: str = "") -> None:
    """``rows`` as Parquet files ``part-<prefix><n>.parquet`` of at most ``rows_per_file`` rows in
    ``folder`` (one file, without rows, when there are none), written by one thread per core (pyarrow
    releases the GIL while it encodes)."""
    from concurrent.futures import ThreadPoolExecutor

    os.makedirs(folder, exist_ok=True)
    parts = [rows.slice(first, rows_per_file) for first in range(0, max(rows.num_rows, 1), rows_per_file)]

    def write(index: int) -> None:
        pq.write_table(parts[index], os.path.join(folder, f"part-{prefix}{index:05d}.parquet"),
                       row_group_size=PARQUET_ROW_GROUP_ROWS)

    with ThreadPoolExecutor(max(1, min(len(parts), os.cpu_count() or 1))) as pool:
        list(pool.map(write, range(len(parts))))


class DayWriter:
    """One day of table ``name`` handed over in pieces: ``add(index, rows)`` from any thread (``index``
    orders the pieces in the day; rows as ``write_day`` takes them), then ``finish()``, which replaces
    the day with all of them as one ``write_day`` and returns its result, or ``discard()`` after a
    failure (the table stays as it was). This one keeps the pieces in memory until ``finish``."""

    def __init__(self, store: "TableStore", name: str, schema: StructType, ds: str, comment: str | None) -> None:
        self.store, self.name, self.schema, self.ds, self.comment = store, name, schema, ds, comment
        self._pieces: dict[int, pa.Table] = {}

    def add(self, index: int, rows: pa.Table) -> None:
        self._pieces[index] = rows  # write_day casts them to the table's types

    def finish(self) -> WriteResult:
        rows = (pa.concat_tables([self._pieces[i] for i in sorted(self._pieces)]) if self._pieces
                else arrow_data_schema(self.schema).empty_table())
        self._pieces.clear()
        return self.store.write_day(rows, self.name, self.schema, self.ds, comment=self.comment)

    def discard(self) -> None:
        self._pieces.clear()


class StagedDayWriter(DayWriter):
    """DeltaRsStore's: each piece is written as Parquet when it comes, into a ``_staging/<txn>`` folder
    of the table (a killed job's is removed by housekeeping, as any staging folder), and ``finish``
    commits those files; memory holds the pieces in flight only."""

    store: "DeltaRsStore"

    def __init__(self, store: "DeltaRsStore", name: str, schema: StructType, ds: str, comment: str | None) -> None:
        super().__init__(store, name, schema, ds, comment)
        validate_table_name(name)
        self._folder = store._staging_dir(name, new_txn())
        os.makedirs(self._folder)

    def add(self, index: int, rows: pa.Table) -> None:
        write_parquet_parts(arrow_data_rows(rows, self.name, self.schema), self._folder, prefix=f"{index:05d}-")

    def finish(self) -> WriteResult:
        if not os.listdir(self._folder):  # a day of no rows
            write_parquet_parts(arrow_data_schema(self.schema).empty_table(), self._folder)

        def move_into(day: str) -> None:
            os.makedirs(os.path.dirname(day), exist_ok=True)
            os.replace(self._folder, day)

        try:
            return self.store.replace_day(name=self.name, schema=self.schema, ds=self.ds, comment=self.comment,
                                          fill=move_into)
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


def partition_dir(values: Mapping[str, str]) -> str:
    """The Hive-style folder ``<col>=<escaped value>[/<col>=<value>...]`` of a partition's ``values``
    (in the table's partition order): what ``_partition_values`` reads back."""
    from urllib.parse import quote

    return os.path.join(*(f"{col}={quote(str(value), safe='')}" for col, value in values.items()))


def _partition_values(rel_dir: str, parts: tuple[str, ...]) -> dict[str, str | None]:
    """The values of a Hive-style partition path ``<col>=<escaped value>[/<col>=<value>...]`` (None for
    null), in the table's partition order."""
    from urllib.parse import unquote

    folders = [] if rel_dir in ("", ".") else rel_dir.replace(os.sep, "/").split("/")
    if len(folders) != len(parts):
        raise TableError(f"unexpected staging layout {rel_dir!r} for partitions {list(parts)}")
    out: dict[str, str | None] = {}
    for folder, col in zip(folders, parts):
        key, _, value = folder.partition("=")
        if key != col:
            raise TableError(f"unexpected staging layout {rel_dir!r}")
        out[col] = None if value == "__HIVE_DEFAULT_PARTITION__" else unquote(value)
    return out


def log_partition_counts(table) -> dict[str, int] | None:
    """Rows per value of the first partition column ("__all__" when unpartitioned) from the numRecords
    of a delta-rs snapshot's add actions; None when a file has no row count."""
    part_col = (table.metadata().partition_columns or [None])[0]
    actions = pa.table(table.get_add_actions(flatten=True))
    counts: dict[str, int] = {}
    key_col = f"partition.{part_col}" if part_col else None
    for i in range(actions.num_rows):
        key = actions.column(key_col)[i].as_py() if key_col else "__all__"
        records = actions.column("num_records")[i].as_py()
        if records is None:
            return None
        counts[key] = counts.get(key, 0) + int(records)
    return dict(sorted(counts.items()))


class DeltaRsStore(TableStore):
    """Embedded default: Spark writes Parquet, delta-rs commits it."""

    backend = "delta-rs"

    def _delta(self, name: str, version: int | None = None):
        from deltalake import DeltaTable

        if not self.exists(name):
            raise TableError(f"table {name} does not exist under {self.root}")
        try:
            table = DeltaTable(self.path(name))
        except Exception as exc:  # noqa: BLE001 - delta-rs's DeltaError / OSError on a damaged log
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise TableError(f"table {name}: cannot read its Delta log ({first})") from None
        if version is not None:
            latest = table.version()
            if not 0 <= version <= latest:
                raise TableError(f"table {name} has versions 0..{latest}; version {version} does not exist")
            table.load_as_version(version)
        return table

    def version(self, name: str) -> int:
        return self._delta(name).version()

    def partition_column(self, name: str) -> str | None:
        cols = self._delta(name).metadata().partition_columns
        return cols[0] if cols else None

    def spark_schema(self, name: str, version: int | None = None) -> StructType:
        return self._spark_schema_of(self._delta(name, version))

    @staticmethod
    def _spark_schema_of(table) -> StructType:
        arrow = pa.schema(table.schema().to_arrow())
        # Partition columns are not in the data files; Spark puts them last when it reads them back.
        parts = table.metadata().partition_columns
        ordered = [f for f in arrow if f.name not in parts] + [arrow.field(p) for p in parts]
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(pa.schema(ordered))

    def file_uris(self, name: str, version: int | None = None, partitions: Sequence[str] | None = None) -> list[str]:
        """The URIs of the Parquet files a version of the table (of ``partitions`` when given) is made of."""
        return self._file_uris_of(self._delta(name, version), name, partitions)

    @staticmethod
    def _file_uris_of(table, name: str, partitions: Sequence[str] | None) -> list[str]:
        if partitions is None:
            return table.file_uris()
        part_col = (table.metadata().partition_columns or [None])[0]
        if part_col is None:
            raise TableError(f"table {name} is not partitioned; cannot read partitions {list(partitions)}")
        return table.file_uris(partition_filters=[(part_col, "in", [str(p) for p in partitions])])

    def read(self, name: str, version: int | None = None, partitions: Sequence[str] | None = None) -> DataFrame:
        table = self._delta(name, version)  # opened once: each open reads the log (~12 ms)
        uris = self._file_uris_of(table, name, partitions)
        schema = self._spark_schema_of(table)
        if not uris:
            return self.spark.createDataFrame([], schema)
        reader = self.spark.read.schema(schema).option("basePath", self.path(name))
        return reader.parquet(*uris).select(*schema.fieldNames())

    def partition_counts(self, name: str, version: int | None = None) -> dict[str, int]:
        """Rows per partition from the Delta log's file statistics (no data is read)."""
        counts = log_partition_counts(self._delta(name, version))
        if counts is None:
            raise TableError(f"table {name}: a data file of its log has no row count")
        return counts

    def history(self, name: str) -> list[dict]:
        return self._delta(name).history()

    def referenced_files(self, name: str, version: int | None = None) -> set[str]:
        actions = pa.table(self._delta(name, version).get_add_actions(flatten=True))
        return set(actions.column("path").to_pylist())

    def _undo_partition_overwrite(self, name: str, before: int | None, parts: tuple[str, ...],
                                  scope: list[tuple[str, str, list[str]]], batch_txns: set[str],
                                  schema=None) -> None:
        """Give the partitions of a committed overwrite their files of version ``before`` back (one
        more commit, scoped to those partitions: other days, or other models of the day, written
        meanwhile stay). Works on a table either backend wrote (``liftlake repair`` runs it)."""
        from deltalake import DeltaTable
        from deltalake.transaction import AddAction, CommitProperties

        table_path = self.path(name)
        if schema is None:
            schema = DeltaTable(table_path).schema()
        if before is None:
            # the batch created the table: remove it when every commit on it is the batch's own
            ours = batch_txns | {_undo_txn(batch_txns)}
            if all(txn_of(h) in ours for h in DeltaTable(table_path).history()):
                shutil.rmtree(table_path, ignore_errors=True)
                return
            old_paths: list[tuple[str, dict]] = []
        else:
            old = pa.table(DeltaTable(table_path, version=before).get_add_actions(flatten=True))
            columns = {col: old.column(f"partition.{col}").to_pylist() for col in parts}
            old_paths = []
            for i, path in enumerate(old.column("path").to_pylist()):
                values = {col: columns[col][i] for col in parts}
                if all(str(values[col]) in set(allowed) for col, _, allowed in scope):
                    old_paths.append((path, values))
        data_cols = [f.name for f in schema.fields if f.name not in parts]
        adds: list[AddAction] = []
        for path, values in old_paths:
            full = os.path.join(table_path, path)
            adds.append(AddAction(path=path, size=os.path.getsize(full), partition_values=values,
                                  modification_time=int(os.path.getmtime(full) * 1000), data_change=True,
                                  stats=_stats_from_footer(pq.read_metadata(full), data_cols)))
        DeltaTable(table_path).create_write_transaction(
            _actions(adds), "overwrite", schema, partition_by=list(parts), partition_filters=scope,
            commit_properties=CommitProperties(custom_metadata={"liftlake.mode": "undo",
                                                                "liftlake.txn": _undo_txn(batch_txns)}))

    def write(self, df: DataFrame, name: str, mode: str = "append", partition_values: Sequence[str] | None = None,
              partition_by: str | Sequence[str] | None = "ds", comment: str | None = None,
              column_comments: dict[str, str] | None = None,
              sub_partition_values: dict[str, Sequence[str]] | None = None,
              checks: Mapping[str, str] | None = None) -> WriteResult:
        parts = partition_columns_of(partition_by)
        # Column order: data columns then the partition columns, as Spark reads them back.
        df = _guard_checks(df.select(*[c for c in df.columns if c not in parts], *[c for c in parts if c in df.columns]),
                           name, checks)
        return self.write_staged(name, df.schema, lambda staging: self._stage_parquet(df, staging, parts), mode,
                                 partition_values, partition_by, comment, column_comments, sub_partition_values)

    def write_day(self, rows: pa.Table, name: str, schema: StructType, ds: str,
                  comment: str | None = None) -> WriteResult:
        data = arrow_data_rows(rows, name, schema)
        return self.replace_day(name, schema, ds, comment, fill=lambda day: write_parquet_parts(data, day))

    def replace_day(self, name: str, schema: StructType, ds: str, comment: str | None,
                    fill: Callable[[str], None]) -> WriteResult:
        """Replace the day ``ds`` of ``name`` with the Parquet files ``fill(folder)`` puts into the day's
        staged partition folder (``write_day``'s and ``StagedDayWriter``'s one way to commit a day)."""
        return self.write_staged(name, schema, lambda staging: fill(os.path.join(staging, partition_dir({"ds": ds}))),
                                 mode="overwrite_partitions", partition_values=[ds], comment=comment)

    def day_writer(self, name: str, schema: StructType, ds: str, comment: str | None = None) -> "DayWriter":
        return StagedDayWriter(self, name, schema, ds, comment)

    def write_staged(self, name: str, schema: StructType, stage: Callable[[str], None], mode: str = "append",
                     partition_values: Sequence[str] | None = None,
                     partition_by: str | Sequence[str] | None = "ds", comment: str | None = None,
                     column_comments: dict[str, str] | None = None,
                     sub_partition_values: dict[str, Sequence[str]] | None = None) -> WriteResult:
        """``write`` of rows that ``stage(folder)`` writes as Parquet files of ``schema``'s data columns
        into Hive partition folders of ``folder`` (a job writing its files itself, without Spark's
        row writer: the scoring job's Python workers). The column rules are ``stage``'s to enforce; a
        ``stage`` that raises leaves no folder."""
        from deltalake import DeltaTable, Field, Schema
        from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions
        from pyspark.sql.types import StructType

        validate_table_name(name)
        parts = partition_columns_of(partition_by)
        _check_write_args(mode, parts, partition_values, sub_partition_values)
        missing_parts = [c for c in parts if c not in schema.fieldNames()]
        if missing_parts:
            raise TableError(f"table {name}: partition column(s) {missing_parts} are not in the data")
        schema = StructType([schema[c] for c in schema.fieldNames() if c not in parts] + [schema[c] for c in parts])
        table_path = self.path(name)
        if self.exists(name):
            self._check_fits(name, parts, schema)
        data_cols = [c for c in schema.fieldNames() if c not in parts]
        txn = new_txn()
        staging = self._staging_dir(name, txn)
        try:
            stage(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        scope = overwrite_scope(parts, partition_values, sub_partition_values) if mode == "overwrite_partitions" else []
        if scope:
            self._check_staged_scope(name, staging, parts, scope)

        adds: list[AddAction] = []
        moved: list[str] = []

        def discard() -> None:
            # Nothing was committed: the moved files are unreferenced. Remove them so that a failed
            # write leaves the folder as it found it (vacuum would also catch them).
            for target in moved:
                try:
                    os.remove(target)
                except OSError:
                    pass
            shutil.rmtree(staging, ignore_errors=True)

        try:
            for dirpath, _, filenames in os.walk(staging):
                for fname in sorted(filenames):
                    if not fname.endswith(".parquet") or fname.startswith((".", "_")):
                        continue
                    rel_dir = os.path.relpath(dirpath, staging)
                    part_values = _partition_values(rel_dir, parts) if parts else {}
                    target_dir = os.path.join(table_path, rel_dir) if parts else table_path
                    os.makedirs(target_dir, exist_ok=True)
                    target_name = f"part-{txn}-{len(moved):05d}.parquet"
                    target = os.path.join(target_dir, target_name)
                    os.replace(os.path.join(dirpath, fname), target)
                    moved.append(target)
                    meta = pq.read_metadata(target)
                    rel_path = os.path.relpath(target, table_path).replace(os.sep, "/")
                    adds.append(AddAction(
                        path=rel_path, size=os.path.getsize(target), partition_values=part_values,
                        modification_time=int(os.path.getmtime(target) * 1000), data_change=True,
                        stats=_stats_from_footer(meta, data_cols)))
            shutil.rmtree(staging, ignore_errors=True)
            self._maybe_inject_fault(name)

            from pyspark.sql.pandas.types import to_arrow_schema

            arrow_schema = to_arrow_schema(schema)
            fields = []
            for f in arrow_schema:
                field_ = Field.from_arrow(f)
                if column_comments and f.name in column_comments:
                    field_ = Field(f.name, field_.type, nullable=field_.nullable,
                                   metadata={"comment": column_comments[f.name]})
                fields.append(field_)
            delta_schema = Schema(fields)
            rows = sum(json.loads(a.stats)["numRecords"] for a in adds)
            props = CommitProperties(custom_metadata={"liftlake.rows": rows, "liftlake.mode": mode,
                                                      "liftlake.txn": txn}, max_commit_retries=5)
            partitions = tuple(sorted({a.partition_values.get(parts[0]) or "" for a in adds})) if parts else ()
        except BaseException:
            discard()
            raise
        version_before: list[int | None] = []

        def commit() -> None:
            # the table may have appeared since the write was staged (an earlier write of the same
            # commit_together() block, or another job)
            exists_now = self.exists(name)
            if exists_now:
                self._check_fits(name, parts, schema)
            version_before.append(self.version(name) if exists_now else None)
            created = False
            if not exists_now:
                try:
                    create_table_with_add_actions(
                        table_path, delta_schema, adds, mode="error",
                        partition_by=list(parts) or None, name=name, description=comment,
                        commit_properties=props)
                    created = True
                except Exception:
                    if not self.exists(name):
                        raise
                    # Lost a race: another job created the table after our check (two days of a
                    # backfill starting at once). Commit onto it, after the checks an existing table gets.
                    self._check_fits(name, parts, schema)
            if not created:
                table = DeltaTable(table_path)
                if mode in ("append", "overwrite"):
                    table.create_write_transaction(_actions(adds), mode, delta_schema, partition_by=list(parts) or None,
                                                   commit_properties=props)
                else:
                    table.create_write_transaction(_actions(adds), "overwrite", delta_schema, partition_by=list(parts),
                                                   partition_filters=scope, commit_properties=props)

        def undo(batch_txns: set[str]) -> None:
            if mode != "overwrite_partitions":
                raise TableError(f"table {name}: a committed {mode} write is not undone (only partition overwrites)")
            self._undo_partition_overwrite(name, version_before[-1], parts, scope, batch_txns, delta_schema)

        result = WriteResult(name, None, rows, len(adds), partitions)
        if self._pending is not None:
            self._pending.append(_PendingCommit(result, txn, commit, discard, undo, mode, parts, scope))
            return result
        try:
            commit()
        except BaseException:
            discard()
            raise
        return replace(result, version=self.version(name))

    def _check_fits(self, name: str, parts: tuple[str, ...], schema) -> None:
        """A write onto an existing table needs its partitioning and its schema."""
        table = self._delta(name)
        existing = tuple(table.metadata().partition_columns)
        if existing != parts:
            raise TableError(f"table {name} is partitioned by {list(existing)}, the write by {list(parts)}")
        mismatch = schema_mismatch(name, self._spark_schema_of(table), schema)
        if mismatch:
            raise TableError(mismatch)

    def vacuum(self, name: str, retention_hours: float = 168.0, staging_grace_hours: float | None = None,
               dry_run: bool = False) -> list[str]:
        """Delete the table's data files that no version within the retention references (files of
        replaced versions, and files a write killed before its commit moved into place) and its
        ``_staging/<txn>`` folders older than ``staging_grace_hours`` (default: the retention).
        Returns the paths (relative to the table) removed, or that would be with ``dry_run``."""
        import math

        table = self._delta(name)
        root = self.path(name)

        def full_vacuum(dry: bool) -> list[str]:
            # a full vacuum: also the files no log entry ever named (the killed writer's), by their age
            return list(table.vacuum(retention_hours=math.ceil(retention_hours), dry_run=dry,
                                     enforce_retention_duration=False, full=True))

        # delta-rs lists again, as absolute paths, the tombstoned files an earlier vacuum removed: only
        # the files still on disk are this call's
        removed = [rel for rel in (os.path.relpath(p, root).replace(os.sep, "/") if os.path.isabs(p) else p
                                   for p in full_vacuum(True))
                   if os.path.exists(os.path.join(root, rel))]
        if removed and not dry_run:
            full_vacuum(False)
        grace = retention_hours if staging_grace_hours is None else staging_grace_hours
        removed += self._vacuum_staging(name, grace, dry_run)
        return sorted(removed)

    def _compact(self, name: str, target_file_bytes: int) -> None:
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import CommitProperties

        try:
            self._delta(name).optimize.compact(
                target_size=target_file_bytes,
                commit_properties=CommitProperties(custom_metadata={"liftlake.mode": "optimize"}))
        except CommitFailedError as exc:  # a writer committed meanwhile: the compaction did not happen
            raise TableError(f"table {name}: a concurrent commit conflicted with the compaction, which "
                             f"committed nothing ({_first_line(exc)})") from None


# Delta's optimistic-concurrency conflicts (io.delta.exceptions.*): the losing commit did not happen
_DELTA_CONFLICT = re.compile(r"DELTA_CONCURRENT_\w+|DELTA_METADATA_CHANGED|DELTA_PROTOCOL_CHANGED|"
                             r"Concurrent\w*Exception|MetadataChangedException|ProtocolChangedException")
# How often a Delta write that lost a conflict is tried again before it fails (TableError)
DELTA_COMMIT_ATTEMPTS = 5
_REPLACE_WHERE_MISMATCH = re.compile(r"DELTA_REPLACE_WHERE_MISMATCH|does not conform to partial table overwrite")


_STRAY_MARK = "liftlake: a row outside the partitions this write replaces"


def _guard_scope(df: DataFrame, scope: list[tuple[str, str, list[str]]]) -> DataFrame:
    """``df`` whose first scope column fails the write's job at a row outside ``scope``. Delta checks
    a replaceWhere itself only on a table that exists; this holds for the first write too, in the
    same pass over the rows."""
    if not scope:
        return df
    from pyspark.sql import functions as F

    inside = F.lit(True)
    for col, _, allowed in scope:
        inside = inside & F.coalesce(F.col(col).cast("string").isin(list(allowed)), F.lit(False))
    first = scope[0][0]
    return df.withColumn(first, F.when(inside, F.col(first)).otherwise(F.raise_error(F.lit(_STRAY_MARK))))


# a row breaking a column's rule (``checks`` of write): the message of the Spark error that stops the write
_CHECK_MARK = "liftlake-check-failed:"
_CHECK_MESSAGE = re.compile(re.escape(_CHECK_MARK) + r"([^\n]*?)(?:\s+at |\n|$)")
# Every table partitioned by ds: the day's format (a Delta CHECK constraint on tables delta-spark creates)
DS_CHECK = "ds RLIKE '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'"


def probability_checks(*columns: str) -> dict[str, str]:
    """The rule of probability columns: in [0, 1] (NULL and NaN break it)."""
    return {c: f"`{c}` >= 0 AND `{c}` <= 1" for c in columns}


def _guard_checks(df: DataFrame, name: str, checks: Mapping[str, str] | None) -> DataFrame:
    """``df`` whose columns of ``checks`` fail the write at the first row breaking their rule (a SQL
    boolean over the row; NULL breaks it), in the same pass over the rows as the write, on either
    backend (delta-rs commits files Spark wrote, so Delta's own constraints never see those rows)."""
    if not checks:
        return df
    from pyspark.sql import functions as F

    for col, rule in checks.items():
        if col not in df.columns:
            raise TableError(f"table {name}: check on column {col}, which the write does not have")
        message = F.concat(F.lit(f"{_CHECK_MARK} table {name}: column {col} breaks its rule ({rule}), value "),
                           F.coalesce(F.col(col).cast("string"), F.lit("NULL")),
                           F.lit("; the write committed nothing"))
        df = df.withColumn(col, F.when(F.coalesce(F.expr(rule), F.lit(False)), F.col(col))
                           .otherwise(F.raise_error(message)))
    return df


def _raise_if_check_failed(exc: BaseException) -> None:
    match = _CHECK_MESSAGE.search(str(exc))
    if match:
        raise TableError(match.group(1).strip()) from None


def _scope_predicate(scope: list[tuple[str, str, list[str]]]) -> str:
    """``replaceWhere`` for an overwrite scope; the values passed PARTITION_VALUE's rule, so quoting
    them cannot break the predicate."""
    return " AND ".join(f"`{col}` IN ({', '.join(repr(str(v)) for v in values)})" for col, _, values in scope)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class DeltaSparkStore(TableStore):
    """Spark's Delta connector: ``format('delta')``, ``replaceWhere``, Delta's optimistic concurrency.
    Needs a session with the Delta jars and extension (``build_session(delta_jars=True)``)."""

    backend = "delta-spark"

    def _delta_table(self, name: str):
        from delta.tables import DeltaTable

        return DeltaTable.forPath(self.spark, self._require(name))

    def _log(self, name: str):
        """The table's Delta log, for the metadata a write checks (its version, its partition
        columns): read by delta-rs in milliseconds, where Spark's ``DeltaTable.history(1)`` and
        ``detail()`` run jobs of 1-5 s each on 2 cores (measured). Rows, writes and commits stay Spark's."""
        from deltalake import DeltaTable as DeltaLog

        return DeltaLog(self._require(name))

    def version(self, name: str) -> int:
        return int(self._log(name).version())

    def _snapshot(self, name: str, version: int | None = None) -> DataFrame:
        path = self._require(name)
        reader = self.spark.read.format("delta")
        if version is not None:
            self._check_version(name, version)
            reader = reader.option("versionAsOf", version)
        return reader.load(path)

    def _check_version(self, name: str, version: int) -> None:
        latest = self.version(name)
        if not 0 <= version <= latest:
            raise TableError(f"table {name} has versions 0..{latest}; version {version} does not exist")

    def _partition_columns(self, name: str) -> tuple[str, ...]:
        return tuple(self._log(name).metadata().partition_columns)

    def partition_column(self, name: str) -> str | None:
        cols = self._partition_columns(name)
        return cols[0] if cols else None

    def spark_schema(self, name: str, version: int | None = None) -> StructType:
        return self._snapshot(name, version).schema

    def read(self, name: str, version: int | None = None, partitions: Sequence[str] | None = None) -> DataFrame:
        df = self._snapshot(name, version)
        if partitions is not None:
            part_col = self.partition_column(name)
            if part_col is None:
                raise TableError(f"table {name} is not partitioned; cannot read partitions {list(partitions)}")
            df = df.where(df[part_col].isin([str(p) for p in partitions]))
        return df

    def partition_counts(self, name: str, version: int | None = None) -> dict[str, int]:
        """Rows per partition of the first partition column, from the numRecords Spark's Delta writer
        puts in the log (milliseconds; a Spark count over the snapshot took ~3 s on 2 cores), or by
        that count when a file has none (a table another writer made without statistics)."""
        log = self._log(name)
        if version is not None:
            self._check_version(name, version)
            log.load_as_version(version)
        counts = log_partition_counts(log)
        if counts is not None:
            return counts
        part = self.partition_column(name)
        df = self._snapshot(name, version)
        if part is None:
            n = df.count()
            return {"__all__": n} if n else {}
        return {r[0]: int(r[1]) for r in df.groupBy(part).count().orderBy(part).collect()}

    def history(self, name: str) -> list[dict]:
        """Newest first, as delta-rs; the ``liftlake.*`` fields of a commit's userMetadata are lifted
        to the top level, where delta-rs keeps its custom metadata."""
        out = []
        for row in self._delta_table(name).history().collect():
            commit = row.asDict(recursive=True)
            meta = commit.get("userMetadata")
            if isinstance(meta, str) and meta.startswith("{"):
                try:
                    for key, value in json.loads(meta).items():
                        commit.setdefault(key, value)
                except ValueError:
                    pass
            out.append(commit)
        return out

    def referenced_files(self, name: str, version: int | None = None) -> set[str]:
        from urllib.parse import unquote, urlparse

        root = self.path(name)
        return {os.path.relpath(unquote(urlparse(uri).path), root).replace(os.sep, "/")
                for uri in self._snapshot(name, version).inputFiles()}

    def _check_fits(self, name: str, parts: tuple[str, ...], schema) -> None:
        """A write onto an existing table needs its partitioning and its schema (the same one-line
        TableError as delta-rs, before Delta's own longer error)."""
        existing = self._partition_columns(name)
        if existing != parts:
            raise TableError(f"table {name} is partitioned by {list(existing)}, the write by {list(parts)}")
        mismatch = schema_mismatch(name, self.spark_schema(name), schema)
        if mismatch:
            raise TableError(mismatch)

    def write(self, df: DataFrame, name: str, mode: str = "append", partition_values: Sequence[str] | None = None,
              partition_by: str | Sequence[str] | None = "ds", comment: str | None = None,
              column_comments: dict[str, str] | None = None,
              sub_partition_values: dict[str, Sequence[str]] | None = None,
              checks: Mapping[str, str] | None = None) -> WriteResult:
        validate_table_name(name)
        parts = partition_columns_of(partition_by)
        _check_write_args(mode, parts, partition_values, sub_partition_values)
        missing_parts = [c for c in parts if c not in df.columns]
        if missing_parts:
            raise TableError(f"table {name}: partition column(s) {missing_parts} are not in the data")
        if self.exists(name):
            self._check_fits(name, parts, df.schema)
        # Column order: data columns then the partition columns, as the delta-rs store writes them.
        df = df.select(*[c for c in df.columns if c not in parts], *parts)
        df = _guard_checks(df, name, checks)  # before the comments: withColumn drops a column's metadata
        for col, text in (column_comments or {}).items():
            if col in df.columns:
                df = df.withMetadata(col, {**df.schema[col].metadata, "comment": text})
        # a table this write creates carries the rules as Delta CHECK constraints: Delta enforces them
        # on every later writer of the table, liftlake's or not
        constraints = {**({"ds": DS_CHECK} if "ds" in parts else {}), **dict(checks or {})}
        scope = overwrite_scope(parts, partition_values, sub_partition_values) if mode == "overwrite_partitions" else []
        txn = new_txn()
        if self._pending is None:
            self._maybe_inject_fault(name)
            self._delta_write(name, df, mode, parts, scope, txn, guard=True, constraints=constraints, comment=comment)
            return self._committed_write(name, txn, parts)

        # Inside commit_together(): compute now (staged Parquet), commit at the block's end.
        staging = self._staging_dir(name, txn)
        self._stage_parquet(df, staging, parts)
        try:
            if scope:
                self._check_staged_scope(name, staging, parts, scope)
            rows, files, partitions = _staged_summary(staging, parts)
            self._maybe_inject_fault(name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        schema = df.schema
        version_before: list[int | None] = []

        def commit() -> None:
            staged = self.spark.read.schema(schema).option("basePath", staging).parquet(staging)
            version_before.append(self.version(name) if self.exists(name) else None)
            self._delta_write(name, staged.select(*schema.fieldNames()), mode, parts, scope, txn,
                              constraints=constraints, comment=comment)
            shutil.rmtree(staging, ignore_errors=True)

        def discard() -> None:
            shutil.rmtree(staging, ignore_errors=True)

        def undo(batch_txns: set[str]) -> None:
            if mode != "overwrite_partitions":
                raise TableError(f"table {name}: a committed {mode} write is not undone (only partition overwrites)")
            self._undo_partition_overwrite(name, version_before[-1], parts, scope, batch_txns)

        result = WriteResult(name, None, rows, files, partitions)
        self._pending.append(_PendingCommit(result, txn, commit, discard, undo, mode, parts, scope))
        return result

    def _delta_write(self, name: str, df: DataFrame, mode: str, parts: tuple[str, ...],
                     scope: list[tuple[str, str, list[str]]], txn: str, label: str | None = None,
                     guard: bool = False, constraints: Mapping[str, str] | None = None,
                     comment: str | None = None) -> None:
        """One Delta commit of ``df``: append, overwrite, or overwrite of ``scope`` by replaceWhere
        (``guard``: a row outside the scope fails the write, also on a new table). A commit that loses
        Delta's optimistic-concurrency check to another writer changed nothing and is tried again, up
        to DELTA_COMMIT_ATTEMPTS times, then fails with a TableError. The write that creates the table
        gives it its CHECK constraints; its comment follows in a metadata commit (``_set_comment``); a
        later write completes a table that lacks either (``_complete_metadata``)."""
        import random

        meta = json.dumps({"liftlake.txn": txn, "liftlake.mode": label or mode})
        path = self.path(name)
        for attempt in range(1, DELTA_COMMIT_ATTEMPTS + 1):
            creating = not self.exists(name)
            if attempt > 1 and not creating:
                self._check_fits(name, parts, df.schema)  # the winner may have created or changed the table
            rows = _guard_scope(df, scope) if guard else df
            try:
                # table properties given on the write that creates the table
                self._save(rows, path, mode, parts, scope, meta, constraints if creating else None)
            except Exception as exc:  # noqa: BLE001 - py4j / pyspark wrap Delta's exceptions
                text = str(exc)
                if _DELTA_CONFLICT.search(text):
                    if attempt < DELTA_COMMIT_ATTEMPTS:
                        logger.warning(f"table {name}: a concurrent commit conflicted with this write "
                                       f"(attempt {attempt} of {DELTA_COMMIT_ATTEMPTS}), trying again: "
                                       f"{_first_line(exc)}")
                        time.sleep(0.2 * attempt + random.random() * 0.3)
                        continue
                    raise TableError(f"table {name}: {DELTA_COMMIT_ATTEMPTS} attempts lost to concurrent commits; "
                                     f"this write committed nothing ({_first_line(exc)})") from None
                _raise_if_check_failed(exc)
                if _REPLACE_WHERE_MISMATCH.search(text) or _STRAY_MARK in text:
                    raise TableError(self._stray_message(name, df, scope)) from None
                if self.exists(name):
                    self._check_fits(name, parts, df.schema)  # a schema changed meanwhile: the one-line error
                raise
            if creating:
                if comment:
                    self._set_comment(path, comment)
            else:
                self._complete_metadata(name, path, constraints, comment)
            return

    @staticmethod
    def _save(df: DataFrame, path: str, mode: str, parts: tuple[str, ...],
              scope: list[tuple[str, str, list[str]]], meta: str, constraints: Mapping[str, str] | None) -> None:
        """One write of ``df`` to ``path``: append, overwrite, or replaceWhere over ``scope``; a table it
        creates gets ``constraints`` as CHECK constraints."""
        writer = df.write.format("delta").option("userMetadata", meta)
        for col, rule in (constraints or {}).items():
            writer = writer.option(f"delta.constraints.liftlake_{col}", rule)
        if parts:
            writer = writer.partitionBy(*parts)
        if mode == "append":
            writer = writer.mode("append")
        elif mode == "overwrite":
            writer = writer.mode("overwrite")
        else:
            writer = writer.mode("overwrite").option("replaceWhere", _scope_predicate(scope))
        writer.save(path)

    def _set_comment(self, path: str, comment: str) -> None:
        """The table's description (what DESCRIBE shows as its Comment): a metadata-only commit right
        after the write that created the table, since Delta's DataFrameWriter cannot set it and a
        create through the catalog (CTAS) refuses a folder that already holds this store's staging."""
        self.spark.sql(f"COMMENT ON TABLE {_delta_at(path)} IS {sql_string(comment)}")

    def _complete_metadata(self, name: str, path: str, constraints: Mapping[str, str] | None,
                           comment: str | None) -> None:
        """After a write to an existing table: the CHECK constraints and the comment a table this store
        creates carries, added where the table lacks them (a table created before the store set them,
        or whose creating job died between its write and its comment commit), one metadata commit
        each; a table that has them gets no commit. Delta validates a constraint on the rows already
        there: a table whose old rows break it keeps its rows and goes without, with a warning (the
        store's own writes are still checked row by row, ``_guard_checks``)."""
        meta = self._log(name).metadata()
        have = {key.lower() for key in meta.configuration}
        for col, rule in (constraints or {}).items():
            constraint = f"liftlake_{col}".lower()
            if f"delta.constraints.{constraint}" in have:
                continue
            try:
                self.spark.sql(f"ALTER TABLE {_delta_at(path)} ADD CONSTRAINT {constraint} CHECK ({rule})")
            except Exception as exc:  # noqa: BLE001 - py4j wraps Delta's refusal
                if f"delta.constraints.{constraint}" in {k.lower() for k in self._log(name).metadata().configuration}:
                    continue  # a concurrent writer added it first
                logger.warning(f"table {name}: CHECK constraint {constraint} ({rule}) not added, the table goes "
                               f"without it: {_first_line(exc)}")
        if comment and not meta.description:
            self._set_comment(path, comment)

    @staticmethod
    def _stray_message(name: str, df: DataFrame, scope: list[tuple[str, str, list[str]]]) -> str:
        """The message of the delta-rs store for rows outside an overwrite's partitions (only run once
        Delta refused the write, so the plan runs again only on this failure)."""
        from pyspark.sql import functions as F

        for col, _, allowed in scope:
            outside = df.where(~F.coalesce(F.col(col).cast("string").isin(allowed), F.lit(False)))
            values = sorted(str(r[0]) for r in outside.select(col).distinct().limit(5).collect())
            if values:
                return f"table {name}: the write holds {col} values {values} outside the partitions it replaces {allowed}"
        return f"table {name}: the write holds rows outside the partitions it replaces {scope}"

    def _committed_write(self, name: str, txn: str, parts: tuple[str, ...]) -> WriteResult:
        """The WriteResult of the commit carrying ``txn``: its version, rows (the add actions'
        numRecords), files and first-column partitions, from its entry in the Delta log."""
        log = os.path.join(self.path(name), "_delta_log")
        latest = self.version(name)
        for version in range(latest, max(-1, latest - 100), -1):  # concurrent writers may have committed since
            try:
                with open(os.path.join(log, f"{version:020d}.json"), encoding="utf-8") as fh:
                    actions = [json.loads(line) for line in fh if line.strip()]
            except FileNotFoundError:
                continue
            info: dict = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
            if txn_of(info) != txn:
                continue
            adds = [a["add"] for a in actions if "add" in a]
            rows = sum(int(json.loads(a.get("stats") or "{}").get("numRecords", 0)) for a in adds)
            partitions = tuple(sorted({(a.get("partitionValues") or {}).get(parts[0]) or "" for a in adds})) \
                if parts else ()
            return WriteResult(name, version, rows, len(adds), partitions)
        raise TableError(f"table {name}: the commit of write {txn} is not in its Delta log")

    def _undo_partition_overwrite(self, name: str, before: int | None, parts: tuple[str, ...],
                                  scope: list[tuple[str, str, list[str]]], batch_txns: set[str],
                                  schema=None) -> None:
        """Overwrite the scope's partitions with their rows of version ``before`` (read by time travel;
        other partitions, written meanwhile, stay): one more Delta commit, carrying the undo txn."""
        from pyspark.sql import functions as F

        undo = _undo_txn(batch_txns)
        if before is None:
            ours = batch_txns | {undo}
            if all(txn_of(h) in ours for h in self.history(name)):
                shutil.rmtree(self.path(name), ignore_errors=True)  # the batch created it: remove it
                return
            rows = self._snapshot(name).limit(0)  # others wrote since: empty the batch's partitions
        else:
            rows = self._snapshot(name, before)
            for col, _, allowed in scope:
                rows = rows.where(F.col(col).cast("string").isin(list(allowed)))
        self._delta_write(name, rows, "overwrite_partitions", parts, scope, undo, label="undo")

    def vacuum(self, name: str, retention_hours: float = 168.0, staging_grace_hours: float | None = None,
               dry_run: bool = False) -> list[str]:
        """Delta's VACUUM: the table's files no version within the retention references (files of
        replaced versions, and files a killed writer left), and its ``_staging/<txn>`` folders older
        than ``staging_grace_hours`` (default: the retention). The retention is the caller's, as with
        delta-rs (Delta's 168-hour floor is lifted for the call). Returns the paths removed (or that
        would be, with ``dry_run``), relative to the table."""
        from urllib.parse import unquote, urlparse

        root = self._require(name)
        # Delta's 168-hour floor is the caller's call here; and VACUUM lists the table in a job of
        # parallelPartitionDiscovery.parallelism tasks (10 000 by default: minutes of empty tasks on 2 cores)
        settings = {"spark.databricks.delta.retentionDurationCheck.enabled": "false",
                    "spark.sql.sources.parallelPartitionDiscovery.parallelism":
                        self.spark.conf.get("spark.sql.shuffle.partitions", "8") or "8"}
        with self._session_settings(settings):
            listed = self.spark.sql(f"VACUUM {_delta_at(root)} RETAIN {float(retention_hours)} HOURS DRY RUN").collect()
            removed = [os.path.relpath(unquote(urlparse(r[0]).path), root).replace(os.sep, "/") for r in listed]
            if removed and not dry_run:
                self._delta_table(name).vacuum(float(retention_hours))
        grace = retention_hours if staging_grace_hours is None else staging_grace_hours
        removed += self._vacuum_staging(name, grace, dry_run)
        return sorted(removed)

    def _compact(self, name: str, target_file_bytes: int) -> None:
        # OPTIMIZE bins the files under minFileSize into files of up to maxFileSize, per partition
        sizes = {f"spark.databricks.delta.optimize.{key}": str(target_file_bytes) for key in ("maxFileSize", "minFileSize")}
        try:
            with self._session_settings(sizes):
                self.spark.sql(f"OPTIMIZE {_delta_at(self._require(name))}").collect()
        except Exception as exc:  # noqa: BLE001 - py4j wraps Delta's conflict exceptions
            if _DELTA_CONFLICT.search(str(exc)):
                raise TableError(f"table {name}: a concurrent commit conflicted with the compaction, which "
                                 f"committed nothing ({_first_line(exc)})") from None
            raise

    @contextmanager
    def _session_settings(self, settings: dict[str, str]) -> Iterator[None]:
        """The session's SQL settings for the block, put back as they were after it."""
        before = {key: self.spark.conf.get(key, None) for key in settings}
        for key, value in settings.items():
            self.spark.conf.set(key, value)
        try:
            yield
        finally:
            for key, old in before.items():
                if old is None:
                    self.spark.conf.unset(key)
                else:
                    self.spark.conf.set(key, old)


def _staged_summary(staging: str, parts: tuple[str, ...]) -> tuple[int, int, tuple[str, ...]]:
    """Rows (Parquet footers), files and first-column partitions of a staged write."""
    rows, files, partitions = 0, 0, set()
    for dirpath, _, filenames in os.walk(staging):
        for fname in filenames:
            if not fname.endswith(".parquet") or fname.startswith((".", "_")):
                continue
            rows += pq.read_metadata(os.path.join(dirpath, fname)).num_rows
            files += 1
            if parts:
                partitions.add(_partition_values(os.path.relpath(dirpath, staging), parts)[parts[0]] or "")
    return rows, files, tuple(sorted(partitions))


def _maybe_exit_in_commit_loop(done: int) -> None:
    if os.environ.get(FAULT_IN_COMMIT_LOOP_ENV) == str(done):
        os._exit(137)  # killed: no undo, no cleanup


def _manifest_alive(body: dict, path: str) -> bool:
    """Whether the job that wrote a manifest may still be in its commit loop. On this host its process
    decides (alive, and the same process: its start time, against a reused pid), however long its
    commits take; a job on another host touches the manifest every MANIFEST_HEARTBEAT_S, so it is dead
    when the manifest has not changed for MANIFEST_STALE_S."""
    if body.get("host") != socket.gethostname():
        try:
            return time.time() - os.stat(path).st_mtime <= MANIFEST_STALE_S
        except OSError:  # removed meanwhile: its job finished
            return True
    try:
        pid = int(body["pid"])
        os.kill(pid, 0)
    except (ProcessLookupError, ValueError, KeyError, TypeError):
        return False
    except PermissionError:  # another user's live process
        return True
    started = body.get("pid_started")
    return started is None or _process_start(pid) in (None, started)


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name
    except (OSError, ValueError, IndexError):
        return None


class _Heartbeat:
    """Touches a manifest every MANIFEST_HEARTBEAT_S (a daemon thread) until stopped."""

    def __init__(self, path: str) -> None:
        import threading

        self.path, self._stop = path, threading.Event()
        self._thread = threading.Thread(target=self._run, name="liftlake-manifest-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(MANIFEST_HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def newest_mtime(path: str) -> float:
    """The latest modification time of ``path`` or anything under it (a writer still adding files
    keeps its staging folder young)."""
    latest = os.lstat(path).st_mtime
    for folder, dirs, files in os.walk(path):
        for entry in dirs + files:
            latest = max(latest, os.lstat(os.path.join(folder, entry)).st_mtime)
    return latest


def open_store(spark: SparkSession, root: str, backend: str = "auto") -> TableStore:
    """The store for ``root``. ``auto``: delta-spark when the session came with the Delta extension
    (a Delta cluster's, spark-submit's), else delta-rs, also where liftlake itself loaded the jars
    only so that a delta-spark store can be opened on request (the test session)."""
    from liftlake.lib.storage.spark import delta_is_the_sessions_choice, has_delta_extension

    if backend == "auto":
        backend = "delta-spark" if spark is not None and delta_is_the_sessions_choice(spark) else "delta-rs"
    if backend == "delta-rs":
        return DeltaRsStore(spark, root)
    if backend == "delta-spark":
        if spark is None or not has_delta_extension(spark):
            raise TableError("warehouse.backend delta-spark needs a Spark session with the Delta jars and "
                             "extension (this one was started without them; run `make setup` for .venv/jars)")
        return DeltaSparkStore(spark, root)
    raise TableError(f"table backend {backend!r} is not one of auto | delta-rs | delta-spark")
