"""Wiring the liftlake DAGs share: retry policy, pool, Spark connection and one operator factory.

No business logic lives here or in the DAG files: every task is ``spark-submit jobs/<job>.py`` with the
command-line contract of the jobs (``--ds <day> [--conf FILE]... [extra args]``; exit 0 done, 2 bad
input or configuration, 1 an internal failure). The jobs commit each table write in one Delta
transaction and overwrite a day's partition, so a retried or re-run task replaces what it wrote
before instead of adding to it.

Environment read here (all optional):

``LIFTLAKE_SPARK_CONN``   Airflow connection id of the Spark master (default ``spark_default``)
``LIFTLAKE_CONF``         YAML file(s) layered over conf/, separated by ``os.pathsep``; each becomes
                          ``--conf FILE`` (default: none, the repository's conf/ alone)
``LIFTLAKE_PY_FILES``     a zip for ``--py-files`` on a cluster (built by ``tools/package``)
``LIFTLAKE_WAREHOUSE``    warehouse root handed to the jobs (default ``<repo>/warehouse``, the same
                          folder ``.venv/bin/liftlake`` uses when run from the repository root)
``LIFTLAKE_PYSPARK_PYTHON`` python of the executors (default: the interpreter running Airflow, i.e.
                          the project's .venv, which also runs the driver; set it when a cluster's
                          nodes have the stack elsewhere)
``LIFTLAKE_SIMULATE``     default of the daily DAG's ``simulate`` param (``1``: write simulated raw logs
                          first, the embedded default; ``0``: real raw logs are already there)
``LIFTLAKE_START_DATE``   first day the DAGs schedule (default 2026-11-01; read by the DAG files)
``LIFTLAKE_ALERT_COMMAND`` the alert hook: a command (split like a shell would, run without one) that
                          gets one JSON argument when a task has failed for good (its last retry;
                          kind "failure": dag, task, run, day, try, the error's first line and the
                          log URL) or a daily run finished after its deadline (kind "deadline":
                          dag, run, day, minutes, deadline_minutes)
``LIFTLAKE_DAILY_DEADLINE_MIN`` the daily run's deadline in minutes after it started (default 360)
``LIFTLAKE_WARM_DRIVER``  ``1`` (default): the daily run's steps run in one Spark driver (``start_driver``),
                          paying the JVM start and warm-up once, not once per step
                          (lib/cli/warm_driver.py); ``0``: every step is its own spark-submit. A step
                          that finds no driver (it failed to start, died, or went idle) runs as its own
                          spark-submit. The run's tasks must share one worker (the driver listens on a
                          Unix socket there): set ``0`` where they do not.
``LIFTLAKE_DRIVER_KEEP``  ``1`` (default): ``stop_driver`` leaves the driver up and the next run's
                          ``start_driver`` reuses it when it is the same (the same spark-submit command,
                          LIFTLAKE_* / PYSPARK_* / SPARK_* / JAVA_* environment, and code and conf/ files:
                          ``warm_driver.driver_identity``), so a run after the first pays no JVM start or
                          JIT warm-up at all; ``0``: every run starts its own driver and stops it.
``LIFTLAKE_DRIVER_IDLE_S`` the driver exits after this many seconds without a step (default 90000, 25
                          hours: a daily run finds the previous day's driver; at most 604800)
"""
from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Sequence

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk.exceptions import AirflowSkipException

REPO_ROOT = Path(__file__).resolve().parent.parent
JOBS_DIR = REPO_ROOT / "jobs"

# Every Spark task takes one slot of this pool: a 30-day backfill queues its tasks instead of
# starting 30 Spark drivers at once. Create it with `airflow pools set liftlake_spark 1 "..."`.
POOL = "liftlake_spark"
DEFAULT_SPARK_CONN_ID = "spark_default"

