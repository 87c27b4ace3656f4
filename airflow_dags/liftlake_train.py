"""liftlake_train: weekly training, one ``spark-submit jobs/train.py --ds D --model NAME`` per model.

D is the last day of the week the run covers (the run for [Sun 2026-11-15, Sun 2026-11-22) starts
after that week and trains on the window of days ending 2026-11-21). Models: env
``LIFTLAKE_TRAIN_MODELS`` (comma-separated, default ``escm2_dr,unimvt,hmum``). The train job
evaluates the new version on the test split and makes it the champion (CURRENT) only when its gate
passes (the task's floor, and the champion's metric on the same test rows); the daily DAG's score step then picks it up. The training tasks are independent (one failing
model does not hold back the others) and share the ``liftlake_spark`` pool with the daily DAG; a
``housekeeping`` task (jobs/housekeeping.py) runs after all of them, whatever their outcome.
"""
from __future__ import annotations

import os
import re
import sys
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, TriggerRule

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # Airflow puts the DAGs folder on sys.path; a plain import may not
    sys.path.insert(0, _HERE)
from _common import DEFAULT_ARGS, day_param, spark_job  # noqa: E402

MODELS = [m.strip() for m in os.environ.get("LIFTLAKE_TRAIN_MODELS", "escm2_dr,unimvt,hmum").split(",")
          if m.strip()]
for _name in MODELS:
    if not re.fullmatch(r"[a-z0-9_]+", _name):
        raise ValueError(f"LIFTLAKE_TRAIN_MODELS: {_name!r} is not a model name ([a-z0-9_]+)")

# The run for the week [Sun, next Sun) starts when that week is over; it trains on the window of days
# ending at the week's last day (its {{ ds }} would be the week's first day).
# A manual run (no data interval) names its last day with the ``ds`` param.
LAST_DAY_OF_INTERVAL = "{{ params.get('ds') or macros.ds_add(data_interval_end | ds, -1) }}"

with DAG(
    dag_id="liftlake_train",
    description="weekly training of each model in LIFTLAKE_TRAIN_MODELS (gate decides CURRENT)",
    schedule=CronDataIntervalTimetable("@weekly", timezone="UTC"),
    start_date=pendulum.parse(os.environ.get("LIFTLAKE_START_DATE", "2026-11-01"), tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={**DEFAULT_ARGS, "execution_timeout": timedelta(hours=6)},
    params={"ds": day_param()},
    tags=["liftlake"],
    doc_md=__doc__,
) as dag:
    trains = [spark_job(f"train_{name}", "train.py", ["--model", name], ds=LAST_DAY_OF_INTERVAL)
              for name in MODELS]
    # after the week's trainings, whatever they ended with: each table is compacted (OPTIMIZE), then
    # stale staging, unused train caches, old checkpoints and unreferenced Delta files go
    # (housekeeping.* in conf/base.yaml)
    housekeeping = spark_job("housekeeping", "housekeeping.py", ds=None, trigger_rule=TriggerRule.ALL_DONE)
    trains >> housekeeping
