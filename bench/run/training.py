"""The training section of bench.run: samples/s of the training function under each launcher and
process count against a single-process torch loop over in-memory tensors (same model, batch, cores)."""
from __future__ import annotations

import os
import tempfile
import time

from bench.run.common import Target, job_context, target_rows


def inmemory_loop(plan, epochs: int = 1) -> float:
    """The reference: the same model and batch size over tensors already in memory, one process with
    every core; samples/s of its best epoch, as for the launchers (bench/device.py's loop, on the CPU)."""
    import torch

    from bench.device import train_loop
    from liftlake.lib.training.batch import batch_columns, to_batch
    from liftlake.lib.training.loop import read_all
    from liftlake.models.registry import build_model

    torch.manual_seed(plan.seed)
    batch = to_batch(read_all(plan.train_files, batch_columns(plan)), plan)
    model = build_model(plan.model_name, plan.field_dims, plan.model_params)
    torch.set_num_threads(os.cpu_count() or 2)
    return train_loop(model, batch, plan.batch_size, plan.learning_rate, epochs, plan.seed)["samples_per_s"]


def bench_training(spark, warehouse: str, ds: str, model: str, epochs: int, launchers: list[tuple]) -> dict:
    """``launchers``: (launcher, processes) or (launcher, processes, {train setting: value})."""
    from liftlake.lib.training.launchers import launch
    from liftlake.lib.training.plan import build_plan

    out: dict = {"model": model, "runs": []}
    first_plan = None
    for launcher, procs, *changed in launchers:
        settings = changed[0] if changed else {}
        ctx = job_context(warehouse, [f"model.name={model}", f"train.launcher={launcher}",
                                      f"train.num_processes={procs}", f"train.epochs={epochs}",
                                      "train.early_stopping_patience=0",
                                      *(f"train.{k}={v}" for k, v in settings.items())], [ds], spark)
        plan, trainset, _ = build_plan(ctx.store, ctx.config, ds,
                                       checkpoint_dir=tempfile.mkdtemp(prefix="bench-ckpt-"))
        if first_plan is None:
            first_plan = plan
            out["train_rows"] = trainset.rows["train"]
            out["batch_size"] = plan.batch_size
            out["inmemory_runs_samples_per_s"] = [inmemory_loop(plan, epochs)]
        start, launched_at = time.perf_counter(), time.time()
        result = launch(plan, launcher, procs, spark)
        wall = time.perf_counter() - start
        history = result["state"]["history"]
        steady = max(h["samples_per_s"] for h in history)  # epochs after the first skip start-up costs
        run = {"launcher": launcher, "processes": procs, "settings": settings, "transport": result["transport"],
               "wall_s": wall, "epoch_samples_per_s": steady, "final_loss": history[-1]["loss"]}
        out["runs"].append({**run, "outside_epochs_s": outside_epochs(run, history),
                            # the launch's start-up: processes, rendezvous, the shards and the model, up to the
                            # first step (the rank's wall clock; the launcher's processes share this machine's)
                            "startup_s": result["training_started_at"] - launched_at})
    # the reference once more after the launchers, its best run kept: one run alone lands low whenever
    # the shared machine is busy while it runs, which would flatter every ratio
    out["inmemory_runs_samples_per_s"].append(inmemory_loop(first_plan, epochs))
    out["inmemory_samples_per_s"] = max(out["inmemory_runs_samples_per_s"])
    for run in out["runs"]:
        run["ratio_vs_inmemory"] = run["epoch_samples_per_s"] / out["inmemory_samples_per_s"]
    return out


# -- the launchers section (--only training) ----------------------------------------------------------
BEGIN, END = "<!-- bench.run training: begin -->", "<!-- bench.run training: end -->"
TARGET_X2 = 0.8
TARGET_STARTUP_S = 10.0
# (launcher, processes[, {train setting: value}]): the defaults, then x2 with the launcher's own collective
# and with the embedding tables averaged on their touched rows
LAUNCHERS: list[tuple] = [
    ("local", 1), ("torch-distributor", 1), ("torch-distributor", 2), ("horovod", 1), ("horovod", 2),
    ("torch-distributor", 2, {"same_host_allreduce": "launcher"}), ("horovod", 2, {"same_host_allreduce": "launcher"}),
    ("torch-distributor", 2, {"embedding_allreduce": "touched_rows"}),
    ("horovod", 2, {"embedding_allreduce": "touched_rows"}),
]


def outside_epochs(run: dict, history: list[dict]) -> float:
    """Wall seconds of a launch outside its epochs' loops: the launcher's start-up (processes,
    rendezvous, reading the shards), validation and the hand-back."""
    return run["wall_s"] - sum(h["samples"] / h["samples_per_s"] for h in history)


FLOOR_FN_S = 5.0  # longer than Horovod's 3 s minimum command lifetime, which a training run never meets


def launcher_floor(launcher: str, procs: int) -> float:
    """Wall seconds a launcher spends around a function that does nothing for ``FLOOR_FN_S``: its own
    start-up and hand-back (in this process's Spark session), the part of a launch's start-up that no
    training code can remove."""
    start = time.perf_counter()
    if launcher == "torch-distributor":
        from pyspark.ml.torch.distributor import TorchDistributor

        # time.sleep pickles by reference: importable in any rank (a function of bench/ would not be)
        TorchDistributor(num_processes=procs, local_mode=True, use_gpu=False).run(time.sleep, FLOOR_FN_S)
    else:
        import horovod.spark

        horovod.spark.run(time.sleep, args=(FLOOR_FN_S,), num_proc=procs, use_gloo=True, verbose=0)
    return time.perf_counter() - start - FLOOR_FN_S