def send_alert(alert: dict[str, Any], line: str) -> None:
    """The alert hook: ``line`` as one ERROR line of the log ("liftlake alert: ...") and, when
    LIFTLAKE_ALERT_COMMAND is set, that command with ``alert`` as one JSON argument. A failing hook
    is logged, never raised: it must not hide the task's own failure or fail a finished run."""
    import json
    import logging
    import shlex
    import subprocess

    log = logging.getLogger("liftlake.alert")
    log.error(f"liftlake alert: {line}")
    command = os.environ.get("LIFTLAKE_ALERT_COMMAND", "").strip()
    if not command:
        return
    try:
        done = subprocess.run([*shlex.split(command), json.dumps(alert, default=str)], capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            log.error(f"liftlake alert: LIFTLAKE_ALERT_COMMAND exited {done.returncode}: {done.stderr.strip()[:300]}")
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        log.error(f"liftlake alert: LIFTLAKE_ALERT_COMMAND could not run: {type(exc).__name__}: {exc}")


def notify_failure(context) -> None:
    """on_failure_callback of every task (after its last retry): an alert of kind ``failure``."""
    ti = context.get("ti") or context.get("task_instance")
    params = context.get("params") or {}
    error = context.get("exception")
    alert = {"kind": "failure", "dag": getattr(ti, "dag_id", None), "task": getattr(ti, "task_id", None),
             "run": getattr(ti, "run_id", None), "day": params.get("ds") or context.get("ds"),
             "try": getattr(ti, "try_number", None),
             "error": (str(error).strip().splitlines() or [type(error).__name__])[0][:300] if error else None,
             "log_url": getattr(ti, "log_url", None)}
    send_alert(alert, f"{alert['dag']}.{alert['task']} failed for good on {alert['day']} "
                      f"(try {alert['try']}): {alert['error']}")


# The daily run's deadline: it should be done within this many minutes of starting (a day's steps
# take about 3 minutes at 1M exposures and 7 at 10M on 2 cores: reports/bench.md). From the start,
# not from being queued: a backfill queues its days at once. Read when a run ends, so changing it
# needs no DAG re-parse.
DEADLINE_ENV = "LIFTLAKE_DAILY_DEADLINE_MIN"
DEFAULT_DEADLINE_MIN = 360.0


def deadline_minutes() -> float:
    """LIFTLAKE_DAILY_DEADLINE_MIN, else the default; a value that is no number of minutes >= 0 is
    logged with the rule and the default applies (a finished run is not failed over its alerting)."""
    import logging

    raw = os.environ.get(DEADLINE_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_DEADLINE_MIN
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):  # also NaN
        logging.getLogger("liftlake.alert").error(
            f"liftlake alert: {DEADLINE_ENV}={raw!r} must be a number of minutes >= 0; "
            f"using {DEFAULT_DEADLINE_MIN:g}")
        return DEFAULT_DEADLINE_MIN
    return value


def check_deadline(context) -> None:
    """on_success_callback of the daily DAG: a run that finished later than its deadline after it
    started raises an alert of kind ``deadline`` (the data is there, but late). A run that never
    finishes alerts through its tasks: each has an execution timeout and a failure alert."""
    import datetime as dt

    run = context.get("dag_run")
    began = getattr(run, "start_date", None) or getattr(run, "queued_at", None)
    ended = getattr(run, "end_date", None) or dt.datetime.now(dt.timezone.utc)
    if began is None:
        return
    limit = deadline_minutes()
    took = (ended - began).total_seconds() / 60
    if took <= limit:
        return
    params = context.get("params") or {}
    day = params.get("ds") or context.get("ds")
    alert = {"kind": "deadline", "dag": getattr(run, "dag_id", None), "run": getattr(run, "run_id", None),
             "day": day, "minutes": took, "deadline_minutes": limit}
    send_alert(alert, f"{alert['dag']} run for {day} finished after its deadline: {took:.1f} min after it "
                      f"started, the deadline is {limit:g} min ({DEADLINE_ENV})")


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "liftlake",
    "depends_on_past": False,
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    # Delay multiplier per try: about 2, 4, 8 minutes (Airflow adds a deterministic jitter), capped.
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
    "pool": POOL,
    "on_failure_callback": notify_failure,
}


def driver_python() -> str:
    """The driver runs on the Airflow worker (client mode) with the interpreter running Airflow."""
    return sys.executable


def executor_python() -> str:
    """The executors' interpreter: the driver's, unless ``LIFTLAKE_PYSPARK_PYTHON`` names the one on
    a cluster's nodes."""
    return os.environ.get("LIFTLAKE_PYSPARK_PYTHON") or sys.executable


def spark_submit_binary() -> str:
    """``spark-submit`` installed next to the interpreter (pyspark's, in the venv), else from PATH."""
    beside = Path(sys.executable).parent / "spark-submit"
    return str(beside) if beside.exists() else "spark-submit"


def spark_conn_id() -> str:
    return os.environ.get("LIFTLAKE_SPARK_CONN") or DEFAULT_SPARK_CONN_ID


