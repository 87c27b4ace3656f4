"""The simulate job writes its day without a Spark session where the store is delta-rs anyway, and with
the session's store where Spark decides (delta-spark, a Delta cluster's session)."""
from __future__ import annotations

import argparse

import pytest

from liftlake.lib.cli.runner import JobContext
from liftlake.lib.config import load_config
from liftlake.lib.pipelines.simulate import simulate_days
from liftlake.lib.features.raw_logs import raw_schemas
from liftlake.lib.sim.settings import SimulatorConfig
from liftlake.lib.sim.simulator import TABLES, simulate_day
from liftlake.lib.storage.store import DeltaRsStore, TableError

DS = "2026-11-20"


def _ctx(warehouse, *overrides) -> JobContext:
    sets = [f"warehouse.path={warehouse}", "simulator.exposures=3000", *overrides]
    args = argparse.Namespace(conf=[], overrides=sets, json=False, model=None, quiet_config=True)
    return JobContext("simulate", load_config([], sets, env={}), args, [DS])


@pytest.fixture
def no_owner_of_delta(monkeypatch):
    # as a `liftlake simulate` of its own: neither spark-submit's gateway nor LIFTLAKE_DELTA_SPARK
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.delenv("LIFTLAKE_DELTA_SPARK", raising=False)


@pytest.mark.parametrize("backend", ["auto", "delta-rs"])
def test_a_day_is_written_without_a_session_on_the_embedded_default(tmp_path, no_owner_of_delta, backend):
    ctx = _ctx(tmp_path, f"warehouse.backend={backend}")
    first = simulate_days(ctx)
    again = simulate_days(ctx)  # a re-run replaces the day
    assert ctx._spark is None  # noqa: SLF001 - the point of the test: no JVM was started
    assert [r.table for r in first] == list(TABLES)
    store = DeltaRsStore(None, str(tmp_path))
    for before, after in zip(first, again):
        assert store.version(before.table) == 1 and after.rows == before.rows
        assert store.partition_counts(before.table) == {DS: before.rows}, before.table


@pytest.mark.parametrize("overrides,env,needs", [
    (["warehouse.backend=delta-spark"], {}, True),
    (["warehouse.backend=auto"], {"PYSPARK_GATEWAY_PORT": "40000"}, True),   # spark-submit started the JVM
    (["warehouse.backend=auto"], {"LIFTLAKE_DELTA_SPARK": "1"}, True),
    (["warehouse.backend=auto", "spark.conf={spark.sql.extensions: io.delta.sql.DeltaSparkSessionExtension}"], {},
     True),
    (["warehouse.backend=auto"], {}, False),
    (["warehouse.backend=delta-rs"], {"PYSPARK_GATEWAY_PORT": "40000"}, False),
])
def test_the_session_decides_the_store_only_where_delta_may_come_with_it(tmp_path, no_owner_of_delta, monkeypatch,
                                                                          overrides, env, needs):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _ctx(tmp_path, *overrides).store_needs_session() is needs


def test_rows_without_a_declared_column_are_refused_with_the_table_and_the_column(tmp_path):
    store = DeltaRsStore(None, str(tmp_path))
    rows = simulate_day(SimulatorConfig(exposures=100), DS)["raw.items"].drop_columns(["i_brand"])
    with pytest.raises(TableError, match=r"table raw\.items: the rows to write have no column\(s\) \['i_brand'\]"):
        store.write_day(rows, "raw.items", raw_schemas()["raw.items"], DS)
    assert not store.exists("raw.items")
