"""Communication between ranks, one interface for the three launchers: in-process (no peers), torch DDP
(Gloo on CPU, NCCL on GPU) and Horovod.

Every launcher averages the gradients once a step with as few sync points as it can: DDP's 25 MiB
buckets (one for DCMT) as the backward fills them, one grouped Horovod all-reduce after it. No buffer
is broadcast before a forward unless the model has persistent ones. The embedding tables hold most of a
model's parameters (DCMT on a 1M-exposure day: 208k of 281k) but a step's gradient is non-zero only on
the rows its batch looked up; with ``train.embedding_allreduce: touched_rows`` the ranks average the
tables on the rows some rank touched (``reduce_touched_rows``) instead of all-reducing whole tables,
which is the same sum (an untouched row's gradient is zero on every rank) for fewer bytes and two more
syncs. On one 2-core machine an all-reduce costs 1-2 ms from 1k to 1M floats, so "dense" is the
default; touched rows are for tables of millions of rows over a network.

Ranks on one host (``train.same_host_allreduce: shared_memory``, the default, CPU training) average
the gradients through a shared segment instead of the launcher's collective (lib/training/shared_memory.py):
under DDP as its communication hook, under Horovod in place of the grouped all-reduce. Everything else
(the start's broadcast, the epoch's sums, touched rows) stays on the launcher's collective."""
from __future__ import annotations

import copy
import inspect
import os
from typing import TYPE_CHECKING, Callable

import torch

from liftlake.lib.training.shared_memory import SharedMemoryAllreduce

if TYPE_CHECKING:
    from liftlake.models.base import LiftlakeModel


def idle_parameters(model: LiftlakeModel, batch: dict[str, torch.Tensor]) -> list[str]:
    """The trainable parameters that one forward, loss and backward on ``batch`` leaves without a
    gradient (a head the loss never reaches). Run on a copy of the model under a forked random state,
    so the training run itself (its weights, buffers, dropout draws) is what it would be without it.
    DDP needs ``find_unused_parameters`` only for a model that has such parameters: the search it
    turns on walks the autograd graph after every backward (8-14 % of a DCMT step, measured)."""
    probe = copy.deepcopy(model)
    probe.train()
    cuda = [p.device.index or 0 for p in probe.parameters() if p.is_cuda][:1]
    with torch.random.fork_rng(devices=cuda):
        out = probe(batch)
        probe.compute_loss(batch, out).total.backward()
    return [name for name, p in probe.named_parameters() if p.requires_grad and p.grad is None]


def embedding_tables(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, weight) of every trainable ``nn.Embedding`` table in the model."""
    return [(f"{name}.weight" if name else "weight", m.weight) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Embedding) and m.weight.requires_grad]


def gradients(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """The parameters' gradients, zeros where a step left one without: every rank reduces the same
    tensors (another rank may have a gradient there)."""
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    return grads


def reduce_touched_rows(tables: list[torch.Tensor], world: int,
                        allreduce_sum: Callable[[torch.Tensor], torch.Tensor],
                        touched: torch.Tensor | None = None) -> None:
    """Average the tables' gradients over ``world`` ranks on the rows any rank touched, in place.

    Two collectives: a sum of the tables' row masks (``touched``, when the caller already reduced it
    with other tensors), then a sum of the rows whose mask is set on some rank. A table without a
    gradient on this rank takes part with zeros, as in a dense all-reduce."""
    grads = gradients(tables)
    if touched is None:
        touched = allreduce_sum(row_mask(tables))
    rows, start = [], 0
    for g in grads:
        rows.append(touched[start:start + len(g)].nonzero().squeeze(1))
        start += len(g)
    values = allreduce_sum(torch.cat([g.index_select(0, r) for g, r in zip(grads, rows)]))
    values.div_(world)
    start = 0
    for g, r in zip(grads, rows):
        g.index_copy_(0, r, values[start:start + len(r)])
        start += len(r)


def row_mask(tables: list[torch.Tensor]) -> torch.Tensor:
    """1.0 for every row of the tables (concatenated) whose gradient is non-zero on this rank."""
    return torch.cat([(g != 0).any(dim=1) for g in gradients(tables)]).to(torch.float32)


# -- communication: local, torch DDP, Horovod -------------------------------------------------------------
def rank_device(use_gpu: bool, rank: int = 0) -> torch.device:
    """The device a rank trains on: with ``use_gpu`` on a host where torch sees CUDA, the GPU of its local
    rank (LOCAL_RANK, which TorchDistributor and torchrun set; else ``rank``), modulo the host's GPUs;
    else the CPU."""
    if not (use_gpu and torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())


def attach_shared_memory(comm, setting: str, capacity: int) -> SharedMemoryAllreduce | None:
    """The shared-memory all-reduce for ``comm``'s ranks when ``setting`` asks for it and every rank
    maps it; ``comm.transport`` says which way the gradients go, and why."""
    if setting != "shared_memory" or comm.size < 2:
        return None
    shared, why = SharedMemoryAllreduce.attach(comm.allreduce_sum, comm.rank, comm.size, capacity)
    comm.transport = "shared memory" if shared else f"{comm.transport} ({why})"
    return shared


def average_through(shared: SharedMemoryAllreduce, tensors: list[torch.Tensor]) -> None:
    """The tensors averaged in place through shared memory, as one flat all-reduce."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    shared.average_(flat)
    start = 0
    for t in tensors:
        t.view(-1).copy_(flat[start:start + t.numel()])
        start += t.numel()


