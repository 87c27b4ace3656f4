"""A warm driver for pipeline runs: one Spark driver that a run's steps execute in, one after another,
and that the next run with the same code, config and settings reuses (``driver_identity``).

A cold step pays the JVM start, Spark's set-up and the JIT warm-up every time (reports/bench.md, the
``dag`` section); a run's first step on a fresh driver still pays the JIT warm-up of its own code, a
run on a kept driver does not. ``liftlake driver --socket PATH`` starts one driver with the run's config and
serves steps over a Unix socket; ``LIFTLAKE_DRIVER=PATH liftlake <step> ...`` (and the daily DAG's
tasks) send the step's command line there instead of starting a driver of their own. The step runs
in the warm session through the same job code and exit-code contract as a cold run; its stdout and
stderr (the platform's log lines, ``--json`` output, the one error line) come back to the caller.

Contract, so that retries and idempotency stay as they are:
- One step at a time; a step is the same job with the same arguments, so re-running it replaces its
  day's partitions as a cold run does.
- A caller that goes away mid-step (killed task, timeout) takes the driver with it: the driver cancels
  its Spark jobs and exits without cleanup, as a killed cold driver would; every table is as the
  commits left it (each job commits its tables together, or repairs them on its next run).
- No driver answering at PATH (never started, exited, killed): the step runs cold in its own process,
  with a warning that says so. A retry after a crash therefore runs cold.
- A step whose Spark settings differ from the driver's exits 2 naming the setting (the JVM's settings
  are fixed when it starts).
- Only the daily steps are served (``SERVED_JOBS``); the driver exits after ``idle_timeout_s``
  without a request (the DAG's default keeps it a day and an hour, for the next daily run).
- A kept driver serves a later run only under the identity it started with: the start command, the
  LIFTLAKE_* / PYSPARK_* / SPARK_* / JAVA_* environment and the content of the code and config files.
  After a deploy or a conf/ change the next run starts a driver of its own.

Wire format (hostile input is refused, not interpreted): the caller sends one JSON line, at most
``MAX_REQUEST_BYTES``: ``{"argv": [job, args...], "env": {LIFTLAKE_*: value}}``, ``{"ping": true}`` or
``{"stop": true}``; the driver answers JSON lines ``{"out": text}`` / ``{"err": text}`` and last
``{"exit": code}``. The socket lives in a folder only its owner may enter.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import socket
import stat
import sys
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, TextIO

if TYPE_CHECKING:
    import subprocess

logger = logging.getLogger(__name__)

DRIVER_ENV = "LIFTLAKE_DRIVER"
SERVED_JOBS = ("simulate", "build-features", "escim-labels", "score", "tables")
MAX_REQUEST_BYTES = 1 << 20
# env a step may hand the driver for its run (the warehouse, fault injection, the log level); the
# driver's own environment is restored after the step
FORWARDED_ENV_PREFIX = "LIFTLAKE_"
CONNECT_TIMEOUT_S = 10.0
SOCKET_PATH_MAX_BYTES = 100  # Unix socket paths are limited (108 bytes on Linux, 104 elsewhere)
# the exit code a caller reports when the driver went away before it answered (killed, crashed)
DRIVER_LOST = 137


class DriverRequestError(ValueError):
    """A request the driver refuses: not JSON, too large, or not a served step."""


def socket_for(identity: str) -> str:
    """The socket of the driver known by ``identity`` (a run id, or a kept driver's ``driver_identity``):
    short (Unix socket paths are limited to ~100 bytes) and private (``<tmp>/liftlake-<uid>/``, mode 0700)."""
    folder = os.path.join(tempfile.gettempdir(), f"liftlake-{os.getuid()}")
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    return os.path.join(folder, f"{digest}.sock")


# the files a kept driver's identity reads (path and content) of the code and config it runs
IDENTITY_SUFFIXES = (".py", ".yaml", ".yml", ".properties")
IDENTITY_ENV_PREFIXES = (FORWARDED_ENV_PREFIX, "PYSPARK_", "SPARK_", "JAVA_")


def driver_identity(command: Sequence[str], env: Mapping[str, str], sources: Sequence[str]) -> str:
    """What a driver kept from an earlier run must match to serve this one: the command that starts it
    (its Spark settings), the LIFTLAKE_* / PYSPARK_* / SPARK_* / JAVA_* environment, and the path and
    content of every source and config file under ``sources`` (files or folders). Any
    change (a deploy, an edited conf/ file, another warehouse) gives another identity, so the run starts a
    driver of its own and the old one exits when its idle timeout ends."""
    digest = hashlib.sha256()
    settings = sorted((k, v) for k, v in env.items() if k.startswith(IDENTITY_ENV_PREFIXES) and k != DRIVER_ENV)
    digest.update(json.dumps([list(command), settings]).encode("utf-8"))
    for source in sources:
        for path in _source_files(source):
            with open(path, "rb") as fh:
                content = hashlib.sha256(fh.read()).hexdigest()
            digest.update(f"{path}\0{content}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _source_files(source: str) -> list[str]:
    if not os.path.isdir(source):
        return [source] if os.path.exists(source) else []
    found = []
    for root, folders, names in os.walk(source, followlinks=True):
        folders[:] = sorted(f for f in folders if f != "__pycache__" and not f.startswith("."))
        found += [os.path.join(root, n) for n in sorted(names) if n.endswith(IDENTITY_SUFFIXES)]
    return found


def check_socket_path(path: str) -> None:
    """A socket path the driver may serve at: short enough for a Unix socket, in a folder (made if
    missing) that only this user may enter; DriverRequestError naming the rule otherwise."""
    if len(os.path.abspath(path).encode()) > SOCKET_PATH_MAX_BYTES:
        raise DriverRequestError(f"{path}: longer than {SOCKET_PATH_MAX_BYTES} bytes (Unix socket paths are limited)")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise DriverRequestError(f"driver socket folder {folder}: must be a directory owned by this user "
                                 "with no access for others (mode 0700)")


def _frame(message: dict) -> bytes:
    """One message of the wire format: a JSON line."""
    return json.dumps(message).encode("utf-8") + b"\n"


# --------------------------------------------------------------------------------------------------
# the caller
# --------------------------------------------------------------------------------------------------
def _connect(path: str, timeout: float = CONNECT_TIMEOUT_S) -> socket.socket | None:
    if len(os.path.abspath(path).encode()) > SOCKET_PATH_MAX_BYTES or not os.path.exists(path):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    conn.settimeout(None)
    return conn


def _exchange(path: str, request: dict, on_frame: Callable[[dict], None] | None = None) -> int | None:
    """Send ``request``; hand every answer frame to ``on_frame``; the exit code (None: no driver)."""
    conn = _connect(path)
    if conn is None:
        return None
    with conn, conn.makefile("rb") as answers:
        conn.sendall(_frame(request))
        for line in answers:
            frame = json.loads(line)
            if "exit" in frame:
                return int(frame["exit"])
            if on_frame is not None:
                on_frame(frame)
    return DRIVER_LOST  # the driver closed the connection without an exit code: it died mid-step


def ping(path: str) -> bool:
    """Whether a driver answers at ``path``."""
    try:
        return _exchange(path, {"ping": True}) == 0
    except (OSError, ValueError):
        return False


def wait_until_serving(path: str, process: "subprocess.Popen", timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll ``path`` until the driver ``process`` (just started) answers: False when the process exited
    first or ``timeout_s`` passed (the caller decides what that means: a warning, an error)."""
    deadline = time.monotonic() + timeout_s
    while not ping(path):
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True


def stop(path: str) -> bool:
    """Ask the driver at ``path`` to exit; False when none answered."""
    try:
        return _exchange(path, {"stop": True}) == 0
    except (OSError, ValueError):
        return False


def run_step(path: str, argv: list[str], env: dict[str, str] | None = None,
             out: TextIO | None = None, err: TextIO | None = None) -> int | None:
    """Run ``liftlake <argv>`` on the driver at ``path``: its exit code, its output written to ``out`` /
    ``err`` as it comes; None when no driver answers (the caller then runs the step itself)."""
    out, err = out or sys.stdout, err or sys.stderr
    forwarded = {k: v for k, v in (os.environ if env is None else env).items()
                 if k.startswith(FORWARDED_ENV_PREFIX) and k != DRIVER_ENV}

    def show(frame: dict) -> None:
        stream = out if "out" in frame else err
        stream.write(str(frame.get("out", frame.get("err", ""))))
        stream.flush()

    try:
        return _exchange(path, {"argv": list(argv), "env": forwarded}, show)
    except (OSError, ValueError):
        return DRIVER_LOST


# --------------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------------
def parse_request(raw: bytes) -> dict[str, Any]:
    """The request a line holds, checked: a JSON object with a served job's argv (strings) and
    LIFTLAKE_* env strings, or a ping / stop."""
    if len(raw) > MAX_REQUEST_BYTES:
        raise DriverRequestError(f"request: {len(raw)} bytes, more than {MAX_REQUEST_BYTES}")
    try:
        request = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DriverRequestError("request: not a JSON line") from None
    if not isinstance(request, dict):
        raise DriverRequestError("request: must be a JSON object")
    if request.get("ping") is True or request.get("stop") is True:
        return request
    argv, env = request.get("argv"), request.get("env", {})
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise DriverRequestError("request.argv: must be a non-empty list of strings")
    if argv[0] not in SERVED_JOBS:
        raise DriverRequestError(f"request.argv[0] {argv[0]!r}: the driver serves {', '.join(SERVED_JOBS)} only")
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and k.startswith(FORWARDED_ENV_PREFIX) and "\0" not in k + v
            for k, v in env.items()):
        raise DriverRequestError(f"request.env: must map {FORWARDED_ENV_PREFIX}* names to strings")
    return {"argv": argv, "env": {k: v for k, v in env.items() if k != DRIVER_ENV}}


