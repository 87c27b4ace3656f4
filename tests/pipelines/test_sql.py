"""`liftlake sql` is read-only: hostile statements exit 2 naming the rule, and no table changes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from liftlake.lib.cli.main import main

DS = "2026-11-20"

# (statement, a word of the rule the refusal names on the duckdb engine, and on the spark engine;
# None: Spark's dialect reads it as a query and answers, changing nothing)
HOSTILE = [
    ("INSERT OVERWRITE DIRECTORY '{wh}/scores/cvr' USING parquet SELECT 1 AS a", "cannot parse", "read-only"),
    ("select * from read_csv('/etc/passwd')", "file system operations are disabled", "read-only"),
    ("select * from read_text('/etc/passwd')", "file system operations are disabled", "read-only"),
    ("copy (select * from scores.cvr) to '/tmp/liftlake-stolen.csv'", "read-only", "cannot parse"),
    ("create table t as select * from scores.cvr", "read-only", "read-only"),
    ("drop view scores.cvr", "read-only", "read-only"),
    ("attach '/tmp/liftlake-x.db' as x", "read-only", "cannot parse"),
    ("install httpfs", "read-only", "cannot parse"),
    ("set enable_external_access = true", "read-only", "read-only"),
    ("select 1; select 2", "exactly one", "cannot parse"),
    ("select * from scores.cvr where", "cannot parse", None),  # Spark: `where` is the table's alias
    ("delete from scores.cvr", "read-only", "read-only"),
    ("update scores.cvr set cvr = 1", "read-only", "read-only"),
    ("pragma version", "read-only", "cannot parse"),
    ("select * from delta.`{wh}/scores/cvr`", "does not exist", "not a table of the warehouse"),
    ("vacuum scores.cvr retain 0 hours", "cannot parse", "read-only"),
    ("restore table scores.cvr to version as of 0", "cannot parse", "read-only"),
    ("explain insert into scores.cvr select 'x', 1.0, 'm', 'd'", "not an table", "read-only"),  # DuckDB: a view
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
@pytest.mark.parametrize("engine", ["duckdb", "spark"])
@pytest.mark.parametrize("statement, duckdb_rule, spark_rule", HOSTILE)
def test_a_hostile_statement_exits_2_naming_the_rule_and_changes_nothing(request, capsys, wh, statement, duckdb_rule,
                                                                        spark_rule, engine):
    if engine == "spark":
        request.getfixturevalue("spark")  # the test session (with the Delta jars), not a JVM of the job's own
    rule = duckdb_rule if engine == "duckdb" else spark_rule
    before = _snapshot(wh)
    code, out, err = _run(capsys, wh, statement.format(wh=wh), "--engine", engine)
    if rule is None:
        assert code == 0, err
    else:
        assert code == 2, (out, err)
        lines = [line for line in err.splitlines() if line.startswith("liftlake sql: error:")]
        assert len(lines) == 1 and rule.lower() in lines[0].lower(), err
    assert "Traceback" not in err
    assert _snapshot(wh) == before
    assert sorted(os.listdir(wh)) == ["scores"] and sorted(os.listdir(os.path.join(wh, "scores"))) == ["cvr"]
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
    "select * from delta.`/tmp/wh/scores/cvr`",
    "select * from spark_catalog.scores.cvr",
    "select * from delta.`/tmp/wh/scores/cvr` version as of 0",
    "select * from text.`/etc/passwd` timestamp as of '2020-01-01'",
    "select * from scores.cvr version as of 0 join raw.events version as of 1",
    "explain select * from text.`/etc/passwd`",
    "explain insert into scores.cvr select 1",
    "show tables", "show tables in default", "show databases", "show functions",
    "describe delta.`/tmp/wh/scores/cvr`", "describe history '/tmp/wh/scores/cvr'", "describe detail raw.events",
    "show create table scores.cvr", "describe database scores",
    "vacuum scores.cvr", "optimize scores.cvr", "restore table scores.cvr to version as of 0",
    "convert to delta parquet.`/tmp/wh`", "generate symlink_format_manifest for table scores.cvr",
    "refresh table scores.cvr", "msck repair table scores.cvr", "analyze table scores.cvr compute statistics",
])
def test_the_spark_engine_refuses_what_is_not_a_query_over_platform_tables(spark, statement):
    from liftlake.lib.storage.readonly_sql import SqlRefused, check_spark_query

    with pytest.raises(SqlRefused):
        check_spark_query(spark, statement, {"scores.cvr"})


def test_the_spark_engine_accepts_queries_over_platform_tables(spark):
    from liftlake.lib.storage.readonly_sql import check_spark_query

    known = {"scores.cvr", "scores.uplift_user", "sim.truth"}
    for query, kind, tables in [
        ("select model, count(*) from scores.cvr group by model", "Aggregate", {"scores.cvr"}),
        ("with a as (select * from scores.cvr) select * from a where cvr > (select avg(cvr) from sim.truth)",
         "UnresolvedWith", {"scores.cvr", "sim.truth"}),
        ("select * from scores.cvr c join scores.cvr d on c.exposure_id = d.exposure_id limit 3", "GlobalLimit",
         {"scores.cvr"}),
        ("select * from `Scores`.`CVR` version as of 0", "Project", {"scores.cvr"}),
        ("explain extended select * from scores.cvr", "ExplainCommand", {"scores.cvr"}),
        ("show tables in scores", "ShowTables", {"scores.cvr", "scores.uplift_user"}),
        ("describe table extended scores.cvr", "DescribeRelation", {"scores.cvr"}),
        ("describe sim.truth ds", "DescribeColumn", {"sim.truth"}),
        ("show columns in scores.cvr", "ShowColumns", {"scores.cvr"}),
        ("describe history scores.cvr", "DescribeDeltaHistory", {"scores.cvr"}),
    ]:
        statement = check_spark_query(spark, query, known)
        assert (statement.kind, set(statement.tables)) == (kind, tables), query


SPARK_AND_DUCKDB_QUERIES = [
    "select model, count(*) as n, round(sum(cvr), 6) as total from scores.cvr group by model order by model",
    "select exposure_id, cvr from scores.cvr where cvr > 0.15 order by exposure_id",
    "with a as (select exposure_id, max(cvr) as m from scores.cvr group by exposure_id) "
    "select count(*) as n from a where m >= (select avg(cvr) from scores.cvr)",
    # what the regex rewrite broke: backticks, a quote in a comment, a literal that reads like a table
    "select count(*) as n from `scores`.`cvr`",
    "select count(*) as n -- it's the table\nfrom scores.cvr",
    "select 'scores.cvr' as name, count(*) as n from scores.cvr where exposure_id <> 'scores.cvr'",
]


@pytest.mark.parametrize("query", SPARK_AND_DUCKDB_QUERIES)
def test_the_spark_engine_answers_what_the_duckdb_engine_answers(spark, capsys, wh, query):
    answers = {}
    for engine in ("duckdb", "spark"):
        code, out, err = _run(capsys, wh, query, "--json", "--engine", engine)
        assert code == 0, (engine, err)
        answers[engine] = [json.loads(line) for line in out.splitlines()]
    assert answers["spark"] == answers["duckdb"] and answers["spark"]


def test_the_spark_engine_reads_tables_through_the_catalog(spark, capsys, wh):
    code, out, err = _run(capsys, wh, "select count(*) as n from `scores`.`cvr`", "--json", "--engine", "spark")
    assert code == 0 and json.loads(out) == {"n": 4}, err
    code, out, err = _run(capsys, wh, "select count(*) as n -- it's\nfrom scores.cvr", "--json", "--engine", "spark")
    assert code == 0 and json.loads(out) == {"n": 4}, err
    # the table is the catalog's own, an external Delta table at the warehouse's folder
    table = spark.catalog.getTable("scores.cvr")
    assert (table.tableType, table.isTemporary) == ("EXTERNAL", False)
    assert spark.sql("describe detail scores.cvr").first().location.endswith(os.path.join(wh, "scores", "cvr"))
    code, out, err = _run(capsys, wh, "show tables in scores", "--json", "--engine", "spark")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == [
        {"namespace": "scores", "tableName": "cvr", "isTemporary": False}], err
    code, out, err = _run(capsys, wh, "describe scores.cvr", "--json", "--engine", "spark")
    assert code == 0, err
    described = [json.loads(line) for line in out.splitlines()]
    assert [(d["col_name"], d["data_type"]) for d in described[:4]] == [
        ("exposure_id", "string"), ("cvr", "double"), ("model", "string"), ("ds", "string")]
    code, out, err = _run(capsys, wh, "describe history scores.cvr", "--json", "--engine", "spark")
    assert code == 0 and [json.loads(line)["version"] for line in out.splitlines()] == [1, 0], err
    code, out, err = _run(capsys, wh, "explain select * from scores.cvr", "--json", "--engine", "spark")
    assert code == 0 and "spark_catalog.scores.cvr" in json.loads(out)["plan"], err
    assert _snapshot(wh)[0] == 1  # registering made no commit


def test_the_spark_engine_time_travels_with_version_as_of(spark, capsys, wh):
    code, out, err = _run(capsys, wh, "select count(*) as n from scores.cvr version as of 0", "--json",
                          "--engine", "spark")
    assert code == 0 and json.loads(out) == {"n": 3}, err
    code, _, err = _run(capsys, wh, "select count(*) from scores.cvr version as of 7", "--engine", "spark")
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        "liftlake sql: error: sql: Cannot time travel Delta table to version 7. Available versions: [0, 1]."]
    code, _, err = _run(capsys, wh, "select 1", "--as-of", "0", "--engine", "spark")
    assert code == 2 and "VERSION AS OF" in err
    code, _, err = _run(capsys, wh, "select nope from scores.cvr", "--engine", "spark")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "UNRESOLVED_COLUMN" in lines[0], err


def test_the_spark_catalog_follows_the_warehouse_of_each_run(spark, capsys, tmp_path):
    # one long-lived session, two warehouses (one with a quote in its path): each run reads its own
    counts = {}
    for name, n in (("one", 2), ("it's two", 5)):
        root = str(tmp_path / name)
        write_deltalake(os.path.join(root, "scores", "cvr"), pa.table({
            "exposure_id": [str(i) for i in range(n)], "cvr": [0.5] * n, "model": ["dcmt"] * n, "ds": [DS] * n}),
            partition_by=["ds", "model"])
        code, out, err = _run(capsys, root, "select count(*) as n from scores.cvr", "--json", "--engine", "spark")
        assert code == 0, err
        counts[name] = json.loads(out)["n"]
    assert counts == {"one": 2, "it's two": 5}


def test_the_spark_engine_without_the_delta_jars_exits_2_in_one_line(tmp_path):
    empty = tmp_path / "no-jars"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("LIFTLAKE_DELTA_SPARK", "PYSPARK_GATEWAY_PORT")}
    env["LIFTLAKE_DELTA_JARS"] = str(empty)
    done = subprocess.run([sys.executable, "-m", "liftlake.lib.cli.main", "sql", "select 1", "--engine", "spark",
                           "--set", f"warehouse.path={tmp_path / 'wh'}"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        f"liftlake sql: error: --engine spark reads the warehouse's tables as Delta tables of Spark's catalog and "
        f"needs the Delta jars: none in {empty} (run `make setup` to fetch them)"]


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


@pytest.mark.parametrize("backend, env, on_request, asked", [
    ("auto", {}, True, True),  # liftlake loads the jars on request: the store stays delta-rs (DELTA_ON_REQUEST)
    ("auto", {}, False, None),
    ("auto", {"LIFTLAKE_DELTA_SPARK": "1"}, True, None),  # the owner's choice, left as it is
    ("auto", {"PYSPARK_GATEWAY_PORT": "1"}, True, None),  # spark-submit's --jars decide
    ("delta-rs", {}, True, True),
    ("delta-rs", {}, False, False),
    ("delta-spark", {}, True, True),
])
def test_a_job_asks_for_the_delta_jars_without_changing_the_backend_rule(monkeypatch, backend, env, on_request,
                                                                          asked):
    import argparse

    import liftlake.lib.storage.spark as spark_module
    from liftlake.lib.cli.runner import JobContext
    from liftlake.lib.config import load_config

    for key in ("LIFTLAKE_DELTA_SPARK", "PYSPARK_GATEWAY_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    calls = []

    class FakeSession:
        sparkContext = type("SC", (), {"setLogLevel": lambda self, level: None})()

    monkeypatch.setattr(spark_module, "build_session", lambda *a, **kw: calls.append(kw["delta_jars"]) or FakeSession())
    ctx = JobContext(name="sql", config=load_config([], [f"warehouse.backend={backend}"]), args=argparse.Namespace())
    ctx.delta_jars_on_request = on_request
    assert isinstance(ctx.spark, FakeSession) and calls == [asked]


def _second_table(wh):
    write_deltalake(os.path.join(wh, "ops", "notes"), pa.table({"note": ["kept"], "ds": [DS]}), partition_by=["ds"])


def _liftlake(capsys, wh, *args):
    code = main([*args, "--set", f"warehouse.path={wh}"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.reliability
def test_a_truncated_delta_log_entry_names_its_table_and_the_other_tables_stay_readable(capsys, wh):
    _second_table(wh)
    entry = os.path.join(wh, "scores", "cvr", "_delta_log", "00000000000000000001.json")
    with open(entry, "rb") as f:
        text = f.read()
    with open(entry, "wb") as f:
        f.write(text[: len(text) // 2])  # a commit cut off mid-line (disk full, a copy stopped half-way)
    code, out, err = _liftlake(capsys, wh, "tables")
    assert code == 2 and out.split()[0] == "ops.notes"  # the readable table is still listed
    assert len(err.strip().splitlines()) == 1 and "table scores.cvr: cannot read its Delta log" in err
    code, out, err = _liftlake(capsys, wh, "sql", "select note from ops.notes", "--json")
    assert code == 0 and json.loads(out) == {"note": "kept"}, err
    code, out, err = _liftlake(capsys, wh, "sql", "select count(*) from scores.cvr")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "table scores.cvr: cannot read its Delta log" in err


@pytest.mark.reliability
def test_a_deleted_data_file_names_its_table_and_the_missing_file(capsys, wh):
    _second_table(wh)
    table_dir = os.path.join(wh, "scores", "cvr")
    files = sorted(uri[len("file://"):] if uri.startswith("file://") else uri
                   for uri in DeltaTable(table_dir).file_uris())
    os.remove(files[0])
    code, out, err = _liftlake(capsys, wh, "sql", "select count(*) as n from scores.cvr")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "table scores.cvr: its snapshot is incomplete" in err and os.path.basename(files[0]) in err
    code, out, err = _liftlake(capsys, wh, "sql", "select count(*) as n from ops.notes", "--json")
    assert code == 0 and json.loads(out) == {"n": 1}, err


@pytest.mark.reliability
@pytest.mark.parametrize("args", [["tables"], ["sql", "select 1"], ["repair"]])
def test_a_warehouse_path_that_is_a_file_exits_2_naming_it(capsys, tmp_path, args):
    not_a_folder = tmp_path / "warehouse"
    not_a_folder.write_text("a file where the warehouse should be\n")
    code, out, err = _liftlake(capsys, str(not_a_folder), *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"warehouse {not_a_folder}: is a file" in err
    assert not_a_folder.read_text() == "a file where the warehouse should be\n"


def test_sql_server_refuses_a_busy_port_and_a_non_loopback_host(capsys, wh):
    """Before any JVM starts: a port another process holds, or a host beyond loopback (the endpoint has
    no authentication), exits 2 naming the setting."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        code = main(["sql-server", "--set", f"warehouse.path={wh}", "--set", f"sql_server.port={port}"])
        err = capsys.readouterr().err
        assert code == 2 and f"sql_server.port {port}: cannot listen on 127.0.0.1" in err, err
    code = main(["sql-server", "--set", f"warehouse.path={wh}", "--set", "sql_server.host=0.0.0.0"])
    err = capsys.readouterr().err
    assert code == 2 and "sql_server.host" in err and err.count("\n") == 1, err
