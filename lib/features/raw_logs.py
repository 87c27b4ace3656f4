"""The raw-log contract: the tables any log source (the simulator, or real logs) writes and build-features
reads, with their schemas and comments."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import types as T

from liftlake.lib.cli.runner import InputError

TABLE_COMMENTS = {
    "raw.exposures": "simulated exposure log (one row per impression)",
    "raw.clicks": "simulated click log",
    "raw.conversions": "simulated conversion log",
    "raw.users": "user attributes, snapshot per day",
    "raw.items": "item attributes, snapshot per day",
    "raw.treatments": "per user-day coupon and strategy assignment",
    "raw.responses": "per user-day coupon outcome, continuous responses and value shares",
    "sim.truth": "simulator ground truth per exposure: true CTR, CVR under do(click=1)",
    "sim.truth_user": "simulator ground truth per user-day: p0, unit uplift, per-treatment effects",
}


# -- checks of the raw input ---------------------------------------------------------------------
def check_raw_schema(table: str, df: DataFrame, expected: T.StructType) -> None:
    """Refuse missing columns and wrong types (naming them); extra columns are ignored but named."""
    got = {f.name: f.dataType for f in df.schema.fields}
    missing = [f.name for f in expected.fields if f.name not in got]
    if missing:
        raise InputError(f"table {table}: missing column(s) {missing} (rule: the raw schema of the simulator "
                         f"contract, lib/simulator.RAW_SCHEMAS)")
    wrong = [f"{f.name} is {got[f.name].simpleString()}, expected {f.dataType.simpleString()}"
             for f in expected.fields if got[f.name] != f.dataType]
    if wrong:
        raise InputError(f"table {table}: wrong type: {'; '.join(wrong)}")


RAW_TABLES = ("raw.exposures", "raw.clicks", "raw.conversions", "raw.users", "raw.items",
              "raw.treatments", "raw.responses")


def read_raw_day(store, ds: str) -> dict[str, DataFrame]:
    """The day's raw partitions, each checked against the simulator's schema contract."""
    from liftlake.lib.sim.simulator import RAW_SCHEMAS

    out = {}
    for table in RAW_TABLES:
        require_partition(store, table, ds)
        df = store.read(table, partitions=[ds])
        check_raw_schema(table, df, RAW_SCHEMAS[table])
        out[table] = df.select(*[f.name for f in RAW_SCHEMAS[table].fields])
    return out


def require_partition(store, table: str, ds: str) -> None:
    if not store.exists(table):
        raise InputError(f"table {table} does not exist (run `liftlake simulate` or load the raw logs first)")
    counts = store.partition_counts(table)
    if ds not in counts:
        raise InputError(f"table {table}: partition ds={ds} is missing (rule: every raw table needs the day)")
