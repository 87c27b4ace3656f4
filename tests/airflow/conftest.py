"""An Airflow home in a tmp folder with its metadata DB migrated, and the env the liftlake DAGs read.

Airflow reads AIRFLOW_HOME and its settings when ``airflow`` is first imported, so nothing in this
folder imports airflow at module level: the session fixture sets the env first, then imports.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "airflow_dags"
SPARK_CONN_ID = "liftlake_test_spark"
POOL = "liftlake_spark"


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory):
    # Checked without importing: importing airflow here would read the wrong AIRFLOW_HOME.
    try:
        importlib.metadata.distribution("apache-airflow-providers-apache-spark")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the [airflow] extra (apache-airflow + its Spark provider) is not installed")
    home = tmp_path_factory.mktemp("airflow_home")
    if "airflow.settings" in sys.modules and os.environ.get("AIRFLOW_HOME") != str(home):
        pytest.fail("airflow was imported before the airflow_home fixture set AIRFLOW_HOME")
    conf_file = home / "liftlake-test.yaml"
    # Small simulated day; one local core (the connection's master is what spark-submit uses, the
    # config's master is what a job started without spark-submit would use).
    conf_file.write_text(
        "simulator:\n  exposures: 5000\n"
        "spark:\n  master: \"local[1]\"\n"
        "  conf:\n    spark.sql.shuffle.partitions: \"2\"\n    spark.ui.enabled: \"false\"\n"
        "    spark.driver.memory: \"1g\"\n",
        encoding="utf-8")
    mp = pytest.MonkeyPatch()
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # The Spark connection the DAGs submit through: local mode, one core.
        f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}": json.dumps({"conn_type": "spark", "host": "local[1]"}),
        "LIFTLAKE_SPARK_CONN": SPARK_CONN_ID,
        "LIFTLAKE_CONF": str(conf_file),
        "PYARROW_IGNORE_TIMEZONE": "1",
    }
    for key, value in env.items():
        mp.setenv(key, value)
    for key in ("LIFTLAKE_SIMULATE", "LIFTLAKE_TRAIN_MODELS", "LIFTLAKE_PY_FILES", "LIFTLAKE_PYSPARK_PYTHON",
                "LIFTLAKE_FAULT_BEFORE_COMMIT", "LIFTLAKE_FAULT_MODE"):
        mp.delenv(key, raising=False)

    from airflow.models.pool import Pool
    from airflow.utils import db

    db.initdb()  # what `airflow db migrate` does on an empty database
    Pool.create_or_update_pool(POOL, slots=1, description="liftlake Spark drivers", include_deferred=False)
    yield home
    mp.undo()


@pytest.fixture()
def dagbag(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER), known_pools={"default_pool", POOL})
