"""The numpy + pyarrow floor of the simulate step (bench/run/simulate.py) writes what the platform's
simulator writes for the same settings: the same 9 tables, the same column names and Arrow types in
their Parquet files, and row counts that agree: exactly where the simulator's are fixed by the settings
(exposures, users, items), within a tolerance where they are draws (clicks, conversions, the users
active that day): 5 standard deviations of the difference of two independent Poisson counts, plus 5 %
of the platform's count, since the floor's users and items are other draws of the world too (a popular
item's attractiveness moves the day's CTR by a few per cent)."""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # bench/ is a folder of the checkout, not an installed package
    sys.path.insert(0, str(REPO))
from bench.run.common import day_files, job_context  # noqa: E402
from bench.run.simulate import TABLES, floor_file, floor_rows, platform_rows, run_floor  # noqa: E402

DS = "2026-11-20"
EXPOSURES = 20_000
EXACT = ("raw.users", "raw.items", "raw.exposures", "sim.truth")


@pytest.fixture(scope="module")
def warehouses(spark, tmp_path_factory):
    """(platform, floor): the platform's simulate job and the floor, one day each, the same settings."""
    from liftlake.lib.pipelines.simulate import simulate_days

    root = tmp_path_factory.mktemp("simulate-floor")
    platform, floor = str(root / "platform"), str(root / "floor")
    simulate_days(job_context(platform, [f"simulator.exposures={EXPOSURES}"], [DS], spark))
    run_floor(floor, EXPOSURES, DS)
    return platform, floor


def _tables_under(warehouse: str) -> set[str]:
    return {f"{ns}.{table}" for ns in os.listdir(warehouse) if os.path.isdir(os.path.join(warehouse, ns))
            for table in os.listdir(os.path.join(warehouse, ns)) if not table.startswith(("_", "."))}


def _columns(path: str) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in pq.read_schema(path)]


def test_the_floor_writes_the_platforms_tables(warehouses):
    platform, floor = warehouses
    assert _tables_under(platform) == set(TABLES)
    assert _tables_under(floor) == set(TABLES)


def test_the_floor_files_have_the_platforms_columns_and_arrow_types(warehouses):
    platform, floor = warehouses
    for name in TABLES:
        expected = _columns(day_files(os.path.join(platform, *name.split(".")), DS)[0])
        assert _columns(floor_file(floor, name, DS)) == expected, name
        assert os.path.basename(os.path.dirname(floor_file(floor, name, DS))) == f"ds={DS}"


def test_the_floor_row_counts_agree_with_the_platforms(warehouses):
    platform, floor = warehouses
    got, expected = floor_rows(floor, DS), platform_rows(platform, DS)
    assert got["raw.exposures"] == EXPOSURES
    for name in TABLES:
        if name in EXACT:
            assert got[name] == expected[name], name
        else:
            assert expected[name] > 0, name
            tolerance = 5 * math.sqrt(got[name] + expected[name]) + 0.05 * expected[name]
            assert abs(got[name] - expected[name]) <= tolerance, (name, got[name], expected[name])
