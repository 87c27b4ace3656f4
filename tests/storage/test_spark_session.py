"""The session build_session makes: the JVM it starts (JIT and GC flags, the class archive) and what a warm
process keeps compiled."""
from __future__ import annotations

import os


def _compiles(spark) -> int:
    return spark._jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME().getCount()


def test_a_warm_session_reuses_its_compiled_stages_past_sparks_default_100(spark):
    # 120 distinct generated classes (each literal is inlined into its stage's code), more than Spark's
    # default cache of 100 and about what one build-features day generates; then the first again
    plans = [spark.range(4).selectExpr(f"id * {i + 7919} + {i} as x") for i in range(120)]
    first = [row.x for row in plans[0].collect()]
    for df in plans[1:]:
        df.collect()
    before = _compiles(spark)
    assert [row.x for row in plans[0].collect()] == first
    assert _compiles(spark) == before  # served from the cache: nothing compiled, nothing for the JIT to warm again


def test_the_sessions_jvm_starts_with_the_jit_and_gc_flags(spark):
    from liftlake.lib.storage.spark import DRIVER_JVM_FLAGS

    management = spark._jvm.java.lang.management.ManagementFactory
    jvm_args = list(management.getRuntimeMXBean().getInputArguments())
    assert [flag for flag in DRIVER_JVM_FLAGS if flag not in jvm_args] == []
    collectors = {bean.getName() for bean in management.getGarbageCollectorMXBeans()}
    assert collectors == {"PS Scavenge", "PS MarkSweep"}  # ParallelGC's, not G1's


def test_a_callers_java_options_add_to_the_defaults_and_replace_what_they_set_again():
    from liftlake.lib.storage.spark import java_options_with

    defaults = ("-XX:Tier4InvocationThreshold=50000 -XX:+UseParallelGC -XX:SharedArchiveFile=/v/a.jsa "
                "-Xlog:cds=off")
    assert java_options_with(defaults, " -Dlog4j2.configurationFile=file:/x.properties ") == (
        f"{defaults} -Dlog4j2.configurationFile=file:/x.properties")
    # the JVM refuses two collectors (the lost-executor test's serial GC) or two class archives
    caller = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ArchiveClassesAtExit=/t/b.jsa"
    assert java_options_with(defaults, caller) == (
        "-XX:Tier4InvocationThreshold=50000 -Xlog:cds=off -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
        "-XX:ArchiveClassesAtExit=/t/b.jsa")
    assert java_options_with(defaults, "-XX:Tier4InvocationThreshold=9") == (
        "-XX:+UseParallelGC -XX:SharedArchiveFile=/v/a.jsa -Xlog:cds=off -XX:Tier4InvocationThreshold=9")
    assert java_options_with(defaults, "") == defaults


def test_the_sessions_jvm_maps_the_class_archive_setup_made(spark):
    # tools/setup-env archives the classes a pipeline day loads; a JVM that maps the archive lists
    # it among its mapped files (a JVM that could not use it, another JDK or class path, does not)
    from liftlake.lib.storage.class_archive import archive_path

    assert os.path.isfile(archive_path()), f"{archive_path()} is missing: run tools/setup-env"
    pid = spark._jvm.java.lang.ProcessHandle.current().pid()
    with open(f"/proc/{pid}/maps") as maps:
        assert archive_path() in maps.read()
