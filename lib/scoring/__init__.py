"""Batch scoring: a model version applied to a day's rows (Arrow batches in the Python workers), with the
score tables' schemas."""
