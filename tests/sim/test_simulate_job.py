"""The simulate job writes its day without a Spark session where the store is delta-rs anyway, and with
the session's store where Spark decides (delta-spark, a Delta cluster's session)."""
from __future__ import annotations

import argparse
import os

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


def _day_rows(store: DeltaRsStore, table: str):
    """The day's rows as the table's current version holds them, in one order (the files' is the log's)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [pq.read_table(uri.removeprefix("file://")) for uri in store.file_uris(table, partitions=[DS])]
    return _in_one_order(pa.concat_tables(files))


def _in_one_order(rows):
    import pyarrow as pa

    return rows.sort_by([(c, "ascending") for c in rows.column_names
                         if not pa.types.is_floating(rows.schema.field(c).type)])


@pytest.mark.parametrize("streamed", [True, False])
def test_a_day_handed_over_in_chunks_is_the_day_computed_in_memory_row_for_row(tmp_path, streamed):
    from concurrent.futures import ThreadPoolExecutor

    from liftlake.lib.storage.store import DayWriter, arrow_data_rows

    store = DeltaRsStore(None, str(tmp_path))
    cfg, schema = SimulatorConfig(exposures=3000), raw_schemas()["raw.exposures"]
    whole = arrow_data_rows(simulate_day(cfg, DS)["raw.exposures"], "raw.exposures", schema)
    chunks: dict[int, object] = {}
    left = simulate_day(cfg, DS, chunk_rows=700, sink=lambda table, index, rows: chunks.setdefault(
        index, rows) if table == "raw.exposures" else None)
    assert "raw.exposures" not in left and "sim.truth" not in left and sorted(chunks) == [0, 1, 2, 3, 4]
    writer = (store.day_writer("raw.exposures", schema, DS) if streamed
              else DayWriter(store, "raw.exposures", schema, DS, None))
    with ThreadPoolExecutor(2) as pool:  # out of order, from two threads, as the simulator's workers hand them over
        list(pool.map(lambda i: writer.add(i, chunks[i]), [4, 2, 0, 3, 1]))
    assert writer.finish().rows == 3000
    assert _day_rows(store, "raw.exposures").equals(_in_one_order(whole))
    assert os.listdir(os.path.join(store.path("raw.exposures"), "_staging")) == []


def test_a_simulate_that_fails_after_its_chunks_were_staged_leaves_every_table_as_it_was(tmp_path, no_owner_of_delta,
                                                                                        monkeypatch):
    import liftlake.lib.sim.simulator as simulator

    ctx = _ctx(tmp_path, "warehouse.backend=delta-rs")
    simulate_days(ctx)
    store = DeltaRsStore(None, str(tmp_path))
    before = {t: (store.version(t), _day_rows(store, t)) for t in TABLES}

    def broken(*args, **kwargs):
        raise RuntimeError("injected: the user-day tables failed")

    monkeypatch.setattr(simulator, "user_day_tables", broken)  # runs after every exposure chunk went to the store
    with pytest.raises(RuntimeError, match="injected"):
        simulate_days(_ctx(tmp_path, "warehouse.backend=delta-rs", "simulator.seed=8"))
    for table, (version, rows) in before.items():
        assert store.version(table) == version and _day_rows(store, table).equals(rows), table
        staging = os.path.join(store.path(table), "_staging")
        assert not os.path.isdir(staging) or os.listdir(staging) == [], table


@pytest.mark.parametrize("streamed", [True, False])
def test_a_day_handed_no_pieces_is_committed_empty_with_the_declared_columns(tmp_path, streamed):
    from liftlake.lib.storage.store import DayWriter

    store = DeltaRsStore(None, str(tmp_path))
    schema = raw_schemas()["sim.truth"]
    writer = store.day_writer("sim.truth", schema, DS) if streamed else DayWriter(store, "sim.truth", schema, DS, None)
    assert writer.finish().rows == 0
    assert store.partition_counts("sim.truth") == {DS: 0}
    assert store.spark_schema("sim.truth").fieldNames() == schema.fieldNames()
