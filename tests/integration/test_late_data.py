"""Late data: stragglers for an already-ingested hour, and late events landing in later hours.

Landing partitions are arrival hours. An event may arrive up to ``allowed_lateness`` after its
own hour; it is curated under the partition it landed in, deduplicated against what earlier
partitions curated, and quarantined as ``late_event`` when it is later than that.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from ingest.config import IngestParams
from ingest.job import (
    curated_partition_dir,
    ingest_partition,
    quarantine_partition_dir,
    reconciliation_path,
)
from muma.contract import Reason, Source, check_line
from muma.landing import read_partition_lines, write_partition_bytes
from simulator.config import SimulatorConfig
from simulator.logs import simulate

H0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
H1 = H0 + timedelta(hours=1)
PARAMS = IngestParams(allowed_lateness_minutes=120, attribution_window_minutes=30)


def _valid_records(landing_root: Path, hour: datetime, n: int) -> list[dict]:
    records = []
    for line in read_partition_lines(landing_root, Source.IMPRESSIONS, hour):
        record, violation = check_line(Source.IMPRESSIONS, line)
        if violation is None:
            records.append(record)
        if len(records) == n:
            return records
    raise AssertionError(f"fewer than {n} valid impressions in {hour}")


def _straggler(record: dict, event_id: str, ts: datetime) -> dict:
    return record | {"event_id": event_id, "ts": ts.isoformat().replace("+00:00", "Z")}


def _jsonl(records: list[dict]) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


def _curated_ids(curated_root: Path, hour: datetime) -> list[str]:
    directory = curated_partition_dir(curated_root, Source.IMPRESSIONS, hour)
    return pq.read_table(directory, columns=["event_id"])["event_id"].to_pylist()


@pytest.fixture
def landed(tmp_path: Path) -> tuple[Path, Path]:
    simulate(
        SimulatorConfig(users=200, items=200),
        11,
        H0,
        H1 + timedelta(hours=1),
        tmp_path / "landing",
        tmp_path / "sidecar",
    )
    return tmp_path / "landing", tmp_path / "curated"


def test_stragglers_land_in_their_hour_when_it_is_reprocessed(spark, landed):
    landing_root, curated_root = landed
    first = ingest_partition(spark, landing_root, curated_root, Source.IMPRESSIONS, H0, PARAMS)
    before = _curated_ids(curated_root, H0)
    assert len(before) == first.curated

    # A client flushes a late batch for H0 after H0 was ingested: two new events and one
    # re-sent copy of an event that is already curated.
    known = _valid_records(landing_root, H0, 1)[0]
    stragglers = [
        _straggler(known, "late-straggler-1", H0 + timedelta(minutes=59)),
        _straggler(known, "late-straggler-2", H0 + timedelta(minutes=1)),
        known,
    ]
    write_partition_bytes(
        landing_root, Source.IMPRESSIONS, H0, _jsonl(stragglers), part="part-late-00001"
    )

    again = ingest_partition(spark, landing_root, curated_root, Source.IMPRESSIONS, H0, PARAMS)
    after = _curated_ids(curated_root, H0)
    assert again.records_read == first.records_read + 3
    assert again.curated == first.curated + 2
    assert again.duplicates_dropped == first.duplicates_dropped + 1
    assert again.holds
    assert set(after) - set(before) == {"late-straggler-1", "late-straggler-2"}
    assert len(after) == len(set(after))
    written = orjson.loads(reconciliation_path(curated_root, Source.IMPRESSIONS, H0).read_bytes())
    assert written["records_read"] == again.records_read


def test_late_events_in_a_later_partition_are_curated_once_or_quarantined(spark, landed):
    landing_root, curated_root = landed
    ingest_partition(spark, landing_root, curated_root, Source.IMPRESSIONS, H0, PARAMS)
    old = _valid_records(landing_root, H0, 2)
    late_within = _straggler(old[0], "late-within-window", H0 + timedelta(minutes=5))
    too_late = _straggler(old[0], "late-beyond-window", H1 - timedelta(hours=3))
    resent = old[1]  # already curated under H0: a duplicate when it lands again in H1
    write_partition_bytes(
        landing_root,
        Source.IMPRESSIONS,
        H1,
        _jsonl([late_within, too_late, resent]),
        part="part-late-00001",
    )

    result = ingest_partition(spark, landing_root, curated_root, Source.IMPRESSIONS, H1, PARAMS)
    assert result.holds
    assert result.duplicates_dropped == 1
    assert result.quarantined_by_reason.get(Reason.LATE_EVENT.value) == 1
    h1_ids = set(_curated_ids(curated_root, H1))
    assert "late-within-window" in h1_ids
    assert resent["event_id"] not in h1_ids
    assert "late-within-window" not in set(_curated_ids(curated_root, H0))
    quarantine = pq.read_table(quarantine_partition_dir(curated_root, Source.IMPRESSIONS, H1))
    late_rows = [
        orjson.loads(line)["event_id"]
        for line, reason in zip(
            quarantine["raw_line"].to_pylist(), quarantine["reason"].to_pylist(), strict=True
        )
        if reason == Reason.LATE_EVENT.value
    ]
    assert late_rows == ["late-beyond-window"]
