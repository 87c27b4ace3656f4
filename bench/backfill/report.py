"""The verdict and report of the backfill bench: PASS / PASS WITH RETRIES / FAIL / INCOMPLETE from a run's
result, and reports/backfill.md rendered from it (the result is what the run writes as reports/backfill.json;
``python -m bench.backfill --render reports/backfill.json`` renders the Markdown again from it alone)."""
from __future__ import annotations

import statistics
from pathlib import Path

from bench.backfill.airflow_procs import DAG_ID, POOL, SPARK_CONN_ID, TASKS
from bench.backfill.compare import EXCLUDED_COLUMNS
from bench.backfill.reference import seeded_models

# Causes recognised in a failed try's log, explained in the report.
KNOWN_CAUSES = {
    "A Delta Lake table already exists at that location": (
        "two first writes of the same table at once: lib/storage/store.py DeltaRsStore.write sees no table "
        "(exists() is False), then commits version 0 with create_table_with_add_actions(mode='error'); the "
        "second writer's create fails instead of committing a partition overwrite onto the table the first "
        "just made. The retry finds the table and succeeds."),
}


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
