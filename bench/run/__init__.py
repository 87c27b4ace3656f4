"""liftlake benchmarks: measured side by side in one run, written to a Markdown report.

    .venv/bin/python -m bench.run                       # 1M and 10M exposures (long: ~1 hour on 2 cores)
    .venv/bin/python -m bench.run --sizes 200000 --quick --out reports/bench-small.md
    .venv/bin/python -m bench.run --only features --sizes 1000000
    .venv/bin/python -m bench.run --only scoring --sizes 1000000,10000000
    .venv/bin/python -m bench.run --only cluster --cluster-size 200000
    .venv/bin/python -m bench.run --only backends --backends-size 1000000
    .venv/bin/python -m bench.run --only simulate --sizes 1000000,10000000

Sections:
  pipeline  simulate + build-features rows/s for one day at each size, and the same feature SQL in
            DuckDB over the same Parquet files (ratio Spark local / DuckDB); then the ESCIM label step
            on the day (fit the labeler on its bounded sample, label every exposure), with its own peak
  training  samples/s of the training function under local, torch-distributor and horovod with 1 and 2
            processes vs. a single-process torch loop over in-memory tensors (same model, batch, cores)
  features  build-features (spec fitted) vs. the same joins / dedupe / labels as one plain Spark SQL query
            in the same warm session and in DuckDB, on the same files: CPU s (process tree) and wall,
            warm and cold, ratios against the issue 20 targets (``--only features`` runs it alone and
            rewrites only its section of the report)
  scoring   rows/s of the Spark scoring job vs. in-process torch inference on the same rows, with the
            peak resident memory of the process tree while scoring; ``--only scoring``: its own section,
            the DCMT job cold (a fresh driver) and warm, CPU s beside wall, against the issue 20 target
  cluster   the daily pipeline on the delta-spark backend, local[2] vs. a Spark standalone cluster
            (Master + 2 one-core Workers from the pip jars) on the same cores, step by step
            (``--only cluster`` runs it alone; a full run keeps the report's previous one)
  backends  delta-rs vs. delta-spark on the same simulated day, each in a fresh driver: session start,
            simulate, build-features, write throughput of a day's overwrite, commit latency
            (``--only backends`` runs it alone; a full run keeps the report's previous one)
  simulate  the ``liftlake simulate`` step cold (a fresh process, a fresh warehouse) vs. a numpy + pyarrow
            floor of the same 9 tables, also cold: wall and CPU s, the rows of each table, the issue 20
            target (``--only simulate`` runs it alone; a full run keeps the report's previous one)
Every number in the report comes from this run; the machine, versions and sizes are at the top.
With --pipeline-only only the pipeline section is measured; the training and scoring sections are
carried from the JSON of the previous report at --out, and the report says which run each came from.
"""
# The package, by part: common (the peak-RSS and tree-CPU samplers, a timer, the machine, a JobContext over a warehouse),
# pipeline, training and scoring (one section each), report (the Markdown and its JSON), cli (the flags and
# the main flow; __main__ runs it).
