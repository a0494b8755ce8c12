"""Benchmarks (`make bench`): figures with their conditions, medians of repeated runs."""
