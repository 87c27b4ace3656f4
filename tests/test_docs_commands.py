"""Every shell command of README.md and docs/*.md works as written (issue 21).

The fenced ```bash / sh / shell / console blocks are split into commands (backslash continuations
joined, comments and ``$ `` prompts dropped). Each command is

* RUN when it is cheap (``liftlake --help``, ``--version``, ``<job> --help``, ``models``, ``tables``,
  ``sql``, a simulate of at most 5 000 exposures, ``printf``): as written, through ``bash -c`` in the
  repository root, with the environment's bin first on PATH and LIFTLAKE_WAREHOUSE at a small
  warehouse of the documented day built once for this module;
* always CHECKED STATICALLY: the executable exists (the environment's ``liftlake`` / ``airflow`` /
  ``spark-submit``, a Makefile target, a ``python -m`` module), the repository paths it names exist,
  and its arguments parse with the real parser (every liftlake job's argparse parser, bench.run's,
  Airflow's CLI parser) without running anything;
* or skipped, only when it is on ALLOW_LIST with its reason.

Backticked ``liftlake ...`` spans of the prose are checked statically too, and every fenced ```sql
block runs through ``liftlake sql`` on the small warehouse (with empty score tables of the scorer's
schemas beside it).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh"}
# where `make setup` puts the environment; the running interpreter's bin when it is elsewhere
ENV_BIN = REPO / ".venv" / "bin" if (REPO / ".venv" / "bin").is_dir() else Path(sys.executable).parent
# top-level folders and files of the repository: a token starting with one of them is a repo path
REPO_TOP = ("airflow_dags", "bench", "conf", "docs", "jobs", "lib", "models", "reports", "tests", "tools",
            "Makefile", "constraints.txt", "delta-jars.txt", "pyproject.toml")
OUTPUT_FLAGS = {"--out", "-o", ">", ">>"}  # what follows is written: only its folder must exist
DAY = "2026-11-20"  # the day every documented example processes
TINY_EXPOSURES = 5000  # a documented simulate up to this size is run

# Commands not checked at all, each with its reason: (regex on the command text, reason). Empty today:
# every documented command is run or checked; an entry that matches no command fails the test.
ALLOW_LIST: list[tuple[str, str]] = []

SPARK_SUBMIT_OPTIONS = {"--master", "--deploy-mode", "--conf", "--jars", "--py-files", "--files", "--name",
                        "--driver-memory", "--executor-memory", "--executor-cores", "--num-executors",
                        "--total-executor-cores", "--packages", "--properties-file", "--queue", "--verbose"}


@dataclass
class Command:
    doc: str           # README.md, docs/airflow.md
    line: int          # 1-based line of the command's first line
    text: str          # the command as written (continuations joined, prompt dropped)
    inline: bool = False
    env: dict = field(default_factory=dict)
    argv: list = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


# ---------------------------------------------------------------------------------------- extraction

FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
INLINE = re.compile(r"`((?:\.venv/bin/)?liftlake [^`]+)`")


def extract_commands(markdown: str, doc: str) -> list[Command]:
    """The commands of the shell blocks, then the ``liftlake ...`` spans of the prose."""
    commands: list[Command] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            for span in INLINE.findall(lines[i]):
                if "<" not in span:  # `liftlake <job> --help`: a placeholder, covered by test_every_job_help
                    commands.append(_command(doc, i + 1, span, inline=True))
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        body, start = [], i + 2
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        if lang in SHELL_LANGS:
            commands += split_commands(body, start, doc, console=lang == "console")
    return commands


def split_commands(body: list[str], start: int, doc: str, console: bool = False) -> list[Command]:
    commands: list[Command] = []
    pending, first = "", 0
    for offset, raw in enumerate(body):
        line = raw.rstrip()
        if not pending:
            stripped = line.strip()
            if console or stripped.startswith("$ "):
                if not stripped.startswith("$ "):
                    continue  # a console block's output line
                stripped = stripped[2:]
            if not stripped or stripped.startswith("#"):
                continue
            line, first = stripped, start + offset
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        commands.append(_command(doc, first, (pending + line.strip()).strip()))
        pending = ""
    if pending:
        commands.append(_command(doc, first, pending.strip()))
    return commands


def _command(doc: str, line: int, text: str, inline: bool = False) -> Command:
    cmd = Command(doc=doc, line=line, text=text, inline=inline)
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as exc:
        cmd.argv = ["<unparsable>", str(exc)]
        return cmd
    while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        cmd.env[key] = value
    cmd.argv = tokens
    return cmd


def documented_commands() -> list[Command]:
    out = []
    for path in DOC_FILES:
        out += extract_commands(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    return out


# ------------------------------------------------------------------------------------ classification

def allow_listed(cmd: Command) -> str | None:
    for pattern, reason in ALLOW_LIST:
        if re.search(pattern, cmd.text):
            return reason
    return None


def program(cmd: Command) -> str:
    return os.path.basename(cmd.argv[0]) if cmd.argv else ""


def is_cheap(cmd: Command) -> bool:
    """Run as written: fast, writes nothing but the test's warehouse (or a tmp file)."""
    if not cmd.argv:
        return False
    if program(cmd) == "printf" and not cmd.inline:
        return True
    if program(cmd) != "liftlake":
        return False
    args = cmd.argv[1:]
    if cmd.inline:  # prose: run only what is a whole command line (`liftlake sql` names the job)
        return args[:1] in (["models"], ["tables"], ["--help"], ["--version"])
    if not args or args[0] in ("--help", "-h", "help", "--version", "-V") or "--help" in args or "-h" in args:
        return True
    if args[0] in ("models", "tables", "sql"):
        return True
    if args[0] == "simulate" and "--start" not in args:
        sets = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--set"]
        sizes = [int(s.split("=", 1)[1]) for s in sets if s.startswith("simulator.exposures=")]
        return bool(sizes) and max(sizes) <= TINY_EXPOSURES
    return False


