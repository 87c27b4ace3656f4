"""Property-based tests (hypothesis): generated SQL text, settings and raw rows thrown at the public
entry points. No SQL statement changes a table or exits with anything but 0 or 2 (one line, no
traceback); no setting fails other than as a ConfigError; no raw row is both lost and unquarantined.
The examples are derandomized, so the suite runs the same ones each time."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import os
import typing

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liftlake.lib.cli.main import main
from liftlake.lib.config import Config, ConfigError, load_config

DS = "2026-11-20"
def property_settings(examples: int) -> settings:
    return settings(derandomize=True, deadline=None, max_examples=examples, database=None,
                    suppress_health_check=list(HealthCheck))

SQL_WORDS = ["select", "*", "from", "scores.cvr", "where", "cvr", ">", "0", "1", "insert", "into", "values",
             "copy", "to", "'/tmp/liftlake-prop-out'", "attach", "detach", "as", "x", ";", "--", "/*", "*/",
             "read_csv('/etc/passwd')", "read_parquet('{wh}/scores/cvr/*/*.parquet')", "(", ")", "drop",
             "table", "view", "create", "pragma", "set", "enable_external_access", "=", "true", "install",
             "load", "httpfs", "with", "t", "union", "all", "describe", "explain", "show", "tables", "'",
             '"', "`", "export", "database", "delete", "update", "call", "checkpoint", "limit", "order",
             "by", "group", "count(*)", "getenv('HOME')", "glob('/*')", "use", "memory", "vacuum"]


def _snapshot(path: str):
    table = DeltaTable(path)
    return table.version(), sorted(table.file_uris())


@pytest.fixture(scope="module")
def sql_warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("prop") / "wh"
    rows = pa.table({"exposure_id": ["a", "b"], "cvr": [0.1, 0.2], "model": ["dcmt"] * 2, "ds": [DS] * 2})
    write_deltalake(str(root / "scores" / "cvr"), rows, partition_by=["ds", "model"])
    return str(root)


@pytest.mark.reliability
@property_settings(60)
@given(words=st.lists(st.sampled_from(SQL_WORDS) | st.text(max_size=6), min_size=1, max_size=12))
def test_generated_sql_is_answered_or_refused_and_changes_nothing(sql_warehouse, words):
    statement = " ".join(words).replace("{wh}", sql_warehouse)
    before = _snapshot(os.path.join(sql_warehouse, "scores", "cvr"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["sql", statement, "--set", f"warehouse.path={sql_warehouse}"])
    assert code in (0, 2), (statement, err.getvalue()[-2000:])
    if code == 2:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        assert lines and lines[-1].startswith("liftlake sql: error: "), (statement, err.getvalue())
        assert "Traceback" not in err.getvalue()
    assert _snapshot(os.path.join(sql_warehouse, "scores", "cvr")) == before, statement
    assert sorted(os.listdir(sql_warehouse)) == ["scores"], statement
    assert not os.path.exists("/tmp/liftlake-prop-out"), statement


def _setting_keys(cls=Config, prefix="") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys += _setting_keys(hint, f"{prefix}{f.name}.")
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


SETTING_KEYS = _setting_keys() + ["model.params.embed_dim", "escim_labels.params.max_steps", "no_such.key"]
VALUES = (st.integers(-10**13, 10**13).map(str) | st.floats(allow_nan=True, allow_infinity=True).map(repr)
          | st.sampled_from([".inf", "-.inf", ".nan", "[]", "[1, x]", "{a: 1}", "null", "true", "''", "~",
                             "'../../etc'", "[1.0, .inf]", "local[2]", "2026-11-20", "!!python/object:os.system"])
          | st.text(max_size=12))


@pytest.mark.reliability
@property_settings(300)
@given(key=st.sampled_from(SETTING_KEYS), value=VALUES)
def test_any_setting_loads_or_is_refused_naming_it(key, value):
    try:
        load_config([], [f"{key}={value}"], env={}, check_model=key.startswith("model."))
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message, (key, value, message)


@st.composite
def raw_exposure(draw):
    """Mostly clean rows with one or more faults mixed in, so both sides of every rule are drawn."""
    fault = st.booleans().map(lambda b: b and draw(st.integers(0, 4)) == 0)  # about 1 in 10
    exposure_id = draw(st.none() | st.text(max_size=140)) if draw(fault) else draw(st.text("abcdef", min_size=1,
                                                                                              max_size=4))
    user_id = draw(st.sampled_from([None, 11, 12])) if draw(fault) else 10   # 11: NaN attribute, 12: unknown
    item_id = draw(st.sampled_from([None, 101])) if draw(fault) else 100
    seconds = draw(st.integers(-3600, 2 * 86400) if draw(fault) else st.integers(0, 86399))
    ts = None if draw(fault) else dt.datetime(2026, 11, 20) + dt.timedelta(seconds=seconds)
    position = draw(st.integers(-5, -1)) if draw(fault) else draw(st.none() | st.integers(0, 50))
    if ts is None or draw(fault):
        hour = draw(st.none() | st.integers(-2, 26))
    else:
        hour = draw(st.none() | st.just(ts.hour))
    return exposure_id, user_id, item_id, ts, position, hour


@pytest.mark.reliability
@property_settings(2)
@given(rows=st.lists(raw_exposure(), min_size=50, max_size=300))  # many rows, few Spark runs
def test_every_raw_exposure_is_kept_clean_or_quarantined(spark, rows):
    from liftlake.lib.features.cleaning import clean_attributes, clean_exposures

    exposures = spark.createDataFrame(rows, "exposure_id string, user_id long, item_id long, ts timestamp, "
                                            "position int, hour int")
    users = clean_attributes(spark.createDataFrame([(10, 0.5), (11, float("nan"))], "user_id long, u_income double"),
                             "raw.users", "user_id", DS, "prop", 128)
    items = clean_attributes(spark.createDataFrame([(100, 1.0)], "item_id long, i_price double"),
                             "raw.items", "item_id", DS, "prop", 128)
    cleaned = clean_exposures(exposures, users.good, items.good, DS, "prop", 128)
    good, rejected = cleaned.good.collect(), cleaned.rejected.collect()
    assert len(good) + len(rejected) == len(rows)
    assert all(r.rule for r in rejected)
    start = dt.datetime(2026, 11, 20)
    for r in good:
        assert r.exposure_id is not None and len(r.exposure_id) <= 128
        assert r.user_id == 10 and r.item_id == 100  # the only clean user and item
        assert start <= r.ts < start + dt.timedelta(days=1)
        assert r.position is None or r.position >= 0
        assert r.hour is None or r.hour == r.ts.hour
    assert len({r.exposure_id for r in good}) == len(good)
    assert good and rejected  # the strategy draws both
