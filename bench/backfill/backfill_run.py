"""Steps 1-2 of the backfill bench: the throw-away Airflow home and warehouse, the models seeded, one
real ``airflow backfill create`` run by the scheduler to the end (or ``--timeout-min``), and its runs,
task tries, durations and failed tries' log lines summarized from the metadata DB."""
from __future__ import annotations

import datetime as dt
import json
import statistics
import time
from pathlib import Path

from bench.backfill import log
from bench.backfill.airflow_procs import (
    DAG_ID,
    POOL,
    Services,
    airflow_cli,
    airflow_env,
    bench_yaml,
    db_query,
    free_port,
    wait_for_port,
)
from bench.backfill.reference import seed_models


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
