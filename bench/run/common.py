"""What the sections of bench.run share: the peak resident memory and the CPU seconds of the process
tree while a step runs, a timer into a results dict, the machine the report is about, a JobContext over
a bench warehouse, fresh driver processes and the report's sections."""
from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from contextlib import contextmanager
from typing import NamedTuple

from bench.machine import machine_basics


class PeakRSS:
    """Peak resident memory (MiB) of this process and its children (Spark JVM, Python workers):
    ``peak`` of the whole tree, ``worker_peak`` of the largest single Spark Python worker (where a
    scoring UDF runs: the number that must stay flat as the rows grow)."""

    def __init__(self, interval: float = 0.2):
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0.0
        self.worker_peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> tuple[float, float]:
        total, worker = 0, 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                rss = p.memory_info().rss
                total += rss
                if "pyspark.daemon" in " ".join(p.cmdline()):
                    worker = max(worker, rss)
            except Exception:  # noqa: BLE001 - a child may exit between listing and reading
                pass
        return total / 2**20, worker / 2**20

    def _run(self):
        while not self._stop.is_set():
            total, worker = self._sample()
            self.peak, self.worker_peak = max(self.peak, total), max(self.worker_peak, worker)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class TreeCPU:
    """User + system CPU seconds of a process and every descendant while a block runs: descendants are
    sampled (``interval``) so that one that exits inside the block still counts up to its last sample,
    and the children this process reaps add their own totals (getrusage). ``started_peak_mib``: the
    largest summed resident memory, as sampled, of the processes the block started (a cold step's
    Python and its JVM), without the ones that were there before it."""

    def __init__(self, pid: int | None = None, interval: float = 0.1):
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        self.seen: dict[int, float] = {}
        self.start: dict[int, float] = {}
        self.started_peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _procs(self):
        try:
            return [self.root, *self.root.children(recursive=True)]
        except Exception:  # noqa: BLE001 - the root exited
            return []

    def _sample(self, into: dict[int, float]) -> None:
        started_rss = 0
        for p in self._procs():
            try:
                t = p.cpu_times()
                into[p.pid] = t.user + t.system
                if into is self.seen and p.pid not in self.start:
                    started_rss += p.memory_info().rss
            except Exception:  # noqa: BLE001 - a child may exit between listing and reading
                pass
        self.started_peak_mib = max(self.started_peak_mib, started_rss / 2**20)

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample(self.seen)

    def __enter__(self):
        self._sample(self.start)
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._reaped0 = r.ru_utime + r.ru_stime
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self._sample(self.seen)
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        reaped = r.ru_utime + r.ru_stime - self._reaped0
        deltas = {pid: t - self.start.get(pid, 0.0) for pid, t in self.seen.items()}
        # a child that exited (a cold run's Python and its JVM) is in getrusage's total, which also holds
        # what was sampled of it: the larger of the two accounts
        self.cpu = max(sum(deltas.values()), deltas.get(self.root.pid, 0.0) + reaped)


def jit_compiler_cpu(spark) -> float | None:
    """CPU seconds the JIT compiler threads (HotSpot's C1 and C2) of the session's JVM have used since
    it started, from /proc (None where there is none): a warm-up is over when they stop using it."""
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm", encoding="utf-8") as fh:
                if not fh.read().startswith(("C1 CompilerThre", "C2 CompilerThre")):
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="utf-8") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime (proc(5))
    return total


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


@contextmanager
def timed(results: dict, key: str):
    start = time.perf_counter()
    yield
    results[key] = time.perf_counter() - start


