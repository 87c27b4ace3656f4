"""Evaluation: metrics over numpy arrays (CVR, uplift, policy value), the evaluation of a model version against
its test split and the truth, the evidence report's tables and its figures."""
