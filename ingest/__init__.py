"""Spark jobs that turn landing-zone partitions into curated Parquet tables (issue: ingest)."""
