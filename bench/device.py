"""Training and scoring throughput on each device torch sees (the CPU, and a GPU where there is one), on
the same rows. Torch, numpy and pyarrow only (no Spark, no Java), so it also runs on a GPU machine that
has nothing else:

    python -m bench.device --inputs DIR --out FILE [--rows N] [--devices cpu,cuda]

DIR is what ``python -m bench.run --only gpu`` prepares (bench/run/gpu.py ``write_inputs``): rows.parquet
(rows of a simulated day's features.samples, the model's batch columns) and meta.json (the model, its
parameters and field sizes, the batch layout and sizes); the rows are repeated up to ``--rows``. Per device:

  train      the training loop over tensors already on the device (the training bench's in-memory
             reference): samples/s of its best epoch, the mean loss of the first and the last epoch
  train_ddp  the same loop with the model wrapped by the platform's DDP communication (TorchDDPComm of
             lib/training/comms.py, one rank: NCCL on a GPU, Gloo on the CPU) and its epoch-end sum and
             barrier: a TorchDistributor rank's communication with ``train.use_gpu``
  score      the scoring job's forward passes (``predict_frame``) over numpy columns at the score batch
             size and at a large one: rows/s with the copies to and from the device; the scores beside
             the CPU's on the same rows and weights (largest absolute difference)
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import socket
import sys
import time

import numpy as np
import torch

from liftlake.lib.training.batch import BatchLayout, batch_columns, predict_frame, to_batch
from liftlake.models.registry import build_model

LARGE_SCORE_BATCH = 65_536  # a GPU's forward pass wants more rows than the CPU's default batch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU runs it asynchronously), so a clock reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_loop(model: torch.nn.Module, batch: dict[str, torch.Tensor], batch_size: int, learning_rate: float,
               epochs: int, seed: int, comm=None) -> dict:
    """Adam over ``batch`` (tensors on the model's device) in shuffled steps of ``batch_size`` rows:
    samples/s of the best epoch, the mean loss of the first and of the last epoch. ``comm``: a
    TorchDDPComm that wraps the model and averages its gradients, with an epoch-end sum and barrier."""
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    train_model = model
    if comm is not None:
        train_model, optimizer = comm.wrap(model, optimizer, find_unused=False)
    order = torch.Generator().manual_seed(seed)
    n = len(batch["x"])
    best, losses = 0.0, []
    for _ in range(epochs):
        sync(device)
        start = time.perf_counter()
        perm = torch.randperm(n, generator=order).to(device)
        total = torch.zeros((), device=device)
        for s in range(0, n, batch_size):
            part = {k: v[perm[s:s + batch_size]] for k, v in batch.items()}
            loss = model.compute_loss(part, train_model(part)).total
            optimizer.zero_grad()
            loss.backward()
            if comm is not None:
                comm.reduce_gradients()
            optimizer.step()
            total += loss.detach() * len(part["x"])  # on the device: no wait for the GPU a step
        if comm is not None:
            comm.allreduce_sum(float(n))
            comm.barrier()
        sync(device)
        best = max(best, n / (time.perf_counter() - start))
        losses.append(float(total) / n)
    return {"samples_per_s": best, "epochs": epochs, "loss_first_epoch": losses[0], "loss_last_epoch": losses[-1]}


def one_rank_comm(device: torch.device):
    """The platform's DDP communication as a world of one rank in this process (env:// rendezvous on a
    free loopback port): NCCL on a GPU, Gloo on the CPU."""
    from liftlake.lib.training.comms import TorchDDPComm

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1",
                      LOCAL_RANK=str(device.index or 0))
    return TorchDDPComm(use_gpu=device.type == "cuda", same_host_allreduce="launcher")


def score_rate(model: torch.nn.Module, layout: BatchLayout, columns: dict[str, np.ndarray],
               batch_size: int) -> tuple[float, dict[str, np.ndarray]]:
    """(rows/s of the forward passes over ``columns``, the scores), after one batch to warm up."""
    model.eval()
    predict_frame(model, layout, {c: v[:batch_size] for c, v in columns.items()}, batch_size)
    start = time.perf_counter()
    scores = predict_frame(model, layout, columns, batch_size)  # its outputs are on the CPU: the work is done
    return len(columns[layout.feature_columns[0]]) / (time.perf_counter() - start), scores


def load_inputs(folder: str, rows: int) -> tuple[dict, dict[str, np.ndarray], int]:
    """(meta.json, the batch columns of rows.parquet repeated up to ``rows`` rows, the file's rows)."""
    import pyarrow.parquet as pq

    with open(os.path.join(folder, "meta.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    table = pq.read_table(os.path.join(folder, "rows.parquet"))
    repeats = -(-rows // table.num_rows)
    return meta, {c: np.tile(table.column(c).to_numpy(), repeats)[:rows] for c in table.column_names}, table.num_rows


def device_unavailable(name: str) -> str | None:
    """Why torch cannot use the device ``name`` in this process, or None when it can."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        return "torch sees no CUDA device on this machine"
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        return f"torch sees {torch.cuda.device_count()} CUDA device(s)"
    return None


def recorded(measurement, log) -> dict:
    """``measurement()``'s figures, or the error that stopped it: one failure (a torch older than the
    pinned one on a lent machine, say) costs its own row, not the whole device run."""
    try:
        return measurement()
    except Exception as exc:  # noqa: BLE001 - reported in the result, and the section says it failed
        log(f"[device] failed: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def train_run(run: str, device: torch.device, reference: torch.nn.Module, batch: dict, meta: dict) -> dict:
    """``train`` (the loop alone) or ``train_ddp`` (wrapped as one DDP rank) from the reference weights,
    over ``batch`` (already on ``device``)."""
    import torch.distributed as dist

    comm = one_rank_comm(device) if run == "train_ddp" else None
    try:
        figures = train_loop(copy.deepcopy(reference).to(device), batch, meta["batch_size"], meta["learning_rate"],
                             meta["epochs"], meta["seed"], comm)
        return {**figures, "transport": comm.transport} if comm is not None else figures
    finally:
        if comm is not None and dist.is_initialized():
            dist.destroy_process_group()


def score_run(device: torch.device, reference: torch.nn.Module, layout: BatchLayout, columns: dict[str, np.ndarray],
              batch_size: int, cpu_scores: dict[int, dict[str, np.ndarray]]) -> dict:
    """Rows/s of the forward passes from the reference weights, the scores beside the CPU's (kept here)."""
    rate, scores = score_rate(copy.deepcopy(reference).to(device), layout, columns, batch_size)
    if device.type == "cpu":
        cpu_scores[batch_size] = scores
    diff = (max(float(np.abs(scores[k] - cpu_scores[batch_size][k]).max()) for k in scores)
            if batch_size in cpu_scores else None)
    return {"batch_size": batch_size, "rows_per_s": rate, "max_abs_diff_vs_cpu": diff}


def measure(folder: str, rows: int, devices: list[str], log=print) -> dict:
    """Every measurement above on each of ``devices`` (those torch cannot use are recorded as such)."""
    meta, columns, distinct = load_inputs(folder, rows)
    layout = BatchLayout(**meta["layout"])
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(meta["seed"])
    # the weights every device starts from
    reference = build_model(meta["model"], meta["field_dims"], meta["model_params"])
    batch_cpu = to_batch({c: columns[c] for c in batch_columns(layout) if c != "row_id"}, layout)
    score_columns = {c: columns[c] for c in layout.feature_columns}
    score_columns.update({c: np.zeros(rows, dtype=np.float32) for c in batch_columns(layout)
                          if c not in score_columns and c not in ("row_id", "cf_label")})
    out: dict = {"rows": rows, "input_rows": distinct, "model": meta["model"], "batch_size": meta["batch_size"],
                 "score_batch_sizes": [meta["score_batch_size"], LARGE_SCORE_BATCH], "devices": {}}
    cpu_scores: dict[int, dict[str, np.ndarray]] = {}
    for name in devices:
        why = device_unavailable(name)
        if why:
            out["devices"][name] = {"available": False, "why": why}
            log(f"[device] {name}: {why}")
            continue
        device = torch.device(name)
        result: dict = {"available": True, "name": torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor() or platform.machine()}
        batch = {k: v.to(device) for k, v in batch_cpu.items()}  # once: both runs read it
        for run in ("train", "train_ddp"):
            log(f"[device] {name}: {run}, {rows:,} rows, batch {meta['batch_size']}, {meta['epochs']} epochs")
            result[run] = recorded(lambda: train_run(run, device, reference, batch, meta), log)
        result["score"] = []
        for size in out["score_batch_sizes"]:
            log(f"[device] {name}: score, batch {size}")
            result["score"].append({"batch_size": size, **recorded(
                lambda: score_run(device, reference, layout, score_columns, size, cpu_scores), log)})
        if device.type == "cuda":
            result["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["devices"][name] = result
    return out


def machine() -> dict:
    """Where it ran: Python, cores, torch and its CUDA, the GPU (bench.machine without the Spark stack)."""
    from bench.machine import machine_basics

    return {**machine_basics(("torch", "numpy", "pyarrow")), "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.device", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", required=True, help="the folder bench.run --only gpu prepared")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated torch devices; cpu first")
    args = parser.parse_args(argv)
    devices = [d for d in args.devices.split(",") if d]
    if devices[:1] != ["cpu"]:
        parser.error("--devices must begin with cpu: every other device's scores are compared with its")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    result = measure(args.inputs, args.rows, devices, log=lambda line: print(line, file=sys.stderr, flush=True))
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump({"started": started, "machine": machine(), **result}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
