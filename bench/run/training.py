"""The training section of bench.run: samples/s of the training function under each launcher and
process count against a single-process torch loop over in-memory tensors (same model, batch, cores)."""
from __future__ import annotations

import os
import tempfile
import time

from bench.run.common import job_context


def inmemory_loop(plan, epochs: int = 1) -> float:
    """The reference: the same model and batch size over tensors already in memory, one process with
    every core; samples/s of its best epoch, as for the launchers."""
    import torch

    from liftlake.lib.training.loop import read_all
    from liftlake.lib.training.plan import batch_columns, to_batch
    from liftlake.models.registry import build_model

    torch.manual_seed(plan.seed)
    cols = read_all(plan.train_files, batch_columns(plan))
    batch = to_batch(cols, plan)
    n = len(batch["x"])
    model = build_model(plan.model_name, plan.field_dims, plan.model_params)
    opt = torch.optim.Adam(model.parameters(), lr=plan.learning_rate)
    torch.set_num_threads(os.cpu_count() or 2)
    best = 0.0
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(n)
        for s in range(0, n, plan.batch_size):
            idx = perm[s:s + plan.batch_size]
            part = {k: v[idx] for k, v in batch.items()}
            loss = model.compute_loss(part, model(part))
            opt.zero_grad()
            loss.total.backward()
            opt.step()
        best = max(best, n / (time.perf_counter() - start))
    return best


def bench_training(spark, warehouse: str, ds: str, model: str, epochs: int, launchers: list[tuple[str, int]]) -> dict:
    from liftlake.lib.training.launchers import launch
    from liftlake.lib.training.plan import build_plan

    out: dict = {"model": model, "runs": []}
    for launcher, procs in launchers:
        ctx = job_context(warehouse, [f"model.name={model}", f"train.launcher={launcher}",
                                      f"train.num_processes={procs}", f"train.epochs={epochs}",
                                      "train.early_stopping_patience=0"], [ds], spark)
        plan, trainset, _ = build_plan(ctx.store, ctx.config, ds,
                                       checkpoint_dir=tempfile.mkdtemp(prefix="bench-ckpt-"))
        if "inmemory_samples_per_s" not in out:
            out["train_rows"] = trainset.rows["train"]
            out["batch_size"] = plan.batch_size
            out["inmemory_samples_per_s"] = inmemory_loop(plan, epochs)
        start = time.perf_counter()
        result = launch(plan, launcher, procs, spark)
        wall = time.perf_counter() - start
        history = result["state"]["history"]
        steady = max(h["samples_per_s"] for h in history)  # epochs after the first skip start-up costs
        out["runs"].append({"launcher": launcher, "processes": procs, "wall_s": wall,
                            "epoch_samples_per_s": steady,
                            "ratio_vs_inmemory": steady / out["inmemory_samples_per_s"],
                            "final_loss": history[-1]["loss"]})
    return out
