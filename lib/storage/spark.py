"""The Spark session factory.

On the embedded default Spark runs in local mode; under spark-submit or with ``spark.master`` in
config any master works. The Delta SQL extension is added only when its classes are on the JVM
classpath (a cluster that ships delta-spark); otherwise tables go through the delta-rs store.
"""
from __future__ import annotations

import os
import sys
from typing import Mapping

from pyspark.sql import SparkSession

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def build_session(
    app_name: str = "liftlake",
    master: str | None = None,
    conf: Mapping[str, str] | None = None,
    delta_jars: bool | None = None,
) -> SparkSession:
    """Get or create the session. ``master=None`` keeps what spark-submit set, else ``local[*]``."""
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
        "spark.driver.memory": "4g",
        # delta-rs and every Delta reader expect microsecond timestamps, not INT96.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    }
    for key, value in {**defaults, **dict(conf or {})}.items():
        builder = builder.config(key, str(value))
    if delta_jars is None:
        delta_jars = bool(os.environ.get("LIFTLAKE_DELTA_SPARK"))
    if delta_jars:
        builder = builder.config("spark.sql.extensions", DELTA_EXTENSION).config(
            "spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    spark = builder.getOrCreate()
    return spark


def has_delta_extension(spark: SparkSession) -> bool:
    """True when the session can read and write ``format('delta')`` (the Delta jars are loaded)."""
    try:
        jvm = spark._jvm  # noqa: SLF001
        if jvm is None:  # Spark Connect: no JVM handle here
            return False
        jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")
        return DELTA_EXTENSION in (spark.conf.get("spark.sql.extensions", "") or "")
    except Exception:  # py4j raises a generic error when the class is absent
        return False
