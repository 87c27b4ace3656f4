"""liftlake: causal CTR / CVR and uplift models trained and scored on Spark + Delta Lake.

The code lives in three folders installed under this one namespace:
``liftlake.lib`` (lib/), ``liftlake.models`` (models/), ``liftlake.jobs`` (jobs/).
"""
__version__ = "0.1.0"
