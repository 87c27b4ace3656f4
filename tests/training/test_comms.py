"""DDP's unused-parameter search only where a model needs it: ``idle_parameters`` finds a head the loss
never reaches (on a copy, leaving the run as it was); no registered model has one (so the search is
off for each); a model with an idle head still trains on two Gloo ranks, which it could not with the
search off. DDP's keywords take the installed torch's names (no deprecation warning on the pinned one,
the old names on an older one). The embedding tables' gradients averaged on their touched rows equal a
dense all-reduce of the whole tables, on two Gloo ranks. The shared-memory all-reduce gives each rank
Gloo's average to the bit and leaves no file; a rank that cannot map it (another host) leaves both on
Gloo; a rank whose peer exits fails naming it, not at the timeout."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import torch

from liftlake.lib.training.comms import ddp_options, idle_parameters
from liftlake.models.registry import build_model

IDLE_MODEL = '''
import types
import torch


class IdleHead(torch.nn.Module):
    """A regression whose second head is never in the loss."""

    def __init__(self):
        super().__init__()
        self.used = torch.nn.Linear(3, 1)
        self.idle_head = torch.nn.Linear(3, 1)
        self.dropout = torch.nn.Dropout(0.5)

    def forward(self, batch):
        return {"y": self.dropout(self.used(batch["x"])).squeeze(-1), "other": self.idle_head(batch["x"])}

    def compute_loss(self, batch, out):
        return types.SimpleNamespace(total=((out["y"] - batch["y"]) ** 2).mean())


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=g)
    return {"x": x, "y": x @ torch.tensor([1.0, -2.0, 0.5])}
'''
exec(compile(IDLE_MODEL, "idle_model", "exec"))  # IdleHead, batch: one definition for here and the ranks

RANK_SCRIPT = IDLE_MODEL + '''
import json, sys
from liftlake.lib.training.comms import TorchDDPComm, idle_parameters

comm = TorchDDPComm(use_gpu=False)
torch.manual_seed(0)
model = IdleHead()
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
idle = idle_parameters(model, batch(99))
find_unused = comm.allreduce_sum(float(len(idle))) > 0 if sys.argv[1] == "detect" else False
ddp, optimizer = comm.wrap(model, optimizer, find_unused=find_unused)
losses = []
for step in range(4):
    b = batch(comm.rank * 100 + step)
    loss = model.compute_loss(b, ddp(b)).total
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(float(loss))
print(json.dumps({"idle": idle, "find_unused": find_unused, "losses": losses, "transport": comm.transport}))
comm.dist.destroy_process_group()  # as the launcher's entry does: Gloo's threads torn down at exit can abort
'''


def test_an_idle_head_is_found_on_a_copy_and_the_run_is_unchanged():
    torch.manual_seed(3)
    model = IdleHead()  # noqa: F821 - defined by IDLE_MODEL
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert idle_parameters(model, batch(1)) == ["idle_head.weight", "idle_head.bias"]  # noqa: F821
    assert torch.equal(torch.get_rng_state(), rng)  # the dropout draws of the probe were its own
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_no_registered_cvr_model_leaves_a_parameter_idle():
    g = torch.Generator().manual_seed(0)
    x = torch.stack([torch.randint(0, d, (256,), generator=g) for d in (5, 6, 7)], dim=1)
    click = (torch.rand(256, generator=g) < 0.3).float()
    cvr = {"x": x, "click": click, "conversion": click * (torch.rand(256, generator=g) < 0.3).float(),
           "cf_label": (1 - click) * (torch.rand(256, generator=g) < 0.05).float()}
    for name in ("esmm", "escm2_dr", "dcmt", "dcmt_cf", "escim_ratio"):
        assert idle_parameters(build_model(name, [5, 6, 7], {}), cvr) == [], name


TOUCHED_ROWS_SCRIPT = '''
import json
import torch
from liftlake.lib.training.comms import TorchDDPComm, embedding_tables, reduce_touched_rows
from liftlake.models.registry import build_model

comm = TorchDDPComm(use_gpu=False)
torch.manual_seed(0)
model = build_model("dcmt", [50, 7, 9], {})
g = torch.Generator().manual_seed(comm.rank + 1)
# each rank looks up its own few rows of the 50-row field: the ranks' touched rows overlap in part
x = torch.stack([torch.randint(comm.rank * 20, comm.rank * 20 + 30, (32,), generator=g),
                 torch.randint(0, 7, (32,), generator=g), torch.randint(0, 9, (32,), generator=g)], dim=1)
click = (torch.rand(32, generator=g) < 0.5).float()
batch = {"x": x, "click": click, "conversion": click * (torch.rand(32, generator=g) < 0.5).float()}
model.compute_loss(batch, model(batch)).total.backward()
tables = [p for _, p in embedding_tables(model)]
dense = []
for p in tables:
    t = p.grad.clone()
    comm.dist.all_reduce(t)
    dense.append(t / comm.size)
local_rows = int((tables[0].grad != 0).any(dim=1).sum())
def allreduce(t):
    comm.dist.all_reduce(t)
    return t
reduce_touched_rows(tables, comm.size, allreduce)
print(json.dumps({"tables": len(tables), "local_rows": local_rows, "rows": len(tables[0]),
                  "equal": all(torch.equal(p.grad, d) for p, d in zip(tables, dense)),
                  "max_diff": max(float((p.grad - d).abs().max()) for p, d in zip(tables, dense))}))
comm.dist.destroy_process_group()  # as the launcher's entry does: Gloo's threads torn down at exit can abort
'''


def test_touched_rows_average_equals_a_dense_all_reduce_of_the_tables(tmp_path):
    results = []
    for proc in _two_ranks(tmp_path, "rows", TOUCHED_ROWS_SCRIPT):
        assert proc.returncode == 0, proc.stderr[-2000:]
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for r in results:
        assert r["tables"] == 1 and 0 < r["local_rows"] < r["rows"]  # the case the exchange is for
        assert r["equal"], r["max_diff"]


def _two_ranks(tmp_path, mode: str, source: str = RANK_SCRIPT, *args: str) -> list[subprocess.CompletedProcess]:
    script = tmp_path / "rank.py"
    script.write_text(textwrap.dedent(source), encoding="utf-8")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, str(script), mode, *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_a_model_with_an_idle_head_trains_on_two_ddp_ranks(tmp_path):
    for proc in _two_ranks(tmp_path, "detect"):
        assert proc.returncode == 0, proc.stderr[-2000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["idle"] == ["idle_head.weight", "idle_head.bias"] and result["find_unused"] is True
        assert result["transport"] == "shared memory"  # DDP's hook with its unused-parameter search
        assert result["losses"][-1] < result["losses"][0]
        assert "deprecated" not in proc.stderr, proc.stderr[-2000:]  # DDP's keywords in the pinned torch's names
    # the same model with the search off: DDP stops at the second step, so the detection is what trains it
    off = _two_ranks(tmp_path, "off")
    assert all(p.returncode != 0 for p in off)
    assert any("finished reduction in the prior iteration" in p.stderr for p in off), off[0].stderr[-2000:]


def test_ddp_options_name_the_buffer_sync_and_buckets_as_the_installed_torch_does():
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # the pinned torch (2.13): the new name for the buffers' sync, every bucket 25 MiB
    assert ddp_options(set(inspect.signature(DistributedDataParallel).parameters), False) == {
        "forward_sync_buffers": False, "bucket_cap_mb_list": [25]}
    # a torch before the rename and the per-bucket list (a lent GPU machine's 2.11, say)
    older = {"module", "broadcast_buffers", "bucket_cap_mb", "find_unused_parameters"}
    assert ddp_options(older, True) == {"broadcast_buffers": True, "bucket_cap_mb": 25}


SHARED_MEMORY_SCRIPT = '''
import json, os, sys, time
import torch
from liftlake.lib.training import shared_memory
from liftlake.lib.training.comms import TorchDDPComm

comm = TorchDDPComm(use_gpu=False)
mode, shm_dir = sys.argv[1], sys.argv[2]
if mode == "another_host" and comm.rank == 1:
    shared_memory.SHM_DIR = shm_dir  # this rank's /dev/shm is not rank 0's
shared, why = shared_memory.SharedMemoryAllreduce.attach(comm.allreduce_sum, comm.rank, comm.size, capacity=1000,
                                                        timeout_s=60)
out = {"attached": shared is not None, "why": why}
if mode == "sums":
    g = torch.Generator().manual_seed(comm.rank)
    out["equal"], out["bits"] = [], []
    for n in (1000, 10, 333, 1000):  # a call reuses the half of the call before the last
        t = torch.randn(n, generator=g)
        expected = t.clone()
        comm.dist.all_reduce(expected)
        out["equal"].append(torch.equal(shared.average_(t), expected / comm.size))
        out["bits"].append(float(t.double().sum()))
elif mode == "another_host":
    t = torch.ones(3)
    comm.dist.all_reduce(t)  # the launcher's collective still answers
    out["gloo"] = t.tolist()
elif mode == "peer_exits":
    if comm.rank == 1:
        os._exit(3)
    started = time.monotonic()
    try:
        shared.average_(torch.ones(5))
    except shared_memory.PeerLost as exc:
        out["error"], out["waited_s"] = str(exc), time.monotonic() - started
    print(json.dumps(out), flush=True)
    os._exit(0)  # the peer is gone: Gloo's teardown would wait on it
# listed after a collective that rank 0 joins once it removed the file (a peer's attach may return first)
out["left"] = sorted(f for f in os.listdir(shared_memory.SHM_DIR) if f.startswith("liftlake-allreduce-"))
print(json.dumps(out))
comm.dist.destroy_process_group()
'''


def _shared_memory_ranks(tmp_path, mode: str) -> list[dict]:
    results = []
    for rank, proc in enumerate(_two_ranks(tmp_path, mode, SHARED_MEMORY_SCRIPT, str(tmp_path / "other-shm"))):
        if mode == "peer_exits" and rank == 1:
            assert proc.returncode == 3
            continue
        assert proc.returncode == 0, proc.stderr[-2000:]
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def test_the_shared_memory_all_reduce_gives_every_rank_the_gloo_average_and_leaves_no_file(tmp_path):
    ranks = _shared_memory_ranks(tmp_path, "sums")
    for r in ranks:
        assert r["attached"] and r["why"] == ""
        assert r["left"] == []  # removed once both ranks mapped it
        assert r["equal"] == [True] * 4
    assert ranks[0]["bits"] == ranks[1]["bits"]


def test_a_rank_on_another_host_keeps_the_launcher_s_all_reduce(tmp_path):
    (tmp_path / "other-shm").mkdir()
    ranks = _shared_memory_ranks(tmp_path, "another_host")
    assert [r["attached"] for r in ranks] == [False, False]
    assert "not every rank is on rank 0's host" in ranks[1]["why"], ranks[1]["why"]
    assert "1 of 2 rank(s) could not map" in ranks[0]["why"], ranks[0]["why"]
    assert ranks[0]["left"] == [] and ranks[0]["gloo"] == [2.0, 2.0, 2.0]


def test_a_rank_waiting_on_a_peer_that_exited_fails_naming_it(tmp_path):
    (rank0,) = _shared_memory_ranks(tmp_path, "peer_exits")
    assert "rank 1" in rank0["error"] and "exited" in rank0["error"], rank0
    assert rank0["waited_s"] < 30  # found gone, not the 60 s timeout
