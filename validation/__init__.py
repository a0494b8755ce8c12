"""Great Expectations suites and checkpoints over curated tables (issue: ingest and validation)."""
