"""Duplicates across partitions are settled from id hashes, and exactly, even when they collide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ingest.job as job
from ingest.config import IngestParams
from ingest.curate import id_hashes
from muma.contract import Source

START = datetime(2026, 11, 1, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
PARAMS = IngestParams(allowed_lateness_minutes=120)  # looks back 3 hours


def _write(directory: Path, ids: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"event_id": pa.array(ids, pa.string())}), directory / "p.parquet")


def _micros(hour: datetime) -> int:
    return (hour - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@pytest.fixture
def layout(tmp_path: Path):
    curated = tmp_path / "curated"
    # Already curated: the hour before the batch holds "a"; four hours before holds "z"
    # (beyond the lookback, so a copy of "z" is no duplicate).
    _write(job.curated_partition_dir(curated, Source.CLICKS, START - HOUR), ["a", "x"])
    _write(job.curated_partition_dir(curated, Source.CLICKS, START - 4 * HOUR), ["z"])
    staged = {
        START: ["a", "b", "c", "z"],  # "a" repeats the curated hour before
        START + HOUR: ["b", "d"],  # "b" repeats the batch's first hour
        START + 5 * HOUR: ["c", "e"],  # "c" again, but 5 hours later: beyond the lookback
    }
    dirs = {}
    for hour, ids in staged.items():
        dirs[hour] = tmp_path / "staging" / hour.strftime("%H")
        _write(dirs[hour], ids)
    return curated, staged, dirs


def _settle(curated, staged, dirs, hash_of) -> dict[int, set[str]]:
    reported = {
        _micros(hour): (dirs[hour], np.sort(hash_of(pa.array(ids)))) for hour, ids in staged.items()
    }
    return job._cross_partition_duplicates(reported, curated, Source.CLICKS, list(staged), PARAMS)


def test_repeats_within_the_lookback_are_dropped_from_the_later_copy(layout):
    curated, staged, dirs = layout
    assert _settle(curated, staged, dirs, id_hashes) == {
        _micros(START): {"a"},
        _micros(START + HOUR): {"b"},
    }


def test_colliding_hashes_are_compared_exactly(layout, monkeypatch):
    """Every id with the same hash: candidates everywhere, and still only true repeats drop."""
    curated, staged, dirs = layout
    monkeypatch.setattr(job, "id_hashes", lambda ids: np.zeros(len(ids), np.uint64))
    collide = job.id_hashes
    assert _settle(curated, staged, dirs, collide) == {
        _micros(START): {"a"},
        _micros(START + HOUR): {"b"},
    }


def test_unique_ids_read_nothing_back(layout, monkeypatch):
    curated, staged, dirs = layout
    staged = {hour: [f"{hour:%H}-{i}" for i in ids] for hour, ids in staged.items()}
    for hour, ids in staged.items():
        _write(dirs[hour], ids)
    read = []
    real = job._curated_ids
    monkeypatch.setattr(job, "_curated_ids", lambda d: read.append(d) or real(d))
    assert _settle(curated, staged, dirs, id_hashes) == {}
    # Only the curated hours the batch looks back on are read (to hash them), never staged.
    assert all("staging" not in str(directory) for directory in read)
