"""The body of ``liftlake sql-server``: Spark's Thrift JDBC/ODBC server (HiveServer2 protocol; its jars
ship with pyspark) over Spark's catalog of the warehouse's tables, on a loopback port, read-only.

Every statement a client sends goes through the guard parser of lib/storage/jvm (compiled by
tools/setup-env) before Spark parses it; the guard calls back here to ``check_spark_query``, the rule
``liftlake sql --engine spark`` applies, so the endpoint refuses exactly what that command refuses
(writes, DDL, file sources, reflection, tables outside the warehouse), with the same one-line reason.
The tables are those of the warehouse when the server starts; their new versions are seen by every
query (a Delta table of the catalog reads its latest version), a table created later after a restart.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading

from liftlake.lib.config import ConfigError, warehouse_path
from liftlake.lib.storage.readonly_sql import SqlRefused, check_spark_query
from liftlake.lib.storage.spark import DELTA_EXTENSION, delta_jar_folder, delta_jar_paths

GUARD_EXTENSION = "liftlake.sql.ReadOnlyParser$Extension"
GUARD_JAR = "liftlake-sql-guard.jar"

logger = logging.getLogger(__name__)


def guard_jar_path() -> str:
    """The compiled guard parser: ``<venv>/jvm/liftlake-sql-guard.jar`` (tools/setup-env builds it)."""
    return os.path.join(sys.prefix, "jvm", GUARD_JAR)


def server_session_conf(guard_jar: str, delta_jars: list[str], host: str, port: int, scratch: str) -> dict[str, str]:
    """What the JVM must start with. The Thrift server's sessions load classes through the JVM's own
    class path, not through spark.jars, so the Delta jars and the guard go on the driver's class path.
    The guard's extension comes after Delta's: extensions wrap parsers in order, and the last one sees
    every statement first (Delta's parser answers VACUUM / OPTIMIZE / RESTORE without passing them on).
    What Spark's catalog and Hive's session keep of their own (a default warehouse folder, derby.log)
    goes to ``scratch``, not to the folder the server was started in."""
    return {
        "spark.sql.warehouse.dir": os.path.join(scratch, "spark-warehouse"),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={scratch}",
        "spark.driver.extraClassPath": os.pathsep.join([*delta_jars, guard_jar]),
        "spark.sql.extensions": f"{DELTA_EXTENSION},{GUARD_EXTENSION}",
        "spark.hadoop.hive.server2.thrift.bind.host": host,
        "spark.hadoop.hive.server2.thrift.port": str(port),
        "spark.ui.enabled": "false",
    }


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"sql_server.port {port}: cannot listen on {host} ({exc.strerror}); "
                              f"choose another with --set sql_server.port=N") from None


class ReadOnlyGuard:
    """The guard the JVM parser asks (a py4j callback): None runs the statement, a string refuses it."""

    class Java:
        implements = ["liftlake.sql.ReadOnlyParser$Guard"]

    def __init__(self, spark, known_tables: set[str], parser) -> None:
        self.spark, self.known_tables, self.parser = spark, known_tables, parser

    def refusal(self, sql_text: str) -> str | None:
        try:
            statement = check_spark_query(self.spark, sql_text, self.known_tables, parser=self.parser)
        except SqlRefused as exc:
            logger.info(f"refused: {exc}")
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - a guard that cannot decide refuses (never runs unchecked)
            return f"sql: the read-only check failed ({type(exc).__name__}: {str(exc)[:200]})"
        logger.debug(f"runs: {statement.kind} over {sorted(statement.tables)}")
        return None


def run(ctx) -> None:
    cfg = ctx.config.sql_server
    guard_jar = guard_jar_path()
    if not os.path.isfile(guard_jar):
        raise ConfigError(f"sql-server: no {guard_jar} (the read-only guard; `make setup` compiles it, javac needed)")
    delta_jars = delta_jar_paths()
    if not delta_jars:
        raise ConfigError(f"sql-server: no Delta jars in {delta_jar_folder()} (run `make setup` to fetch them)")
    _check_port_free(cfg.host, cfg.port)  # before the JVM: the server's own bind failure exits the JVM
    scratch = tempfile.mkdtemp(prefix="liftlake-sql-server-")
    try:
        serve(ctx, cfg, guard_jar, delta_jars, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def serve(ctx, cfg, guard_jar: str, delta_jars: list[str], scratch: str) -> None:
    ctx.delta_jars_on_request = True
    ctx.session_conf.update(server_session_conf(guard_jar, delta_jars, cfg.host, cfg.port, scratch))
    spark = ctx.spark
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if not extensions.endswith(GUARD_EXTENSION):  # a session started before this job (spark-submit)
        raise ConfigError(f"sql-server: the Spark session was started without the read-only guard; start it "
                          f"with spark.sql.extensions={DELTA_EXTENSION},{GUARD_EXTENSION} and {guard_jar} on "
                          f"spark.driver.extraClassPath (or run `liftlake sql-server`)")
    known = set(ctx.store.tables())
    registered = ctx.store.register_in_catalog(known)  # before the guard is armed: DDL of the catalog
    jvm = spark._jvm  # noqa: SLF001 - the Thrift server and the parser are JVM objects
    guarded = spark._jsparkSession.sessionState().sqlParser()  # noqa: SLF001
    if guarded.getClass().getName() != "liftlake.sql.ReadOnlyParser":
        raise ConfigError(f"sql-server: the session's parser is {guarded.getClass().getName()}, not the "
                          f"read-only guard (another extension wraps it); refusing to serve")
    from pyspark.java_gateway import ensure_callback_server_started

    ensure_callback_server_started(spark.sparkContext._gateway)  # noqa: SLF001 - the guard calls back
    jvm.liftlake.sql.ReadOnlyParser.arm(ReadOnlyGuard(spark, known, guarded.delegate()))
    server = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithContext(
        spark._jsparkSession.sqlContext())  # noqa: SLF001
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    print(f"liftlake sql-server: {len(registered)} tables of {warehouse_path(ctx.config)}, read-only, listening on "
          f"jdbc:hive2://{host}:{cfg.port}/default (stop with Ctrl-C or SIGTERM)", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        print("liftlake sql-server: stopped", flush=True)
