"""What jobs publish under the warehouse besides tables: the model store (<warehouse>/_models), feature specs
and ESCIM labelers, each claimed and published one way."""