def bench_launchers(spark, size: int, root: str, epochs: int, log=print) -> dict:
    """DCMT on one simulated day of ``size`` exposures under each launcher and process count, against
    the in-memory loop, in this run."""
    from bench.run.scoring import DS, MODEL, ensure_inputs

    warehouse, _ = ensure_inputs(spark, root, size, log)
    runs = [" ".join([n, f"x{p}", *(f"{k}={v}" for s in m for k, v in s.items())]) for n, p, *m in LAUNCHERS]
    log(f"[bench] training {MODEL} at {size:,}: {', '.join(runs)}")
    out = bench_training(spark, warehouse, DS, MODEL, epochs, LAUNCHERS)
    floors = {}
    for launcher, procs, *_ in LAUNCHERS:
        if launcher != "local" and (launcher, procs) not in floors:
            floors[(launcher, procs)] = launcher_floor(launcher, procs)
    for run in out["runs"]:
        run["launcher_floor_s"] = floors.get((run["launcher"], run["processes"]))
    return {"exposures": size, "epochs": epochs, "load": os.getloadavg(), **out}


def targets(result: dict) -> list[Target]:
    """The default settings' runs under each launcher: x2 samples/s over the in-memory loop's, and the
    start-up of every launch."""
    from bench.run.report import fmt

    out = []
    for r in result["runs"]:
        if r["launcher"] == "local" or r["settings"]:
            continue  # the targets are the defaults'
        size = f"{r['launcher']} x{r['processes']}, {result['model']} at {result['exposures']:,}"
        if r["processes"] == 2:
            out.append(Target(f"training {size}: >= {TARGET_X2} of the in-memory loop (samples/s)",
                              f"{r['ratio_vs_inmemory']:.3f}", r["ratio_vs_inmemory"] >= TARGET_X2))
        floor = f"; its launcher's own floor {fmt(r['launcher_floor_s'])} s" if r.get("launcher_floor_s") else ""
        out.append(Target(f"training {size}: start-up <= {TARGET_STARTUP_S:g} s (launch to the first step)",
                          f"{fmt(r['startup_s'])} s (outside the epochs {fmt(r['outside_epochs_s'])} s{floor})",
                          r["startup_s"] <= TARGET_STARTUP_S))
    return out


def section(result: dict, info: dict) -> list[str]:
    from bench.run.report import fmt
    from liftlake.lib.training.launchers import HOROVOD_IDLE_CYCLE_MS

    lines = [BEGIN, "## Training under each launcher vs. the in-memory loop", "",
             f"Measured {info['started']} by `{info['command']}` on {info['machine']['cpus']} CPU cores "
             f"(torch {info['machine'].get('torch')}, horovod {info['machine'].get('horovod')}); "
             f"{result['model']} on one simulated day of {result['exposures']:,} exposures "
             f"({result['train_rows']:,} train rows, global batch {result['batch_size']}, {result['epochs']} "
             "epoch(s)). The reference is one process looping over tensors already in memory with every core's "
             f"threads, run before and after the launchers, its best kept: {fmt(result['inmemory_samples_per_s'])} "
             f"samples/s (runs: {', '.join(fmt(v) for v in result['inmemory_runs_samples_per_s'])}). By default "
             "(`train.same_host_allreduce: shared_memory`, `train.embedding_allreduce: dense`) ranks on one host "
             "average every gradient once a step through a shared segment (DDP's communication hook; in place of "
             f"Horovod's grouped all-reduce, its ranks' idle cycle then {HOROVOD_IDLE_CYCLE_MS} ms: "
             "`HOROVOD_CYCLE_TIME`, lib/training/launchers.py); `same_host_allreduce=launcher` keeps the "
             "launcher's collective (Gloo "
             "over loopback, DDP's 25 MiB buckets, one for dcmt; one grouped Horovod all-reduce); "
             "`embedding_allreduce=touched_rows` averages the embedding table on the rows a rank looked up, at "
             "two more syncs a step.", "",
             "| launcher | processes | settings | gradients averaged by | samples/s (best epoch) | ratio vs. in-memory "
             "| wall s | start-up s (launch to the first step) | outside the epochs s | the launcher's own floor s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items()) or "defaults"
        lines.append(f"| {r['launcher']} | {r['processes']} | {settings} | {r['transport']} | "
                     f"{fmt(r['epoch_samples_per_s'])} | "
                     f"{r['ratio_vs_inmemory']:.3f} | {fmt(r['wall_s'])} | {fmt(r['startup_s'])} | "
                     f"{fmt(r['outside_epochs_s'])} | "
                     f"{fmt(r.get('launcher_floor_s')) if r['launcher'] != 'local' else '-'} |")
    lines += ["", *target_rows(targets(result))]
    lines += ["", f"Machine load (1-minute average) at the end: {result['load'][0]:.2f}. Start-up: from the "
              "launch call to the moment the training function begins its first epoch (processes, rendezvous, "
              "reading the shards and the validation rows, building and wrapping the model), both on this "
              "machine's wall clock. The wall outside the epochs adds the per-epoch validation and the hand-back "
              "of the results. The launcher's own floor: the same launcher "
              f"around a function that sleeps {FLOOR_FN_S:g} s, less those seconds (its processes, rendezvous and "
              "hand-back, which no training code can remove). Regenerate: "
              "`.venv/bin/python -m bench.run --only training --sizes 1000000`.", END, ""]
    return lines
