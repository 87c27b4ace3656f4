"""Communication between ranks, one interface for the three launchers: in-process (no peers), torch DDP
(Gloo on CPU, NCCL on GPU) and Horovod."""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

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
    """(name, weight) of every trainable ``nn.Embedding`` of the model: the parameters whose gradient a
    step fills only in the rows its batch looked up."""
    return [(f"{name}.weight" if name else "weight", m.weight) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Embedding) and m.weight.requires_grad]


class RowwiseGradSync:
    """The embedding tables' gradients averaged over the ranks row by row, after each backward: the
    ranks agree on the union of the rows any of them touched (two all_gathers of row ids) and all-reduce
    those rows alone, instead of DDP's dense all-reduce of every table, which carried most of a CVR
    model's gradient bytes (issue 20: the all-reduce was about a quarter of a DCMT step on 2 ranks).
    A row outside the union has a zero gradient on every rank, so the result is the dense average."""

    def __init__(self, dist, world: int, tables: list[tuple[str, torch.Tensor]]):
        self.dist, self.world, self.tables = dist, world, tables
        self.rows_synced = 0  # rows all-reduced by the last call (over all tables)

    def __call__(self) -> None:
        dist, params = self.dist, [p for _, p in self.tables]
        grads: list[torch.Tensor] = []
        for p in params:
            if p.grad is None:  # this rank's batch missed the table: it still joins the collectives
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        rows = [g.ne(0).any(dim=1).nonzero().squeeze(1) for g in grads]
        device = grads[0].device
        counts = torch.tensor([len(r) for r in rows], dtype=torch.int64, device=device)
        every = [torch.empty_like(counts) for _ in range(self.world)]
        dist.all_gather(every, counts)
        widest = torch.stack(every).max(dim=0).values.tolist()
        padded = torch.cat([torch.cat([r, r.new_full((w - len(r),), -1)]) for r, w in zip(rows, widest)])
        gathered = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(gathered, padded)
        unions, start = [], 0
        for w in widest:
            ids = torch.cat([g[start:start + w] for g in gathered])
            unions.append(torch.unique(ids[ids >= 0]))
            start += w
        flat = torch.cat([g.index_select(0, u).reshape(-1) for g, u in zip(grads, unions)])
        dist.all_reduce(flat)
        flat /= self.world
        start = 0
        for g, u in zip(grads, unions):
            size = len(u) * g.shape[1]
            g.index_copy_(0, u, flat[start:start + size].view(len(u), g.shape[1]))
            start += size
        self.rows_synced = sum(len(u) for u in unions)


# -- communication: local, torch DDP, Horovod -------------------------------------------------------------
class LocalComm:
    rank, size = 0, 1
    name = "local"

    def wrap(self, model, optimizer, find_unused: bool = True):
        return model, optimizer

    def after_backward(self) -> None:
        pass

    def allreduce_sum(self, value: float) -> float:
        return value

    def barrier(self) -> None:
        pass


class TorchDDPComm:
    """Under TorchDistributor (or torchrun): env:// rendezvous, Gloo on CPU, NCCL on GPU."""

    name = "torch-ddp"

    def __init__(self, use_gpu: bool):
        import torch.distributed as dist

        self.dist = dist
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_gpu else "gloo")
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.embedding_sync: RowwiseGradSync | None = None

    def wrap(self, model, optimizer, find_unused: bool = True):
        """``find_unused``: the model has parameters a step can leave without a gradient
        (``idle_parameters``); DDP then searches the graph for them after each backward. The embedding
        tables are left out of DDP and synced row by row (``after_backward``); DDP does not broadcast
        what it ignores, so rank 0's tables are broadcast here."""
        from torch.nn.parallel import DistributedDataParallel

        tables = embedding_tables(model) if self.size > 1 else []
        if tables:
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, [n for n, _ in tables])
            with torch.no_grad():
                for _, p in tables:
                    self.dist.broadcast(p.data, src=0)
            self.embedding_sync = RowwiseGradSync(self.dist, self.size, tables)
        return DistributedDataParallel(model, find_unused_parameters=find_unused), optimizer

    def after_backward(self) -> None:
        """The embedding rows' average over the ranks (DDP averaged the rest during the backward)."""
        if self.embedding_sync is not None:
            self.embedding_sync()

    def allreduce_sum(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64)
        self.dist.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        self.dist.barrier()


class HorovodComm:
    """Under horovod.spark.run: Gloo controller, DistributedOptimizer, broadcast from rank 0."""

    name = "horovod"

    def __init__(self):
        import horovod.torch as hvd

        self.hvd = hvd
        hvd.init()
        self.rank, self.size = hvd.rank(), hvd.size()

    def wrap(self, model, optimizer, find_unused: bool = True):
        # Horovod's optimizer reduces a parameter without a gradient as zeros: nothing to search for
        hvd = self.hvd
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
        return model, optimizer

    def after_backward(self) -> None:
        pass  # the DistributedOptimizer reduces every gradient (densely) in its step

    def allreduce_sum(self, value: float) -> float:
        return float(self.hvd.allreduce(torch.tensor([value], dtype=torch.float64), op=self.hvd.Sum).item())

    def barrier(self) -> None:
        self.hvd.allreduce(torch.zeros(1), name="barrier")
