"""`GET /v1/export/{dataset}`: datasets streamed from the database as CSV, JSON or NDJSON."""
