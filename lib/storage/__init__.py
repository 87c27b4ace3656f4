"""Where tables live: the table store (one interface, two Delta backends: delta-rs commits of Spark-written Parquet,
and delta-spark) and the Spark session factory."""
