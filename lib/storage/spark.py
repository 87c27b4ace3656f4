"""The Spark session factory.

On the embedded default Spark runs in local mode; under spark-submit or with ``spark.master`` in
config any master works. ``delta_jars=True`` (``warehouse.backend: delta-spark``) starts the session
with the Delta jars tools/setup-env put into the environment (``<venv>/jars``, pinned in
delta-jars.txt) and the Delta SQL extension and catalog; a cluster that ships delta-spark has them
already. Other sessions start without them and tables go through the delta-rs store.
"""
from __future__ import annotations

import logging
import os
import re
import sys
from typing import Mapping

from pyspark.sql import SparkSession

from liftlake.lib.storage.class_archive import archive_java_options

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
DELTA_JARS_ENV = "LIFTLAKE_DELTA_JARS"  # a folder of Delta jars to load instead of <venv>/jars
DELTA_SPARK_ENV = "LIFTLAKE_DELTA_SPARK"  # set: sessions start with the Delta jars (build_session)
DELTA_ON_REQUEST = "spark.liftlake.deltaOnRequest"  # set when build_session loaded Delta for a caller

logger = logging.getLogger(__name__)

DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
# The driver's JVM (in local mode the executors' too; a cluster's executors keep their own). A feature
# day at 1M exposures spent as much CPU in HotSpot's C2 compiler as in its tasks: 13 CPU s on a fresh
# JVM's first day and still 3-6 s on each of the next warm days, mostly on code outside the per-row
# loops (Spark's analyzer, planner, serializers). C2 compiles a method once it ran
# Tier4InvocationThreshold times (5,000; loops by their back-edges, 40,000); ten times that keeps C2
# for the code that is hot per row. G1's write barriers and concurrent threads cost the tasks more than
# the pauses ParallelGC makes on a batch job's heap of a few GiB. build-features with these flags
# (reports/bench.md, the features section, 1M / 10M exposures): warm 12.3 / 63.1 CPU s a day, was
# 15.1 / 67.9; cold 40.7 / 116, was 51.4 / 131.
DRIVER_JVM_FLAGS = (
    "-XX:Tier4InvocationThreshold=50000", "-XX:Tier4MinInvocationThreshold=6000",
    "-XX:Tier4CompileThreshold=60000", "-XX:Tier4BackEdgeThreshold=400000",
    "-XX:+UseParallelGC",
)


def delta_jar_folder() -> str:
    """Where the Delta jars are looked for: ``$LIFTLAKE_DELTA_JARS``, else ``<sys.prefix>/jars``."""
    return os.environ.get(DELTA_JARS_ENV) or os.path.join(sys.prefix, "jars")


def delta_jar_paths() -> list[str]:
    """The Delta jars of the environment (``delta-*.jar`` in ``delta_jar_folder()``, where
    tools/setup-env fetches them); [] when there are none."""
    folder = delta_jar_folder()
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith("delta-") and f.endswith(".jar"))