# ---------------------------------------------------------------------------------- static checking

class _Parsed(Exception):
    pass


@contextlib.contextmanager
def _parse_only():
    """Every argparse parser parses, then stops the program: a job's body never runs."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        # a documented flag is spelled out: argparse's abbreviations (--mod for --model) are refused
        self.allow_abbrev = False
        original(self, args, namespace)
        raise _Parsed()

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop):
        yield


def parse_with(main, argv: list[str]) -> str | None:
    """None when ``main(argv)``'s parser accepts ``argv`` (or it printed help / the version), else its error."""
    out, err = io.StringIO(), io.StringIO()
    with _parse_only(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except _Parsed:
            return None
        except SystemExit as exc:
            rc = exc.code
    if rc in (0, None):
        return None
    lines = err.getvalue().strip().splitlines()
    errors = [line for line in lines if "error" in line] or lines[-1:]
    return (errors[0] if errors else "") + f" (exit {rc})"


def liftlake_error(argv: list[str]) -> str | None:
    from liftlake.lib.cli.main import main

    return parse_with(main, argv)


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.M))


def _env_bin_exists(name: str) -> bool:
    return (ENV_BIN / name).exists()


def _repo_path(token: str) -> str | None:
    token = token.replace("$PWD/", "").replace("${PWD}/", "")
    if token.startswith("./"):
        token = token[2:]
    head = token.split("/", 1)[0]
    if head in REPO_TOP and "*" not in token and "$" not in token:
        return token
    return None


def check_paths(cmd: Command) -> list[str]:
    problems = []
    values = list(cmd.env.values())
    if cmd.argv and cmd.argv[0] == "export":
        values += [a.partition("=")[2] for a in cmd.argv[1:]]
    tokens = [(None, v) for v in values] + list(zip([None, *cmd.argv], cmd.argv))
    for before, token in tokens:
        for part in token.split(":"):  # PATH-like values
            path = _repo_path(part)
            if path is None:
                continue
            target = REPO / path
            if before in OUTPUT_FLAGS:
                target = target.parent
            if not target.exists():
                problems.append(f"{path}: no such file or folder in the repository")
    for token in cmd.argv + list(cmd.env.values()) + [a.partition("=")[2] for a in cmd.argv if "=" in a]:
        if token.startswith("{"):
            try:
                json.loads(token)
            except ValueError as exc:
                problems.append(f"{token}: not JSON ({exc})")
    from liftlake import __version__

    for version in re.findall(r"liftlake-(\d+\.\d+\.\d+)", cmd.text):
        if version != __version__:
            problems.append(f"liftlake-{version}: the package version is {__version__}")
    return problems


