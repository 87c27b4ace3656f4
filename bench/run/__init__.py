"""liftlake benchmarks: measured side by side in one run, written to a Markdown report.

    .venv/bin/python -m bench.run                       # 1M and 10M exposures, every section (hours on 2 cores)
    .venv/bin/python -m bench.run --sizes 200000 --quick --out reports/bench-small.md
    .venv/bin/python -m bench.run --only features --sizes 1000000
    .venv/bin/python -m bench.run --only scoring --sizes 1000000,10000000
    .venv/bin/python -m bench.run --only cluster --cluster-size 200000
    .venv/bin/python -m bench.run --only backends --backends-size 1000000
    .venv/bin/python -m bench.run --only simulate --sizes 1000000,10000000
    .venv/bin/python -m bench.run --only gpu --sizes 1000000 --device-inputs .device-inputs
    .venv/bin/python -m bench.run --render              # the report rebuilt from its JSON files, nothing measured

The report opens with a summary: every target of issue 20 beside what its section's last run measured
(summary.py, rebuilt from the sections' JSON files whenever one is written). Then:
  full run  its own tables, measured in one session: simulate + build-features rows/s for one day at
            each size and the same feature SQL in DuckDB (ratio Spark local / DuckDB); the ESCIM label
            step (fit the labeler on its bounded sample, label every exposure) with its peak memory;
            DCMT and UniMVT under local, torch-distributor and horovod with 1 and 2 processes vs. a
            single-process torch loop over in-memory tensors; the Spark scoring job vs. in-process torch
            inference with its peak memory; earlier issues' targets and a warm-session capacity estimate
Sections (each also alone with ``--only <name>``, which rewrites only its part of the report):
  features  build-features (spec fitted) vs. the same joins / dedupe / labels as one plain Spark SQL query
            in the same warm session and in DuckDB, on the same files: CPU s (process tree) and wall,
            warm and cold, ratios against the issue 20 targets
  scoring   the DCMT scoring job cold (a fresh driver) and warm vs. in-process inference, CPU s beside wall
  training  DCMT under each launcher and way of averaging vs. the in-memory loop, start-up per launch
  simulate  the ``liftlake simulate`` step cold (a fresh process, a fresh warehouse) vs. a numpy + pyarrow
            floor of the same 9 tables, also cold: wall and CPU s, the rows of each table
  dag       the daily DAG's steps cold per step, on a fresh driver, on a kept driver, in one warm session
  cluster   the daily pipeline on the delta-spark backend, local[2] vs. a Spark standalone cluster
            (Master + 2 one-core Workers from the pip jars) on the same cores, step by step
  backends  delta-rs vs. delta-spark on the same simulated day, each in a fresh driver: session start,
            simulate, build-features, write throughput of a day's overwrite, commit latency
  gpu       DCMT's training loop, one DDP rank (NCCL on a GPU, Gloo on the CPU) and the scoring forward
            passes on the CPU and on CUDA where torch sees it (bench/device.py, which also runs alone on a
            GPU machine without Spark; ``--device-result`` writes the section from its JSON)
Every number comes from the run its section names; the machine, versions and command are in each.
With --pipeline-only only the full run's pipeline is measured; its training and scoring tables are
carried from the JSON of the previous report at --out, and the report says which run each came from.
"""
# The package, by part: common (the peak-RSS and tree-CPU samplers, a timer, the machine, a JobContext over a
# warehouse, the sections' placement and targets), pipeline, training and scoring (the full run's, and the
# training and scoring sections), features / simulate / dag / cluster / backends / gpu (a section each), report (the
# full run's Markdown and its JSON), summary (the top of the report), cli (the flags and the main flow;
# __main__ runs it).
