"""liftlake's shared library: config, Spark session, Delta table store, simulator, features, metrics."""
