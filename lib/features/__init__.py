"""Raw logs -> feature tables: the raw-log contract (tables, schemas by K and R), the cleaning rules that send
rows to ops.quarantine, the feature spec (vocabularies, buckets) and features.samples / features.user_samples."""