def build_session(
    app_name: str = "liftlake",
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    delta_jars: bool | None = None,
) -> SparkSession:
    """Get or create the session. ``master=None`` keeps what spark-submit set, else ``local[*]``.
    ``delta_jars``: load the Delta jars, extension and catalog (None: when ``LIFTLAKE_DELTA_SPARK`` is
    set). They must be there when the JVM starts: a session already running keeps what it has."""
    # Executors must run the driver's interpreter (the project venv), not whatever python is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    # spark-submit starts the JVM first and hands its gateway port to the Python driver.
    launched_by_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if master:
        builder = builder.master(master)
    elif not launched_by_submit:
        builder = builder.master("local[*]")
    defaults = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "true",
        "spark.sql.shuffle.partitions": "8",
        # Compiled whole-stage classes are cached per JVM by their code; Spark's 100 entries are fewer
        # than one build-features day generates (123), so a warm session (the run's warm driver, a
        # multi-day job, the test suite's one session) recompiled every stage on its next use and the
        # JIT warmed it up again (111 compiles a day); with room for them a warm build-features day at
        # 1M exposures took 16-18 CPU s instead of 21 (reports/bench.md) and the tests of features/ and
        # storage/ 260 s instead of 306. A one-day DAG run's steps share few stages: it gains little.
        "spark.sql.codegen.cache.maxEntries": "2000",
        "spark.driver.memory": "4g",
        # Let AQE coalesce the partitions of a cached plan as it does any other: a feature day caches
        # each raw table after a shuffle of spark.sql.shuffle.partitions, and every later read of the
        # small ones (users, items, clicks) ran a task per empty partition.
        "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
        # PySpark 4 records the Python call site of every DataFrame / Column call in the JVM, for
        # error messages: five py4j round trips a call (a warm build-features day makes ~700 calls,
        # 3,500 of its 10,000 round trips). Spark names the failing expression without it.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
        # delta-rs and every Delta reader expect microsecond timestamps, not INT96.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        DRIVER_JAVA_OPTIONS: " ".join([*DRIVER_JVM_FLAGS, archive_java_options()]).strip(),
    }
    if launched_by_submit:  # spark-submit's --conf (and spark-defaults.conf) win over these defaults
        defaults = {k: v for k, v in defaults.items() if k not in _submitted_conf()}
    settings = {**defaults, **{k: str(v) for k, v in dict(conf or {}).items()}}
    if DRIVER_JAVA_OPTIONS in defaults and DRIVER_JAVA_OPTIONS in (conf or {}):
        settings[DRIVER_JAVA_OPTIONS] = java_options_with(defaults[DRIVER_JAVA_OPTIONS], settings[DRIVER_JAVA_OPTIONS])
    if delta_jars is None:
        delta_jars = delta_jars_by_default()
    elif delta_jars:
        # asked for by the caller (a delta-spark store, the test session), not by the session's
        # owner: warehouse.backend auto keeps delta-rs here (open_store)
        settings[DELTA_ON_REQUEST] = "true"
    if delta_jars:
        jars = delta_jar_paths()
        if jars:
            settings["spark.jars"] = ",".join([j for j in settings.get("spark.jars", "").split(",") if j] + jars)
        elif not launched_by_submit:
            logger.warning(f"no Delta jars in {delta_jar_folder()} "
                           f"(`make setup` fetches them); the session relies on the classpath it was given")
        extensions = [e for e in settings.get("spark.sql.extensions", "").split(",") if e]
        settings["spark.sql.extensions"] = ",".join(extensions + [e for e in [DELTA_EXTENSION] if e not in extensions])
        settings.setdefault("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        # Delta rebuilds a table's snapshot from its log in a job of this many partitions (50 by
        # default: ~15 s of empty tasks per first touch of a table on 2 cores); the shuffle width fits
        settings.setdefault("spark.databricks.delta.snapshotPartitions", settings["spark.sql.shuffle.partitions"])
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    return spark


def java_options_with(defaults: str, caller: str) -> str:
    """A caller's JVM options (a log4j file, Derby's home) added to the defaults. A default the caller
    sets again is dropped: the JVM refuses two garbage collectors or two class archives (it takes the
    last of any other flag given twice, but the caller's choice is clearer alone)."""
    chosen = {_java_option_key(token) for token in caller.split()} - {None}
    kept = [token for token in defaults.split() if _java_option_key(token) not in chosen]
    return " ".join([*kept, caller.strip()]).strip()


def _java_option_key(token: str) -> str | None:
    """What a -XX option sets: its name, or the choice it is one of (a collector, a class archive)."""
    match = re.fullmatch(r"-XX:[+-]?(\w+)(=.*)?", token)
    if match is None:
        return None
    name = match.group(1)
    if re.fullmatch(r"Use\w+GC", name) and token.startswith("-XX:+"):
        return "garbage collector"
    if name in ("SharedArchiveFile", "ArchiveClassesAtExit"):
        return "class archive"
    return name


def _submitted_conf() -> set[str]:
    """The keys spark-submit started the JVM with (its --conf, --driver-memory, spark-defaults.conf)."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # noqa: SLF001 - attaches to spark-submit's gateway
    return {key for key, _ in SparkConf().getAll()}


def delta_jars_by_default() -> bool:
    """Whether a session asked for with ``delta_jars=None`` starts with the Delta jars."""
    return bool(os.environ.get(DELTA_SPARK_ENV))


def owner_decides_delta() -> bool:
    """True when whoever started liftlake chose whether the session has Delta: spark-submit (its
    --jars and --conf start the JVM) or ``LIFTLAKE_DELTA_SPARK``. A job that asks for the jars
    on request leaves such a session as it is (and its Delta, if any, stays the session's choice)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or delta_jars_by_default()


def delta_is_the_sessions_choice(spark: SparkSession) -> bool:
    """True when the session came with Delta from its owner (a Delta cluster, spark-submit --jars and
    --conf, LIFTLAKE_DELTA_SPARK), not because a caller of build_session asked for the jars."""
    return has_delta_extension(spark) and spark.conf.get(DELTA_ON_REQUEST, "false") != "true"


def has_delta_extension(spark: SparkSession) -> bool:
    """True when the session can read and write ``format('delta')`` (the Delta jars are loaded)."""
    try:
        jvm = spark._jvm  # noqa: SLF001
        if jvm is None:  # Spark Connect: no JVM handle here
            return False
        # spark.jars are on Spark's class loader, not the system one that Class.forName would ask
        jvm.org.apache.spark.util.Utils.classForName("io.delta.tables.DeltaTable", False, False)
        return DELTA_EXTENSION in (spark.conf.get("spark.sql.extensions", "") or "")
    except Exception:  # py4j raises a generic error when the class is absent
        return False
