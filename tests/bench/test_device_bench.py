"""The GPU check, prepared where there is no GPU: bench/device.py runs with torch, numpy and pyarrow
alone (a GPU machine has no Spark), trains and scores on the CPU through the platform's batch
conversion, forward passes and DDP communication, and records a GPU torch cannot see as not measured;
the gpu section turns a GPU's figures into its ratios and verdicts."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ is a folder of the checkout, not an installed package
    sys.path.insert(0, str(REPO))
from bench.run import gpu  # noqa: E402
from bench.run.cli import main  # noqa: E402

# bench.device as a GPU machine runs it: any import of Spark, py4j or delta-rs fails
WITHOUT_SPARK = """
import runpy, sys

class NoSpark:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pyspark", "py4j", "deltalake"):
            raise ImportError(f"{name} is not on this machine")

sys.meta_path.insert(0, NoSpark())
sys.argv = ["bench.device", *sys.argv[1:]]
runpy.run_module("bench.device", run_name="__main__")
"""


@pytest.fixture(scope="module")
def measured(spark, tmp_path_factory):
    """bench/device.py's result on 6,000 rows of a 5,000-exposure day's DCMT inputs, on cpu and cuda."""
    from bench.run.scoring import ensure_inputs

    root = tmp_path_factory.mktemp("gpu")
    warehouse, version = ensure_inputs(spark, str(root), 5_000, log=lambda _: None)
    inputs = gpu.write_inputs(spark, warehouse, version, str(root / "inputs"), rows=2_000)
    out = root / "device.json"
    proc = subprocess.run([sys.executable, "-c", WITHOUT_SPARK, "--inputs", inputs, "--out", str(out),
                           "--rows", "6000", "--devices", "cpu,cuda:7"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8")), inputs


def test_the_device_bench_trains_and_scores_without_spark_and_says_why_a_gpu_was_not_measured(measured):
    result, inputs = measured
    meta = json.loads((Path(inputs) / "meta.json").read_text(encoding="utf-8"))
    assert meta["model"] == "dcmt" and meta["batch_size"] == 1024  # the model's own training settings
    assert result["rows"] == 6000 and result["input_rows"] == 2000  # the inputs' rows, repeated
    cpu = result["devices"]["cpu"]
    for run in ("train", "train_ddp"):
        assert cpu[run]["samples_per_s"] > 0 and cpu[run]["epochs"] == gpu.EPOCHS
    # one DDP rank averages its own gradients: the same steps as the plain loop from the same weights
    assert cpu["train_ddp"]["transport"] == "gloo"
    for k in ("loss_first_epoch", "loss_last_epoch"):
        assert cpu["train_ddp"][k] == pytest.approx(cpu["train"][k], rel=1e-5)
    assert [s["batch_size"] for s in cpu["score"]] == [4096, 65536]
    assert all(s["rows_per_s"] > 0 and s["max_abs_diff_vs_cpu"] == 0.0 for s in cpu["score"])
    import torch

    assert result["devices"]["cuda:7"] == {"available": False, "why": (
        f"torch sees {torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available()
        else "torch sees no CUDA device on this machine")}
    assert gpu.targets(result) == []
    lines = gpu.section(result, {"command": "python -m bench.run --only gpu"})
    assert "| cuda:7 | not measured | | | | | " + result["devices"]["cuda:7"]["why"] + " |" in lines


def test_a_gpu_s_figures_become_ratios_to_the_cpu_s_and_verdicts(measured):
    result, _ = measured
    cpu = result["devices"]["cpu"]
    on_gpu = copy.deepcopy(result)
    card = copy.deepcopy(cpu)
    card.update(name="NVIDIA H100 80GB HBM3", peak_memory_mib=812.0)
    card["train"]["samples_per_s"] = 8 * cpu["train"]["samples_per_s"]
    card["train_ddp"]["samples_per_s"] = 6 * cpu["train_ddp"]["samples_per_s"]
    card["train_ddp"]["transport"] = "nccl"
    card["score"] = [{**s, "rows_per_s": f * s["rows_per_s"], "max_abs_diff_vs_cpu": d}
                     for s, f, d in zip(cpu["score"], (3, 20), (2e-7, 5e-7))]
    on_gpu["devices"] = {"cpu": cpu, "cuda": card}
    train, score = gpu.targets(on_gpu)
    assert train.measured.startswith("8.0x / 6.0x (nccl)")
    assert train.met == (cpu["train"]["loss_last_epoch"] < cpu["train"]["loss_first_epoch"]
                         and cpu["train_ddp"]["loss_last_epoch"] < cpu["train_ddp"]["loss_first_epoch"])
    assert score.measured == "3.0x at batch 4,096 / 20.0x at batch 65,536; largest difference 5.0e-07"
    assert score.met
    card["score"][1]["max_abs_diff_vs_cpu"] = 3e-3  # a GPU whose scores differ is not done
    assert not gpu.targets(on_gpu)[1].met
    text = "\n".join(gpu.section(on_gpu, {"command": "python -m bench.run --only gpu"}))
    assert "| cuda (NVIDIA H100 80GB HBM3) | train | 1024 |" in text and "peak GPU memory 812 MiB" in text
    # a run that failed on the GPU (an older torch there, say) is a failed row and an unmet target, not a crash
    error = "TypeError: __init__() got an unexpected keyword argument 'bucket_cap_mb_list'"
    card["train_ddp"] = {"error": error}
    train, _ = gpu.targets(on_gpu)
    assert not train.met and train.measured.startswith("8.0x / n/a (no rank); failed (train_ddp: TypeError")
    assert f"| cuda (NVIDIA H100 80GB HBM3) | train_ddp | 1024 | failed | | | {error} |" in \
        gpu.section(on_gpu, {"command": "python -m bench.run --only gpu"})


def test_a_device_result_that_is_not_one_is_refused_with_its_rule(tmp_path, capsys):
    bad = tmp_path / "gpu.json"
    bad.write_text(json.dumps({"rows": 5}), encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["--only", "gpu", "--device-result", str(bad), "--out", str(tmp_path / "bench.md")])
    assert exited.value.code == 2
    assert f"{bad}: not a bench.device result (rule: the JSON that python -m bench.device writes)" in \
        capsys.readouterr().err
