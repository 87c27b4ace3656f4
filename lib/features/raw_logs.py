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
                         f"contract, liftlake.lib.features.raw_logs.raw_schemas)")
    wrong = [f"{f.name} is {got[f.name].simpleString()}, expected {f.dataType.simpleString()}"
             for f in expected.fields if got[f.name] != f.dataType]
    if wrong:
        raise InputError(f"table {table}: wrong type: {'; '.join(wrong)}")


RAW_TABLES = ("raw.exposures", "raw.clicks", "raw.conversions", "raw.users", "raw.items",
              "raw.treatments", "raw.responses")


def read_raw_day(store, ds: str, num_treatments: int, num_responses: int) -> dict[str, DataFrame]:
    """The day's raw partitions, each checked against the contract for the data shape (K, R)."""
    schemas = raw_schemas(num_treatments, num_responses)
    out = {}
    for table in RAW_TABLES:
        require_partition(store, table, ds)
        df = store.read(table, partitions=[ds])
        check_raw_schema(table, df, schemas[table])
        out[table] = df.select(*[f.name for f in schemas[table].fields])
    return out


def require_partition(store, table: str, ds: str) -> None:
    if not store.exists(table):
        raise InputError(f"table {table} does not exist (run `liftlake simulate` or load the raw logs first)")
    counts = store.partition_counts(table)
    if ds not in counts:
        raise InputError(f"table {table}: partition ds={ds} is missing (rule: every raw table needs the day)")


# ---------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------
def _schema(*cols: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(n, t, True) for n, t in cols] + [T.StructField("ds", T.StringType(), True)])


def raw_schemas(num_treatments: int = 2, num_responses: int = 2) -> dict[str, T.StructType]:
    """The schema of each raw table (and of the simulator's truth tables) for K strategies and R
    responses: the one home of the raw-log contract (``data.num_treatments`` / ``data.num_responses``)."""
    L, D, I, S, TS = T.LongType(), T.DoubleType(), T.IntegerType(), T.StringType(), T.TimestampType()
    rs = range(1, num_responses + 1)
    ks = range(1, num_treatments + 1)
    return {
        "raw.users": _schema(("user_id", L), ("u_age", I), ("u_gender", S), ("u_city", S), ("u_activity", D),
                             ("u_income", D), ("u_segment", S), ("u_tenure_days", I), ("u_orders_30d", I)),
        "raw.items": _schema(("item_id", L), ("i_category", S), ("i_brand", S), ("i_price", D)),
        "raw.exposures": _schema(("exposure_id", S), ("user_id", L), ("item_id", L), ("ts", TS), ("position", I),
                                 ("device", S), ("hour", I)),
        "raw.clicks": _schema(("exposure_id", S), ("user_id", L), ("ts", TS)),
        "raw.conversions": _schema(("exposure_id", S), ("user_id", L), ("ts", TS), ("value", D)),
        "raw.treatments": _schema(("user_id", L), ("coupon_treated", I), ("coupon_value", D),
                                  ("coupon_randomized", I), ("treatment_id", I), ("treatment_randomized", I)),
        "raw.responses": _schema(("user_id", L), ("coupon_outcome", I), *[(f"response_{r}", D) for r in rs],
                                 *[(f"value_share_{r}", D) for r in rs]),
        "sim.truth": _schema(("exposure_id", S), ("ctr_true", D), ("cvr_do_click_true", D),
                             ("conversion_potential", I)),
        "sim.truth_user": _schema(("user_id", L), ("p0_true", D), ("eta_true", D), ("coupon_prob_true", D),
                                  *[(f"y0_r{r}_true", D) for r in rs],
                                  *[(f"tau_r{r}_k{k}_true", D) for r in rs for k in ks],
                                  *[(f"value_weight_r{r}_true", D) for r in rs],
                                  ("coupon_propensity_true", D), ("treatment_propensity_true", D),
                                  ("exposures_true", L)),
    }