class _FrameWriter(io.TextIOBase):
    """A text stream whose writes go to the caller as ``{key: text}`` frames."""

    def __init__(self, conn: socket.socket, key: str, lock: threading.Lock) -> None:
        self._conn, self._key, self._lock = conn, key, lock

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            with self._lock:
                try:
                    self._conn.sendall(_frame({self._key: text}))
                except OSError:
                    pass  # the caller left; the watcher ends the driver
        return len(text)


@contextlib.contextmanager
def _step_environment(env: dict[str, str]):
    """The step's LIFTLAKE_* variables in place of the driver's, for the step's run."""
    saved = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith(FORWARDED_ENV_PREFIX)]:
            del os.environ[key]
        os.environ.update(saved)


def _run_in_process(argv: list[str]) -> int:
    from liftlake.lib.cli.main import main

    try:
        return int(main(argv) or 0)
    except SystemExit as exc:  # argparse: --help (0), bad flags (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)


def _exit_if_caller_leaves(conn: socket.socket, finished: threading.Event, on_lost: Callable[[], None]) -> None:
    try:
        data = conn.recv(1)
    except OSError:
        data = b""
    if not data and not finished.is_set():
        on_lost()


def serve(path: str, idle_timeout_s: float, cancel_jobs: Callable[[], None]) -> None:
    """Serve steps at ``path`` until a stop request or ``idle_timeout_s`` without one."""
    check_socket_path(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a socket a killed driver left behind
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(8)
    listener.settimeout(idle_timeout_s)
    logger.info(f"driver: serving {', '.join(SERVED_JOBS)} at {path} (exits after {idle_timeout_s:g}s idle)")

    def lost() -> None:
        # the step's stderr goes to the caller that left: this line goes to the driver's own
        print("[liftlake] driver: the caller left mid-step; cancelling its Spark jobs and exiting",
              file=sys.__stderr__, flush=True)
        with contextlib.suppress(Exception):
            cancel_jobs()
        os._exit(DRIVER_LOST)  # as a killed cold driver: no cleanup, the commits decide what is there

    try:
        while True:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                logger.info(f"driver: no request for {idle_timeout_s:g}s; exiting")
                return
            with conn:
                if not _serve_one(conn, lost):
                    logger.info("driver: stop requested; exiting")
                    return
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _serve_one(conn: socket.socket, lost: Callable[[], None]) -> bool:
    """One request on ``conn``; False for a stop request."""
    lock = threading.Lock()

    def answer(frame: dict) -> None:
        with lock, contextlib.suppress(OSError):
            conn.sendall(_frame(frame))

    conn.settimeout(30.0)
    try:
        with conn.makefile("rb") as lines:
            raw = lines.readline(MAX_REQUEST_BYTES + 1)
        request = parse_request(raw.rstrip(b"\n"))
    except (DriverRequestError, OSError) as exc:
        answer({"err": f"liftlake driver: error: {exc}\n"})
        answer({"exit": 2})
        return True
    conn.settimeout(None)
    if "argv" not in request:
        answer({"exit": 0})
        return not request.get("stop")
    argv = request["argv"]
    logger.info(f"driver: running {' '.join(argv)}")
    finished = threading.Event()
    threading.Thread(target=_exit_if_caller_leaves, args=(conn, finished, lost), daemon=True).start()
    out, err = _FrameWriter(conn, "out", lock), _FrameWriter(conn, "err", lock)
    with _step_environment(request["env"]), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = _run_in_process(argv)
        except BaseException as exc:  # noqa: BLE001 - the contract: a step's failure is its exit code
            print(f"liftlake {argv[0]}: internal failure: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
    finished.set()
    logger.info(f"driver: {argv[0]} exited {code}")
    answer({"exit": code})
    return True
