"""One training function, three launchers: in-process, TorchDistributor (DDP) and Horovod-on-Spark,
2 ranks on local Spark, each reading its own Petastorm shard."""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from liftlake.lib.training.launchers import HOROVOD_IDLE_CYCLE_MS, horovod_env, launch
from liftlake.lib.training.loop import train_rank
from liftlake.lib.training.plan import TrainPlan

FIELDS = [50, 20, 10]


def write_cvr_files(folder: str, n_files: int, rows_per_file: int, seed: int, start_id: int = 0) -> list[str]:
    """Synthetic exposures whose click and conversion depend on the first two fields."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    files, row_id = [], start_id
    for i in range(n_files):
        x = np.stack([rng.integers(0, d, rows_per_file) for d in FIELDS], axis=1)
        ctr = 1 / (1 + np.exp(-(-1.0 + 2.0 * (x[:, 0] % 5 == 0) + 0.5 * (x[:, 1] % 2))))
        click = (rng.random(rows_per_file) < ctr).astype(np.int32)
        cvr = 1 / (1 + np.exp(-(-1.0 + 2.5 * (x[:, 1] % 4 == 0))))
        conv = (click * (rng.random(rows_per_file) < cvr)).astype(np.int32)
        table = pa.table({"f_a": x[:, 0].astype(np.int32), "f_b": x[:, 1].astype(np.int32),
                          "f_c": x[:, 2].astype(np.int32), "click": click, "conversion": conv,
                          "row_id": np.arange(row_id, row_id + rows_per_file, dtype=np.int64)})
        row_id += rows_per_file
        path = os.path.join(folder, f"part-{i:03d}.parquet")
        pq.write_table(table, path)
        files.append(path)
    return files


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("trainset"))
    train = write_cvr_files(os.path.join(root, "train"), 4, 3000, seed=1)
    valid = write_cvr_files(os.path.join(root, "valid"), 1, 4000, seed=2, start_id=10**6)
    return TrainPlan(model_name="esmm", model_params={}, field_dims=FIELDS, task="cvr",
                     feature_columns=["f_a", "f_b", "f_c"], train_files=train,
                     train_rowgroup_rows=[3000] * 4, valid_files=valid, learning_rate=0.01, weight_decay=0.0,
                     optimizer="adam", batch_size=256, epochs=3, seed=11, early_stopping_patience=0,
                     checkpoint_every_steps=10_000, log_every_steps=10_000,
                     checkpoint_dir=os.path.join(root, "ckpt"))


def check_run(result, total_rows: int):
    history = result["state"]["history"]
    assert len(history) == 3
    assert history[-1]["loss"] < history[0]["loss"], [h["loss"] for h in history]
    expected_sum = total_rows * (total_rows - 1) / 2
    for h in history:  # every training row read exactly once per epoch across the ranks
        assert h["rows_read"]["count"] == total_rows
        assert h["rows_read"]["id_sum"] == expected_sum
    assert result["ranks_identical"]
    kept = history[result["state"]["best_epoch"]]  # the trainer ships its best validation epoch
    return kept["auc_cvr_clicked"]


@pytest.fixture(scope="module")
def single_process_auc(plan, tmp_path_factory):
    local = dataclasses.replace(plan, checkpoint_dir=str(tmp_path_factory.mktemp("ckpt-local")))
    return check_run(train_rank(local), 12000)


@pytest.fixture(scope="module")
def two_rank_runs(spark, plan, tmp_path_factory):
    """Each launcher's 2-rank run with the default dense all-reduce, run once for the tests below."""
    runs: dict = {}

    def run(launcher: str) -> dict:
        if launcher not in runs:
            runs[launcher] = launch(dataclasses.replace(plan, checkpoint_dir=str(tmp_path_factory.mktemp("ckpt"))),
                                    launcher, 2, spark)
        return runs[launcher]
    return run


@pytest.mark.slow
def test_torch_distributor_two_ranks(two_rank_runs, single_process_auc):
    result = two_rank_runs("torch-distributor")
    assert result["world_size"] == 2
    auc = check_run(result, 12000)
    assert abs(auc - single_process_auc) <= 0.01, (auc, single_process_auc)


@pytest.mark.slow
def test_horovod_two_ranks(two_rank_runs, single_process_auc):
    result = two_rank_runs("horovod")
    assert result["world_size"] == 2
    assert len(set(result["per_rank_digests"])) == 1  # both ranks end with identical parameters
    auc = check_run(result, 12000)
    assert abs(auc - single_process_auc) <= 0.01, (auc, single_process_auc)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torch-distributor", "horovod"])
@pytest.mark.parametrize("setting", [{"embedding_allreduce": "touched_rows"}, {"same_host_allreduce": "launcher"}],
                         ids=["touched-rows", "launcher-collective"])