def check_static(cmd: Command, airflow_errors: dict | None = None) -> list[str]:
    """What is wrong with the command without running it (an empty list: nothing)."""
    if not cmd.argv:
        return [f"no command in {cmd.text!r}"]
    if cmd.argv[0] == "<unparsable>":
        return [f"the shell cannot split it: {cmd.argv[1]}"]
    problems = check_paths(cmd)
    exe, name, args = cmd.argv[0], program(cmd), cmd.argv[1:]
    if exe.startswith((".venv/bin/", "$PWD/.venv/bin/")) and not _env_bin_exists(name):
        problems.append(f"{exe}: not in the environment ({ENV_BIN})")
    if name == "liftlake":
        if not _env_bin_exists("liftlake"):
            problems.append("the environment has no liftlake command")
        error = liftlake_error(args)
        if error and cmd.inline and "arguments are required" in error:
            error = None  # prose naming a job (`liftlake sql`), not a command line to type
        if error:
            problems.append(f"liftlake {' '.join(args)}: {error}")
    elif name == "make":
        targets = make_targets()
        for target in [a for a in args if not a.startswith("-") and "=" not in a] or ["<default>"]:
            if target != "<default>" and target not in targets:
                problems.append(f"make {target}: no such target in the Makefile ({', '.join(sorted(targets))})")
    elif name == "spark-submit":
        problems += check_spark_submit(cmd)
    elif name in ("python", "python3"):
        problems += check_python(cmd)
    elif name == "airflow":
        if airflow_errors is not None and airflow_errors.get(cmd.where):
            problems.append(f"airflow {' '.join(args)}: {airflow_errors[cmd.where]}")
    elif name in ("export", "printf"):
        pass  # paths only (above)
    else:
        problems.append(f"{name}: a program this test does not know how to check (extend it or ALLOW_LIST)")
    return problems


def check_spark_submit(cmd: Command) -> list[str]:
    problems = []
    exe, args = cmd.argv[0], cmd.argv[1:]
    path_first = cmd.env.get("PATH", "").split(":")[0]
    # spark-submit runs the python3 on PATH (driver and workers) and finds itself through PATH: even
    # .venv/bin/spark-submit fails without the environment's bin first on PATH
    if path_first not in ("$PWD/.venv/bin", "${PWD}/.venv/bin", str(ENV_BIN)):
        problems.append(f"{exe} must start the environment's python: prefix PATH=\"$PWD/.venv/bin:$PATH\"")
    if not _env_bin_exists("spark-submit"):
        problems.append("the environment has no spark-submit")
    scripts = [i for i, a in enumerate(args) if a.endswith(".py")]
    if not scripts:
        return problems + ["spark-submit without a jobs/<job>.py"]
    at = scripts[0]
    for option in [a for a in args[:at] if a.startswith("--")]:
        if option.split("=", 1)[0] not in SPARK_SUBMIT_OPTIONS:
            problems.append(f"spark-submit {option}: not an option this test knows (SPARK_SUBMIT_OPTIONS)")
    from liftlake.lib.cli.main import JOBS

    script = args[at]
    jobs = {f"jobs/{module}.py": job for job, (module, _) in JOBS.items()}
    if script not in jobs:
        return problems + [f"{script}: not a liftlake job's script ({', '.join(sorted(jobs))})"]
    error = liftlake_error([jobs[script], *args[at + 1:]])
    if error:
        problems.append(f"{script} {' '.join(args[at + 1:])}: {error}")
    return problems


def check_python(cmd: Command) -> list[str]:
    args = cmd.argv[1:]
    if len(args) < 2 or args[0] != "-m":
        return [f"python {' '.join(args)}: only `python -m MODULE` is checked"]
    module, rest = args[1], args[2:]
    if str(REPO) not in sys.path:  # `python -m bench.run` runs from the repository root
        sys.path.insert(0, str(REPO))
    if importlib.util.find_spec(module) is None:
        return [f"python -m {module}: no such module"]
    if module == "bench.run":
        from bench.run.cli import main

        error = parse_with(main, rest)
        return [f"python -m bench.run {' '.join(rest)}: {error}"] if error else []
    return []


