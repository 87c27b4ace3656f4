"""The gpu section of bench.run: training and scoring on a GPU beside the CPU, on the same rows.

``python -m bench.run --only gpu --sizes 1000000`` prepares the inputs (the scoring section's simulated
day and DCMT; ``write_inputs``: up to ``INPUT_ROWS`` of the day's rows and meta.json, into
``--device-inputs``) and runs bench/device.py on them in a fresh process of this venv, on the CPU and on
CUDA where torch sees it: the training loop, one DDP rank over NCCL (Gloo on the CPU) and the scoring
forward passes, the rows repeated up to the size. A GPU machine without Spark (one that holds torch,
numpy and pyarrow) runs bench/device.py itself on the prepared folder::

    python -m bench.device --inputs DIR --out gpu.json --rows 1000000     # there
    .venv/bin/python -m bench.run --only gpu --device-result gpu.json     # here: the section from it
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from bench.run.common import Target, day_files, job_context, target_rows

BEGIN, END = "<!-- bench.run gpu: begin -->", "<!-- bench.run gpu: end -->"
INPUT_ROWS = 200_000  # of the day, repeated up to the size on the device: ~10 MB to carry
EPOCHS = 2  # the best is kept: the first pays the device's warm-up
SCORES_AGREE = 1e-4  # largest absolute difference of a GPU's scores from the CPU's, same weights and rows


def write_inputs(spark, warehouse: str, version: str, folder: str, rows: int = INPUT_ROWS) -> str:
    """``folder``/rows.parquet (the first ``rows`` rows of the day's features.samples, the model's batch
    columns) and meta.json (what bench/device.py builds the model and its batches from)."""
    import dataclasses

    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench.run.scoring import DS, MODEL
    from liftlake.lib.artifacts.model_store import load_artifact
    from liftlake.lib.evaluation.evaluate import layout_for
    from liftlake.lib.features.spec import FeatureSpec
    from liftlake.lib.training.batch import batch_columns

    ctx = job_context(warehouse, [f"model.name={MODEL}"], [DS], spark)  # the model's training settings
    art = load_artifact(warehouse, MODEL, version)
    layout = layout_for(art.info, FeatureSpec.from_json(art.feature_spec_json), art.config)
    columns = [c for c in batch_columns(layout) if c != "row_id"]
    parts, have = [], 0
    for path in day_files(ctx.store.path("features.samples"), DS):
        if have >= rows:
            break
        part = pq.read_table(path, columns=columns).slice(0, rows - have)
        parts.append(part)
        have += part.num_rows
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.concat_tables(parts), os.path.join(folder, "rows.parquet"), compression="zstd")
    train, score = ctx.config.train, ctx.config.score
    meta = {"model": MODEL, "version": version, "model_params": art.info["params"],
            "field_dims": art.info["field_dims"], "layout": dataclasses.asdict(layout),
            "batch_size": train.batch_size, "learning_rate": train.learning_rate, "epochs": EPOCHS,
            "seed": train.seed, "score_batch_size": score.batch_size}
    with open(os.path.join(folder, "meta.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)
    return folder


def bench_gpu(spark, size: int, root: str, inputs: str, log=print) -> dict:
    """The inputs prepared at ``size`` exposures, then bench/device.py on them in a fresh process."""
    from bench.run.scoring import ensure_inputs

    warehouse, version = ensure_inputs(spark, root, size, log)
    write_inputs(spark, warehouse, version, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "device.json")
        subprocess.run([sys.executable, "-m", "bench.device", "--inputs", inputs, "--out", out, "--rows", str(size)],
                       check=True)
        with open(out, encoding="utf-8") as fh:
            return json.load(fh)


def read_result(path: str) -> dict:
    """A result bench/device.py wrote on another machine (``--device-result``)."""
    with open(path, encoding="utf-8") as fh:
        result = json.load(fh)
    if not isinstance(result, dict) or not {"machine", "rows", "devices"} <= set(result):
        raise ValueError(f"{path}: not a bench.device result (rule: the JSON that python -m bench.device writes)")
    return result


def gpus(result: dict) -> dict[str, dict]:
    """The CUDA devices measured: name -> their figures."""
    return {name: r for name, r in result["devices"].items() if name.startswith("cuda") and r.get("available")}


def not_measured(result: dict) -> str:
    """Why no GPU is in the result."""
    why = [r["why"] for name, r in result["devices"].items() if name.startswith("cuda") and not r.get("available")]
    return why[0] if why else "no CUDA device was asked for"


def vs_cpu(figures: dict, cpu: dict, key: str) -> float | None:
    """A device's throughput over the CPU's, None where either failed."""
    return None if "error" in figures or "error" in cpu else figures[key] / cpu[key]


def times(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.1f}x"


def targets(result: dict) -> list[Target]:
    """On each GPU measured: the training loop and one NCCL rank learn (the loss falls) and the scores
    equal the CPU's; the measured column gives the throughput against the CPU's. None without a GPU."""
    cpu = result["devices"]["cpu"]
    out = []
    for name, r in gpus(result).items():
        runs = ("train", "train_ddp")
        failed = [f"{k}: {r[k]['error']}" for k in runs if "error" in r[k]]
        learns = not failed and all(r[k]["loss_last_epoch"] < r[k]["loss_first_epoch"] for k in runs)
        how = f"failed ({'; '.join(failed)})" if failed else f"loss {'falls' if learns else 'does not fall'}"
        out.append(Target(f"training {result['model']} on {r['name']} ({name}), {result['rows']:,} rows: the in-memory "
                          "loop and one DDP rank over NCCL, samples/s vs. the CPU's; the loss falls",
                          f"{times(vs_cpu(r['train'], cpu['train'], 'samples_per_s'))} / "
                          f"{times(vs_cpu(r['train_ddp'], cpu['train_ddp'], 'samples_per_s'))} "
                          f"({r['train_ddp'].get('transport', 'no rank')}); {how}", learns))
        diffs = [s.get("max_abs_diff_vs_cpu") for s in r["score"]]
        agree = all(d is not None and d <= SCORES_AGREE for d in diffs)
        out.append(Target(f"scoring {result['model']} on {r['name']} ({name}), {result['rows']:,} rows: forward "
                          f"passes, rows/s vs. the CPU's; the scores within {SCORES_AGREE:g} of the CPU's",
                          " / ".join(f"{times(vs_cpu(g, c, 'rows_per_s'))} at batch {g['batch_size']:,}"
                                     for g, c in zip(r["score"], cpu["score"]))
                          + (f"; largest difference {max(diffs):.1e}" if all(d is not None for d in diffs) else
                             "; failed (" + "; ".join(g["error"] for g in r["score"] if "error" in g) + ")"), agree))
    return out


def device_rows(name: str, r: dict, cpu: dict, batch_size: int) -> list[str]:
    """A measured device's table rows: its training runs, then its scoring at each batch size."""
    from bench.run.report import fmt

    head = f"| {name} ({r['name']})"
    memory = f"peak GPU memory {fmt(r['peak_memory_mib'])} MiB" if "peak_memory_mib" in r else ""
    rows = []
    for run in ("train", "train_ddp"):
        t = r[run]
        if "error" in t:
            rows.append(f"{head} | {run} | {batch_size} | failed | | | {t['error']} |")
            continue
        note = f"gradients by {t['transport']}" if run == "train_ddp" else memory
        rows.append(f"{head} | {run} | {batch_size} | {fmt(t['samples_per_s'])} samples | "
                    f"{times(vs_cpu(t, cpu[run], 'samples_per_s'))} | {t['loss_first_epoch']:.4f} -> "
                    f"{t['loss_last_epoch']:.4f} | {note} |")
    for g, c in zip(r["score"], cpu["score"]):
        if "error" in g:
            rows.append(f"{head} | score | {g['batch_size']:,} | failed | | | {g['error']} |")
            continue
        diff = "n/a" if g["max_abs_diff_vs_cpu"] is None else f"{g['max_abs_diff_vs_cpu']:.1e}"
        rows.append(f"{head} | score | {g['batch_size']:,} | {fmt(g['rows_per_s'])} rows | "
                    f"{times(vs_cpu(g, c, 'rows_per_s'))} | | largest difference from the CPU's scores {diff} |")
    return rows


