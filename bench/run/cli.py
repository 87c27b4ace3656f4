"""The command line of bench.run and its main flow: the flags, one SparkSession, the full run's pipeline at
each size, then (unless --pipeline-only, which carries them from the previous JSON) its training and scoring
of the bench models and its report, then every section in turn (those in this session, then those with
drivers of their own); ``--only`` measures one section, ``--render`` rebuilds the report from its JSON."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import bench.run
from bench.run import backends, cluster, dag, features, gpu, scoring, simulate, summary, training
from bench.run.common import job_context, machine, read_section, restore_section, write_section
from bench.run.features import bench_features
from bench.run.pipeline import bench_pipeline
from bench.run.report import write_report

BENCH_MODELS = ("dcmt", "unimvt")  # one per family, the two issue 5 names for scoring at 10M


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=bench.run.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000", help="exposures per simulated day, comma-separated")
    parser.add_argument("--train-size", type=int, default=0, help="exposures of the training day (default: first size)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--quick", action="store_true",
                        help="the full run's tables only, training under local and torch-distributor x2 only; "
                             "no section is measured (the report keeps its previous ones)")
    parser.add_argument("--out", default="reports/bench.md")
    parser.add_argument("--workdir", default="", help="where the benchmark warehouses go (default: a temp dir)")
    parser.add_argument("--pipeline-only", action="store_true",
                        help="measure the pipeline section only; carry training and scoring from the JSON at --out")
    parser.add_argument("--only", default=None,
                        choices=["features", "scoring", "training", "cluster", "backends", "dag", "simulate", "gpu"],
                        help="measure one section alone and rewrite only its part of --out (features: "
                             "build-features vs. plain Spark SQL and DuckDB, warm and cold, CPU and wall; "
                             "scoring: the DCMT scoring job cold and warm vs. in-process inference; "
                             "training: DCMT under each launcher vs. the in-memory loop, at the first size; "
                             "cluster: the daily pipeline on delta-spark, local[2] vs. a standalone cluster; "
                             "backends: delta-rs vs. delta-spark on the same day; "
                             "dag: the daily DAG's steps cold per step, on a fresh driver, on the driver an earlier "
                             "run left up and in one warm session; "
                             "simulate: the simulate step cold vs. its numpy + pyarrow floor cold, at each size; "
                             "gpu: DCMT's training loop, one DDP rank and the scoring forward passes on the CPU and "
                             "on CUDA where torch sees it, at the first size)")
    parser.add_argument("--cluster-size", type=int, default=200_000,
                        help="exposures of the day the cluster section runs (default 200000)")
    parser.add_argument("--backends-size", type=int, default=1_000_000,
                        help="exposures of the day the backends section runs (default 1000000)")
    parser.add_argument("--device-inputs", default="",
                        help="gpu: the folder for bench.device's inputs (default: <workdir>/device-inputs)")
    parser.add_argument("--device-result", default="",
                        help="gpu: measure nothing; write the section from this JSON, which python -m bench.device "
                             "wrote on a GPU machine")
    parser.add_argument("--repeats", type=int, default=2, help="warm runs per step of the features section (best)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: rebuild --out from the JSON files beside it (the full run's, "
                             "every section's) and its summary")
    args = parser.parse_args(argv)
    if args.render:
        print(f"[bench] report: {summary.render(args.out)}", file=sys.stderr)
        return 0
    carried = None
    if args.pipeline_only:
        previous = os.path.splitext(args.out)[0] + ".json"
        if not os.path.exists(previous):
            parser.error(f"--pipeline-only carries training and scoring from {previous}, which does not exist")
        with open(previous, encoding="utf-8") as fh:
            carried = json.load(fh)
    from liftlake.lib.storage.spark import build_session

    sizes = [int(s) for s in args.sizes.split(",") if s]
    root = args.workdir or tempfile.mkdtemp(prefix="liftlake-bench-")
    info = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
            "command": " ".join([os.path.basename(sys.executable), "-m", "bench.run", *(argv or sys.argv[1:])])}
    if args.only == "gpu" and args.device_result:
        try:
            result = gpu.read_result(args.device_result)
        except (OSError, ValueError) as exc:
            parser.error(str(exc))
        print(f"[bench] report: {write_section(args.out, gpu, result, info)}", file=sys.stderr)
        return 0
    if args.only in DRIVER_SECTIONS:  # their drivers are processes of their own: no session here
        print(f"[bench] report: {run_section(args.only, args, sizes, root, None, info)}", file=sys.stderr)
        return 0
    spark = build_session("liftlake-bench", master="local[*]", conf={"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    if args.only:
        path = run_section(args.only, args, sizes, root, spark, info)
        spark.stop()
        print(f"[bench] report: {path}", file=sys.stderr)
        return 0
    ds = "2026-11-20"
    pipeline = []
    for size in sizes:
        print(f"[bench] pipeline at {size:,} exposures", file=sys.stderr, flush=True)
        pipeline.append(bench_pipeline(spark, size, ds, root))
    if carried is not None:
        info["carried"] = {k: carried["info"].get("carried", carried["info"])[k] for k in ("started", "command")}
        kept = [read_section(args.out, m.BEGIN, m.END) for m in summary.SECTIONS]
        path = write_report(args.out, info, pipeline, carried["training"], carried["scoring"])
        for block in kept:
            restore_section(path, block)
        summary.write_summary(path)
        print(f"[bench] report: {path}", file=sys.stderr)
        spark.stop()
        return 0
    train_size = args.train_size or sizes[0]
    warehouse = os.path.join(root, f"wh-{train_size}")
    if train_size not in sizes:
        pipeline.append(bench_pipeline(spark, train_size, ds, root))
    launchers: list[tuple] = [("local", 1), ("torch-distributor", 1), ("torch-distributor", 2)]
    if not args.quick:
        launchers += [("horovod", 1), ("horovod", 2)]
    training_rows: list[dict] = []
    scoring_rows: list[dict] = []
    from liftlake.lib.artifacts.model_store import versions
    from liftlake.lib.pipelines.train import train

    for model in BENCH_MODELS:
        print(f"[bench] training {model}", file=sys.stderr, flush=True)
        training_rows.append(training.bench_training(spark, warehouse, ds, model, args.epochs, launchers))
    for size in sizes:
        wh = os.path.join(root, f"wh-{size}")
        for model in BENCH_MODELS:
            if not versions(wh, model):  # an artifact to score with: one local epoch
                train(job_context(wh, [f"model.name={model}", "train.epochs=1"], [ds], spark), ds)
            print(f"[bench] scoring {model} at {size:,}", file=sys.stderr, flush=True)
            scoring_rows.append({"exposures": size,
                                 **scoring.bench_scoring(spark, wh, ds, model, versions(wh, model)[-1])})
    kept = [read_section(args.out, m.BEGIN, m.END) for m in summary.SECTIONS]
    path = write_report(args.out, info, pipeline, training_rows, scoring_rows)
    for block in kept:  # in place until this run measures them again, one by one
        restore_section(path, block)
    summary.write_summary(path)
    for name in () if args.quick else SESSION_SECTIONS:
        run_section(name, args, sizes, root, spark, info)
    spark.stop()
    for name in () if args.quick else DRIVER_SECTIONS:
        run_section(name, args, sizes, root, None, info)
    print(f"[bench] report: {path}", file=sys.stderr)
    return 0


SESSION_SECTIONS = ("features", "scoring", "training", "gpu")  # measured in the bench's own session
DRIVER_SECTIONS = ("simulate", "dag", "cluster", "backends")  # each mode in drivers of its own


def run_section(name: str, args, sizes: list[int], root: str, spark, info: dict) -> str:
    """One section measured and written into --out (its JSON beside it, the summary rewritten)."""
    print(f"[bench] section {name}", file=sys.stderr, flush=True)
    info = {**info, "started": time.strftime("%Y-%m-%d %H:%M:%S")}  # in a full run: this section's start
    if name == "features":
        return write_section(args.out, features, [bench_features(spark, size, root, args.repeats, log=log)
                                                  for size in sizes], info)
    if name == "scoring":
        return write_section(args.out, scoring, [scoring.bench_scoring_cold(spark, size, root, args.repeats, log=log)
                                                 for size in sizes], info)
    if name == "training":
        return write_section(args.out, training, training.bench_launchers(spark, sizes[0], root, args.epochs, log=log),
                             info)
    if name == "gpu":
        inputs = args.device_inputs or os.path.join(root, "device-inputs")
        return write_section(args.out, gpu, gpu.bench_gpu(spark, sizes[0], root, inputs, log=log), info)
    if name == "simulate":
        return write_section(args.out, simulate, [simulate.bench_simulate(size, root, log=log) for size in sizes], info)
    if name == "dag":
        return write_section(args.out, dag, [dag.bench_dag(size, root, log=log) for size in sizes], info)
    if name == "cluster":
        return write_section(args.out, cluster, cluster.bench_cluster(args.cluster_size, root), info)
    return write_section(args.out, backends, backends.bench_backends(args.backends_size, root), info)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