AIRFLOW_PROBE = """
import contextlib, io, json, sys
from airflow.cli.cli_parser import get_parser
errors = {}
for where, argv in json.load(sys.stdin):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            get_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):
            errors[where] = (err.getvalue().strip().splitlines() or ['exit %s' % exc.code])[-1]
print(json.dumps(errors))
"""


def airflow_parse_errors(commands: list[Command], home: Path) -> dict:
    """{where: error} for the airflow commands, parsed by Airflow's own CLI parser (one process)."""
    todo = [(c.where, c.argv[1:]) for c in commands if c.argv and program(c) == "airflow"]
    if not todo:
        return {}
    if not _env_bin_exists("airflow"):
        return {where: "the environment has no airflow command (make setup installs the [airflow] extra)"
                for where, _ in todo}
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    proc = subprocess.run([str(ENV_BIN / "python"), "-c", AIRFLOW_PROBE], input=json.dumps(todo),
                          capture_output=True, text=True, env=env, cwd=str(home), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- tests

COMMANDS = documented_commands()
CHECKED = [c for c in COMMANDS if not allow_listed(c)]
RUN = [c for c in CHECKED if is_cheap(c)]


def summary() -> str:
    fenced = [c for c in COMMANDS if not c.inline]
    return (f"{len(fenced)} fenced + {len(COMMANDS) - len(fenced)} inline commands found, "
            f"{len(RUN)} run, {len(CHECKED)} checked statically, {len(COMMANDS) - len(CHECKED)} allow-listed")


@pytest.fixture(scope="module")
def airflow_errors(tmp_path_factory):
    return airflow_parse_errors(CHECKED, tmp_path_factory.mktemp("airflow_home"))


def test_the_docs_have_commands():
    print(summary())
    docs = {c.doc for c in COMMANDS if not c.inline}
    assert {"README.md", "docs/airflow.md"} <= docs, docs
    assert len(RUN) >= 4, summary()
    for pattern, reason in ALLOW_LIST:
        assert any(re.search(pattern, c.text) for c in COMMANDS), f"stale ALLOW_LIST entry {pattern!r} ({reason})"


@pytest.mark.parametrize("cmd", CHECKED, ids=[c.where for c in CHECKED])
def test_documented_command_is_valid(cmd, airflow_errors):
    problems = check_static(cmd, airflow_errors)
    assert not problems, f"{cmd.where}: {cmd.text}\n  " + "\n  ".join(problems)


@pytest.fixture(scope="module")
def small_warehouse(tmp_path_factory):
    """The documented day, simulated small and featurized, in one process (one JVM)."""
    root = tmp_path_factory.mktemp("docs_warehouse")
    conf = root / "small.yaml"
    conf.write_text("simulator:\n  exposures: 2000\nspark:\n  conf:\n    spark.sql.shuffle.partitions: \"2\"\n"
                    "    spark.ui.enabled: \"false\"\n    spark.driver.memory: \"1g\"\n", encoding="utf-8")
    warehouse = root / "warehouse"
    code = ("import sys\nfrom liftlake.lib.cli.main import main\n"
            f"args = ['--ds', {DAY!r}, '--conf', {str(conf)!r}]\n"
            "sys.exit(main(['simulate', *args]) or main(['build-features', *args]))\n")
    env = {**_run_env(warehouse), "LIFTLAKE_LOG_LEVEL": "WARNING"}
    proc = subprocess.run([str(ENV_BIN / "python"), "-c", code], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return warehouse


def _run_env(warehouse: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFTLAKE_")}
    env["PATH"] = f"{ENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["LIFTLAKE_WAREHOUSE"] = str(warehouse)
    env["PWD"] = str(REPO)  # the docs' $PWD is the repository root
    return env


@pytest.mark.slow
@pytest.mark.parametrize("cmd", RUN, ids=[c.where for c in RUN])
def test_cheap_documented_command_runs(cmd, small_warehouse):
    text = cmd.text
    if not (REPO / ".venv" / "bin").is_dir():  # the environment lives elsewhere
        text = text.replace(".venv/bin/", f"{ENV_BIN}/")
    proc = subprocess.run(["bash", "-c", text], capture_output=True, text=True, cwd=str(REPO),
                          env=_run_env(small_warehouse), timeout=300)
    assert proc.returncode == 0, f"{cmd.where}: {cmd.text}\nexit {proc.returncode}\n{proc.stderr[-2000:]}"
    if program(cmd) == "liftlake" and cmd.argv[1:2] in (["sql"], ["tables"]):
        assert proc.stdout.strip(), f"{cmd.where}: {cmd.text} printed nothing"


SPARK_SUBMITS = [c for c in CHECKED if program(c) == "spark-submit"]


@pytest.mark.slow
@pytest.mark.parametrize("cmd", SPARK_SUBMITS, ids=[c.where for c in SPARK_SUBMITS])
def test_documented_spark_submit_starts_the_job(cmd, tmp_path):
    """The documented spark-submit line, its job's arguments replaced by --help: spark-submit starts the
    python its PATH gives, which must import liftlake (the system python3 cannot)."""
    text = re.sub(r"(jobs/[\w-]+\.py)\s.*$", r"\1 --help", cmd.text)
    env = _run_env(tmp_path / "warehouse")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != str(ENV_BIN))  # as a user has it
    proc = subprocess.run(["bash", "-c", text], capture_output=True, text=True, cwd=str(REPO), env=env, timeout=300)
    assert proc.returncode == 0 and "usage: liftlake" in proc.stdout, f"{text}\n{proc.stderr[-2000:]}"


def _job_names():
    from liftlake.lib.cli.main import JOBS

    return list(JOBS)


@pytest.mark.parametrize("job", _job_names())
def test_every_job_help(job, capsys):
    """`liftlake <job> --help` (README: "for its arguments") prints the job's usage for every job."""
    from liftlake.lib.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main([job, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: liftlake {job}"), out[:300]


def sql_blocks() -> list[tuple[str, int, str]]:
    """(doc, line, query) for every fenced ```sql block of README.md and docs/*.md."""
    found = []
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^```sql[ \t]*\n(.*?)^```", text, flags=re.S | re.M):
            found.append((str(path.relative_to(REPO)), text.count("\n", 0, match.start()) + 1, match.group(1)))
    return found


SQL_BLOCKS = sql_blocks()


@pytest.fixture(scope="module")
def warehouse_with_score_tables(small_warehouse, tmp_path_factory):
    """The small warehouse plus empty scores.cvr / scores.uplift_user with the scorer's own schemas
    (training and scoring a model here would take minutes; the blocks' tables and columns are what
    can drift)."""
    import shutil

    from deltalake import write_deltalake
    from pyspark.sql.pandas.types import to_arrow_schema

    from liftlake.lib.scoring.scorer import CVR_SCHEMA, uplift_schema

    root = tmp_path_factory.mktemp("docs_sql") / "warehouse"
    shutil.copytree(small_warehouse, root)
    for table, schema in (("cvr", CVR_SCHEMA), ("uplift_user", uplift_schema(2, 2))):
        arrow = to_arrow_schema(schema)
        write_deltalake(str(root / "scores" / table), arrow.empty_table(), partition_by=["ds", "model"])
    return root


def test_the_docs_have_sql_blocks():
    assert len(SQL_BLOCKS) >= 4 and {doc for doc, _, _ in SQL_BLOCKS} >= {"docs/tables.md"}


@pytest.mark.slow
@pytest.mark.parametrize("doc, line, query", SQL_BLOCKS, ids=[f"{d}:{n}" for d, n, _ in SQL_BLOCKS])
def test_documented_sql_runs_on_the_platforms_tables(doc, line, query, warehouse_with_score_tables):
    """Each ```sql block of the docs, through `liftlake sql` as an analyst pastes it: its tables and
    columns exist with these names (exit 0), whatever rows the small warehouse holds."""
    proc = subprocess.run([str(ENV_BIN / "liftlake"), "sql", query], capture_output=True, text=True,
                          cwd=str(REPO), env=_run_env(warehouse_with_score_tables), timeout=300)
    assert proc.returncode == 0, f"{doc}:{line}\n{query}\nexit {proc.returncode}\n{proc.stderr[-2000:]}"


# statements the endpoint must refuse (each a kind of write the read-only rule names), and the word of
# the refusal a JDBC client shows
SQL_SERVER_HOSTILE = [
    ("insert into scores.cvr select * from scores.cvr", "InsertIntoStatement"),
    ("drop table features.samples", "DropTable"),
    ("vacuum features.samples retain 0 hours", "VacuumTableCommand"),
    ("create table default.stolen as select * from features.samples", "CreateTableAsSelect"),
    ("select * from parquet.`/etc`", "not a table of the warehouse"),
    ("select java_method('java.lang.System', 'exit', 1)", "no JVM reflection"),
]


def _beeline(port: int, script: Path, force: bool = False) -> subprocess.CompletedProcess:
    """The HiveServer2 client that ships with pyspark's jars (Hive's beeline), one connection running
    the statements of ``script`` in order; CSV results, each with its header."""
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    argv = ["java", "-cp", f"{jars}/*", "org.apache.hive.beeline.BeeLine", "-u",
            f"jdbc:hive2://127.0.0.1:{port}/default", "--silent=true", "--outputformat=csv2",
            "--showHeader=true", f"--force={str(force).lower()}", "-f", str(script)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sql_server_answers_the_documented_sql_over_jdbc_and_refuses_writes(warehouse_with_score_tables, tmp_path):
    """`liftlake sql-server` on a loopback port: a real HiveServer2 client runs every ```sql block of
    the docs, a time-travel query and the catalog's SHOW / DESCRIBE; writes, DDL, file sources and
    reflection are refused with the rule, and the tables are as they were; SIGTERM stops the server."""
    import socket

    from deltalake import DeltaTable

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    samples = DeltaTable(str(warehouse_with_score_tables / "features" / "samples"))
    before = (samples.version(), sorted(samples.file_uris()))
    log = (tmp_path / "server.log").open("w+")
    started_in = tmp_path / "cwd"
    started_in.mkdir()
    server = subprocess.Popen([str(ENV_BIN / "liftlake"), "sql-server", "--set", f"sql_server.port={port}"],
                              stdout=subprocess.PIPE, stderr=log, text=True, cwd=str(started_in),
                              env=_run_env(warehouse_with_score_tables))
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()  # printed once the server listens (or empty: it exited)
        log.seek(0)
        assert f"listening on jdbc:hive2://127.0.0.1:{port}/default" in banner, log.read()[-3000:]
        queries = [q.strip().rstrip(";") for _, _, q in SQL_BLOCKS]
        queries += ["select count(*) as n_v0 from features.samples VERSION AS OF 0",
                    "show tables in scores", "describe table extended scores.cvr"]
        script = tmp_path / "queries.sql"
        script.write_text("".join(f"{q};\n" for q in queries), encoding="utf-8")
        proc = _beeline(port, script)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        adds = DeltaTable(str(warehouse_with_score_tables / "features" / "samples"), version=0).get_add_actions()
        n_rows = sum(adds.column("num_records").to_pylist())  # the Delta log's count of version 0
        out = proc.stdout
        assert f"n_v0\n{n_rows}\n" in out and "scores,cvr,false" in out and "scores,uplift_user,false" in out, out
        assert "user_id,unit_uplift,p0,coupon_value,expected_gain" in out, out  # the first block's header

        hostile = tmp_path / "hostile.sql"
        hostile.write_text("".join(f"{q};\n" for q, _ in SQL_SERVER_HOSTILE), encoding="utf-8")
        proc = _beeline(port, hostile, force=True)
        refusals = [line for line in (proc.stdout + proc.stderr).splitlines()  # beeline's one line per error
                    if line.startswith("Error:") and "SecurityException: sql:" in line]
        assert len(refusals) == len(SQL_SERVER_HOSTILE), proc.stderr[-3000:]
        for (query, rule), line in zip(SQL_SERVER_HOSTILE, refusals):
            assert rule in line, (query, line)
    finally:
        server.terminate()
        server.wait(timeout=120)
    assert server.returncode == 0 and "sql-server: stopped" in (server.stdout.read() if server.stdout else "")
    samples = DeltaTable(str(warehouse_with_score_tables / "features" / "samples"))
    assert (samples.version(), sorted(samples.file_uris())) == before
    assert not (warehouse_with_score_tables / "default").exists()
    assert list(started_in.iterdir()) == []  # no spark-warehouse/ or derby.log where it was started


MODEL_JOBS = {"train", "evaluate", "score", "models", "promote", "rollback"}
JSON_JOBS = {"train", "evaluate", "tables", "models", "sql"}


@pytest.mark.parametrize("job", _job_names())
def test_a_jobs_help_lists_model_and_json_only_where_the_job_uses_them(job, capsys):
    """--model (one model's name) and --json (JSON lines) exist on the jobs that read them; elsewhere
    argparse refuses them (exit 2) instead of ignoring them."""
    from liftlake.lib.cli.main import main

    with pytest.raises(SystemExit):
        main([job, "--help"])
    out = capsys.readouterr().out
    assert ("--model MODEL" in out) == (job in MODEL_JOBS), out
    assert ("--json" in out) == (job in JSON_JOBS), out
    if job not in MODEL_JOBS:
        with pytest.raises(SystemExit) as exc:
            main([job, "--model", "dcmt"])
        assert exc.value.code == 2 and "unrecognized arguments: --model" in capsys.readouterr().err


# --------------------------------------------------------------------------- the checker can fail

FAKE_DOC = """
Some prose with `liftlake tables --json` and `liftlake tabels`.

```bash
liftlake simulate --ds 2026-11-20 --set simulator.exposures=1000   # fine
liftlake simulate --ds 2026-11-20 --sett simulator.exposures=1000
liftlake simulat --ds 2026-11-20
liftlake train --ds 2026-11-20 \\
    --model dcmt --epoch 2
make tset
PATH="$PWD/.venv/bin:$PATH" spark-submit --master 'local[2]' jobs/score.py --ds 2026-11-20 --model dcmt
spark-submit jobs/score.py --ds 2026-11-20
.venv/bin/spark-submit jobs/score.py --ds 2026-11-20
PATH="$PWD/.venv/bin:$PATH" spark-submit jobs/scor.py --ds 2026-11-20
.venv/bin/python -m bench.run --size 1000
.venv/bin/python -m pytest -q tests/no_such_folder
.venv/bin/liftlake report --conf conf/nope.yaml
```

```console
$ liftlake --version
liftlake 0.1.0
```

```python
liftlake --not-shell
```
"""


def test_checker_extracts_and_catches_typos():
    cmds = extract_commands(FAKE_DOC, "fake.md")
    texts = [c.text for c in cmds]
    assert "liftlake tables --json" in texts and "liftlake tabels" in texts  # inline spans
    assert "liftlake train --ds 2026-11-20 --model dcmt --epoch 2" in texts  # continuation joined
    assert "liftlake --version" in texts and "liftlake 0.1.0" not in texts  # console prompt / output
    assert not any("--not-shell" in t for t in texts)  # not a shell block
    by_text = {c.text: c for c in cmds}
    assert by_text["liftlake train --ds 2026-11-20 --model dcmt --epoch 2"].line == 8
    good = ["liftlake tables --json",
            "liftlake simulate --ds 2026-11-20 --set simulator.exposures=1000   # fine",
            "PATH=\"$PWD/.venv/bin:$PATH\" spark-submit --master 'local[2]' jobs/score.py --ds 2026-11-20 --model dcmt",
            "liftlake --version"]
    for text in good:
        assert check_static(by_text[text]) == [], text
    bad = {"liftlake tabels": "unknown job",
           "liftlake simulate --ds 2026-11-20 --sett simulator.exposures=1000": "unrecognized arguments",
           "liftlake simulat --ds 2026-11-20": "unknown job",
           "liftlake train --ds 2026-11-20 --model dcmt --epoch 2": "unrecognized arguments",
           "make tset": "no such target",
           "spark-submit jobs/score.py --ds 2026-11-20": "environment's python",
           ".venv/bin/spark-submit jobs/score.py --ds 2026-11-20": "environment's python",
           "PATH=\"$PWD/.venv/bin:$PATH\" spark-submit jobs/scor.py --ds 2026-11-20": "no such file",
           ".venv/bin/python -m bench.run --size 1000": "unrecognized arguments",
           ".venv/bin/python -m pytest -q tests/no_such_folder": "no such file",
           ".venv/bin/liftlake report --conf conf/nope.yaml": "no such file"}
    for text, expected in bad.items():
        problems = check_static(by_text[text])
        assert any(expected in p for p in problems), (text, problems)
    assert is_cheap(by_text["liftlake simulate --ds 2026-11-20 --set simulator.exposures=1000   # fine"])
    assert not is_cheap(by_text["liftlake train --ds 2026-11-20 --model dcmt --epoch 2"])
