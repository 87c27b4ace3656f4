"""Configuration: layered YAML, validated, errors that name the file, key and rule; CLI exit codes."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from liftlake.lib.config import ConfigError, load_config


def test_defaults_load_and_model_file_is_layered():
    cfg = load_config([], ["model.name=dcmt"], env={})
    assert cfg.model.name == "dcmt"
    assert cfg.train.launcher == "local" and cfg.warehouse.path == "warehouse"
    # conf/models/dcmt.yaml sets DCMT's weight decay; base.yaml has none
    assert cfg.train.weight_decay > 0


def test_set_and_env_override(tmp_path):
    cfg = load_config([], ["train.epochs=5", "simulator.exposures=1234"], env={"LIFTLAKE_WAREHOUSE": str(tmp_path)})
    assert (cfg.train.epochs, cfg.simulator.exposures, cfg.warehouse.path) == (5, 1234, str(tmp_path))


@pytest.mark.parametrize("yaml_text, key, rule", [
    ("train:\n  epochz: 3\n", "train.epochz", "unknown key"),
    ("train:\n  epochs: three\n", "train.epochs", "must be int"),
    ("train:\n  learning_rate: -0.1\n", "train.learning_rate", "must be > 0"),
    ("train:\n  launcher: mpi\n", "train.launcher", "one of local | horovod | torch-distributor"),
    ("score:\n  coupon_grid: []\n", "score.coupon_grid", "non-empty list"),
    ("model:\n  name: nosuchmodel\n", "model.name", "unknown model"),
    ("model:\n  name: dcmt\n  params: {towers: 3}\n", "model.params", "unknown parameter"),
    ("bogus:\n  x: 1\n", "bogus", "unknown key"),
])
@pytest.mark.reliability
def test_bad_config_names_file_key_and_rule(tmp_path, yaml_text, key, rule):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config([str(path)], [], env={})
    msg = str(err.value)
    assert str(path) in msg and key in msg and rule in msg, msg


@pytest.mark.reliability
def test_bad_set_names_the_flag():
    with pytest.raises(ConfigError, match=r"--set: train.num_processes: must be an integer in \[1, 64\]"):
        load_config([], ["train.num_processes=0"], env={})


def run_cli(*args, env_extra=None, tmp_path=None):
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "liftlake.lib.cli.main", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)


@pytest.mark.reliability
def test_cli_exit_code_2_with_one_line_for_bad_config(tmp_path):
    proc = run_cli("simulate", "--ds", "2026-11-20", "--set", "simulator.exposures=-5", tmp_path=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("liftlake simulate: error: --set: simulator") and "exposures" in lines[-1]
    assert "Traceback" not in proc.stderr


def test_cli_rejects_bad_day_and_unknown_job(tmp_path):
    proc = run_cli("simulate", "--ds", "2026-13-40", tmp_path=tmp_path)
    assert proc.returncode == 2 and "expected a day as YYYY-MM-DD" in proc.stderr
    proc = run_cli("frobnicate", tmp_path=tmp_path)
    assert proc.returncode == 2 and "unknown job" in proc.stderr


def test_cli_models_json_lists_the_registry(tmp_path):
    import json

    proc = run_cli("models", "--json", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    names = {r["name"]: r["family"] for r in rows}
    for name in ("naive", "esmm", "escm2_ips", "escm2_dr", "dcmt", "dcmt_pd", "dcmt_cf", "escim_max", "escim_ratio"):
        assert names[name] == "cvr"


@pytest.mark.reliability
@pytest.mark.parametrize("override, key, rule", [
    ("train.learning_rate=.inf", "train.learning_rate", "must be float"),
    ("train.learning_rate=.nan", "train.learning_rate", "must be float"),
    ("score.coupon_grid=[1.0, .inf]", "score.coupon_grid", "must be list"),
    ("score.coupon_cost_per_unit=.inf", "score.coupon_cost_per_unit", "must be float"),
    ("simulator.exposures=10000000000000", "simulator.exposures", "past limits.max_exposures_per_day"),
    ("train.mlflow_uri=file:///etc/passwd", "train.mlflow_uri", "must be '', 'none', an http(s):// URL"),
    ("train.mlflow_uri='sqlite:///x.db; DROP'", "train.mlflow_uri", "must be '', 'none', an http(s):// URL"),
    ("train.mlflow_uri=off", "train.mlflow_uri", "must be str"),  # YAML reads off as false: 'none' turns it off
    ("report.days=1", "report.days", "rule: days >= 2, or cvr_split_by=user"),  # no earlier day to train on
    ("score.device=gpu", "score.device", "must be cpu, cuda or cuda:<index>"),
    ("score.device='cuda:0; rm -rf /'", "score.device", "must be cpu, cuda or cuda:<index>"),
])
def test_non_finite_and_unbounded_settings_are_refused(override, key, rule):
    with pytest.raises(ConfigError, match=rf"--set: {re.escape(key)}: .*{re.escape(rule)}"):
        load_config([], [override], env={})


@pytest.mark.reliability
def test_a_bad_model_parameter_from_set_blames_set():
    with pytest.raises(ConfigError, match=r"^--set: model\.params: .*unknown parameter"):
        load_config([], ["model.name=dcmt", "model.params.foo=1"], env={})


@pytest.mark.reliability
def test_conf_that_is_a_folder_or_not_utf8_exits_2_naming_it(tmp_path):
    binary = tmp_path / "bad.yaml"
    binary.write_bytes(b"train:\n  epochs: \xff\xfe\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not UTF-8"):
        load_config([str(binary)], [], env={})
    with pytest.raises(ConfigError, match="is a folder"):
        load_config([str(tmp_path)], [], env={})


@pytest.mark.reliability
def test_a_day_range_past_the_limit_exits_2(capsys):
    from liftlake.lib.cli.main import main

    assert main(["simulate", "--start", "2020-01-01", "--end", "2026-01-01"]) == 2
    assert "past limits.max_days_per_run (366)" in capsys.readouterr().err


@pytest.mark.reliability
@pytest.mark.parametrize("override, rule", [
    ("escim_labels.params.lerning_rate=0.001", r"escim_labels\.params\.lerning_rate: unknown key"),
    ("escim_labels.params.learning_rate=.inf", r"escim_labels\.params\.learning_rate: must be finite"),
    ("escim_labels.params.min_steps=0", r"escim_labels\.params: min_steps must be >= 1"),
])
def test_bad_escim_labeler_parameters_exit_2_before_any_data_is_read(tmp_path, override, rule):
    warehouse = tmp_path / "wh"  # empty: the job would otherwise fail on a missing features.samples
    proc = run_cli("escim-labels", "--ds", "2026-11-20", "--set", f"warehouse.path={warehouse}", "--set", override,
                   tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr
    last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
    assert re.search(rule, last), last
    assert "Traceback" not in proc.stderr


def test_liftlake_conf_is_layered_before_conf_and_set(tmp_path):
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("train:\n  epochs: 7\n  batch_size: 64\n")
    second.write_text("train:\n  epochs: 9\n")
    env = {"LIFTLAKE_CONF": str(first)}
    assert load_config([], [], env=env).train.epochs == 7
    both = load_config([str(second)], [], env=env)
    assert (both.train.epochs, both.train.batch_size) == (9, 64)  # --conf wins over LIFTLAKE_CONF
    assert load_config([str(first)], ["train.epochs=3"], env=env).train.epochs == 3
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config([], [], env={"LIFTLAKE_CONF": str(tmp_path / "missing.yaml")})


def test_version_flag_prints_the_package_version(tmp_path):
    from liftlake import __version__

    proc = run_cli("--version", tmp_path=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"liftlake {__version__}"
