"""The Spark JVM's class archive (HotSpot AppCDS): the classes a pipeline day loads, parsed and verified
once at setup and mapped by every later JVM that build_session starts, instead of read from Spark's
jars again at every start.

``python -m liftlake.lib.storage.class_archive`` (tools/setup-env runs it) starts a JVM that dumps the
classes it loaded when it exits (``-XX:ArchiveClassesAtExit``), runs the simulate and build-features
steps on a small simulated day in a scratch warehouse, and publishes the archive with a rename once
that JVM exited cleanly: HotSpot refuses an archive of another JDK or another class path and starts
without it, but a truncated one crashes it (SIGBUS), so a half-written archive must never be at
``archive_path()``. Measured on 2 cores, fresh processes alternating with and without it: a session
starts in 2.9-3.1 s instead of 4.4-4.7, and its first build-features day at 1M exposures takes 19.4-19.5 s
instead of 21.5-22.9.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile

ARCHIVE_NAME = "spark-classes.jsa"
# the day the archive's workload simulates: small (setup time), but every step's code path runs
WORKLOAD_DS = "2026-01-05"
WORKLOAD_EXPOSURES = 20_000
# HotSpot's notes on the archive (an archive it cannot use; while dumping, each class it cannot archive:
# signed jars, generated classes), off: the JVM goes on without them
QUIET_ARCHIVE_LOGS = "-Xlog:cds=off -Xlog:cds+dynamic=off"


def archive_path() -> str:
    """``<venv>/jvm/spark-classes.jsa``, beside the SQL guard's jar."""
    return os.path.join(sys.prefix, "jvm", ARCHIVE_NAME)


def archive_java_options() -> str:
    """The JVM options that map the archive, or "" when there is none. A JVM that cannot use it
    (another class path, such as the SQL server's) loads the classes from the jars, as without one."""
    path = archive_path()
    if not os.path.isfile(path):
        return ""
    return f"-XX:SharedArchiveFile={path} {QUIET_ARCHIVE_LOGS}"


def build_archive(target: str) -> None:
    """Run the workload in a JVM that dumps its classes to a scratch file at exit; move it to
    ``target`` once the JVM exited with 0."""
    from pyspark import SparkContext

    from liftlake.lib.cli.main import main as liftlake

    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)  # build_session must not map the archive being replaced (JVMs using it keep theirs)
    scratch = tempfile.mkdtemp(prefix=".archive-", dir=folder)
    dump = os.path.join(scratch, ARCHIVE_NAME)
    os.environ["JAVA_TOOL_OPTIONS"] = f"-XX:ArchiveClassesAtExit={dump} {QUIET_ARCHIVE_LOGS}"
    os.environ["LIFTLAKE_WAREHOUSE"] = os.path.join(scratch, "warehouse")
    try:
        steps = (["simulate", "--ds", WORKLOAD_DS, "--set", f"simulator.exposures={WORKLOAD_EXPOSURES}"],
                 ["build-features", "--ds", WORKLOAD_DS])
        for step in steps:
            code = liftlake(step)
            if code:
                raise RuntimeError(f"liftlake {' '.join(step)} exited {code}")
        gateway = SparkContext._gateway  # noqa: SLF001 - the JVM this process started
        if gateway is None or getattr(gateway, "proc", None) is None:
            raise RuntimeError("no JVM was started by this process")
        active = SparkContext._active_spark_context  # noqa: SLF001
        if active is not None:
            active.stop()
        gateway.proc.stdin.close()  # Spark's gateway exits on the end of its input, and dumps then
        code = gateway.proc.wait(timeout=300)
        if code != 0 or not os.path.isfile(dump):
            raise RuntimeError(f"the JVM exited {code} without writing {dump}")
        os.replace(dump, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> int:
    target = archive_path()
    try:
        build_archive(target)
    except Exception as exc:  # a speed-up only: the platform runs without it
        print(f"liftlake setup: warning: no Spark class archive ({exc}); JVMs load Spark's classes from its jars",
              file=sys.stderr)
        return 1
    print(f"liftlake setup: Spark class archive {target} ({os.path.getsize(target) >> 20} MiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
