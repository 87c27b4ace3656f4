"""The Airflow DAGs: they load, their wiring is what the platform relies on, and the daily DAG runs a
small simulated day end to end against local Spark (spark-submit through SparkSubmitOperator),
idempotently, and survives a task whose Spark driver dies before its Delta commit.

Airflow is imported inside the tests only (the ``airflow_home`` fixture must set AIRFLOW_HOME first).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-11-20"
RUN_DAY = "{{ params.get('ds') or (ds if ds is defined and ds else '') }}"  # airflow_dags/_common.py
DAILY_ORDER = ["simulate", "build_features", "escim_labels", "score", "publish"]
DAILY_JOB_FILES = {"simulate": "simulate.py", "build_features": "build_features.py",
                   "escim_labels": "escim_labels.py", "score": "score.py", "publish": "tables.py"}


def liftlake_bin() -> str:
    venv = REPO / ".venv" / "bin" / "liftlake"
    return str(venv if venv.exists() else Path(sys.executable).parent / "liftlake")


def tables_json(warehouse: str) -> dict[str, dict]:
    """``liftlake tables --json`` as {table name: info}, run the way a user runs it."""
    env = {**os.environ, "LIFTLAKE_WAREHOUSE": warehouse}
    proc = subprocess.run([liftlake_bin(), "tables", "--json", "--set", "spark.master=local[1]"],
                          capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    infos = [json.loads(line) for line in proc.stdout.splitlines() if line.strip().startswith("{")]
    return {info["name"]: info for info in infos}


# --------------------------------------------------------------------------------------------------
# Loading and wiring (no Spark)
# --------------------------------------------------------------------------------------------------
class _TaskInstance:
    """What stop_driver reads of its task instance: start_driver's XCom (the run's socket)."""

    def __init__(self, sock: str | None) -> None:
        self.sock = sock

    def xcom_pull(self, task_ids: str):
        assert task_ids == "start_driver"
        return self.sock


@pytest.mark.parametrize("keep, still_serving", [("1", True), ("0", False)])
def test_stop_driver_leaves_the_driver_up_for_the_next_run_unless_told_not_to(dagbag, monkeypatch, keep,
                                                                               still_serving):
    """A driver that answers ping and stop without Spark (warm_driver.serve): LIFTLAKE_DRIVER_KEEP=1
    (the default) leaves it serving for the next run's start_driver, 0 stops it; either way the task
    returns that it answered when the run ended."""
    import threading

    from liftlake.lib.cli import warm_driver

    monkeypatch.setenv("LIFTLAKE_DRIVER_KEEP", keep)
    sock = warm_driver.socket_for(f"test-stop-driver-{os.getpid()}-{keep}")
    server = threading.Thread(target=warm_driver.serve, args=(sock, 30.0, lambda: None), daemon=True)
    server.start()
    while not warm_driver.ping(sock):
        server.join(0.05)
    stop = dagbag.get_dag("liftlake_daily").get_task("stop_driver").python_callable
    try:
        assert stop(_TaskInstance(sock)) is True
        server.join(2.0)
        assert warm_driver.ping(sock) is still_serving
        assert stop(_TaskInstance(None)) is False  # start_driver started none (LIFTLAKE_WARM_DRIVER=0)
    finally:
        warm_driver.stop(sock)
        server.join(5.0)
    assert not server.is_alive()


@pytest.mark.reliability
@pytest.mark.slow
def test_a_step_that_fails_inside_the_driver_retires_it_and_bad_input_does_not(dagbag, monkeypatch, tmp_path):
    """A real driver with the DAG's config: a step refused as bad input (exit 2) leaves it serving; a
    step that fails inside it (exit 1, here an injected failure before a commit) stops it, so a kept
    driver never carries a broken state into the retry or the next run."""
    from airflow.exceptions import AirflowException

    from liftlake.lib.cli import warm_driver

    warehouse, log = tmp_path / "wh", tmp_path / "driver.log"
    monkeypatch.setenv("LIFTLAKE_WAREHOUSE", str(warehouse))
    sock = warm_driver.socket_for(str(tmp_path))
    proc = subprocess.Popen([liftlake_bin(), "driver", "--socket", sock, "--conf", os.environ["LIFTLAKE_CONF"],
                             "--idle-timeout", "300"], stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        assert warm_driver.wait_until_serving(sock, proc, 180), log.read_text()[-3000:]
        task = dagbag.get_dag("liftlake_daily").get_task("simulate")
        task._set_runtime_env()
        context = {"ti": _TaskInstance(sock)}
        task.application_args = ["--ds", "2026-13-01", "--conf", os.environ["LIFTLAKE_CONF"]]
        with pytest.raises(AirflowException, match="exited 2"):
            task._run_on_warm_driver(context)
        assert warm_driver.ping(sock)
        task.application_args = ["--ds", DAY, "--conf", os.environ["LIFTLAKE_CONF"]]
        monkeypatch.setenv("LIFTLAKE_FAULT_BEFORE_COMMIT", "raw.exposures")
        with pytest.raises(AirflowException, match="exited 1"):
            task._run_on_warm_driver(context)
        assert proc.wait(timeout=60) == 0 and not warm_driver.ping(sock)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_every_dag_file_loads_without_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"liftlake_daily", "liftlake_train"} <= set(dagbag.dag_ids)
    dag_files = {Path(p).name for p in (REPO / "airflow_dags").glob("liftlake_*.py")}
    assert {Path(d.fileloc).name for d in dagbag.dags.values()} == dag_files
    # known_pools was given: a task in a pool that does not exist would be a DagWarning.
    assert not [w for w in dagbag.dag_warnings if "pool" in str(w.message).lower()]


def test_daily_dag_runs_the_jobs_in_order(dagbag):
    dag = dagbag.get_dag("liftlake_daily")
    assert sorted(t.task_id for t in dag.tasks) == sorted(DAILY_ORDER + ["start_driver", "stop_driver", "week_built"])
    order = ["start_driver", *DAILY_ORDER, "stop_driver"]
    for before, after in zip(order, order[1:]):
        assert dag.get_task(after).upstream_task_ids == {before}
        assert dag.get_task(before).downstream_task_ids == {after} | ({"week_built"} if before == "escim_labels" else set())
    assert dag.get_task("start_driver").upstream_task_ids == set()
    assert dag.get_task("stop_driver").downstream_task_ids == set()
    # the steps run in the run's warm driver; it stops whatever they did, and the first step runs
    # when the driver was not started (LIFTLAKE_WARM_DRIVER=0)
    assert all(dag.get_task(task_id).warm for task_id in DAILY_ORDER)
    assert dag.get_task("stop_driver").trigger_rule == "all_done"
    assert dag.get_task("simulate").trigger_rule == "none_failed"
    assert dag.get_task("start_driver").application == str(REPO / "jobs" / "driver.py")
    for task_id, job_file in DAILY_JOB_FILES.items():
        task = dag.get_task(task_id)
        assert task.application == str(REPO / "jobs" / job_file)
        assert Path(task.application).exists(), task.application
    conf = str(os.environ["LIFTLAKE_CONF"])
    for task_id in DAILY_ORDER[:-1]:
        assert dag.get_task(task_id).application_args == ["--ds", RUN_DAY, "--conf", conf]
    # tables takes no day; --json makes it log one JSON object per table.
    assert dag.get_task("publish").application_args == ["--conf", conf, "--json"]
    # build_features also runs when simulate is skipped (real raw logs), never after it failed.
    assert dag.get_task("build_features").trigger_rule == "none_failed"
    assert dag.params["simulate"] is True


def test_daily_dag_schedule_retries_and_pool(dagbag):
    dag = dagbag.get_dag("liftlake_daily")
    assert dag.catchup is True
    assert dag.max_active_runs == 1
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.timetable.expression == "0 0 * * *"
    for dag_id in ("liftlake_daily", "liftlake_train"):
        for task in dagbag.get_dag(dag_id).tasks:
            assert task.pool == "liftlake_spark"
            assert task.retries >= 2
            assert task.retry_delay >= timedelta(minutes=1)
            assert task.retry_exponential_backoff >= 2.0
            assert task.max_retry_delay is not None and task.max_retry_delay > task.retry_delay
            assert task.execution_timeout is not None


def test_spark_submit_command_uses_the_connection_and_the_venv(dagbag):
    """The command each task would run: the venv's spark-submit, the connection's master, the venv's
    python for driver and executors, the job file and its arguments (built by the provider's hook)."""
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    python = sys.executable
    spark_submit = str(Path(python).parent / "spark-submit")
    assert Path(spark_submit).exists()
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            if task.task_id in ("week_built", "stop_driver"):  # no job: an Asset event, stopping the driver
                continue
            assert isinstance(task, SparkSubmitOperator)
            cmd = task._get_hook()._build_spark_submit_command(task.application)
            assert cmd[0] == spark_submit
            assert cmd[cmd.index("--master") + 1] == "local[1]"  # the connection named by LIFTLAKE_SPARK_CONN
            confs = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--conf"}
            assert f"spark.pyspark.python={python}" in confs
            assert f"spark.pyspark.driver.python={python}" in confs
            app = cmd.index(task.application)
            assert cmd[app + 1:] == list(task.application_args)


@pytest.mark.slow
def test_a_tasks_log_is_the_platforms_own_lines(dagbag, tmp_path):
    """The daily DAG's simulate task, run as its operator would run it (the hook's spark-submit
    command) on a tiny day: no JVM INFO lines and no progress bars, only the platform's lines and
    warnings. Spark's default profile alone writes ~40 INFO lines of start-up into every task log."""
    task = dagbag.get_dag("liftlake_daily").get_task("simulate")
    cmd = task._get_hook()._build_spark_submit_command(task.application)
    cmd = cmd[:cmd.index(task.application) + 1] + ["--ds", "2026-11-20", "--set", "simulator.exposures=500"]
    env = {**os.environ, "LIFTLAKE_WAREHOUSE": str(tmp_path / "wh"), "PYSPARK_PYTHON": sys.executable,
           "PYSPARK_DRIVER_PYTHON": sys.executable}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    noise = [line for line in lines if " INFO " in line or "[Stage " in line or "log4j" in line]
    assert noise == [], noise[:5]
    assert sum("[liftlake] simulate" in line for line in lines) >= 9  # one line per table, and the commits


def test_train_dag_has_one_independent_task_per_model(dagbag):
    dag = dagbag.get_dag("liftlake_train")
    assert dag.max_active_runs == 1
    # scheduled on the week's data, not by clock (the Asset the daily run emits on Saturdays)
    assert [a.name for a in dag.timetable.asset_condition.objects] == ["liftlake.week_built"]
    assert sorted(t.task_id for t in dag.tasks) == ["housekeeping", "train_escm2_dr", "train_hmum", "train_unimvt"]
    conf = str(os.environ["LIFTLAKE_CONF"])
    for name in ("escm2_dr", "unimvt", "hmum"):
        task = dag.get_task(f"train_{name}")
        assert task.application == str(REPO / "jobs" / "train.py")
        assert task.upstream_task_ids == set() and task.downstream_task_ids == {"housekeeping"}
        assert task.application_args[0] == "--ds"
        assert task.application_args[2:] == ["--conf", conf, "--model", name]
    # A run trains on the window ending at the day its newest week_built event names ...
    from types import SimpleNamespace

    template = dag.get_task("train_unimvt").application_args[1]
    env = dag.get_template_env()
    events = {"liftlake.week_built": [SimpleNamespace(extra={"ds": "2026-11-14"}),
                                      SimpleNamespace(extra={"ds": "2026-11-21"})]}
    assert env.from_string(template).render(triggering_asset_events=events, params={}) == "2026-11-21"
    # ... and a manual run (no event) names its day
    assert env.from_string(template).render(triggering_asset_events={}, params={"ds": "2026-11-14"}) == "2026-11-14"
    cleanup = dag.get_task("housekeeping")
    assert cleanup.application == str(REPO / "jobs" / "housekeeping.py") and cleanup.trigger_rule == "all_done"
    assert cleanup.application_args == ["--conf", conf]


def test_daily_tasks_publish_their_tables_as_assets(dagbag):
    dag = dagbag.get_dag("liftlake_daily")
    outlets = {t.task_id: sorted(a.name for a in t.outlets) for t in dag.tasks}
    assert outlets["build_features"] == ["liftlake.features.samples", "liftlake.features.user_samples",
                                         "liftlake.ops.quarantine"]
    assert outlets["score"] == ["liftlake.scores.cvr", "liftlake.scores.uplift_user"]
    assert outlets["escim_labels"] == ["liftlake.labels.escim_counterfactual"]
    assert outlets["week_built"] == ["liftlake.week_built"]
    assert dag.get_task("week_built").upstream_task_ids == {"escim_labels"}


def test_the_training_dag_waits_for_the_week_built_by_the_daily_run(dagbag, tmp_path, monkeypatch):
    """Only the daily run of a week's last day (Saturday) emits liftlake.week_built, and that event
    queues liftlake_train; a Wednesday's run emits none (its Spark tasks are marked success here:
    the Asset logic is what runs)."""
    from airflow.dag_processing.dagbag import sync_bag_to_db
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select
    from sqlalchemy import update as sa_update

    monkeypatch.setenv("LIFTLAKE_WAREHOUSE", str(tmp_path / "wh"))
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    DagBundlesManager().sync_bundles_to_db()  # the configured bundle (the dags folder) the DAGs live in
    sync_bag_to_db(dagbag, "dags-folder", None)  # what the DAG processor does: liftlake_train's schedule
    from airflow.models.dag import DagModel

    with create_session() as session:  # `airflow dags unpause liftlake_train`: a paused DAG gets no runs
        session.execute(sa_update(DagModel).where(DagModel.dag_id == "liftlake_train").values(is_paused=False))
    dag = dagbag.get_dag("liftlake_daily")

    def run(day):
        dr = dag.test(logical_date=None, run_conf={"ds": day, "simulate": False},
                      mark_success_pattern="start_driver|simulate|build_features|escim_labels|score|publish|stop_driver")
        assert dr.state == DagRunState.SUCCESS
        return {ti.task_id: ti.state for ti in dr.get_task_instances()}["week_built"]

    def week_built_events_and_queue():
        with create_session() as session:
            asset_id = session.scalar(select(AssetModel.id).where(AssetModel.name == "liftlake.week_built"))
            events = [e.extra for e in session.scalars(select(AssetEvent).where(AssetEvent.asset_id == asset_id))]
            queued = session.scalars(select(AssetDagRunQueue.target_dag_id)
                                     .where(AssetDagRunQueue.asset_id == asset_id)).all()
            return events, list(queued)

    assert run("2026-11-18") == TaskInstanceState.SKIPPED  # a Wednesday
    assert week_built_events_and_queue() == ([], [])
    assert run("2026-11-21") == TaskInstanceState.SUCCESS  # the Saturday ending the week
    events, queued = week_built_events_and_queue()
    assert [e.get("ds") for e in events] == ["2026-11-21"] and queued == ["liftlake_train"]


def test_a_task_that_fails_for_good_calls_the_alert_hook(dagbag, tmp_path, monkeypatch):
    """LIFTLAKE_ALERT_COMMAND gets the failure as one JSON argument after the last try (week_built on
    a day that is no date fails in Python; the Spark tasks are marked success)."""
    import json

    from airflow.utils.state import DagRunState

    received = tmp_path / "alert.json"
    hook = tmp_path / "hook.py"
    hook.write_text(f"import sys\nopen({str(received)!r}, 'w').write(sys.argv[1])\n", encoding="utf-8")
    monkeypatch.setenv("LIFTLAKE_ALERT_COMMAND", f"{sys.executable} {hook}")
    monkeypatch.setenv("LIFTLAKE_WAREHOUSE", str(tmp_path / "wh"))
    dag = dagbag.get_dag("liftlake_daily")
    dag.get_task("week_built").retries = 0
    dr = dag.test(logical_date=None, run_conf={"ds": "2026-02-30", "simulate": False},
                  mark_success_pattern="start_driver|simulate|build_features|escim_labels|score|publish|stop_driver")
    assert dr.state == DagRunState.FAILED
    alert = json.loads(received.read_text(encoding="utf-8"))
    assert (alert["kind"], alert["dag"], alert["task"], alert["day"]) == (
        "failure", "liftlake_daily", "week_built", "2026-02-30")
    assert "day is out of range for month" in alert["error"] and alert["try"] == 1


def test_a_daily_run_past_its_deadline_calls_the_alert_hook(dagbag, tmp_path, monkeypatch):
    """The run's on_success_callback compares its time from start to end with
    LIFTLAKE_DAILY_DEADLINE_MIN: within it nothing is sent; past it the hook gets a ``deadline``
    alert; a setting that is no number of minutes is logged and the default applies (the Spark
    tasks are marked success, week_built runs for real)."""
    import json

    from airflow.utils.state import DagRunState

    received = tmp_path / "alert.json"
    hook = tmp_path / "hook.py"
    hook.write_text(f"import sys\nopen({str(received)!r}, 'w').write(sys.argv[1])\n", encoding="utf-8")
    monkeypatch.setenv("LIFTLAKE_ALERT_COMMAND", f"{sys.executable} {hook}")
    dag = dagbag.get_dag("liftlake_daily")

    def run(day: str) -> None:
        dr = dag.test(logical_date=None, run_conf={"ds": day, "simulate": False},
                      mark_success_pattern="start_driver|simulate|build_features|escim_labels|score|publish|stop_driver")
        assert dr.state == DagRunState.SUCCESS

    for within in ("", "60", "nonsense"):  # the default (6 h), an hour, a bad value (the default)
        monkeypatch.setenv("LIFTLAKE_DAILY_DEADLINE_MIN", within)
        run("2026-11-18")
        assert not received.exists(), within
    monkeypatch.setenv("LIFTLAKE_DAILY_DEADLINE_MIN", "0")
    run("2026-11-19")
    alert = json.loads(received.read_text(encoding="utf-8"))
    assert (alert["kind"], alert["dag"], alert["day"], alert["deadline_minutes"]) == (
        "deadline", "liftlake_daily", "2026-11-19", 0.0)
    assert alert["minutes"] > 0 and alert["run"]


def test_every_task_has_its_jobs_doc(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.doc_md, task.task_id
            if hasattr(task, "application"):
                assert f"jobs/{Path(task.application).name}" in task.doc_md or "liftlake " in task.doc_md, task.task_id


def test_train_models_come_from_the_environment(airflow_home, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("LIFTLAKE_TRAIN_MODELS", "dcmt, escim_max")
    bag = DagBag(dag_folder=str(REPO / "airflow_dags"))
    assert sorted(t.task_id for t in bag.get_dag("liftlake_train").tasks) == ["housekeeping", "train_dcmt",
                                                                             "train_escim_max"]
    monkeypatch.setenv("LIFTLAKE_TRAIN_MODELS", "dcmt,../x")
    bag = DagBag(dag_folder=str(REPO / "airflow_dags"))
    assert "liftlake_train" not in bag.dag_ids
    (error,) = [e for f, e in bag.import_errors.items() if f.endswith("liftlake_train.py")]
    assert "'../x' is not a model name" in error


def test_simulate_off_skips_simulate_and_still_builds_features(dagbag):
    """With the param off (real raw logs) simulate is skipped and build_features becomes runnable.

    No Spark here: the other tasks are marked success by dag.test; build_features only reaches that
    point if its trigger rule let it run after a skipped upstream.
    """
    import pendulum
    from airflow.utils.state import DagRunState, TaskInstanceState

    dag = dagbag.get_dag("liftlake_daily")
    dr = dag.test(logical_date=pendulum.datetime(2026, 11, 3, tz="UTC"), run_conf={"simulate": False},
                  mark_success_pattern="start_driver|build_features|escim_labels|score|publish|stop_driver")
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert dr.state == DagRunState.SUCCESS
    assert states["simulate"] == TaskInstanceState.SKIPPED
    assert states["build_features"] == TaskInstanceState.SUCCESS


@pytest.mark.slow
def test_a_manual_run_without_a_logical_date_processes_the_day_it_names(dagbag, tmp_path, monkeypatch):
    """`airflow dags trigger liftlake_daily --conf '{"ds": ...}'` makes a run with no logical date;
    its tasks take the day from the param (simulate really runs; the rest are marked success)."""
    from airflow.utils.state import DagRunState, TaskInstanceState

    warehouse = str(tmp_path / "wh")
    monkeypatch.setenv("LIFTLAKE_WAREHOUSE", warehouse)
    dag = dagbag.get_dag("liftlake_daily")
    dr = dag.test(logical_date=None, run_conf={"ds": "2026-11-07", "simulate": True},
                  mark_success_pattern="start_driver|build_features|escim_labels|score|publish|stop_driver")
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    assert dr.state == DagRunState.SUCCESS, states
    assert states["simulate"] == TaskInstanceState.SUCCESS
    assert list(tables_json(warehouse)["raw.exposures"]["rows_per_partition"]) == ["2026-11-07"]


# --------------------------------------------------------------------------------------------------
# End to end: spark-submit of the real jobs on a small simulated day
# --------------------------------------------------------------------------------------------------
def _run_daily(dag):
    import pendulum
    from airflow.utils.state import DagRunState

    dr = dag.test(logical_date=pendulum.parse(DAY, tz="UTC"))
    states = {ti.task_id: (ti.state, ti.try_number) for ti in dr.get_task_instances()}
    assert dr.state == DagRunState.SUCCESS, states
    return dr, states


def _returned(dr, task_id: str):
    """What a task of the run returned (its return_value XCom)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dr.run_id, key="return_value", task_ids=task_id,
                                                 dag_ids=dr.dag_id)).first()
        return XComModel.deserialize_value(row) if row is not None else None


def _day_rows(tables: dict[str, dict]) -> dict[str, int]:
    return {name: info["rows_per_partition"].get(DAY, 0) for name, info in tables.items()}


@pytest.fixture(scope="module")
def first_daily_run(airflow_home, tmp_path_factory):
    """One full run of liftlake_daily for DAY into a fresh warehouse: (warehouse, task states, tables)."""
    from airflow.dag_processing.dagbag import DagBag

    warehouse = str(tmp_path_factory.mktemp("daily_warehouse"))
    mp = pytest.MonkeyPatch()
    mp.setenv("LIFTLAKE_WAREHOUSE", warehouse)
    dag = DagBag(dag_folder=str(REPO / "airflow_dags")).get_dag("liftlake_daily")
    dr, states = _run_daily(dag)
    sock = _returned(dr, "start_driver")
    yield warehouse, states, tables_json(warehouse), sock, _returned(dr, "stop_driver")
    mp.undo()
    from liftlake.lib.cli import warm_driver

    if sock:  # the run left its driver up for the next run (LIFTLAKE_DRIVER_KEEP): no JVM outlives the tests
        warm_driver.stop(sock)


@pytest.mark.slow
def test_daily_dag_end_to_end_on_a_simulated_day(first_daily_run):
    from liftlake.lib.cli import warm_driver

    warehouse, states, tables, sock, answered = first_daily_run
    # the run's warm driver was serving when stop_driver ran: every step found it and ran in it (a
    # step that finds none runs as its own spark-submit); stop_driver left it up for the next run
    assert answered is True and warm_driver.ping(sock)
    assert states.pop("week_built")[0] == "skipped"  # DAY is a Friday: no training week ends
    assert states == {task_id: ("success", 1) for task_id in ["start_driver", *DAILY_ORDER, "stop_driver"]}
    for name in ("raw.exposures", "raw.clicks", "raw.conversions", "raw.users", "raw.items",
                 "raw.treatments", "raw.responses", "features.samples", "features.user_samples"):
        assert name in tables, sorted(tables)
        assert tables[name]["partition_column"] == "ds"
        assert tables[name]["rows_per_partition"].get(DAY, 0) > 0, (name, tables[name])
    assert tables["raw.exposures"]["rows_per_partition"][DAY] == 5000  # simulator.exposures of the conf
    # escim_labels labelled every exposure of the day. score ran and skipped every model: none has a
    # CURRENT version in a fresh warehouse, so no scores.* table exists yet.
    assert tables["labels.escim_counterfactual"]["rows_per_partition"][DAY] == \
        tables["features.samples"]["rows_per_partition"][DAY]
    assert not [name for name in tables if name.startswith("scores.")]


@pytest.mark.reliability
@pytest.mark.slow
def test_rerun_with_a_driver_killed_before_its_commit_leaves_one_copy(first_daily_run, monkeypatch):
    """Run the same day again, and kill build_features' Spark driver (exit 137) on its first try after
    ops.quarantine was staged and after its features.samples files were moved into the table, before
    the job's commits. Airflow retries the task (dag.test honours retries and their delay in-process);
    the run ends with every table holding the same rows for the day as after the first run."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session

    warehouse, _, tables, first_sock, _ = first_daily_run
    monkeypatch.setenv("LIFTLAKE_WAREHOUSE", warehouse)
    dag = DagBag(dag_folder=str(REPO / "airflow_dags")).get_dag("liftlake_daily")
    task = dag.get_task("build_features")
    # Keep the retry policy (exponential backoff, cap) but shorten its base so the test waits ~1 s.
    task.retry_delay, task.max_retry_delay = timedelta(seconds=1), timedelta(seconds=2)
    task.env_vars = {"LIFTLAKE_FAULT_BEFORE_COMMIT": "{{ 'features.samples' if ti.try_number == 1 else '' }}",
                     "LIFTLAKE_FAULT_MODE": "exit"}
    dr, states = _run_daily(dag)
    assert states.pop("week_built")[0] == "skipped"
    assert states == {**{task_id: ("success", 1) for task_id in ["start_driver", *DAILY_ORDER, "stop_driver"]},
                      "build_features": ("success", 2)}
    with create_session() as session:
        earlier = session.query(TaskInstanceHistory).filter_by(
            dag_id=dag.dag_id, run_id=dr.run_id, task_id="build_features").all()
    assert [(h.try_number, h.state) for h in earlier] == [(1, "failed")]
    # start_driver found the driver the first run left up (the same code, config and settings) and
    # reused it; the first try died with it (the fault travelled with the step); the retry and the
    # later steps found no driver and ran as their own spark-submits
    assert first_sock and _returned(dr, "start_driver") == first_sock
    assert _returned(dr, "stop_driver") is False

    after = tables_json(warehouse)
    assert sorted(after) == sorted(tables)
    assert _day_rows(after) == _day_rows(tables)
    # The rerun wrote (new versions) and replaced the day instead of appending to it.
    for name in ("raw.exposures", "sim.truth", "features.user_samples", "labels.escim_counterfactual"):
        assert after[name]["version"] == tables[name]["version"] + 1, name
    # features.samples: the killed try committed nothing, the retry committed once.
    assert after["features.samples"]["version"] == tables["features.samples"]["version"] + 1
    # ops.quarantine is staged before features.samples, and the job's tables commit together at its
    # end: the killed try committed neither, the retry each once; one copy of the day.
    assert after["ops.quarantine"]["version"] == tables["ops.quarantine"]["version"] + 1