def machine() -> dict:
    import torch

    return {**machine_basics(("pyspark", "torch", "deltalake", "duckdb", "horovod")),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"}


def job_context(warehouse: str, overrides: list[str], days: list[str], spark, backend: str = "delta-rs"):
    from liftlake.lib.cli.runner import JobContext
    from liftlake.lib.config import load_config
    from liftlake.lib.storage.store import open_store

    config = load_config([], [f"warehouse.path={warehouse}", *overrides], env={})
    args = argparse.Namespace(conf=[], overrides=[f"warehouse.path={warehouse}", *overrides], json=False,
                              model=None, quiet_config=True)
    return JobContext(name="bench", config=config, args=args, days=days, _spark=spark,
                      _store=open_store(spark, warehouse, backend))


def run_driver(module: str, args: list[str], env: dict | None = None) -> dict:
    """``python -m <module> <args>`` in a fresh process from the repository root (a session's master and
    jars are fixed when its JVM starts, so each mode a section compares gets its own driver); the
    JSON object its last stdout line prints."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-m", module, *args], env={**(env or os.environ), "PYTHONPATH": repo},
                          cwd=repo, stdout=subprocess.PIPE, stderr=None, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"the driver {module} {' '.join(args)} exited {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def serve_driver(drive) -> None:
    """The other end of ``run_driver``: ``drive(mode, warehouse, exposures)`` from this process's
    arguments, its result printed as one JSON line."""
    import json
    import sys

    mode, warehouse, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(warehouse, exist_ok=True)
    print(json.dumps(drive(mode, warehouse, size), default=float))


EARLIER_TARGETS = "## Targets of earlier issues"  # the full run's own tables end here: sections go before


def replace_section(path: str, block: str, begin: str, end: str) -> None:
    """Put ``block`` (a section between the markers ``begin`` and ``end``) into the report at ``path``:
    in place of the one between the markers, or before ``EARLIER_TARGETS`` (or at the end); every other
    line stays."""
    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# liftlake benchmark report\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        # one blank line after the section, as where it is inserted (the report's other writers)
        text = head + block.rstrip("\n") + ("\n\n" + tail if tail else "\n")
    elif "\n" + EARLIER_TARGETS in text:
        head, tail = text.split("\n" + EARLIER_TARGETS, 1)
        text = head.rstrip("\n") + "\n\n" + block + "\n" + EARLIER_TARGETS + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def read_section(path: str, begin: str, end: str) -> str | None:
    """The section between the markers of the report at ``path`` (markers included), if it has one."""
    if not os.path.exists(path):
        return None
    text = open(path, encoding="utf-8").read()
    if begin not in text or end not in text:
        return None
    return begin + text.split(begin, 1)[1].split(end, 1)[0] + end


def restore_section(path: str, block: str | None) -> None:
    """Put back a section kept by ``read_section`` (a run that rewrote the report without measuring it)."""
    if not block:
        return
    text = open(path, encoding="utf-8").read()
    head, sep, tail = text.partition("\n" + EARLIER_TARGETS)
    text = head.rstrip("\n") + "\n\n" + block + "\n" + sep + tail if sep else text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


class Target(NamedTuple):
    """One of issue 20's targets against a run's figures: what it asks (with the size), what was
    measured, and whether that meets it (never adjusted)."""
    what: str
    measured: str
    met: bool


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def target_rows(targets: list[Target]) -> list[str]:
    """A section's own table of its targets (the summary at the top of the report gathers them all)."""
    return ["| target | measured | |", "|---|---|---|", *(f"| {t.what} | {t.measured} | {verdict(t.met)} |"
                                                        for t in targets)]


def day_files(table_dir: str, ds: str | None = None) -> list[str]:
    """Local paths of the Parquet files the Delta table at ``table_dir`` is made of (of the day ``ds``
    when given): the files the platform itself reads."""
    from deltalake import DeltaTable

    table = DeltaTable(table_dir)
    uris = table.file_uris(partition_filters=[("ds", "=", ds)]) if ds else table.file_uris()
    return [u.removeprefix("file://") for u in uris]


def section_name(module) -> str:
    """A section's name: its bench.run module's (``--only <name>``, <report>-<name>.json)."""
    return module.__name__.rsplit(".", 1)[-1]


def section_json(path: str, module) -> str:
    """Where a section's data lies beside the report at ``path``."""
    return os.path.splitext(path)[0] + f"-{section_name(module)}.json"


def write_section(path: str, module, results, info: dict) -> str:
    """A bench section into the report at ``path`` (``replace_section``: every other line stays) and its
    data as JSON beside it (<report>-<name>.json, ``name`` the module's): ``module`` is the section's
    bench.run module, with its ``section(results, info)`` lines and its ``BEGIN`` / ``END`` markers."""
    import json

    replace_section(path, "\n".join(module.section(results, info)), module.BEGIN, module.END)
    with open(section_json(path, module), "w", encoding="utf-8") as fh:
        json.dump({"info": info, section_name(module): results}, fh, indent=1, default=float)
    from bench.run.summary import write_summary  # it reads every section's module

    write_summary(path)
    return path
