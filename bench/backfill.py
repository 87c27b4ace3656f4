"""Load bench: an N-day Airflow backfill of ``liftlake_daily`` against one-day reference runs.

    .venv/bin/python -m bench.backfill                      # 30 days, 3 000 exposures/day, concurrency 2
    .venv/bin/python -m bench.backfill --days 3 --out reports/_work/backfill-small.md
    .venv/bin/python -m bench.backfill --days 30 --timeout-min 22   # stop the backfill after 22 min, compare what finished
    .venv/bin/python -m bench.backfill --render reports/backfill.json   # rewrite the Markdown from a run's JSON

What it does, in order:

1. A throw-away Airflow home under ``--workdir`` (default ``reports/_work/backfill``, git-ignored): SQLite
   metadata DB migrated, the DAGs folder of this checkout, a Spark connection ``local[1]`` named by
   ``LIFTLAKE_SPARK_CONN``, a small YAML in ``LIFTLAKE_CONF``, a fresh ``LIFTLAKE_WAREHOUSE``, and the
   pool ``liftlake_spark`` set to ``--concurrency`` slots.
2. A real backfill: ``airflow api-server`` (the task SDK's execution API), ``airflow scheduler``
   (LocalExecutor) and ``airflow dag-processor`` are started, then
   ``airflow backfill create --dag-id liftlake_daily --from-date D1 --to-date DN --max-active-runs C``
   and ``airflow dags unpause liftlake_daily``. The metadata DB is polled (read-only SQLite) until
   every backfill run has finished; run states, every task try, and durations are read from it.
   Before it, unless ``--models ''``: the day before the first backfilled day is simulated, its features
   built (this fits the warehouse's feature spec) and the ``--models`` trained on it with the ``liftlake``
   CLI (local launcher, one epoch), their CURRENT pointers set, so every backfilled day's ``score`` task
   writes ``scores.cvr`` / ``scores.uplift_user`` with them.
3. The reference: for every day d, a one-day run of the same day (simulate -> build features ->
   ESCIM labels -> score) in its own fresh warehouse, as library calls in one long-lived
   SparkSession with the same YAML and Spark settings the jobs get (``local[1]``).
4. The comparison, per day and per table the daily DAG writes: row count and an order-independent
   fingerprint (sum of a 64-bit hash of every row), and per-column fingerprints to name the columns
   of a mismatch.
5. ``--out`` (Markdown) and the same data as JSON next to it.

Two settings make a one-day run comparable to a day inside a backfill (both written into the report):

* ``escim_labels.window_days: 1`` in the YAML of both: the labeler of day d is otherwise fitted on the
  trailing window of days that happen to be in ``features.samples`` when the task runs, which in a
  backfill with concurrency > 1 depends on timing, and in a one-day run is d alone.
* The feature spec (``<warehouse>/_features/spec``) is fitted once, by the first ``build_features`` of a
  warehouse, and reused by every later day. The reference warehouse of day d gets the spec version the
  backfill's ``features.samples`` names for d (a re-run of one day in the production warehouse uses that
  spec too); without it a fresh warehouse fits its own spec on d and the ``f_*`` encodings differ by
  design. The report lists which spec versions the backfill used for which days. The reference
  warehouse of d also gets a copy of the seeded models (``_models/<name>``), as a re-run of d in the
  production warehouse would score with them.

Excluded columns (they differ by design between two warehouses): ``labels.escim_counterfactual.labeler_version``
(a per-warehouse counter ``v0001, v0002, ...`` of fitted labelers). No table has a write timestamp or job
run id column (docs/tables.md).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

REPO = Path(__file__).resolve().parent.parent
DAGS_FOLDER = REPO / "airflow_dags"
DAG_ID = "liftlake_daily"
POOL = "liftlake_spark"
SPARK_CONN_ID = "liftlake_bench_spark"
TASKS = ["simulate", "build_features", "escim_labels", "score", "publish"]
# Columns that differ by design between two warehouses holding the same day.
EXCLUDED_COLUMNS = {
    "labels.escim_counterfactual": {
        "labeler_version": "a per-warehouse counter of fitted labelers (v0001, v0002, ...): the backfill's "
                           "warehouse holds one labeler per day, a one-day warehouse one in all",
    },
}
# Tables the daily DAG writes (a prefix ends with '.'); anything else found is compared as well.
DAILY_TABLE_PREFIXES = ("raw.", "sim.", "features.", "ops.quarantine", "labels.", "scores.")


def log(msg: str) -> None:
    print(f"[bench.backfill] {msg}", file=sys.stderr, flush=True)


# -- the comparison (also used by tests/reliability/test_backfill_compare.py) --------------------------------
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


# -- the Airflow side --------------------------------------------------------------------------------------
def bench_yaml(exposures: int) -> str:
    return (
        f"simulator:\n  exposures: {exposures}\n"
        "escim_labels:\n  window_days: 1\n"
        "spark:\n  master: \"local[1]\"\n"
        "  conf:\n    spark.sql.shuffle.partitions: \"2\"\n    spark.ui.enabled: \"false\"\n"
        "    spark.driver.memory: \"1g\"\n")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def airflow_env(home: Path, warehouse: Path, conf_file: Path, start_date: str, port: int, parallelism: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "LIFTLAKE_", "PYSPARK_")) and k != "SPARK_HOME"}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # The task SDK's supervisor (in each LocalExecutor worker) talks to the API server's execution API.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # One secret for every component: the scheduler signs the task tokens the API server checks.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        # The DAG files do not change during the bench: parse them rarely (the CPUs run Spark).
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}": json.dumps({"conn_type": "spark", "host": "local[1]"}),
        "LIFTLAKE_SPARK_CONN": SPARK_CONN_ID,
        "LIFTLAKE_CONF": str(conf_file),
        "LIFTLAKE_WAREHOUSE": str(warehouse),
        "LIFTLAKE_START_DATE": start_date,
        "PYARROW_IGNORE_TIMEZONE": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return env


def airflow_bin() -> str:
    beside = Path(sys.executable).parent / "airflow"
    return str(beside) if beside.exists() else "airflow"


def airflow_cli(env: dict, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run([airflow_bin(), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=env["AIRFLOW_HOME"])
    if proc.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-4000:]}")
    return proc.stdout


class Services:
    """api-server, scheduler and dag-processor as child processes, each in its own process group."""

    def __init__(self, env: dict, logdir: Path):
        self.env, self.logdir = env, logdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> None:
        out = open(self.logdir / f"{name}.log", "w", encoding="utf-8")
        self.procs[name] = subprocess.Popen([airflow_bin(), *args], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, cwd=self.env["AIRFLOW_HOME"],
                                            start_new_session=True)
        log(f"started airflow {' '.join(args)} (pid {self.procs[name].pid}, log {out.name})")

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logdir / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-3000:]
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        import psutil

        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is not None:
                continue
            try:  # the whole tree this service started (LocalExecutor workers, spark-submit, JVMs)
                tree = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
            except psutil.Error:
                tree = [proc.pid]
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            for pid in tree:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            log(f"stopped airflow {name}")


def wait_for_port(port: int, services: Services, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        services.check()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"the API server did not listen on port {port} within {timeout:.0f} s")


def db_query(db: Path, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
    """Read-only query of the metadata DB; retried while the scheduler holds a write lock."""
    for attempt in range(30):
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                con.row_factory = sqlite3.Row
                return con.execute(sql, params).fetchall()
            finally:
                con.close()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 29:
                raise
            time.sleep(0.5)
    return []


def parse_ts(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def snapshot(db: Path, backfill_id: int) -> dict:
    runs = db_query(db, "select id, run_id, logical_date, state, start_date, end_date from dag_run "
                        "where dag_id = ? and backfill_id = ? order by logical_date", (DAG_ID, backfill_id))
    tis = db_query(db, "select ti.run_id, ti.task_id, ti.state, ti.try_number, ti.start_date, ti.end_date, "
                       "ti.duration, ti.queued_dttm, ti.pool from task_instance ti join dag_run dr "
                       "on dr.dag_id = ti.dag_id and dr.run_id = ti.run_id "
                       "where ti.dag_id = ? and dr.backfill_id = ?", (DAG_ID, backfill_id))
    history = db_query(db, "select h.run_id, h.task_id, h.state, h.try_number, h.start_date, h.end_date, "
                           "h.duration from task_instance_history h join dag_run dr "
                           "on dr.dag_id = h.dag_id and dr.run_id = h.run_id "
                           "where h.dag_id = ? and dr.backfill_id = ?", (DAG_ID, backfill_id))
    return {"runs": [dict(r) for r in runs], "tis": [dict(t) for t in tis], "history": [dict(h) for h in history]}


def max_overlap(intervals: list[tuple[dt.datetime, dt.datetime]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    best = cur = 0
    for _, step in events:
        cur += step
        best = max(best, cur)
    return best


def failed_try_log(home: Path, run_id: str, task_id: str, try_number: int, lines: int = 4) -> str:
    """The lines of a failed try's task log that name the error (the job's own ``liftlake <job>:
    error / internal failure`` line first, then the exception lines), for the report."""
    folder = home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
    files = sorted(folder.glob(f"attempt={try_number}*")) if folder.is_dir() else []
    if not files:
        return "(no task log found)"
    events = []
    for raw in files[0].read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(raw).get("event", "")
        except (ValueError, AttributeError):
            event = raw
        events.append(str(event))
    own = [e for e in events if e.startswith("liftlake ") and ("error:" in e or "internal failure" in e)]
    other = [e for e in events if any(k in e for k in ("Error", "Exception", "exit code", "Killed", "Timeout"))]
    keep = (own + [e for e in other if e not in own])[:lines] or events[-lines:]
    return "\n".join(e[:400] for e in keep)


# Causes recognised in a failed try's log, explained in the report.
KNOWN_CAUSES = {
    "A Delta Lake table already exists at that location": (
        "two first writes of the same table at once: lib/store.py DeltaRsStore.write sees no table "
        "(exists() is False), then commits version 0 with create_table_with_add_actions(mode='error'); the "
        "second writer's create fails instead of committing a partition overwrite onto the table the first "
        "just made. The retry finds the table and succeeds."),
}


def seed_models(conf_file: Path, warehouse: Path, seed_day: str, models: list[str], logdir: Path) -> dict:
    """Simulate and build the day before the backfill and train ``models`` on it, with the ``liftlake`` CLI
    (each command its own spark-submit-like process, like a person would run them); CURRENT of each model
    points at the new version afterwards, so that the backfill's ``score`` tasks have models to score with.

    The evaluation gate of ``liftlake train`` judges a model trained on one small day; where it holds CURRENT
    back the bench sets it anyway (said in the report): the bench measures scoring, not model quality."""
    from liftlake.lib.artifacts import model_store

    cli = str(Path(sys.executable).parent / "liftlake")
    common = ["--ds", seed_day, "--conf", str(conf_file), "--set", f"warehouse.path={warehouse}", "--quiet-config"]
    steps = [["simulate"], ["build-features"]] + [
        ["train", "--model", m, "--set", "train.launcher=local", "--set", "train.epochs=1"] for m in models]
    logdir.mkdir(parents=True, exist_ok=True)
    started = time.time()
    for step in steps:
        log_file = logdir / f"seed-{'-'.join(step[:1] + step[2:3])}.log"
        log(f"seed {seed_day}: liftlake {' '.join(step[:3])} (log {log_file})")
        with open(log_file, "w", encoding="utf-8") as fh:
            rc = subprocess.run([cli, step[0], *common, *step[1:]], stdout=fh, stderr=subprocess.STDOUT,
                                cwd=str(REPO), timeout=1800).returncode
        if rc != 0:
            raise RuntimeError(f"seeding failed: liftlake {' '.join(step)} exited {rc}; see {log_file}")
    seeded = {}
    for m in models:
        latest = model_store.versions(str(warehouse), m)[-1]
        gate_passed = model_store.current_version(str(warehouse), m) == latest
        if not gate_passed:
            model_store.set_current(str(warehouse), m, latest)
        seeded[m] = {"version": latest, "gate_passed": gate_passed}
    seconds = time.time() - started
    log(f"seeded {seed_day} and models {seeded} in {seconds:.0f} s")
    return {"day": seed_day, "models": seeded, "seconds": seconds}


def seeded_models(backfill: dict) -> list[str]:
    """The models seed_models() trained for this backfill (none with ``--models ''``)."""
    return list((backfill.get("seed") or {}).get("models") or {})


def run_backfill(args, work: Path, days: list[str]) -> dict:
    home, warehouse = work / "airflow_home", work / "warehouse"
    home.mkdir(parents=True)
    warehouse.mkdir(parents=True)
    conf_file = work / "liftlake-bench.yaml"
    conf_file.write_text(bench_yaml(args.exposures), encoding="utf-8")
    models = [m for m in args.models.split(",") if m]
    seed_day = (dt.date.fromisoformat(days[0]) - dt.timedelta(days=1)).isoformat()
    seed = seed_models(conf_file, warehouse, seed_day, models, work / "logs") if models else None
    port = free_port()
    parallelism = max(2 * args.concurrency, 4)
    env = airflow_env(home, warehouse, conf_file, days[0], port, parallelism)
    db = home / "airflow.db"
    info: dict = {"airflow_home": str(home), "warehouse": str(warehouse), "conf_file": str(conf_file),
                  "conf_yaml": bench_yaml(args.exposures), "executor": "LocalExecutor", "database": "SQLite",
                  "parallelism": parallelism, "pool_slots": args.concurrency,
                  "backfill_max_active_runs": args.concurrency, "spark_master": "local[1]",
                  "start_date_env": days[0], "seed": seed}

    log("airflow db migrate")
    airflow_cli(env, "db", "migrate", timeout=600)
    airflow_cli(env, "pools", "set", POOL, str(args.concurrency), "liftlake Spark drivers (bench)")
    airflow_cli(env, "dags", "reserialize", timeout=600)
    errors = airflow_cli(env, "dags", "list-import-errors")
    pool = db_query(db, "select pool, slots from slot_pool where pool = ?", (POOL,))
    info["pool"] = {"name": pool[0]["pool"], "slots": pool[0]["slots"]} if pool else None
    if not db_query(db, "select dag_id from dag where dag_id = ?", (DAG_ID,)):
        raise RuntimeError(f"{DAG_ID} is not in the metadata DB after reserialize; import errors:\n{errors}")

    # Create the backfill while the DAG is paused, then unpause: the scheduler's own catchup finds a
    # run for every day already there and creates none (only backfill runs exist). It is created before
    # the services start: its 30 run inserts in one SQLite transaction failed with "database is locked"
    # once when the scheduler and dag-processor were writing at the same moment.
    out = airflow_cli(env, "backfill", "create", "--dag-id", DAG_ID, "--from-date", days[0],
                      "--to-date", days[-1], "--max-active-runs", str(args.concurrency))
    backfills = db_query(db, "select id, max_active_runs from backfill where dag_id = ? order by id", (DAG_ID,))
    if not backfills:
        raise RuntimeError(f"no backfill row after `airflow backfill create`:\n{out}")
    backfill_id = backfills[-1]["id"]
    info["backfill_id"] = backfill_id
    info["backfill_command"] = (f"airflow backfill create --dag-id {DAG_ID} --from-date {days[0]} "
                                f"--to-date {days[-1]} --max-active-runs {args.concurrency}")

    services = Services(env, work / "logs")
    (work / "logs").mkdir(exist_ok=True)
    try:
        services.start("api-server", "api-server")
        wait_for_port(port, services)
        services.start("scheduler", "scheduler")
        services.start("dag-processor", "dag-processor")
        t0 = time.time()
        airflow_cli(env, "dags", "unpause", DAG_ID)
        log(f"backfill {backfill_id} created for {days[0]}..{days[-1]} ({len(days)} runs), DAG unpaused")
        last_print, snap, timed_out = 0.0, None, False
        while True:
            services.check()
            snap = snapshot(db, backfill_id)
            done = [r for r in snap["runs"] if r["state"] in ("success", "failed")]
            if len(snap["runs"]) == len(days) and len(done) == len(days):
                break
            elapsed = time.time() - t0
            if elapsed > args.timeout_min * 60:
                timed_out = True
                log(f"timeout after {elapsed:.0f} s: stopping with {len(done)}/{len(days)} runs done")
                break
            if time.time() - last_print >= args.progress_s:
                last_print = time.time()
                states: dict[str, int] = {}
                for t in snap["tis"]:
                    states[t["state"] or "none"] = states.get(t["state"] or "none", 0) + 1
                ok = sum(r["state"] == "success" for r in done)
                running = sum(r["state"] == "running" for r in snap["runs"])
                log(f"{len(done)}/{len(days)} runs done ({ok} success, {len(done) - ok} failed), {running} running; "
                    f"tasks {json.dumps(states, sort_keys=True)}; failed tries {len(snap['history'])}; "
                    f"elapsed {elapsed:.0f} s")
            time.sleep(5)
        wall = time.time() - t0
        info["timed_out"] = timed_out
        info["wall_s_poll"] = wall
        snap = snapshot(db, backfill_id)
        completed = db_query(db, "select created_at, completed_at from backfill where id = ?", (backfill_id,))
        info["backfill_row"] = dict(completed[0]) if completed else None
        # Every scheduled (non-backfill) run the scheduler made on its own: expected none.
        info["other_runs"] = [dict(r) for r in db_query(
            db, "select run_id, run_type, state from dag_run where dag_id = ? and (backfill_id is null or backfill_id != ?)",
            (DAG_ID, backfill_id))]
    finally:
        services.stop()
    info.update(summarize(snap, home, days))
    return info


def summarize(snap: dict, home: Path, days: list[str]) -> dict:
    runs, tis, history = snap["runs"], snap["tis"], snap["history"]
    by_day = {}
    for r in runs:
        ds = str(r["logical_date"])[:10]
        start, end = parse_ts(r["start_date"]), parse_ts(r["end_date"])
        run_tis = [t for t in tis if t["run_id"] == r["run_id"]]
        by_day[ds] = {"run_id": r["run_id"], "state": r["state"],
                      "duration_s": (end - start).total_seconds() if start and end else None,
                      "tasks": {t["task_id"]: {"state": t["state"], "try_number": t["try_number"],
                                               "duration_s": t["duration"]} for t in run_tis}}
    # Wall time: first task start -> last task end (the runs' own clock, in the metadata DB).
    starts = [parse_ts(t["start_date"]) for t in tis if t["start_date"]]
    ends = [parse_ts(t["end_date"]) for t in tis if t["end_date"]]
    run_starts = [parse_ts(r["start_date"]) for r in runs if r["start_date"]]
    run_ends = [parse_ts(r["end_date"]) for r in runs if r["end_date"]]
    # One interval per try: a try can be in the history and still on its task instance (up for retry).
    tries = {(t["run_id"], t["task_id"], t["try_number"]): t for t in [*tis, *history]}
    intervals = [(parse_ts(t["start_date"]), parse_ts(t["end_date"])) for t in tries.values()
                 if t["start_date"] and t["end_date"]]
    durations: dict[str, list[float]] = {}
    for t in tis:
        if t["state"] == "success" and t["duration"] is not None:
            durations.setdefault(t["task_id"], []).append(float(t["duration"]))
    task_stats = {task: {"n": len(v), "mean_s": statistics.mean(v), "median_s": statistics.median(v),
                         "min_s": min(v), "max_s": max(v), "total_s": sum(v)}
                  for task, v in durations.items()}
    failed_tries = []
    for h in history:
        after = [t for t in [*history, *tis] if t["run_id"] == h["run_id"] and t["task_id"] == h["task_id"]
                 and t["try_number"] == h["try_number"] + 1 and t["start_date"]]
        retry_after = (parse_ts(after[0]["start_date"]) - parse_ts(h["end_date"])).total_seconds() \
            if after and h["end_date"] else None
        failed_tries.append({"retry_started_after_s": retry_after,"ds": next((d for d, v in by_day.items() if v["run_id"] == h["run_id"]), None),
                             "task_id": h["task_id"], "try_number": h["try_number"], "state": h["state"],
                             "duration_s": h["duration"],
                             "log_tail": failed_try_log(home, h["run_id"], h["task_id"], h["try_number"])})
    return {
        "runs_total": len(runs), "runs_expected": len(days),
        "runs_success": sum(r["state"] == "success" for r in runs),
        "runs_failed": sum(r["state"] == "failed" for r in runs),
        "runs_other": sum(r["state"] not in ("success", "failed") for r in runs),
        "task_instances": len(tis),
        "task_states": {s: sum((t["state"] or "none") == s for t in tis) for s in sorted({t["state"] or "none" for t in tis})},
        "tasks_failed": sum(t["state"] in ("failed", "upstream_failed") for t in tis),
        "task_tries_total": sum(int(t["try_number"] or 0) for t in tis),
        "tasks_with_retries": [{"ds": d, "task_id": k, "try_number": v["try_number"]}
                               for d, run in sorted(by_day.items()) for k, v in run["tasks"].items()
                               if (v["try_number"] or 0) > 1],
        "failed_tries": failed_tries,
        "wall_s": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
        "wall_s_runs": (max(run_ends) - min(run_starts)).total_seconds() if run_starts and run_ends else None,
        "max_concurrent_tasks": max_overlap(intervals) if intervals else 0,
        "task_seconds": task_stats,
        "run_seconds": [v["duration_s"] for _, v in sorted(by_day.items()) if v["duration_s"] is not None],
        "by_day": by_day,
    }


# -- the reference: one-day runs in process -------------------------------------------------------------
def reference_days(spark, conf_file: Path, ref_root: Path, backfill_store, days: list[str],
                   models: Iterable[str] = ()) -> dict:
    import argparse as _argparse

    from liftlake.lib.artifacts.feature_specs import load_spec, save_spec
    from liftlake.lib.cli.runner import JobContext
    from liftlake.lib.config import load_config
    from liftlake.lib.pipelines.build_features import build_features_days
    from liftlake.lib.pipelines.escim_labels import escim_labels
    from liftlake.lib.pipelines.score import score_days
    from liftlake.lib.pipelines.simulate import simulate_days
    from liftlake.lib.storage.store import DeltaRsStore

    out = {}
    for i, ds in enumerate(days):
        started = time.time()
        wh = ref_root / ds
        wh.mkdir(parents=True)
        spec_version = None
        if backfill_store.exists("features.samples") and ds in backfill_store.partition_counts("features.samples"):
            rows = backfill_store.read("features.samples", partitions=[ds]).select("feature_spec_version") \
                .distinct().collect()
            if len(rows) == 1:
                spec_version = rows[0][0]
                save_spec(str(wh), load_spec(backfill_store.root, spec_version))
        for name in models:  # the backfill's trained models (artifacts and CURRENT), not its checkpoints
            shutil.copytree(Path(backfill_store.root) / "_models" / name, wh / "_models" / name,
                            ignore=shutil.ignore_patterns("_checkpoints"))
        sets = [f"warehouse.path={wh}"]
        config = load_config([str(conf_file)], sets, env={})
        ns = _argparse.Namespace(conf=[str(conf_file)], overrides=sets, json=False, model=None, quiet_config=True)
        ctx = JobContext("bench-reference", config, ns, [ds], _spark=spark, _store=DeltaRsStore(spark, str(wh)))
        simulate_days(ctx)
        build_features_days(ctx)
        escim_labels(ctx)
        score_days(ctx)
        out[ds] = {"warehouse": str(wh), "seeded_spec": spec_version, "seconds": time.time() - started}
        log(f"reference {i + 1}/{len(days)} {ds} in {out[ds]['seconds']:.1f} s")
    return out


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


# -- report ------------------------------------------------------------------------------------------------
def machine() -> dict:
    from bench.run import machine_basics

    return {**machine_basics(("apache-airflow", "apache-airflow-providers-apache-spark", "apache-airflow-task-sdk",
                              "pyspark", "deltalake", "torch")),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def fmt_s(v) -> str:
    return "-" if v is None else f"{v:,.1f}"


def verdict(result: dict) -> tuple[str, str]:
    """(status, one line): PASS, PASS WITH RETRIES (every task ended successful and every day matches,
    but some tries failed and were retried), FAIL, or INCOMPLETE (the backfill did not finish in time)."""
    bf, comp = result["backfill"], result.get("comparison") or {}
    n = bf["runs_expected"]
    mism = sum(not r["match"] for rows in comp.values() for r in rows)
    days_ok = sum(bool(rows) and all(r["match"] for r in rows) for rows in comp.values())
    unscored = days_without_scores(result)
    if bf["runs_failed"] or bf["tasks_failed"] or mism or unscored:
        status = "FAIL"
    elif bf.get("timed_out") or bf["runs_success"] < n:
        status = "INCOMPLETE"
    elif bf["failed_tries"]:
        status = "PASS WITH RETRIES"
    else:
        status = "PASS"
    text = (f"{status}: {bf['runs_success']}/{n} backfill runs succeeded ({bf['runs_failed']} failed"
            + (f", {n - bf['runs_success'] - bf['runs_failed']} not finished when the "
               f"{result['config']['timeout_min']:g}-minute limit stopped it" if bf.get("timed_out") else "")
            + f") in {fmt_s(bf['wall_s'])} s; {bf['tasks_failed']} failed tasks; {len(bf['failed_tries'])} failed "
            f"tries (retried by Airflow); {days_ok}/{len(comp)} compared days match their one-day run on "
            f"every table ({mism} table mismatches)"
            + (f"; {len(unscored)} days without scores from the seeded models" if unscored else "") + ".")
    return status, text


def days_without_scores(result: dict) -> list[str]:
    """Compared days where models were seeded but the backfill wrote no scores: a match of two empty
    score tables would say nothing."""
    if not seeded_models(result["backfill"]):
        return []
    return [ds for ds, rows in (result.get("comparison") or {}).items()
            if not any(r["table"].startswith("scores.") and (r["rows_a"] or 0) > 0 for r in rows)]


def write_report(path: Path, result: dict) -> None:
    m, bf, cfg = result["machine"], result["backfill"], result["config"]
    comp, refs = result.get("comparison") or {}, result.get("reference") or {}
    status, line = verdict(result)
    L = ["# liftlake backfill benchmark", ""]
    L.append(f"Run {result['started']} on {m['platform']}, {m['cpus']} CPU cores, {m['memory_gib']} GiB "
             f"(load average at start {m['load_avg_at_start']}; other work shared the machine).")
    L.append(f"Versions: python {m['python']}, apache-airflow {m['apache-airflow']} (task SDK "
             f"{m['apache-airflow-task-sdk']}, Spark provider {m['apache-airflow-providers-apache-spark']}), "
             f"pyspark {m['pyspark']}, deltalake {m['deltalake']}, torch {m['torch']}.")
    L.append(f"Command: `{result['command']}`. Every number below comes from this run.")
    L += ["", f"**Verdict: {line}**", "", "## Setup", ""]
    L.append(f"- Days: {cfg['days']} ({cfg['first_day']} .. {cfg['last_day']}), {cfg['exposures']:,} simulated "
             f"exposures per day, concurrency {cfg['concurrency']}.")
    L.append(f"- Airflow: a real `airflow scheduler` ({bf['executor']}, core.parallelism {bf['parallelism']}), "
             f"`airflow dag-processor` and `airflow api-server` (the task SDK's execution API) on a fresh "
             f"{bf['database']} metadata DB; pool `{POOL}` = {bf['pool']['slots'] if bf.get('pool') else '?'} slots; "
             f"`{bf.get('backfill_command', '')}`, then `airflow dags unpause {DAG_ID}`.")
    L.append(f"- Every task is `spark-submit jobs/<job>.py` against the Spark connection `{SPARK_CONN_ID}` "
             f"(`local[1]`), into one fresh warehouse. `LIFTLAKE_CONF`:")
    L += ["", "```yaml", bf["conf_yaml"].rstrip(), "```", ""]
    seed = bf.get("seed")
    if seed:
        L.append(f"- Models: before the backfill, {seed['day']} (the day before the first) was simulated and its "
                 f"features built with the `liftlake` CLI into the same warehouse (this fitted its feature spec), "
                 f"then " + ", ".join(
                     f"{m} {v['version']}" + ("" if v["gate_passed"] else " (CURRENT set by the bench: the "
                                              "evaluation gate held it back)")
                     for m, v in seed["models"].items())
                 + f" trained on it (`liftlake train`, local launcher, 1 epoch; {fmt_s(seed['seconds'])} s in all) and "
                 f"made CURRENT, so every `score` task scores the day with them. The reference warehouses get a "
                 f"copy of these models.")
    L.append("- Reference: each day run alone (simulate -> build features -> ESCIM labels -> score, the "
             "library calls of the jobs) in its own fresh warehouse, in one SparkSession (`local[1]`, the "
             "same YAML).")
    L.append("- Comparable by construction: `escim_labels.window_days: 1` for both (the labeler of a day "
             "is fitted on that day only; with the default 7-day window a backfill day's labeler sees whichever "
             "earlier days happen to be finished, which depends on timing); the reference warehouse of a day "
             "is given the feature spec version the backfill's `features.samples` names for it (a fresh "
             "warehouse would fit its own spec on that one day).")
    excl = "; ".join(f"`{t}.{c}`: {why}" for t, cols in EXCLUDED_COLUMNS.items() for c, why in cols.items())
    L.append(f"- Compared per day and table: row count and an order-independent fingerprint (sum over rows "
             f"of `xxhash64` of every column with null markers, as decimal; per-column sums name the "
             f"columns of a mismatch). Excluded column: {excl}. No table has a write-time or run-id column.")
    L += ["", "## Backfill", ""]
    L.append("| measure | value |")
    L.append("|---|---|")
    L.append(f"| runs succeeded / failed / not finished (of {bf['runs_expected']}) | {bf['runs_success']} / "
             f"{bf['runs_failed']} / {bf['runs_expected'] - bf['runs_success'] - bf['runs_failed']} |")
    L.append(f"| wall time, first task start -> last task end | {fmt_s(bf['wall_s'])} s "
             f"({fmt_s(bf['wall_s'] / 60 if bf['wall_s'] else None)} min) |")
    L.append(f"| wall time, backfill created -> all runs finished (polled every 5 s) | {fmt_s(bf['wall_s_poll'])} s |")
    rate = bf["runs_success"] / bf["wall_s"] * 3600 if bf["wall_s"] else None
    L.append(f"| days finished per hour | {fmt_s(rate)} |")
    L.append(f"| task instances / failed | {bf['task_instances']} / {bf['tasks_failed']} |")
    L.append(f"| task states | {', '.join(f'{k} {v}' for k, v in bf['task_states'].items())} |")
    L.append(f"| task tries in all / tasks with more than one try | {bf['task_tries_total']} / "
             f"{len(bf['tasks_with_retries'])} |")
    L.append(f"| most tasks running at once (from task start/end times) | {bf['max_concurrent_tasks']} "
             f"(pool slots {bf['pool']['slots'] if bf.get('pool') else '?'}) |")
    rs = bf["run_seconds"]
    if rs:
        L.append(f"| run duration (run start -> run end) median / max | {fmt_s(statistics.median(rs))} s / {fmt_s(max(rs))} s |")
    L.append(f"| runs the scheduler made besides the backfill | {len(bf.get('other_runs') or [])} |")
    if bf.get("timed_out"):
        L += ["", f"The backfill was stopped by `--timeout-min {cfg['timeout_min']:g}` (chosen to keep the whole "
                  f"bench, reference and comparison included, within about 35 minutes on this shared machine). "
                  + (f"At the rate it ran ({fmt_s(rate)} days per hour), all {bf['runs_expected']} days would take "
                     f"about {fmt_s(bf['runs_expected'] / rate * 60)} minutes (an extrapolation, not a measurement)."
                     if rate else "")
              + " Tries and states are read before the bench stops the scheduler; the tasks still running "
                "then are killed by that stop and not counted."]
    L += ["", "Task durations (successful tries, seconds, from the metadata DB, including the tries of runs "
              "not finished when stopped). Each includes the `spark-submit` start-up (JVM and Python driver)"
              + (": `publish` (a metadata read) does almost no work, so its time is close to that fixed cost per "
                 "task." if bf.get("seed") else
                 ": `score` (no model has a CURRENT version in a fresh warehouse) and `publish` do almost no "
                 "work, so their time is close to that fixed cost per task."), "",
          "| task | n | mean | median | min | max | total |", "|---|---|---|---|---|---|---|"]
    for task in TASKS:
        s = bf["task_seconds"].get(task)
        if s:
            L.append(f"| {task} | {s['n']} | {fmt_s(s['mean_s'])} | {fmt_s(s['median_s'])} | {fmt_s(s['min_s'])} | "
                     f"{fmt_s(s['max_s'])} | {fmt_s(s['total_s'])} |")
    if bf["failed_tries"]:
        L += ["", "Failed tries (each was retried by Airflow):", ""]
        for f in bf["failed_tries"]:
            retry = (f"; the next try started {fmt_s(f['retry_started_after_s'])} s later"
                     if f.get("retry_started_after_s") is not None else "")
            L.append(f"- {f['ds']} `{f['task_id']}` try {f['try_number']} {f['state']} after "
                     f"{fmt_s(f['duration_s'])} s{retry}:")
            L += ["", "  ```", *("  " + x for x in f["log_tail"].splitlines()), "  ```", ""]
            for needle, why in KNOWN_CAUSES.items():
                if needle in f["log_tail"]:
                    L += [f"  Cause: {why}", ""]
    if result.get("feature_specs"):
        L += ["", "Feature spec versions the backfill's `features.samples` used: " +
              "; ".join(f"`{v}` for {len(ds)} day(s) ({ds[0]}..{ds[-1]})" for v, ds in result["feature_specs"].items())
              + "."]
    L += ["", "## Each day against its one-day run", "",
          "| day | run | run s (start -> end) | task tries | tables compared | rows (backfill, all tables) | match |",
          "|---|---|---|---|---|---|---|"]
    unfinished = []
    for ds in result["days"]:
        run = bf["by_day"].get(ds, {})
        rows = comp.get(ds, [])
        if run.get("state") not in ("success", "failed") and not rows:
            unfinished.append(f"{ds} ({run.get('state', 'no run')})")
            continue
        tries = sum((t["try_number"] or 0) for t in run.get("tasks", {}).values())
        bad = [r for r in rows if not r["match"]]
        L.append(f"| {ds} | {run.get('state', 'missing')} | {fmt_s(run.get('duration_s'))} | {tries} | {len(rows)} | "
                 f"{sum(r['rows_a'] or 0 for r in rows):,} | {'yes' if rows and not bad else 'no' if rows else 'not compared'} |")
    if unfinished:
        L += ["", f"Not finished when the backfill was stopped (not compared): {', '.join(unfinished)}."]
    tables = sorted({r["table"] for rows in comp.values() for r in rows})
    if tables:
        L += ["", f"Tables compared per day: {', '.join(tables)}."]
    mism = [r for rows in comp.values() for r in rows if not r["match"]]
    L += ["", "Mismatches:" if mism else "Mismatches: none.", ""]
    for r in mism:
        L.append(f"- {r['ds']} `{r['table']}`: {r['reason']} (rows backfill {r['rows_a']}, reference {r['rows_b']})")
    unscored = days_without_scores(result)
    if unscored:
        L += ["", f"Days without scores although models were seeded: {', '.join(unscored)}."]
    if refs:
        secs = [v["seconds"] for v in refs.values()]
        L += ["", f"Reference one-day runs: {len(refs)} days, {fmt_s(sum(secs))} s in all "
                  f"(median {fmt_s(statistics.median(secs))} s per day, in process). Comparison: "
                  f"{fmt_s(result.get('compare_s'))} s. Whole bench (Airflow set-up, backfill, reference, "
                  f"comparison): {fmt_s((result.get('seconds') or {}).get('total'))} s."]
    L.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L), encoding="utf-8")


# -- main --------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--exposures", type=int, default=3000, help="simulated exposures per day")
    parser.add_argument("--concurrency", type=int, default=2, help="pool slots and backfill max active runs")
    parser.add_argument("--end", help="last day (default: yesterday, UTC; a backfill needs finished intervals)")
    parser.add_argument("--out", default="reports/backfill.md")
    parser.add_argument("--workdir", default="reports/_work/backfill", help="wiped first (Airflow home, warehouses)")
    parser.add_argument("--timeout-min", type=float, default=120.0,
                        help="stop the backfill after this many minutes and compare the days it finished")
    parser.add_argument("--progress-s", type=float, default=30.0)
    parser.add_argument("--models", default="dcmt,unimvt",
                        help="trained on the day before the backfill so that its score tasks score; '' for none")
    parser.add_argument("--render", metavar="JSON", help="only rewrite --out from the JSON of an earlier run")
    args = parser.parse_args(argv)
    t_start = time.time()
    if args.render:
        out = (REPO / args.out) if not os.path.isabs(args.out) else Path(args.out)
        write_report(out, json.loads(Path(args.render).read_text(encoding="utf-8")))
        log(f"wrote {out} from {args.render}")
        return 0
    if args.days < 1 or args.concurrency < 1 or args.exposures < 100:
        parser.error("--days and --concurrency must be >= 1, --exposures >= 100")
    end = dt.date.fromisoformat(args.end) if args.end else dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    days = [(end - dt.timedelta(days=args.days - 1 - i)).isoformat() for i in range(args.days)]
    work = (REPO / args.workdir).resolve() if not os.path.isabs(args.workdir) else Path(args.workdir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    out = (REPO / args.out) if not os.path.isabs(args.out) else Path(args.out)
    command = "python -m bench.backfill " + " ".join(argv if argv is not None else sys.argv[1:])
    result: dict = {"started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
                    "command": command.strip(), "machine": machine(), "days": days,
                    "config": {"days": args.days, "first_day": days[0], "last_day": days[-1],
                               "exposures": args.exposures, "concurrency": args.concurrency, "models": args.models,
                               "pool_slots": args.concurrency, "timeout_min": args.timeout_min,
                               "excluded_columns": EXCLUDED_COLUMNS}}
    log(f"{args.days} days {days[0]}..{days[-1]}, {args.exposures} exposures/day, concurrency {args.concurrency}; "
        f"work folder {work}")
    result["backfill"] = run_backfill(args, work, days)
    bf = result["backfill"]
    log(f"backfill: {bf['runs_success']}/{len(days)} runs succeeded, {bf['runs_failed']} failed, "
        f"{bf['tasks_failed']} failed tasks, {len(bf['failed_tries'])} failed tries, wall {fmt_s(bf['wall_s'])} s")

    os.environ["PYARROW_IGNORE_TIMEZONE"] = "1"
    from pyspark.sql import functions as F

    from liftlake.lib.config import load_config
    from liftlake.lib.storage.spark import build_session
    from liftlake.lib.storage.store import DeltaRsStore

    cfg = load_config([bf["conf_file"]], [], env={})
    # The jobs' Spark settings (the bench YAML); the console progress bar off (output only).
    spark = build_session("liftlake-bench-backfill-reference", master=cfg.spark.master,
                          conf={**cfg.spark.conf, "spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    try:
        backfill_store = DeltaRsStore(spark, bf["warehouse"])
        if backfill_store.exists("features.samples"):
            specs: dict[str, list[str]] = {}
            for r in backfill_store.read("features.samples").where(F.col("ds").isin(days)) \
                    .groupBy("feature_spec_version", "ds").count() \
                    .orderBy("ds").collect():
                specs.setdefault(r["feature_spec_version"], []).append(r["ds"])
            result["feature_specs"] = specs
        finished = [d for d in days if bf["by_day"].get(d, {}).get("state") in ("success", "failed")]
        t = time.time()
        result["reference"] = reference_days(spark, Path(bf["conf_file"]), work / "reference", backfill_store,
                                             finished, seeded_models(bf))
        result["reference_s"] = time.time() - t
        t = time.time()
        result["comparison"] = compare_days(spark, bf["warehouse"], result["reference"])
        result["compare_s"] = time.time() - t
    finally:
        spark.stop()
    status, line = verdict(result)
    result["verdict"], result["status"] = line, status
    result["seconds"] = {"total": time.time() - t_start, "reference": result.get("reference_s"),
                         "compare": result.get("compare_s")}
    write_report(out, result)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str, sort_keys=True), encoding="utf-8")
    log(f"wrote {out} and {out.with_suffix('.json')}")
    print(line)
    return 0 if status in ("PASS", "PASS WITH RETRIES") else 1


if __name__ == "__main__":
    sys.exit(main())
