"""Training: ONE per-rank function, run in-process or under Horovod-on-Spark or TorchDistributor.

The driver pins the Delta versions it reads, materializes the training rows once as Parquet files
of near-equal size (``<warehouse>/_train_cache/<key>/``, keyed by table versions, days and columns),
and hands every rank a picklable ``TrainPlan``. Each rank reads its own shard through Petastorm's
``make_batch_reader`` (``cur_shard`` / ``shard_count``: whole files per rank), cuts it into exactly
the same number of steps as every other rank (so collective ops never wait on a missing rank, and
every row is read exactly once per epoch), and trains. Rank 0 alone writes checkpoints and the
artifact.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from typing import Any, Iterator

import numpy as np
import torch

from liftlake.lib.training.batch import batch_columns, to_batch
from liftlake.lib.training.comms import LocalComm, idle_parameters, rank_device
from liftlake.lib.training.plan import TrainingError, TrainPlan
from liftlake.models.base import BadBatchError


# -- reading a shard --------------------------------------------------------------------------------
def steps_per_epoch(plan: TrainPlan, world_size: int) -> tuple[int, list[int]]:
    """Rows of each rank (row groups rank, rank + n, ...) and the common number of steps."""
    groups = plan.train_rowgroup_rows
    rows = [sum(groups[i] for i in range(r, len(groups), world_size)) for r in range(world_size)]
    if min(rows) == 0:
        raise TrainingError(f"{len(groups)} training row group(s) cannot feed {world_size} ranks")
    # train.batch_size is the global batch: each of n ranks takes 1/n of it per step, so a run on
    # n ranks makes the same optimizer steps as a run in one process.
    per_rank = max(1, math.ceil(plan.batch_size / world_size))
    return max(1, math.ceil(max(rows) / per_rank)), rows


def chunk_sizes(rows: int, steps: int) -> list[int]:
    """``rows`` split into exactly ``steps`` chunks differing by at most one row."""
    base, extra = divmod(rows, steps)
    return [base + (1 if i < extra else 0) for i in range(steps)]


def read_shard(files: list[str], columns: list[str], rank: int, world_size: int, seed: int) -> Iterator[dict]:
    """Petastorm batch reader over this rank's shard: yields dicts of numpy column arrays."""
    import warnings

    from petastorm import make_batch_reader

    # petastorm 0.12 drives pyarrow's legacy dataset API (the pin DESIGN.md explains); its
    # deprecation warnings say nothing the user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module="petastorm")
    urls = [f if "://" in f else f"file://{f}" for f in files]
    with make_batch_reader(urls, schema_fields=columns, cur_shard=rank, shard_count=world_size,
                           num_epochs=1, shuffle_row_groups=True, seed=seed,
                           # one worker: row groups arrive in the seeded order, so an epoch's
                           # batches are the same after a resume
                           workers_count=1,
                           reader_pool_type="thread") as reader:
        for group in reader:
            yield {c: np.asarray(getattr(group, c)) for c in columns}


def epoch_batches(plan: TrainPlan, rank: int, world_size: int, epoch: int,
                  steps: int, rank_rows: int) -> Iterator[dict]:
    """Exactly ``steps`` batches holding every row of the shard once, rows shuffled per epoch."""
    cols = batch_columns(plan)
    rng = np.random.default_rng([plan.seed, epoch, rank])
    sizes = chunk_sizes(rank_rows, steps)
    buffer: dict[str, list[np.ndarray]] = {c: [] for c in cols}
    buffered = 0
    emitted = 0

    def drain(final: bool):
        nonlocal buffered, emitted
        merged = {c: np.concatenate(buffer[c]) for c in cols}
        perm = rng.permutation(buffered)
        merged = {c: v[perm] for c, v in merged.items()}
        start = 0
        while emitted < steps and buffered - start >= sizes[emitted] and (final or buffered - start >= 4 * plan.batch_size):
            end = start + sizes[emitted]
            yield {c: v[start:end] for c, v in merged.items()}
            start = end
            emitted += 1
        for c in cols:
            buffer[c] = [merged[c][start:]]
        buffered -= start

    for group in read_shard(plan.train_files, cols, rank, world_size, seed=plan.seed + epoch):
        for c in cols:
            buffer[c].append(group[c])
        buffered += len(group[cols[0]])
        if buffered >= 8 * plan.batch_size:
            yield from drain(final=False)
    if buffered:
        yield from drain(final=True)
    if emitted != steps:
        raise TrainingError(f"rank {rank}: read {emitted} of {steps} batches; the shard changed under the run")


