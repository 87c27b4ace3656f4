"""The warm driver (lib/cli/warm_driver.py, `liftlake driver`): steps sent to it write what the same
steps write run cold; the exit-code contract holds through it; hostile requests are refused; a caller
that goes away or a driver that dies leaves the tables as the commits left them, and the next step
runs cold."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from liftlake.lib.cli import warm_driver
from liftlake.lib.cli.warm_driver import DriverRequestError, parse_request

DAY = "2026-11-20"
SMALL = ("simulator:\n  exposures: 2000\n"
         "spark:\n  master: \"local[1]\"\n"
         "  conf:\n    spark.sql.shuffle.partitions: \"2\"\n    spark.ui.enabled: \"false\"\n"
         "    spark.driver.memory: \"1g\"\n")


# --------------------------------------------------------------------------------------------------
# requests (no Spark)
# --------------------------------------------------------------------------------------------------
@pytest.mark.reliability
@pytest.mark.parametrize("raw, rule", [
    (b"not json", "not a JSON line"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"argv": []}', "non-empty list of strings"),
    (b'{"argv": ["simulate", 3]}', "non-empty list of strings"),
    (b'{"argv": ["sql", "drop table raw.users"]}', "serves simulate"),
    (b'{"argv": ["driver", "--socket", "/tmp/x"]}', "serves simulate"),
    (b'{"argv": ["simulate"], "env": {"PATH": "/evil"}}', "map LIFTLAKE_"),
    (b'{"argv": ["simulate"], "env": {"LIFTLAKE_X": 1}}', "map LIFTLAKE_"),
    (b'{"argv": ["simulate"]}' + b" " * warm_driver.MAX_REQUEST_BYTES, "more than"),
])
def test_a_hostile_request_is_refused_with_its_rule(raw, rule):
    with pytest.raises(DriverRequestError, match=rule):
        parse_request(raw)


def test_a_step_request_keeps_its_argv_and_drops_the_driver_variable():
    request = parse_request(json.dumps({"argv": ["score", "--ds", DAY],
                                        "env": {"LIFTLAKE_WAREHOUSE": "/w", "LIFTLAKE_DRIVER": "/s"}}).encode())
    assert request == {"argv": ["score", "--ds", DAY], "env": {"LIFTLAKE_WAREHOUSE": "/w"}}
    assert parse_request(b'{"ping": true}') == {"ping": True}


def test_no_driver_at_the_socket_means_the_step_runs_here(tmp_path):
    assert warm_driver.run_step(str(tmp_path / "none.sock"), ["tables"]) is None
    assert not warm_driver.ping(str(tmp_path / "none.sock"))


def test_a_kept_driver_s_identity_changes_with_its_code_config_and_settings(tmp_path):
    """The identity a run's start_driver looks a kept driver up by: the same code, config, command and
    settings give the same one; a run-specific variable does not change it; any of the others does."""
    code, conf = tmp_path / "lib", tmp_path / "conf"
    (code / "__pycache__").mkdir(parents=True)
    conf.mkdir()
    (code / "job.py").write_text("x = 1\n")
    (conf / "defaults.yaml").write_text("spark:\n  master: local[2]\n")
    command = ["spark-submit", "--master", "local[2]", "jobs/driver.py", "--idle-timeout", "90000"]
    env = {"LIFTLAKE_WAREHOUSE": "/w", "PYSPARK_PYTHON": "/venv/bin/python", "PATH": "/bin"}
    sources = [str(code), str(conf)]
    base = warm_driver.driver_identity(command, env, sources)
    assert warm_driver.driver_identity(command, dict(env), sources) == base
    assert warm_driver.driver_identity(command, {**env, "AIRFLOW_CTX_DAG_RUN_ID": "scheduled__x",
                                                 "LIFTLAKE_DRIVER": "/s", "PATH": "/usr/bin"}, sources) == base
    (code / "__pycache__" / "job.cpython-312.pyc").write_bytes(b"\0")
    assert warm_driver.driver_identity(command, env, sources) == base
    assert warm_driver.driver_identity(command, {**env, "LIFTLAKE_WAREHOUSE": "/other"}, sources) != base
    assert warm_driver.driver_identity([*command[:-1], "600"], env, sources) != base
    (conf / "defaults.yaml").write_text("spark:\n  master: local[4]\n")
    changed_conf = warm_driver.driver_identity(command, env, sources)
    assert changed_conf != base
    (code / "new_module.py").write_text("")
    assert warm_driver.driver_identity(command, env, sources) not in (base, changed_conf)


def test_driver_sockets_are_short_private_and_one_per_identity():
    a, b = warm_driver.socket_for("manual__2026-11-20T00:00:00+00:00"), warm_driver.socket_for("other")
    assert a != b and len(a.encode()) <= 100
    assert warm_driver.socket_for("manual__2026-11-20T00:00:00+00:00") == a


# --------------------------------------------------------------------------------------------------
# a real driver
# --------------------------------------------------------------------------------------------------
def _env(warehouse: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTLAKE_")}
    return {**env, "LIFTLAKE_WAREHOUSE": str(warehouse), "PYARROW_IGNORE_TIMEZONE": "1", **extra}


def _liftlake(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "liftlake.lib.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _start_driver(sock: Path, conf: Path, warehouse: Path, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "liftlake.lib.cli.main", "driver", "--socket", str(sock),
                             "--conf", str(conf), "--idle-timeout", "600"], env=_env(warehouse),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    assert warm_driver.wait_until_serving(str(sock), proc, 180), \
        f"the driver exited ({proc.poll()}) or did not answer within 180 s: {log.read_text()[-3000:]}"
    return proc


def _rows(spark, warehouse: Path, table: str):
    frame = spark.read.format("delta").load(str(warehouse / table.replace(".", "/"))).toPandas()
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    """A driver serving a small config: (socket, conf file, its warehouse, process, log file)."""
    folder = tmp_path_factory.mktemp("warm")
    conf, warehouse, log = folder / "small.yaml", folder / "wh", folder / "driver.log"
    conf.write_text(SMALL, encoding="utf-8")
    sock = Path(warm_driver.socket_for(str(folder)))
    proc = _start_driver(sock, conf, warehouse, log)
    yield sock, conf, warehouse, proc, log
    # a stop request ends the driver and removes its socket
    assert warm_driver.stop(str(sock))
    assert proc.wait(timeout=60) == 0
    assert not sock.exists()


@pytest.mark.slow
def test_steps_on_the_driver_write_what_a_cold_run_writes(driver, spark, tmp_path):
    sock, conf, warehouse, _, _ = driver
    env = _env(warehouse, LIFTLAKE_DRIVER=str(sock))
    for step in ("simulate", "build-features"):
        done = _liftlake([step, "--ds", DAY, "--conf", str(conf)], env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"[liftlake] {step}: done in" in done.stderr  # the step's log came back to the caller
    done = _liftlake(["tables", "--json", "--conf", str(conf)], env)
    assert done.returncode == 0, done.stderr[-3000:]
    tables = {json.loads(line)["name"] for line in done.stdout.splitlines()}
    assert {"raw.exposures", "features.samples", "ops.quarantine"} <= tables

    # the same steps without the driver, in one process of their own with the same settings (the
    # spec's quantiles depend on the partitioning, so the same master and shuffle partitions)
    cold = tmp_path / "cold"
    steps = "\n".join(f"assert main([{step!r}, '--ds', {DAY!r}, '--conf', {str(conf)!r}]) == 0"
                      for step in ("simulate", "build-features"))
    done = subprocess.run([sys.executable, "-c", f"from liftlake.lib.cli.main import main\n{steps}"],
                          env=_env(cold), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for table in ("raw.exposures", "features.samples", "features.user_samples"):
        warm_rows, cold_rows = _rows(spark, warehouse, table), _rows(spark, cold, table)
        assert len(warm_rows) > 0
        assert warm_rows.equals(cold_rows), table


@pytest.mark.slow
@pytest.mark.reliability
def test_the_exit_code_contract_holds_through_the_driver(driver):
    sock, conf, warehouse, proc, _ = driver
    env = _env(warehouse, LIFTLAKE_DRIVER=str(sock))
    bad_day = _liftlake(["build-features", "--ds", "2026-13-20", "--conf", str(conf)], env)
    assert bad_day.returncode == 2
    assert bad_day.stderr.strip().splitlines()[-1] == \
        "liftlake build-features: error: --ds 2026-13-20: expected a day as YYYY-MM-DD"
    # the repository's defaults ask for local[*]; this driver's JVM started with local[1]
    other = _liftlake(["build-features", "--ds", DAY], env)
    assert other.returncode == 2
    assert "master: this step asks for 'local[*]', the warm driver runs with 'local[1]'" in other.stderr
    assert proc.poll() is None  # refused steps leave the driver serving


@pytest.mark.slow
@pytest.mark.reliability
def test_a_driver_killed_mid_step_leaves_the_tables_and_the_next_step_runs_cold(spark, tmp_path):
    conf, warehouse = tmp_path / "small.yaml", tmp_path / "wh"
    conf.write_text(SMALL, encoding="utf-8")
    sock = Path(warm_driver.socket_for(str(tmp_path)))
    proc = _start_driver(sock, conf, warehouse, tmp_path / "driver.log")
    try:
        env = _env(warehouse, LIFTLAKE_DRIVER=str(sock))
        # the step's fault setting travels with it: the driver dies between staging and committing
        killed = _liftlake(["simulate", "--ds", DAY, "--conf", str(conf)],
                           {**env, "LIFTLAKE_FAULT_BEFORE_COMMIT": "raw.exposures", "LIFTLAKE_FAULT_MODE": "exit"})
        assert killed.returncode == warm_driver.DRIVER_LOST
        assert proc.wait(timeout=60) == 137
        assert not (warehouse / "raw" / "exposures" / "_delta_log").exists()  # nothing committed
        again = _liftlake(["simulate", "--ds", DAY, "--conf", str(conf)], env)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "no warm driver answers at LIFTLAKE_DRIVER=" in again.stderr
        assert len(_rows(spark, warehouse, "raw.exposures")) == 2000
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
@pytest.mark.reliability
def test_a_caller_that_leaves_mid_step_takes_the_driver_with_it(tmp_path):
    conf, warehouse = tmp_path / "small.yaml", tmp_path / "wh"
    conf.write_text(SMALL, encoding="utf-8")
    sock = Path(warm_driver.socket_for(str(tmp_path)))
    log = tmp_path / "driver.log"
    proc = _start_driver(sock, conf, warehouse, log)
    try:
        caller = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        caller.connect(str(sock))
        # a day large enough that the step is still computing when the caller leaves (about 3 s)
        caller.sendall(json.dumps({"argv": ["simulate", "--ds", DAY, "--conf", str(conf),
                                            "--set", "simulator.exposures=8000000"],
                                   "env": {"LIFTLAKE_WAREHOUSE": str(warehouse)}}).encode() + b"\n")
        time.sleep(1.0)
        caller.close()  # as a killed Airflow task
        assert proc.wait(timeout=120) == warm_driver.DRIVER_LOST
        assert "the caller left mid-step" in log.read_text()
        assert not (warehouse / "raw" / "exposures" / "_delta_log").exists()
        assert not sock.exists() or not warm_driver.ping(str(sock))
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.reliability
def test_a_socket_folder_others_may_enter_is_refused_before_spark_starts(tmp_path, capsys):
    from liftlake.lib.cli.main import main

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    assert main(["driver", "--socket", str(shared / "d.sock")]) == 2
    assert f"driver socket folder {shared}: must be a directory owned by this user with no access for others" \
        in capsys.readouterr().err
    assert main(["driver", "--socket", "/tmp/" + "x" * 120 + ".sock"]) == 2
    assert "longer than 100 bytes" in capsys.readouterr().err