def test_every_way_of_averaging_trains_the_weights_of_the_default(spark, plan, two_rank_runs, launcher, setting,
                                                                  tmp_path):
    """The default (every gradient averaged through shared memory on one host) against the launcher's
    own collective (the same weights to the bit) and against averaging the embedding table on the rows
    the ranks looked up (the same sums: the same weights to float rounding)."""
    result = launch(dataclasses.replace(plan, checkpoint_dir=str(tmp_path / "ckpt"), **setting), launcher, 2, spark)
    check_run(result, 12000)
    default = two_rank_runs(launcher)
    assert default["transport"] == "shared memory"
    if "same_host_allreduce" in setting:
        assert result["transport"] == {"torch-distributor": "gloo", "horovod": "horovod"}[launcher]
        # two ranks: a + b halved is a / 2 + b / 2 to the bit, so the runs' weights are the same bits
        assert result["weights_digest"] == default["weights_digest"]
    assert set(result["weights"]) == set(default["weights"])
    for name, w in result["weights"].items():
        diff = float((w - default["weights"][name]).abs().max())
        assert diff <= 1e-4, (name, diff)


def test_horovod_idles_slowly_only_where_no_step_waits_on_it(plan):
    """The ranks' idle cycle is lengthened only when every step averages through shared memory (a local
    master, CPU, dense embeddings); elsewhere a Horovod op a step keeps Horovod's own default."""
    quiet = {"HOROVOD_CYCLE_TIME": str(HOROVOD_IDLE_CYCLE_MS)}
    assert horovod_env(plan, 2, "local[2]") == quiet and horovod_env(plan, 3, "local-cluster[3,1,1024]") == quiet
    assert horovod_env(plan, 2, "spark://10.0.0.5:7077") == {}  # ranks may sit on other hosts
    assert horovod_env(plan, 1, "local[2]") == {}  # no peer, no shared segment
    for setting in ({"embedding_allreduce": "touched_rows"}, {"same_host_allreduce": "launcher"}, {"use_gpu": True}):
        assert horovod_env(dataclasses.replace(plan, **setting), 2, "local[2]") == {}, setting


@pytest.mark.reliability
def test_killed_run_resumes_to_the_same_step_count(plan, tmp_path):
    from liftlake.lib.training.plan import TrainingError

    ckpt = str(tmp_path / "ckpt")
    interrupted = dataclasses.replace(plan, checkpoint_dir=ckpt, stop_after_steps=60, checkpoint_every_steps=25)
    with pytest.raises(TrainingError, match="stopped after 60 steps"):
        train_rank(interrupted)
    resumed = train_rank(dataclasses.replace(plan, checkpoint_dir=ckpt))
    fresh = train_rank(dataclasses.replace(plan, checkpoint_dir=str(tmp_path / "fresh")))
    assert resumed["state"]["global_step"] == fresh["state"]["global_step"] == 3 * 47
    assert resumed["final_digest"] == fresh["final_digest"]


@pytest.mark.reliability
def test_nan_loss_stops_with_the_step(plan, tmp_path):
    from liftlake.lib.training.plan import TrainingError

    bad = dataclasses.replace(plan, learning_rate=1e12, optimizer="sgd", checkpoint_dir=str(tmp_path / "c"))
    with pytest.raises(TrainingError, match=r"loss is (nan|inf).*epoch \d+ step \d+ on rank 0"):
        train_rank(bad)


def test_a_step_budget_adds_whole_epochs(plan, tmp_path):
    budget = dataclasses.replace(plan, epochs=1, min_steps=100, checkpoint_dir=str(tmp_path / "ckpt"))
    result = train_rank(budget)
    assert len(result["state"]["history"]) == 3  # ceil(100 / 47 steps an epoch)
    assert result["state"]["global_step"] == 3 * 47


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this host has a GPU: use_gpu is allowed here")
def test_use_gpu_without_a_gpu_for_the_ranks_exits_2_naming_the_setting_before_any_work(tmp_path):
    import subprocess
    import sys

    def train(*sets: str):
        env = {**os.environ, "LIFTLAKE_WAREHOUSE": str(tmp_path / "wh"), "LIFTLAKE_WARM_DRIVER": "0"}
        env.pop("LIFTLAKE_CONF", None)  # the repository's defaults, whatever an earlier test's session set
        return subprocess.run([sys.executable, "-m", "liftlake.lib.cli.main", "train", "--ds", "2026-11-20",
                               "--quiet-config", *(a for s in sets for a in ("--set", s))],
                              env=env, capture_output=True, text=True, timeout=300)

    where = "runs its ranks (spark.master local[2]) (rule: a GPU for the ranks; or train.use_gpu=false)"
    for launcher, rule in (("local", f"torch sees no CUDA device on this host, where train.launcher local {where}"),
                           ("torch-distributor", "torch sees no CUDA device on this host, where train.launcher "
                                                 f"torch-distributor {where}"),
                           ("horovod", "the horovod launcher is installed without GPU support (rule: use_gpu with "
                                       "train.launcher local or torch-distributor)")):
        proc = train("train.use_gpu=true", f"train.launcher={launcher}", "model.name=dcmt", "spark.master=local[2]")
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = [line for line in proc.stderr.splitlines() if "train.use_gpu" in line]
        assert len(lines) == 1 and f"train.use_gpu=true: {rule}" in lines[0], proc.stderr[-2000:]
    assert not (tmp_path / "wh" / "_train_cache").exists()  # refused before the rows were materialized
