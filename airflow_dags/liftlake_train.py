"""liftlake_train: training once a week's data is built, one ``spark-submit jobs/train.py --ds D
--model NAME`` per model.

Scheduled on the Asset ``liftlake.week_built``, which the daily DAG emits once the last day of a
week [Sun, Sat] has its features and ESCIM labels; D is that Saturday (the event's ``ds``), and a run
trains on the window of days ending there. It no longer starts at a clock time, so it cannot start
before the Saturday's daily run has finished and leave that day out. Models: env
``LIFTLAKE_TRAIN_MODELS`` (comma-separated, default ``escm2_dr,unimvt,hmum``). The train job
evaluates the new version on the test split and makes it the champion (CURRENT) only when its gate
passes (the task's floor, and the champion's metric on the same test rows); the daily DAG's score
step then picks it up. The training tasks are independent (one failing model does not hold back the
others) and share the ``liftlake_spark`` pool with the daily DAG; a ``housekeeping`` task
(jobs/housekeeping.py) runs after all of them, whatever their outcome.
"""
from __future__ import annotations

import os
import re
import sys
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, TriggerRule

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # Airflow puts the DAGs folder on sys.path; a plain import may not
    sys.path.insert(0, _HERE)
from _common import DEFAULT_ARGS, day_param, spark_job, week_built_asset  # noqa: E402

MODELS = [m.strip() for m in os.environ.get("LIFTLAKE_TRAIN_MODELS", "escm2_dr,unimvt,hmum").split(",")
          if m.strip()]
for _name in MODELS:
    if not re.fullmatch(r"[a-z0-9_]+", _name):
        raise ValueError(f"LIFTLAKE_TRAIN_MODELS: {_name!r} is not a model name ([a-z0-9_]+)")

# A run trains on the window of days ending at the day the week_built event names (the last of the
# events that queued the run: a backfill of several weeks trains once, on the newest). A manual run
# (`airflow dags trigger liftlake_train --conf '{"ds": "2026-11-21"}'`) names that day itself.
LAST_DAY = ("{{ params.get('ds') or (triggering_asset_events.values() | list | first | last).extra['ds'] }}")

with DAG(
    dag_id="liftlake_train",
    description="training of each model in LIFTLAKE_TRAIN_MODELS once a week's data is built (gate decides CURRENT)",
    schedule=[week_built_asset()],
    start_date=pendulum.parse(os.environ.get("LIFTLAKE_START_DATE", "2026-11-01"), tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(hours=6)},
    params={"ds": day_param()},
    tags=["liftlake"],
    doc_md=__doc__,
) as dag:
    trains = [spark_job(f"train_{name}", "train.py", ["--model", name], ds=LAST_DAY)
              for name in MODELS]
    # after the week's trainings, whatever they ended with: each table is compacted (OPTIMIZE), then
    # stale staging, unused train caches, old checkpoints and unreferenced Delta files go
    # (housekeeping.* in conf/base.yaml)
    housekeeping = spark_job("housekeeping", "housekeeping.py", ds=None, trigger_rule=TriggerRule.ALL_DONE)
    trains >> housekeeping
