"""One local SparkSession for the whole test session; each test gets its own warehouse folder."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def spark():
    from liftlake.lib.storage.spark import build_session, delta_jar_paths

    # One JVM for both table-store backends: it starts with the Delta jars (which must be there at JVM
    # start) when the environment has them, as `make setup` makes it; delta-rs ignores them.
    session = build_session(
        "liftlake-tests",
        master="local[2]",
        conf={"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false",
              "spark.driver.memory": "2g"},
        delta_jars=bool(delta_jar_paths()),
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(params=["delta-rs", "delta-spark"])
def backend(request):
    """The table-store backend: a test taking it runs once on each (``open_store(spark, root, backend)``)."""
    return request.param


@pytest.fixture()
def warehouse(tmp_path, monkeypatch):
    path = tmp_path / "warehouse"
    path.mkdir()
    monkeypatch.setenv("LIFTLAKE_WAREHOUSE", str(path))
    return str(path)


def pytest_configure(config):
    os.environ.setdefault("PYARROW_IGNORE_TIMEZONE", "1")


def pytest_collection_modifyitems(config, items):
    # tests/reliability/ is all reliability cases; the others carry the mark where they are defined.
    folder = os.path.join(os.path.dirname(__file__), "reliability") + os.sep
    for item in items:
        if str(item.path).startswith(folder):
            item.add_marker(pytest.mark.reliability)
