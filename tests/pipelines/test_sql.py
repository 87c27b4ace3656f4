"""`liftlake sql` is read-only: hostile statements exit 2 naming the rule, and no table changes."""
from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from liftlake.lib.cli.main import main

DS = "2026-11-20"

# (statement, a word of the rule the refusal names)
HOSTILE = [
    ("INSERT OVERWRITE DIRECTORY '{wh}/scores/cvr' USING parquet SELECT 1 AS a", "cannot parse"),
    ("select * from read_csv('/etc/passwd')", "file system operations are disabled"),
    ("select * from read_text('/etc/passwd')", "file system operations are disabled"),
    ("copy (select * from scores.cvr) to '/tmp/liftlake-stolen.csv'", "read-only"),
    ("create table t as select * from scores.cvr", "read-only"),
    ("drop view scores.cvr", "read-only"),
    ("attach '/tmp/liftlake-x.db' as x", "read-only"),
    ("install httpfs", "read-only"),
    ("set enable_external_access = true", "read-only"),
    ("select 1; select 2", "exactly one"),
    ("select * from scores.cvr where", "cannot parse"),
    ("delete from scores.cvr", "read-only"),
    ("update scores.cvr set cvr = 1", "read-only"),
    ("pragma version", "read-only"),
]


@pytest.fixture()
def wh(tmp_path):
    path = tmp_path / "wh"
    rows = pa.table({"exposure_id": ["a", "b", "c"], "cvr": [0.1, 0.2, 0.3], "model": ["dcmt"] * 3, "ds": [DS] * 3})
    write_deltalake(str(path / "scores" / "cvr"), rows, partition_by=["ds", "model"])
    write_deltalake(str(path / "scores" / "cvr"), rows.slice(0, 1), partition_by=["ds", "model"], mode="append")
    return str(path)


def _run(capsys, wh, *args):
    code = main(["sql", *args, "--set", f"warehouse.path={wh}"])
    out, err = capsys.readouterr()
    return code, out, err


def _snapshot(wh):
    table = DeltaTable(os.path.join(wh, "scores", "cvr"))
    return table.version(), sorted(table.file_uris())


def test_a_query_answers_with_json_rows_and_time_travel(capsys, wh):
    code, out, _ = _run(capsys, wh, "select ds, model, count(*) as n from scores.cvr group by ds, model", "--json")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == [{"ds": DS, "model": "dcmt", "n": 4}]
    code, out, _ = _run(capsys, wh, "select count(*) as n from scores.cvr", "--json", "--as-of", "0")
    assert code == 0 and json.loads(out) == {"n": 3}
    code, out, _ = _run(capsys, wh, "select count(*) as n from scores.cvr", "--json", "--as-of", "scores.cvr=1")
    assert code == 0 and json.loads(out) == {"n": 4}
    code, out, _ = _run(capsys, wh, "describe scores.cvr", "--json")
    assert code == 0 and {json.loads(line)["column_name"] for line in out.splitlines()} == {"exposure_id", "cvr",
                                                                                           "ds", "model"}


@pytest.mark.parametrize("where, n", [
    ("exposure_id = 'b'", 1), ("cvr > 0.15", 2), ("cvr is not null and model <> 'x'", 4),
    (f"ds = '{DS}' and model in ('dcmt')", 4), ("exposure_id like 'a%'", 2),
])
def test_filters_on_every_column_type_answer(capsys, wh, where, n):
    # DuckDB pushes each filter into the pyarrow scan (the quickstart's own query once failed there)
    code, out, err = _run(capsys, wh, f"select count(*) as n from scores.cvr where {where}", "--json")
    assert code == 0, err
    assert json.loads(out) == {"n": n}


@pytest.mark.reliability
@pytest.mark.parametrize("statement, rule", HOSTILE)
def test_a_hostile_statement_exits_2_naming_the_rule_and_changes_nothing(capsys, wh, statement, rule):
    before = _snapshot(wh)
    code, out, err = _run(capsys, wh, statement.format(wh=wh))
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.startswith("liftlake sql: error:")]
    assert len(lines) == 1 and rule.lower() in lines[0].lower(), err
    assert "Traceback" not in err
    assert _snapshot(wh) == before
    assert not os.path.exists("/tmp/liftlake-stolen.csv") and not os.path.exists("/tmp/liftlake-x.db")