def conf_files() -> list[str]:
    raw = os.environ.get("LIFTLAKE_CONF", "")
    return [p for p in raw.split(os.pathsep) if p.strip()]


def simulate_default() -> bool:
    return os.environ.get("LIFTLAKE_SIMULATE", "1").strip().lower() not in ("0", "false", "no", "off", "")


WARM_DRIVER_ENV = "LIFTLAKE_WARM_DRIVER"
DRIVER_KEEP_ENV = "LIFTLAKE_DRIVER_KEEP"
DRIVER_IDLE_ENV = "LIFTLAKE_DRIVER_IDLE_S"
# a day and an hour: a daily run starts within it of the previous run's last step
DEFAULT_DRIVER_IDLE_S = 90000.0
MAX_DRIVER_IDLE_S = 7 * 86400.0
DRIVER_START_TIMEOUT_S = 240.0


def _flag(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off", "")


def warm_driver_on() -> bool:
    return _flag(WARM_DRIVER_ENV)


def driver_kept() -> bool:
    return _flag(DRIVER_KEEP_ENV)


def driver_idle_seconds() -> float:
    raw = os.environ.get(DRIVER_IDLE_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_DRIVER_IDLE_S
    except ValueError:
        value = -1.0
    return value if 0 < value <= MAX_DRIVER_IDLE_S else DEFAULT_DRIVER_IDLE_S


class _TaskLogLines:
    """A text stream that puts each complete line into the task's log (the warm driver's output)."""

    def __init__(self, log) -> None:
        self._log, self._pending = log, ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._log.info(line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._log.info(self._pending)
            self._pending = ""


class LiftlakeSparkSubmitOperator(SparkSubmitOperator):
    """``SparkSubmitOperator`` that hands the job the venv's interpreters and the warehouse root.

    The environment is resolved when the task runs (on the worker), not when the DAG file is parsed.
    ``skip_unless_param`` names a boolean DAG param; when it is false the task is skipped.
    ``warm``: run the job on the run's warm driver when one answers (``start_driver``), else as its own
    spark-submit.
    """

    def __init__(self, *, skip_unless_param: str | None = None, warm: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.skip_unless_param = skip_unless_param
        self.warm = warm

    def execute(self, context):
        if self.skip_unless_param and not context["params"].get(self.skip_unless_param, True):
            raise AirflowSkipException(f"param {self.skip_unless_param} is off")
        self._set_runtime_env()
        if self.warm and warm_driver_on() and self._run_on_warm_driver(context):
            return None
        return super().execute(context)

    def _set_runtime_env(self) -> None:
        runtime_env = {
            "PYSPARK_PYTHON": executor_python(),
            "PYSPARK_DRIVER_PYTHON": driver_python(),
            "LIFTLAKE_WAREHOUSE": os.environ.get("LIFTLAKE_WAREHOUSE") or str(REPO_ROOT / "warehouse"),
        }
        # Values given to the operator (rendered templates) win over the defaults above.
        self.env_vars = {**runtime_env, **(self.env_vars or {})}

    def _run_on_warm_driver(self, context) -> bool:
        """The job on the run's driver: True when it ran there (exit 0; another exit fails the task),
        False when no driver answers (the caller then spark-submits it). A step that failed inside
        the driver (exit 1) retires it: whatever broke may live on in its JVM or Python state, and a
        kept driver would carry it into every later run; the retry then runs cold, as after a crash.
        Bad input (exit 2) leaves the driver serving."""
        from airflow.exceptions import AirflowException

        from liftlake.lib.cli import warm_driver
        from liftlake.lib.cli.main import JOBS

        job = {module: name for name, (module, _) in JOBS.items()}[Path(self.application).stem]
        sock = run_driver_socket(context["ti"])
        if not sock:
            self.log.warning(f"this run has no warm driver (start_driver did not start one); running {job} as "
                             "its own spark-submit")
            return False
        lines = _TaskLogLines(self.log)
        code = warm_driver.run_step(sock, [job, *self.application_args], env={**os.environ, **self.env_vars},
                                    out=lines, err=lines)  # type: ignore[arg-type]
        lines.flush()
        if code is None:
            self.log.warning(f"no warm driver answers for this run ({sock}); running {job} as its own spark-submit")
            return False
        if code != 0:
            if code != 2 and warm_driver.stop(sock):
                self.log.warning(f"{job} failed on the warm driver ({sock}); stopped it, so the retry and later "
                                 "runs start clean")
            raise AirflowException(f"{job} exited {code} on the run's warm driver")
        return True


START_DRIVER_TASK = "start_driver"


def run_driver_socket(ti) -> str | None:
    """The socket of the run's warm driver, as ``start_driver`` published it (None: it started none)."""
    sock = ti.xcom_pull(task_ids=START_DRIVER_TASK)
    return sock if isinstance(sock, str) and sock else None


class WarmDriverStartOperator(LiftlakeSparkSubmitOperator):
    """Starts the run's warm driver (``spark-submit jobs/driver.py --socket <socket>``) in the background
    and waits until it answers, or reuses the driver an earlier run left up (``LIFTLAKE_DRIVER_KEEP``)
    when its identity is this run's. Returns the socket (its XCom: the steps' and ``stop_driver``'s way
    to the driver). A driver that does not come up is logged, not failed: the steps then run as their
    own spark-submits."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.driver_args = list(self.application_args or [])

    def execute(self, context):
        import subprocess

        from liftlake.lib.cli import warm_driver

        if not warm_driver_on():
            raise AirflowSkipException(f"{WARM_DRIVER_ENV} is off: every step is its own spark-submit")
        self.application_args = [*self.driver_args, "--idle-timeout", f"{driver_idle_seconds():g}"]
        self._set_runtime_env()
        command = self._get_hook()._build_spark_submit_command(self.application)
        env = {**os.environ, **self.env_vars}
        if driver_kept():
            sources = [str(REPO_ROOT / d) for d in ("lib", "models", "jobs", "conf")] + conf_files()
            sock = warm_driver.socket_for(warm_driver.driver_identity(command, env, sources))
        else:
            sock = warm_driver.socket_for(context["run_id"])
        if warm_driver.ping(sock):
            self.log.info(f"a warm driver with this run's code, config and settings answers at {sock}: reusing it")
            return sock
        try:
            warm_driver.check_socket_path(sock)  # its folder: made private, or refused
        except warm_driver.DriverRequestError as exc:
            self.log.warning(f"no warm driver for this run: {exc}; the steps run as their own spark-submits")
            return None
        command = [*command, "--socket", sock]
        log_path = f"{sock}.log"
        with open(log_path, "wb") as log_file:
            driver = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        if not warm_driver.wait_until_serving(sock, driver, DRIVER_START_TIMEOUT_S, interval_s=0.5):
            if driver.poll() is None:
                driver.kill()
            with open(log_path, encoding="utf-8", errors="replace") as fh:
                tail = fh.read()[-2000:]
            self.log.warning(f"the warm driver did not come up (exit {driver.poll()}); the steps run as their "
                             f"own spark-submits. Its log:\n{tail}")
            return None
        self.log.info(f"the run's warm driver (pid {driver.pid}) answers at {sock}; its log: {log_path}")
        return sock


def stop_driver_task():
    """Ends the run's use of its warm driver whatever its steps did (trigger rule all_done): stops the
    driver, or with ``LIFTLAKE_DRIVER_KEEP`` leaves it up for the next run; puts the driver's log into
    this task's log. Returns whether the driver still answered when the run ended."""
    from airflow.providers.standard.operators.python import PythonOperator

    def stop(ti) -> bool:
        import contextlib
        import logging

        from liftlake.lib.cli import warm_driver

        log = logging.getLogger("liftlake.driver")
        sock = run_driver_socket(ti)
        if sock is None:
            log.info("this run started no warm driver")
            return False
        kept = driver_kept()
        answered = warm_driver.ping(sock) if kept else warm_driver.stop(sock)
        with contextlib.suppress(OSError), open(f"{sock}.log", encoding="utf-8", errors="replace") as fh:
            log.info("the warm driver's log:\n" + fh.read()[-20000:])
        if kept and answered:
            log.info(f"left the warm driver up for the next run ({DRIVER_KEEP_ENV}); it exits after "
                     f"{driver_idle_seconds():g} s without a step")
            return True
        with contextlib.suppress(OSError):
            os.unlink(f"{sock}.log")  # its driver is gone: nothing appends to it any more
        log.info("stopped the run's warm driver" if answered else "the run's warm driver was no longer running")
        return answered

    return PythonOperator(task_id="stop_driver", python_callable=stop, trigger_rule="all_done",
                          doc_md="Ends the run's use of its warm driver once every step is done: stops it, or "
                                 "leaves it up for the next run (LIFTLAKE_DRIVER_KEEP).")


# A task's log is the platform's own lines: the driver's JVM logs warnings and errors only from its
# first line on (conf/log4j2.properties), and no console progress bars (carriage-return noise in a file).
LOG4J2_CONF = REPO_ROOT / "conf" / "log4j2.properties"
QUIET_LOGS = {"spark.ui.showConsoleProgress": "false",
              "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG4J2_CONF}"}


# Airflow Assets: one per table a daily task writes (its outlets), and the week's mark. The daily run
# for the last day of a training week (Saturday: the week [Sun, Sat] liftlake_train trains on)
# emits WEEK_BUILT once that day's features and ESCIM labels are written; liftlake_train is
# scheduled on it, so it runs when the week's data is there, not at a clock time that may come first.
def table_asset(table: str):
    from airflow.sdk import Asset

    return Asset(name=f"liftlake.{table}", group="liftlake-tables")


WEEK_BUILT_NAME = "liftlake.week_built"
LAST_WEEKDAY = 5  # Saturday (date.weekday()): the last day of the week [Sun, Sat]


def week_built_asset():
    from airflow.sdk import Asset

    return Asset(name=WEEK_BUILT_NAME)


def week_built_task(day_template: str):
    """Emits WEEK_BUILT (its event's extra names the day) when the run's day ends a training week;
    skipped on every other day, so no event and no training."""
    import datetime as dt

    from airflow.providers.standard.operators.python import PythonOperator

    asset = week_built_asset()

    def mark(day: str, outlet_events) -> str:
        if dt.date.fromisoformat(day).weekday() != LAST_WEEKDAY:
            raise AirflowSkipException(f"{day} does not end a training week (the week ends on a Saturday)")
        outlet_events[asset].extra = {"ds": day}
        return day

    return PythonOperator(task_id="week_built", python_callable=mark, op_kwargs={"day": day_template},
                          outlets=[asset],
                          doc_md="Marks the training week's data as built (Asset liftlake.week_built) on its last day.")


def job_doc(job_file: str) -> str:
    """The job's own docstring (its command line and what it writes), read without importing it: the
    task's doc in the UI."""
    import ast

    tree = ast.parse(Path(job_application(job_file)).read_text(encoding="utf-8"))
    return ast.get_docstring(tree) or f"jobs/{job_file}"


def job_application(job_file: str) -> str:
    path = JOBS_DIR / job_file
    if path.suffix != ".py":
        raise ValueError(f"job file {job_file!r} must be a jobs/<job>.py file name")
    return str(path)


# The day a task processes: the run's ``ds`` param when given (a manual run:
# ``airflow dags trigger liftlake_daily --conf '{"ds": "2026-11-20"}'``, which has no logical date),
# else the scheduled run's ``{{ ds }}``. Neither renders as an empty --ds, which the job refuses
# with exit 2 and one line (the task fails instead of processing some other day).
RUN_DAY = "{{ params.get('ds') or (ds if ds is defined and ds else '') }}"


def day_param():
    """The ``ds`` param both DAGs take (null: the run's own day)."""
    from airflow.sdk import Param

    return Param(None, type=["null", "string"], pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                 description="the day to process, YYYY-MM-DD (manual runs); empty: the run's logical day")


def spark_job(task_id: str, job_file: str, extra_args: Sequence[str] = (), *, ds: str | None = RUN_DAY,
              operator: type[LiftlakeSparkSubmitOperator] = LiftlakeSparkSubmitOperator,
              **operator_kwargs: Any) -> LiftlakeSparkSubmitOperator:
    """One task: ``spark-submit jobs/<job_file> [--ds <ds>] [--conf F]... <extra_args>``.

    ``ds`` is a template for the day the job processes (default ``RUN_DAY``); ``None`` is for jobs
    that take no day (``tables``). Other keywords go to the operator (``trigger_rule``,
    ``execution_timeout``, ``skip_unless_param``...).
    """
    args: list[str] = ["--ds", ds] if ds else []
    for path in conf_files():
        args += ["--conf", path]
    args += list(extra_args)
    operator_kwargs.setdefault("doc_md", job_doc(job_file))
    return operator(
        task_id=task_id,
        application=job_application(job_file),
        application_args=args,
        conn_id=spark_conn_id(),
        spark_binary=spark_submit_binary(),
        conf={"spark.pyspark.python": executor_python(), "spark.pyspark.driver.python": driver_python(), **QUIET_LOGS},
        py_files=os.environ.get("LIFTLAKE_PY_FILES") or None,
        name=f"liftlake-{task_id}",
        **operator_kwargs,
    )
