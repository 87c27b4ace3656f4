"""The Airflow side of the backfill bench: the bench's LIFTLAKE_CONF YAML, the environment every Airflow
process gets (a throw-away home, SQLite metadata DB, LocalExecutor, the Spark connection), the ``airflow``
CLI, the api-server / scheduler / dag-processor as child processes (started, checked, stopped with
everything they started), and read-only queries of the metadata DB."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from bench.backfill import REPO, log

DAGS_FOLDER = REPO / "airflow_dags"
DAG_ID = "liftlake_daily"
POOL = "liftlake_spark"
SPARK_CONN_ID = "liftlake_bench_spark"
TASKS = ["simulate", "build_features", "escim_labels", "score", "publish"]


def bench_yaml(exposures: int) -> str:
    return (
        f"simulator:\n  exposures: {exposures}\n"
        "escim_labels:\n  window_days: 1\n"
        "spark:\n  master: \"local[1]\"\n"
        "  conf:\n    spark.sql.shuffle.partitions: \"2\"\n    spark.ui.enabled: \"false\"\n"
        "    spark.driver.memory: \"1g\"\n")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def airflow_env(home: Path, warehouse: Path, conf_file: Path, start_date: str, port: int, parallelism: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "LIFTLAKE_", "PYSPARK_")) and k != "SPARK_HOME"}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        # The task SDK's supervisor (in each LocalExecutor worker) talks to the API server's execution API.
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # One secret for every component: the scheduler signs the task tokens the API server checks.
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        # The DAG files do not change during the bench: parse them rarely (the CPUs run Spark).
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}": json.dumps({"conn_type": "spark", "host": "local[1]"}),
        "LIFTLAKE_SPARK_CONN": SPARK_CONN_ID,
        "LIFTLAKE_CONF": str(conf_file),
        "LIFTLAKE_WAREHOUSE": str(warehouse),
        "LIFTLAKE_START_DATE": start_date,
        "PYARROW_IGNORE_TIMEZONE": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    return env


def airflow_bin() -> str:
    beside = Path(sys.executable).parent / "airflow"
    return str(beside) if beside.exists() else "airflow"


def airflow_cli(env: dict, *args: str, timeout: float = 300) -> str:
    proc = subprocess.run([airflow_bin(), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=env["AIRFLOW_HOME"])
    if proc.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                           f"{proc.stderr[-4000:]}")
    return proc.stdout


class Services:
    """api-server, scheduler and dag-processor as child processes, each in its own process group."""

    def __init__(self, env: dict, logdir: Path):
        self.env, self.logdir = env, logdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> None:
        out = open(self.logdir / f"{name}.log", "w", encoding="utf-8")
        self.procs[name] = subprocess.Popen([airflow_bin(), *args], env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, cwd=self.env["AIRFLOW_HOME"],
                                            start_new_session=True)
        log(f"started airflow {' '.join(args)} (pid {self.procs[name].pid}, log {out.name})")

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logdir / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-3000:]
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    def stop(self) -> None:
        import psutil

        for name, proc in reversed(list(self.procs.items())):
            if proc.poll() is not None:
                continue
            try:  # the whole tree this service started (LocalExecutor workers, spark-submit, JVMs)
                tree = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
            except psutil.Error:
                tree = [proc.pid]
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            for pid in tree:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            log(f"stopped airflow {name}")


def wait_for_port(port: int, services: Services, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        services.check()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"the API server did not listen on port {port} within {timeout:.0f} s")


def db_query(db: Path, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
    """Read-only query of the metadata DB; retried while the scheduler holds a write lock."""
    for attempt in range(30):
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                con.row_factory = sqlite3.Row
                return con.execute(sql, params).fetchall()
            finally:
                con.close()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 29:
                raise
            time.sleep(0.5)
    return []