def read_all(files: list[str], columns: list[str]) -> dict[str, np.ndarray]:
    """A whole (small) split in memory, for validation: pyarrow straight from the files."""
    import pyarrow.parquet as pq

    tables = [pq.read_table(f, columns=columns) for f in files]
    return {c: np.concatenate([t.column(c).to_numpy() for t in tables]) if tables else np.array([]) for c in columns}


# -- validation metric used for early stopping ------------------------------------------------------------
def validation_score(model, plan: TrainPlan, valid: dict[str, np.ndarray], device) -> dict[str, float]:
    from liftlake.lib.evaluation.cvr_metrics import auc, log_loss

    model.eval()
    outs: dict[str, list[np.ndarray]] = {}
    n = len(valid[plan.feature_columns[0]])
    with torch.no_grad():
        for start in range(0, n, 65536):
            part = {c: v[start:start + 65536] for c, v in valid.items()}
            pred = model.predict(to_batch(part, plan, device))
            for k, v in pred.items():
                outs.setdefault(k, []).append(v.detach().cpu().numpy())
    model.train()
    pred = {k: np.concatenate(v) for k, v in outs.items()}
    scores: dict[str, float] = {}
    if plan.task == "cvr":
        clicked = valid["click"] == 1
        if len(np.unique(valid["conversion"][clicked])) == 2:
            scores["auc_cvr_clicked"] = auc(valid["conversion"][clicked], pred["cvr"][clicked])
        scores["auc_ctcvr"] = auc(valid["conversion"], pred["ctcvr"])
        scores["auc_ctr"] = auc(valid["click"], pred["ctr"])
        # Epochs are chosen by the log likelihood of each exposure's observed outcome (no click, click
        # without conversion, conversion): -log(1-ctr), -log(ctr (1-cvr)), -log(ctr cvr). A proper
        # score keeps the epoch whose probabilities are right; CVR AUC on clicks (the old choice)
        # is blind to calibration and to the CTR tower.
        n_clicked = int(clicked.sum())
        joint_nll = log_loss(valid["click"], pred["ctr"])
        if n_clicked:
            joint_nll += log_loss(valid["conversion"][clicked], pred["cvr"][clicked]) * n_clicked / n
        scores["joint_log_loss"] = float(joint_nll)
        # calibration at a glance: mean prediction over observed rate (1.0 is calibrated)
        scores["ctr_mean_over_rate"] = float(pred["ctr"].mean() / max(valid["click"].mean(), 1e-12))
        if n_clicked:
            scores["cvr_clicked_mean_over_rate"] = float(pred["cvr"][clicked].mean()
                                                         / max(valid["conversion"][clicked].mean(), 1e-12))
        scores["score"] = -scores["joint_log_loss"]
    elif plan.task == "coupon":
        p0 = pred["p0"]
        p_given = np.clip(p0 + pred["unit_uplift"] * valid["intensity"], 0, 1)
        scores["auc_outcome"] = auc(valid["outcome"], p_given)
        untreated = valid["treated"] == 0
        if len(np.unique(valid["outcome"][untreated])) == 2:
            scores["auc_base"] = auc(valid["outcome"][untreated], p0[untreated])
        scores["score"] = scores["auc_outcome"]
    else:
        errs = []
        for r in range(1, plan.num_responses + 1):
            y = valid[f"response_{r}"]
            y0 = pred[f"y0_r{r}"]
            fitted = y0.copy()
            for k in range(1, plan.num_treatments + 1):
                on = valid["treatment_id"] == k
                fitted[on] = y0[on] + pred[f"tau_r{r}_k{k}"][on]
            errs.append(float(np.mean((fitted - y) ** 2) / max(np.var(y), 1e-12)))
        scores["relative_mse"] = float(np.mean(errs))
        scores["score"] = -scores["relative_mse"]
    return scores


