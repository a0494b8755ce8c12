"""Evidently drift reports and the retraining decision."""