def _average_bucket(shared: SharedMemoryAllreduce, bucket):  # DDP accepts no annotation but Future[Tensor]
    """DDP's communication hook: the bucket's flat gradients averaged through shared memory."""
    done: torch.futures.Future = torch.futures.Future()
    done.set_result(shared.average_(bucket.buffer()))
    return done


class LocalComm:
    rank, size = 0, 1
    name = "local"
    transport = "none"

    def wrap(self, model, optimizer, find_unused: bool = True):
        return model, optimizer

    def reduce_gradients(self) -> None:
        pass

    def allreduce_sum(self, value: float) -> float:
        return value

    def barrier(self) -> None:
        pass


def ddp_options(accepted: set[str], sync_buffers: bool) -> dict:
    """DDP's keywords for the buffers' sync before each forward and the gradient buckets, in the
    names the installed torch accepts (``accepted``: its DistributedDataParallel's parameters).
    torch 2.13 (the pinned one) renamed ``broadcast_buffers`` to ``forward_sync_buffers`` and warns on
    the old name; an older torch (a lent GPU machine's) knows only the old one. Every bucket 25 MiB, the
    first too (DDP's default first is 1 MiB): a model whose gradients fit (DCMT's 1.1 MB) is one
    all-reduce a step instead of two (+8 % samples/s x2 on 2 cores, measured); a torch without
    ``bucket_cap_mb_list`` keeps its 1 MiB first bucket."""
    sync = "forward_sync_buffers" if "forward_sync_buffers" in accepted else "broadcast_buffers"
    buckets = {"bucket_cap_mb_list": [25]} if "bucket_cap_mb_list" in accepted else {"bucket_cap_mb": 25}
    return {sync: sync_buffers, **buckets}