def section(result: dict, info: dict) -> list[str]:
    where = result["machine"]
    lines = [BEGIN, "## Training and scoring on a GPU beside the CPU", "",
             f"Measured {result['started']} by `python -m bench.device` on {where['cpus']} CPU cores and GPU "
             f"{where['gpu']} (torch {where['torch']} built for CUDA {where['cuda']}), the section written by "
             f"`{info['command']}`. {result['model']} on {result['rows']:,} rows: a simulated day's first "
             f"{result['input_rows']:,} rows of features.samples, repeated; every device from the same initial "
             f"weights: the training loop over tensors already on the device (batch {result['batch_size']}, best "
             f"of {EPOCHS} epochs); the same loop with the model wrapped by the platform's DDP communication as one "
             "rank (lib/training/comms.py TorchDDPComm: NCCL on a GPU, Gloo on the CPU; what a TorchDistributor "
             "rank runs with `train.use_gpu`); the scoring job's forward passes over numpy columns, copies to and "
             "from the device included.", "",
             "| device | run | batch | throughput /s | vs. the CPU | loss, first -> last epoch | notes |",
             "|---|---|---|---|---|---|---|"]
    cpu = result["devices"]["cpu"]
    for name, r in result["devices"].items():
        lines += (device_rows(name, r, cpu, result["batch_size"]) if r.get("available")
                  else [f"| {name} | not measured | | | | | {r['why']} |"])
    found = targets(result)
    lines += ["", *(target_rows(found) if found else [f"No GPU measured: {not_measured(result)}. Nothing here "
                                                         "requires one; on a GPU machine see below."])]
    lines += ["", "Regenerate: `.venv/bin/python -m bench.run --only gpu --sizes 1000000` (measures the CPU, and CUDA "
              "where torch sees it); on a GPU machine without Spark, `python -m bench.device --inputs DIR --out "
              "gpu.json --rows 1000000` there on the folder the first command prepared (`--device-inputs`), then "
              "`.venv/bin/python -m bench.run --only gpu --device-result gpu.json` here.", END, ""]
    return lines