@pytest.mark.reliability
def test_limit_and_version_bounds_exit_2(capsys, wh):
    code, _, err = _run(capsys, wh, "select 1", "--limit", "100000000")
    assert code == 2 and "sql.max_rows" in err
    code, _, err = _run(capsys, wh, "select count(*) from scores.cvr", "--as-of", "7")
    assert code == 2 and "cannot read version 7" in err
    code, _, err = _run(capsys, wh, "select 1", "--as-of", "raw.nothing=1")
    assert code == 2 and "not tables of the warehouse" in err


@pytest.mark.reliability
@pytest.mark.parametrize("statement", [
    "INSERT OVERWRITE DIRECTORY '/tmp/liftlake-x' USING csv SELECT 1",
    "select * from text.`/etc/passwd`",
    "select java_method('java.lang.System', 'getenv', 'HOME')",
    "select reflect('java.lang.System', 'exit', 0)",
    "create table t as select 1",
    "set spark.sql.shuffle.partitions=1",
    "add file '/etc/passwd'",
    "select * from parquet.`/tmp`",
    "cache table scores.cvr",
    "select * from range(10)",
    "with a as (select * from text.`/etc/passwd`) select * from a",
    "select * from scores.cvr where cvr > (select max(x) from csv.`/etc/passwd`)",
])
def test_the_spark_engine_refuses_what_is_not_a_query_over_platform_tables(spark, statement):
    from liftlake.lib.storage.readonly_sql import SqlRefused, check_spark_query

    with pytest.raises(SqlRefused):
        check_spark_query(spark, statement, {"scores.cvr"})


def test_the_spark_engine_accepts_queries_over_platform_tables(spark):
    from liftlake.lib.storage.readonly_sql import check_spark_query

    for query in ("select model, count(*) from scores.cvr group by model",
                  "with a as (select * from scores.cvr) select * from a where cvr > (select avg(cvr) from scores.cvr)",
                  "select * from scores.cvr c join scores.cvr d on c.exposure_id = d.exposure_id limit 3"):
        check_spark_query(spark, query, {"scores.cvr"})


def test_the_quickstarts_showcase_queries_run_on_its_tables(tmp_path):
    from liftlake.lib.pipelines.quickstart import SHOWCASE_QUERIES
    from liftlake.lib.storage.readonly_sql import duckdb_query

    wh = tmp_path / "wh"
    write_deltalake(str(wh / "scores" / "cvr"), pa.table({
        "exposure_id": ["a", "b"], "cvr": [0.1, 0.3], "version": ["v0001"] * 2, "model": ["dcmt"] * 2,
        "ds": [DS] * 2}), partition_by=["ds", "model"])
    write_deltalake(str(wh / "sim" / "truth"), pa.table({
        "exposure_id": ["a", "b"], "cvr_do_click_true": [0.05, 0.15], "ds": [DS] * 2}), partition_by=["ds"])
    write_deltalake(str(wh / "scores" / "uplift_user"), pa.table({
        "user_id": [1, 2, 3], "coupon_value": [5.0, 5.0, 10.0], "unit_uplift": [0.01, None, 0.03],
        "expected_gain": [0.5, None, 1.5], "model": ["unimvt"] * 3, "ds": [DS] * 3}), partition_by=["ds", "model"])
    cvr, uplift = (duckdb_query(str(wh), q, limit=20) for q in SHOWCASE_QUERIES)
    assert cvr == (["ds", "model", "version", "exposures", "mean_cvr_pred", "mean_cvr_true"],
                   [(DS, "dcmt", "v0001", 2, 0.2, 0.1)])
    assert uplift[1] == [("unimvt", 5.0, 1, 0.01, 0.5), ("unimvt", 10.0, 1, 0.03, 1.5)]
