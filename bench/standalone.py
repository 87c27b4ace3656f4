"""A real Spark standalone cluster on this machine: a Master and N Workers started from the pip pyspark's
jars with ``spark-class``, each in its own process group, so that leaving the block kills the daemons,
the executors they launched and the executors' Python workers, whatever happened inside it. Used by the
cluster section of bench.run and by the lost-executor test."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class ClusterError(RuntimeError):
    """The cluster did not come up (the message ends with the daemons' log tails)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 3000) -> str:
    try:
        return f"--- {path.name}\n" + path.read_text(errors="replace")[-n:]
    except OSError:
        return f"--- {path.name}: unreadable"


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the process group ``proc`` leads (a daemon, its executors, their workers)."""
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.time() + grace
        while time.time() < deadline:
            proc.poll()  # reap the leader, or the group never looks empty
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
    proc.poll()


@contextmanager
def standalone_cluster(root: Path, workers: int = 2, cores: int = 1, memory: str = "1g") -> Iterator[dict]:
    """``{"url": "spark://127.0.0.1:<port>", "env": ..., "logs": [...]}`` of a Master with ``workers``
    Workers of ``cores`` cores and ``memory`` each; every JVM is killed when the block ends."""
    import pyspark

    spark_home = os.path.dirname(pyspark.__file__)
    spark_class = os.path.join(spark_home, "bin", "spark-class")
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SPARK_HOME": spark_home, "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_DAEMON_MEMORY": "256m",
           "SPARK_DAEMON_JAVA_OPTS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC", "PYSPARK_PYTHON": sys.executable}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []

    def start(name: str, *args: str) -> None:
        log = root / f"{name}.log"
        logs.append(log)
        with open(log, "wb") as fh:
            procs.append(subprocess.Popen([spark_class, *args], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True))

    def wait_for(what: str, ok, timeout: float = 90.0) -> None:
        deadline = time.time() + timeout
        dead: list = []
        while time.time() < deadline:
            if ok():
                return
            dead = [p.args[1] for p in procs if p.poll() is not None]
            if dead:
                break
            time.sleep(0.5)
        raise ClusterError(f"standalone cluster: {what} did not happen (exited: {dead})\n"
                           + "\n".join(tail(log) for log in logs))

    try:
        port = free_port()
        url = f"spark://127.0.0.1:{port}"
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
              "--webui-port", "0")
        wait_for("master elected", lambda: "I have been elected leader" in logs[0].read_text(errors="replace"))
        for i in range(1, workers + 1):
            start(f"worker{i}", "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                  "--cores", str(cores), "--memory", memory, "--webui-port", "0", "--work-dir", str(root / f"work{i}"))
        wait_for(f"{workers} workers registered",
                 lambda: logs[0].read_text(errors="replace").count("Registering worker") >= workers)
        yield {"url": url, "env": env, "logs": logs}
    finally:
        for proc in reversed(procs):
            kill_group(proc)