class TorchDDPComm:
    """Under TorchDistributor (or torchrun): env:// rendezvous, Gloo on CPU, NCCL on GPU."""

    name = "torch-ddp"

    def __init__(self, use_gpu: bool, embedding_allreduce: str = "dense", same_host_allreduce: str = "shared_memory"):
        import torch.distributed as dist

        self.dist = dist
        # NCCL reduces tensors on the rank's GPU only: the scalar sums and the barrier go there too
        self.device = rank_device(use_gpu, int(os.environ.get("RANK", 0)))
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_gpu else "gloo")
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.touched_rows = embedding_allreduce == "touched_rows"
        self.same_host_allreduce = "launcher" if use_gpu else same_host_allreduce  # NCCL has its own
        self.transport = dist.get_backend()
        self.tables: list[torch.Tensor] = []

    def wrap(self, model, optimizer, find_unused: bool = True):
        """DDP over every parameter (with touched rows: but the embedding tables, which
        ``reduce_gradients`` averages). ``find_unused``: the model has parameters a step can leave
        without a gradient (``idle_parameters``); DDP then searches the graph for them after each backward."""
        from torch.nn.parallel import DistributedDataParallel

        tables = embedding_tables(model) if self.touched_rows else []
        if tables and len(tables) < len([p for p in model.parameters() if p.requires_grad]):
            self.tables = [p for _, p in tables]
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, [n for n, _ in tables])
            for p in self.tables:  # DDP broadcasts rank 0's weights but those it ignores
                self.dist.broadcast(p.data, src=0)
        # a non-persistent buffer (FieldEmbedding's offsets) is built alike on every rank: broadcasting it
        # before every forward is a sync point for nothing (about 10 % of a DCMT step on 2 cores; under
        # forward_sync_buffers DDP still syncs it once, when it starts)
        persistent = model.state_dict().keys()
        broadcast = any(name in persistent for name, _ in model.named_buffers())
        ddp = DistributedDataParallel(model, find_unused_parameters=find_unused,
                                      **ddp_options(set(inspect.signature(DistributedDataParallel).parameters),
                                                    broadcast))
        ignored = {id(p) for p in self.tables}
        capacity = sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in ignored)
        shared = attach_shared_memory(self, self.same_host_allreduce, capacity)
        if shared:
            ddp.register_comm_hook(shared, _average_bucket)
        return ddp, optimizer

    def reduce_gradients(self) -> None:
        """After the backward (DDP has averaged its parameters by then)."""
        if self.tables:
            reduce_touched_rows(self.tables, self.size, self._allreduce_tensor)

    def _allreduce_tensor(self, t: torch.Tensor) -> torch.Tensor:
        self.dist.all_reduce(t)
        return t

    def allreduce_sum(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        self.dist.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        if self.device.type == "cuda":
            self.dist.barrier(device_ids=[self.device.index])
        else:
            self.dist.barrier()


class HorovodComm:
    """Under horovod.spark.run: Gloo controller, broadcast from rank 0, then per step one grouped
    all-reduce of every gradient (with touched rows: of the other gradients and the tables' row masks,
    then one of the tables' touched rows). Horovod's DistributedOptimizer would negotiate each parameter
    on its own and wait on them in its step (52-82 % of a DCMT step on 2 cores, measured)."""

    name = "horovod"

    def __init__(self, embedding_allreduce: str = "dense", same_host_allreduce: str = "shared_memory"):
        import horovod.torch as hvd

        self.hvd = hvd
        hvd.init()
        self.rank, self.size = hvd.rank(), hvd.size()
        self.touched_rows = embedding_allreduce == "touched_rows"
        self.same_host_allreduce = same_host_allreduce
        self.transport = "horovod"
        self.tables: list[torch.Tensor] = []
        self.dense: list[torch.Tensor] = []
        self.shared: SharedMemoryAllreduce | None = None

    def wrap(self, model, optimizer, find_unused: bool = True):
        # a parameter without a gradient is reduced as zeros (reduce_gradients): nothing to search for
        hvd = self.hvd
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        table_ids = {id(p) for _, p in embedding_tables(model)} if self.touched_rows else set()
        self.tables = [p for p in model.parameters() if id(p) in table_ids]
        self.dense = [p for p in model.parameters() if p.requires_grad and id(p) not in table_ids]
        capacity = sum(p.numel() for p in self.dense) + sum(len(p) for p in self.tables)
        self.shared = attach_shared_memory(self, self.same_host_allreduce, capacity)
        return model, optimizer

    def reduce_gradients(self) -> None:
        if self.size == 1:
            return  # the average over one rank is its own gradients: no Horovod op a step to wait on
        hvd = self.hvd
        mask = [row_mask(self.tables)] if self.tables else []  # averaged: non-zero where a rank touched
        if self.shared:
            average_through(self.shared, gradients(self.dense) + mask)
        else:
            hvd.grouped_allreduce_(gradients(self.dense) + mask, op=hvd.Average, name="gradients")
        if self.tables:
            reduce_touched_rows(self.tables, self.size, lambda t: hvd.allreduce_(t, op=hvd.Sum, name="table_rows"),
                                touched=mask[0])

    def allreduce_sum(self, value: float) -> float:
        return float(self.hvd.allreduce(torch.tensor([value], dtype=torch.float64), op=self.hvd.Sum).item())

    def barrier(self) -> None:
        self.hvd.allreduce(torch.zeros(1), name="barrier")
