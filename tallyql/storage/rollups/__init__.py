"""The write side of the rollups: what each keeps (`declarations`), how a batch of new events
folds into them inside the ingest transaction (`fold`, `folds`, `upsert`, `histograms`,
`sessions`), and how they are put right afterwards (`compaction` of the staged aggregates on
PostgreSQL, `rebuild` from raw events, `session_versions` for readers of a day's sessions)."""
