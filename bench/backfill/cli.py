"""The command line of the backfill bench and its main flow: the flags, the days, the work folder, then
the backfill, the reference and the comparison in one SparkSession, the verdict, and the report and its
JSON (or, with ``--render``, only the report again from an earlier run's JSON)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import time
from pathlib import Path

import bench.backfill
from bench.backfill import REPO, log
from bench.backfill.backfill_run import run_backfill
from bench.backfill.compare import EXCLUDED_COLUMNS, compare_days
from bench.backfill.reference import feature_specs, reference_days, seeded_models
from bench.backfill.report import fmt_s, verdict, write_report
from bench.machine import machine_basics


def machine() -> dict:
    return {**machine_basics(("apache-airflow", "apache-airflow-providers-apache-spark", "apache-airflow-task-sdk",
                              "pyspark", "deltalake", "torch")),
            "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill",
                                     description=bench.backfill.__doc__.split("\n\n")[0])
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
    out = (REPO / args.out) if not os.path.isabs(args.out) else Path(args.out)
    if args.render:
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
        specs = feature_specs(backfill_store, days)
        if specs is not None:
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
