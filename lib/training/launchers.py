"""Launchers of the ONE per-rank training function: in-process (``local``), Horovod-on-Spark
(``horovod.spark.run``) and Spark's TorchDistributor (barrier-mode DDP)."""
from __future__ import annotations

from typing import Any

from liftlake.lib.cli.runner import InputError
from liftlake.lib.training.comms import HorovodComm, LocalComm, TorchDDPComm
from liftlake.lib.training.loop import train_rank
from liftlake.lib.training.plan import TrainingError, TrainPlan

# Horovod's background thread runs a cycle every HOROVOD_CYCLE_TIME ms whether or not a tensor waits, and
# each cycle is a Gloo round between the ranks (its response cache's bits): at Horovod's default that
# thread and Gloo's took 15-25 % of a core per rank while DCMT trained through shared memory, with no
# Horovod op to serve (2 ranks on 2 cores: Horovod x2 at 78-90k samples/s, 97-115k at 20 ms, measured)
HOROVOD_IDLE_CYCLE_MS = 20


# -- launchers -------------------------------------------------------------------------------------------
def _torch_distributor_entry(plan: TrainPlan):
    comm = TorchDDPComm(plan.use_gpu, plan.embedding_allreduce, plan.same_host_allreduce)
    result = train_rank(plan, comm)
    comm.dist.destroy_process_group()
    return result


def _horovod_entry(plan: TrainPlan):
    return train_rank(plan, HorovodComm(plan.embedding_allreduce, plan.same_host_allreduce))


def launch(plan: TrainPlan, launcher: str, num_processes: int, spark=None) -> dict[str, Any]:
    """Run ``train_rank`` under the launcher; returns rank 0's result (with ``per_rank`` digests)."""
    if launcher == "local":
        return train_rank(plan, LocalComm())
    master = spark.sparkContext.master if spark is not None else "local"
    if launcher == "torch-distributor":
        from pyspark.ml.torch.distributor import TorchDistributor

        result = TorchDistributor(num_processes=num_processes, local_mode=on_driver_host(master),
                                  use_gpu=plan.use_gpu).run(_torch_distributor_entry, plan)
        if result is None:
            raise TrainingError("TorchDistributor returned no result from rank 0")
        return result
    if launcher == "horovod":
        import horovod.spark

        results = horovod.spark.run(_horovod_entry, args=(plan,), num_proc=num_processes, use_gloo=True, verbose=1,
                                    env=horovod_env(plan, num_processes, master))
        first = results[0]
        first["per_rank_digests"] = [r["final_digest"] for r in results]
        return first
    raise ValueError(f"train.launcher {launcher!r} is not one of local | horovod | torch-distributor")


def require_gpu(launcher: str, use_gpu: bool, master: str) -> None:
    """``train.use_gpu`` only where its ranks can train on a GPU, else InputError before any work: Horovod
    is built CPU-only here; the in-process launcher, and TorchDistributor on a local master, run their
    ranks on this host, where torch must see CUDA (on a cluster the executors' GPUs are Spark's to find)."""
    if not use_gpu:
        return
    if launcher == "horovod":
        raise InputError("train.use_gpu=true: the horovod launcher is installed without GPU support (rule: use_gpu "
                         "with train.launcher local or torch-distributor)")
    import torch

    if (launcher == "local" or on_driver_host(master)) and not torch.cuda.is_available():
        raise InputError(f"train.use_gpu=true: torch sees no CUDA device on this host, where train.launcher {launcher} "
                         f"runs its ranks (spark.master {master}) (rule: a GPU for the ranks; or train.use_gpu=false)")


def on_driver_host(master: str) -> bool:
    """Whether every rank runs on the driver's host: Spark's ``master`` is local (local[N], local-cluster)."""
    return master.startswith("local")


def horovod_env(plan: TrainPlan, num_processes: int, master: str) -> dict[str, str]:
    """What Horovod's ranks add to their environment: a slow idle cycle when no Horovod op runs a step,
    i.e. two ranks or more, all on the driver's host (Spark's ``master`` is local), so the gradients go
    through shared memory, and the embedding tables are averaged densely with them. Otherwise Horovod's
    default cycle: an op a step would wait up to a cycle for its turn."""
    quiet = (num_processes > 1 and on_driver_host(master) and not plan.use_gpu
             and plan.same_host_allreduce == "shared_memory" and plan.embedding_allreduce == "dense")
    return {"HOROVOD_CYCLE_TIME": str(HOROVOD_IDLE_CYCLE_MS)} if quiet else {}
