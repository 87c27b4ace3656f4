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

The package, by part: ``airflow_procs`` (the Airflow home's environment and YAML, the ``airflow`` CLI,
the api-server / scheduler / dag-processor processes, reads of the metadata DB), ``backfill_run``
(steps 1-2: the home set up, the models seeded, the backfill created, polled and summarized), ``reference`` (the seeded
models and step 3), ``compare`` (step 4), ``report`` (the verdict and the Markdown of step 5, also from a
run's JSON with ``--render``), ``cli`` (the flags and the main flow; ``__main__`` runs it). This module
holds the repository root and the log line every part writes.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(f"[bench.backfill] {msg}", file=sys.stderr, flush=True)