# -- the per-rank training function ---------------------------------------------------------------------
def _optimizer(plan: TrainPlan, params):
    if plan.optimizer == "adam":
        return torch.optim.Adam(params, lr=plan.learning_rate, weight_decay=plan.weight_decay)
    if plan.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=plan.learning_rate, weight_decay=plan.weight_decay)
    return torch.optim.SGD(params, lr=plan.learning_rate, momentum=0.9, weight_decay=plan.weight_decay)


def _log(rank: int, msg: str) -> None:
    if rank == 0:
        print(f"[train] {msg}", file=sys.stderr, flush=True)


def _latest_checkpoint(folder: str) -> str | None:
    if not os.path.isdir(folder):
        return None
    steps = sorted(int(f[5:-3]) for f in os.listdir(folder) if f.startswith("step-") and f.endswith(".pt"))
    return os.path.join(folder, f"step-{steps[-1]:09d}.pt") if steps else None


def train_rank(plan: TrainPlan, comm=None) -> dict[str, Any]:
    """Train on this rank's shard; every rank returns the same result dict (rank 0's is used).

    Resumes from the newest checkpoint in ``plan.checkpoint_dir``: the batches of an epoch are a
    function of (seed, epoch, rank), so skipping the steps already done gives the same run.
    """
    from liftlake.models.registry import build_model

    comm = comm or LocalComm()
    rank, world = comm.rank, comm.size
    torch.manual_seed(plan.seed)
    np.random.seed(plan.seed)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
    device = rank_device(plan.use_gpu, rank)
    model = build_model(plan.model_name, plan.field_dims, plan.model_params).to(device)
    optimizer = _optimizer(plan, model.parameters())
    state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_score": -math.inf,
             "best_epoch": -1, "epochs_without_gain": 0, "history": []}
    best_weights = None
    ckpt = _latest_checkpoint(plan.checkpoint_dir)
    if ckpt:
        saved = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = json.loads(saved["state"])
        best_weights = saved.get("best_model")
        if "torch_rng" in saved:  # dropout draws continue where the killed run left them
            torch.set_rng_state(saved["torch_rng"].cpu())
        _log(rank, f"resuming from {os.path.basename(ckpt)} (epoch {state['epoch']}, "
                   f"step {state['global_step']})")
    valid = read_all(plan.valid_files, batch_columns(plan))
    find_unused = True  # without a validation row to probe with, the safe setting
    if comm.name == "torch-ddp" and world > 1 and valid and len(next(iter(valid.values()))):  # DDP's setting alone
        idle = idle_parameters(model, to_batch({c: v[:plan.batch_size] for c, v in valid.items()}, plan, device))
        find_unused = comm.allreduce_sum(float(len(idle))) > 0  # every rank wraps alike
        _log(rank, f"parameters without a gradient on a probe step: {idle[:5] or 'none'}; "
                   f"DDP's unused-parameter search {'on' if find_unused else 'off'}")
    train_model, optimizer = comm.wrap(model, optimizer, find_unused=find_unused)
    steps, rows = steps_per_epoch(plan, world)
    _log(rank, f"{plan.model_name}: {sum(rows)} rows over {world} rank(s) {rows}, {steps} steps/epoch, "
               f"batch {plan.batch_size}, launcher {comm.name}, gradients averaged by {comm.transport}")

    def save_checkpoint():
        if rank != 0:
            return
        os.makedirs(plan.checkpoint_dir, exist_ok=True)
        path = os.path.join(plan.checkpoint_dir, f"step-{state['global_step']:09d}.pt")
        tmp = path + ".tmp"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "state": json.dumps(state), "best_model": best_weights,
                    "torch_rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, path)
        for old in sorted(os.listdir(plan.checkpoint_dir)):
            if old.startswith("step-") and old.endswith(".pt") and os.path.join(plan.checkpoint_dir, old) != path:
                os.remove(os.path.join(plan.checkpoint_dir, old))

    epochs = max(plan.epochs, -(-plan.min_steps // max(steps, 1)))  # the step budget, in whole epochs
    if epochs > plan.epochs:
        _log(rank, f"{epochs} epochs for train.min_steps {plan.min_steps} ({steps} steps an epoch)")
    stopped_early = False
    training_started_at = time.time()  # the end of this rank's start-up (the launch's, for the bench)
    while state["epoch"] < epochs:
        epoch = state["epoch"]
        started, seen, loss_sum = time.time(), 0, 0.0
        id_sum = id_sq = 0.0  # which rows this rank read: checked against the whole set below
        for i, columns in enumerate(epoch_batches(plan, rank, world, epoch, steps, rows[rank])):
            if i < state["step_in_epoch"]:
                continue  # done before the checkpoint we resumed from
            ids = columns["row_id"].astype(np.float64)
            id_sum, id_sq = id_sum + ids.sum(), id_sq + (ids ** 2).sum()
            batch = to_batch(columns, plan, device)
            out = train_model(batch)
            try:
                loss = model.compute_loss(batch, out)
            except BadBatchError as exc:
                raise BadBatchError(f"epoch {epoch} step {i} (rank {rank}): {exc}") from None
            if not torch.isfinite(loss.total):
                raise TrainingError(f"loss is {loss.total.item()} at epoch {epoch} step {i} on rank {rank}; "
                                    f"parts {({k: float(v.detach()) for k, v in loss.parts.items()})}")
            optimizer.zero_grad()
            loss.total.backward()
            comm.reduce_gradients()
            optimizer.step()
            n = len(batch["x"])
            seen += n
            loss_sum += float(loss.total.detach()) * n
            state["step_in_epoch"] = i + 1
            state["global_step"] += 1
            if state["global_step"] % plan.log_every_steps == 0:
                _log(rank, f"epoch {epoch} step {i + 1}/{steps} loss {loss_sum / seen:.5f} "
                           f"{seen * world / max(time.time() - started, 1e-9):,.0f} samples/s")
            if state["global_step"] % plan.checkpoint_every_steps == 0:
                save_checkpoint()
            if plan.stop_after_steps and state["global_step"] >= plan.stop_after_steps:
                save_checkpoint()
                comm.barrier()
                raise TrainingError(f"stopped after {plan.stop_after_steps} steps (fault injection)")
        elapsed = time.time() - started
        total_seen = comm.allreduce_sum(float(seen))
        rows_read_check = {"count": total_seen, "id_sum": comm.allreduce_sum(id_sum),
                           "id_sq_sum": comm.allreduce_sum(id_sq)}
        mean_loss = comm.allreduce_sum(loss_sum) / max(total_seen, 1.0)
        scores = validation_score(model, plan, valid, device)
        state["history"].append({"epoch": epoch, "loss": mean_loss, "samples": int(total_seen),
                                 "rows_read": rows_read_check,
                                 "samples_per_s": total_seen / max(elapsed, 1e-9), **scores})
        _log(rank, f"epoch {epoch}: loss {mean_loss:.5f}, {total_seen / max(elapsed, 1e-9):,.0f} samples/s, "
                   f"valid {json.dumps({k: round(v, 4) for k, v in scores.items()})}")
        if scores["score"] > state["best_score"] + 1e-6:
            state.update(best_score=scores["score"], best_epoch=epoch, epochs_without_gain=0)
            best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            state["epochs_without_gain"] += 1
        state["epoch"] += 1
        state["step_in_epoch"] = 0
        if plan.early_stopping_patience and state["epochs_without_gain"] >= plan.early_stopping_patience:
            _log(rank, f"early stop after epoch {epoch}: no validation gain in "
                       f"{plan.early_stopping_patience} epoch(s)")
            stopped_early = True
            break
        save_checkpoint()
    comm.barrier()
    checksum = float(sum(p.detach().double().sum().item() * (i + 1) for i, p in enumerate(model.parameters())))
    ranks_identical = comm.allreduce_sum(checksum) == checksum * world
    weights = best_weights or {k: v.detach().cpu() for k, v in model.state_dict().items()}
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in weights.values())).hexdigest()
    return {"rank": rank, "world_size": world, "transport": comm.transport, "state": state, "steps_per_epoch": steps,
            "rank_rows": rows,
            # every rank returns the (identical) weights: TorchDistributor keeps whichever rank's
            # return value it pickles last, not necessarily rank 0's
            "weights": weights, "weights_digest": digest,
            "final_digest": hashlib.sha256(b"".join(
                v.detach().cpu().numpy().tobytes() for v in model.state_dict().values())).hexdigest(),
            "stopped_early": stopped_early, "ranks_identical": ranks_identical,
            "training_started_at": training_started_at}


