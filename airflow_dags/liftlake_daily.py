"""liftlake_daily: one day of the pipeline, each step ``jobs/<job>.py --ds {{ ds }}`` in the run's warm driver.

    start_driver -> simulate -> build_features -> escim_labels -> score -> publish -> stop_driver
                                                             \-> week_built (Saturdays: Asset liftlake.week_built)

* start_driver    jobs/driver.py          one Spark driver for the run (spark-submit, in the background),
                                          or the one an earlier run left up when it runs the same code,
                                          config and settings (LIFTLAKE_DRIVER_KEEP=1, the default): the
                                          steps below run in it and pay the JVM start and warm-up once,
                                          not per step, and on a kept driver not at all
                                          (LIFTLAKE_WARM_DRIVER=0: skipped, and every step is its
                                          own spark-submit; a step that finds no driver runs as its
                                          own spark-submit too, so a retry after a crash runs cold)
* simulate        jobs/simulate.py        simulated raw logs for the day (embedded default only: the
                                          ``simulate`` param, default from env LIFTLAKE_SIMULATE=1;
                                          when off the task is skipped and real raw.* tables are read)
* build_features  jobs/build_features.py  features.samples / features.user_samples / ops.quarantine
* escim_labels    jobs/escim_labels.py    labels.escim_counterfactual
* score           jobs/score.py           scores.* for every model that has a CURRENT version
                                          (models without one are skipped by the job)
* publish         jobs/tables.py --json   logs every table's new version and rows per partition
* stop_driver     (no job)                whatever the steps did (all_done): leaves the driver up for
                                          the next run (it exits after LIFTLAKE_DRIVER_IDLE_S without a
                                          step), or stops it with LIFTLAKE_DRIVER_KEEP=0
* week_built      (no job)                on the last day of a training week (Saturday) emits the
                                          Asset liftlake.week_built that schedules liftlake_train;
                                          skipped on the other days

Each Spark task's outlets are the Assets of the tables it writes (``liftlake.<table>``).

``ds`` is the day a run processes: the DAG uses a data-interval timetable, so the run for
2026-11-20 starts after that day is over (at 2026-11-21 00:00 UTC). A manual run names its day with
the ``ds`` param (``airflow dags trigger liftlake_daily --conf '{"ds": "2026-11-20"}'``). Catchup is on with one scheduled
run at a time; an ``airflow backfill create`` runs up to its own ``--max-active-runs``, and every task
takes a slot of the ``liftlake_spark`` pool, so the pool's size is how many Spark drivers run at once. Each job
overwrites its day's partitions, so re-running a day (or a retried task) leaves one copy of it.
"""
from __future__ import annotations

import os
import sys

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, TriggerRule

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # Airflow puts the DAGs folder on sys.path; a plain import may not
    sys.path.insert(0, _HERE)
from _common import (  # noqa: E402
    DEFAULT_ARGS,
    RUN_DAY,
    START_DRIVER_TASK,
    check_deadline,
    day_param,
    simulate_default,
    WarmDriverStartOperator,
    spark_job,
    stop_driver_task,
    table_asset,
    week_built_task,
)

with DAG(
    dag_id="liftlake_daily",
    description="simulate -> build features -> ESCIM labels -> score -> publish, one day per run",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.parse(os.environ.get("LIFTLAKE_START_DATE", "2026-11-01"), tz="UTC"),
    catchup=True,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    on_success_callback=check_deadline,  # a run finished after LIFTLAKE_DAILY_DEADLINE_MIN alerts
    params={
        "simulate": Param(simulate_default(), type="boolean",
                          description="write simulated raw logs for the day first (embedded default)"),
        "ds": day_param(),
    },
    tags=["liftlake"],
    doc_md=__doc__,
) as dag:
    def outlets(*tables):
        return {"outlets": [table_asset(t) for t in tables]}

    start_driver = spark_job(START_DRIVER_TASK, "driver.py", ds=None, operator=WarmDriverStartOperator)
    # Runs after start_driver succeeded or was skipped (LIFTLAKE_WARM_DRIVER=0).
    simulate = spark_job("simulate", "simulate.py", skip_unless_param="simulate", warm=True,
                         trigger_rule=TriggerRule.NONE_FAILED,
                         **outlets("raw.exposures", "raw.clicks", "raw.conversions", "sim.truth"))
    # Runs after simulate succeeded or was skipped (real logs); not after it failed.
    build_features = spark_job("build_features", "build_features.py", trigger_rule=TriggerRule.NONE_FAILED,
                               warm=True, **outlets("features.samples", "features.user_samples", "ops.quarantine"))
    escim_labels = spark_job("escim_labels", "escim_labels.py", warm=True, **outlets("labels.escim_counterfactual"))
    score = spark_job("score", "score.py", warm=True, **outlets("scores.cvr", "scores.uplift_user"))
    publish = spark_job("publish", "tables.py", ["--json"], ds=None, warm=True)
    stop_driver = stop_driver_task()
    week_built = week_built_task(RUN_DAY)

    start_driver >> simulate >> build_features >> escim_labels >> score >> publish >> stop_driver
    escim_labels >> week_built
