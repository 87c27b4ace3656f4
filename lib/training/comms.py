"""Communication between ranks, one interface for the three launchers: in-process (no peers), torch DDP
(Gloo on CPU, NCCL on GPU) and Horovod."""
from __future__ import annotations

import torch


# -- communication: local, torch DDP, Horovod -------------------------------------------------------------
class LocalComm:
    rank, size = 0, 1
    name = "local"

    def wrap(self, model, optimizer):
        return model, optimizer

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

    def wrap(self, model, optimizer):
        from torch.nn.parallel import DistributedDataParallel

        # find_unused_parameters: some heads (e.g. a counterfactual tower) sit out some batches.
        return DistributedDataParallel(model, find_unused_parameters=True), optimizer

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

    def wrap(self, model, optimizer):
        hvd = self.hvd
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())
        return model, optimizer

    def allreduce_sum(self, value: float) -> float:
        return float(self.hvd.allreduce(torch.tensor([value], dtype=torch.float64), op=self.hvd.Sum).item())

    def barrier(self) -> None:
        self.hvd.allreduce(torch.zeros(1), name="barrier")
