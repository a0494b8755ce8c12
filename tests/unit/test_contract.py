"""Unit tests of the landing-zone data contract (``muma.contract``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from muma.contract import (
    MAX_DWELL_MS,
    MAX_FIXATION_MS,
    MAX_POSITION,
    SCHEMAS,
    Reason,
    Source,
    check_line,
    check_record,
    lateness_reason,
    parse_timestamp,
    partition_dir,
)
from muma.landing import format_timestamps

TS = "2026-11-01T10:15:00.123Z"

VALID: dict[Source, dict[str, Any]] = {
    Source.IMPRESSIONS: {
        "event_id": "i2026110110-0",
        "ts": TS,
        "request_id": "r2026110110-0",
        "user_id": "u0000001",
        "item_id": "n0000001",
        "domain": "news",
        "position": 1,
        "policy": "logging_softmax",
        "model_version": "sim-logging-v1",
        "propensity": 0.25,
    },
    Source.CLICKS: {
        "event_id": "c2026110110-0",
        "ts": TS,
        "request_id": "r2026110110-0",
        "item_id": "n0000001",
        "user_id": "u0000001",
    },
    Source.VIEWS: {
        "event_id": "w2026110110-0",
        "ts": TS,
        "user_id": "u0000001",
        "item_id": "v0000002",
        "dwell_ms": 30_000,
        "completion_ratio": 0.5,
        "request_id": "r2026110110-0",
    },
    Source.SOCIAL_EDGES: {
        "event_id": "s2026110110-0",
        "ts": TS,
        "user_id": "u0000001",
        "friend_id": "u0000002",
        "relation": "friend",
        "action": "added",
    },
    Source.GAZE: {
        "event_id": "g2026110110-0",
        "ts": TS,
        "user_id": "u0000001",
        "item_id": "n0000001",
        "region": "top_left",
        "fixation_ms": 250,
        "request_id": "r2026110110-0",
    },
    Source.ITEMS: {
        "event_id": "m2026110110-0",
        "ts": TS,
        "item_id": "v0000002",
        "domain": "video",
        "category": "music",
        "creator_id": "cv00001",
        "title": "music story v0000002",
        "text": "video item by cv00001",
        "publish_ts": "2026-10-30T08:00:00.000Z",
        "duration_s": 300.5,
    },
}

CROSS_RECORD_REASONS = {
    Reason.LATE_EVENT,
    Reason.FUTURE_EVENT,
    Reason.CLICK_WITHOUT_IMPRESSION,
    Reason.DUPLICATE_EVENT_ID,
}
"""Reasons that need more than one record (or the partition) and so are applied by ingest."""


def _line(source: Source, **changes: Any) -> bytes:
    """A valid record of ``source`` with ``changes`` applied, as a JSON line."""
    return orjson.dumps({**VALID[source], **changes})


def _line_without(source: Source, *keys: str) -> bytes:
    return orjson.dumps({k: v for k, v in VALID[source].items() if k not in keys})


BAD_LINES: list[tuple[str, Source, bytes, Reason, str | None]] = [
    ("truncated json", Source.CLICKS, _line(Source.CLICKS)[:40], Reason.MALFORMED_JSON, None),
    ("not json", Source.CLICKS, b"clicked it", Reason.MALFORMED_JSON, None),
    ("empty line", Source.VIEWS, b"", Reason.MALFORMED_JSON, None),
    ("json array", Source.IMPRESSIONS, b"[1, 2, 3]", Reason.MALFORMED_JSON, None),
    ("json string", Source.ITEMS, b'"an item"', Reason.MALFORMED_JSON, None),
    ("json number", Source.GAZE, b"42", Reason.MALFORMED_JSON, None),
    ("json null", Source.SOCIAL_EDGES, b"null", Reason.MALFORMED_JSON, None),
    (
        "missing propensity",
        Source.IMPRESSIONS,
        _line_without(Source.IMPRESSIONS, "propensity"),
        Reason.MISSING_KEY,
        "propensity",
    ),
    (
        "null required key",
        Source.CLICKS,
        _line(Source.CLICKS, user_id=None),
        Reason.MISSING_KEY,
        "user_id",
    ),
    (
        "missing publish_ts",
        Source.ITEMS,
        _line_without(Source.ITEMS, "publish_ts"),
        Reason.MISSING_KEY,
        "publish_ts",
    ),
    (
        "missing key wins over wrong type",
        Source.VIEWS,
        orjson.dumps({**VALID[Source.VIEWS], "dwell_ms": None, "completion_ratio": "half"}),
        Reason.MISSING_KEY,
        "dwell_ms",
    ),
    (
        "string for int",
        Source.IMPRESSIONS,
        _line(Source.IMPRESSIONS, position="1"),
        Reason.WRONG_TYPE,
        "position",
    ),
    (
        "bool for int",
        Source.IMPRESSIONS,
        _line(Source.IMPRESSIONS, position=True),
        Reason.WRONG_TYPE,
        "position",
    ),
    (
        "float for int",
        Source.VIEWS,
        _line(Source.VIEWS, dwell_ms=1500.5),
        Reason.WRONG_TYPE,
        "dwell_ms",
    ),
    (
        "bool for float",
        Source.IMPRESSIONS,
        _line(Source.IMPRESSIONS, propensity=True),
        Reason.WRONG_TYPE,
        "propensity",
    ),
    (
        "number for string",
        Source.CLICKS,
        _line(Source.CLICKS, item_id=17),
        Reason.WRONG_TYPE,
        "item_id",
    ),
    (
        "empty string",
        Source.SOCIAL_EDGES,
        _line(Source.SOCIAL_EDGES, friend_id=""),
        Reason.WRONG_TYPE,
        "friend_id",
    ),
    (
        "naive timestamp",
        Source.CLICKS,
        _line(Source.CLICKS, ts="2026-11-01T10:15:00"),
        Reason.WRONG_TYPE,
        "ts",
    ),
    ("epoch timestamp", Source.GAZE, _line(Source.GAZE, ts=1_793_000_000), Reason.WRONG_TYPE, "ts"),
    (
        "words for timestamp",
        Source.ITEMS,
        _line(Source.ITEMS, publish_ts="last week"),
        Reason.WRONG_TYPE,
        "publish_ts",
    ),
    (
        "date only",
        Source.SOCIAL_EDGES,
        _line(Source.SOCIAL_EDGES, ts="2026-11-01"),
        Reason.WRONG_TYPE,
        "ts",
    ),
    (
        "unknown impression domain",
        Source.IMPRESSIONS,
        _line(Source.IMPRESSIONS, domain="podcast"),
        Reason.UNKNOWN_DOMAIN,
        "domain",
    ),
    (
        "unknown item domain",
        Source.ITEMS,
        _line(Source.ITEMS, domain="News"),
        Reason.UNKNOWN_DOMAIN,
        "domain",
    ),
    (
        "invalid relation",
        Source.SOCIAL_EDGES,
        _line(Source.SOCIAL_EDGES, relation="enemy"),
        Reason.INVALID_VALUE,
        "relation",
    ),
    (
        "invalid action",
        Source.SOCIAL_EDGES,
        _line(Source.SOCIAL_EDGES, action="deleted"),
        Reason.INVALID_VALUE,
        "action",
    ),
    (
        "invalid region",
        Source.GAZE,
        _line(Source.GAZE, region="center"),
        Reason.INVALID_VALUE,
        "region",
    ),
    (
        "negative dwell",
        Source.VIEWS,
        _line(Source.VIEWS, dwell_ms=-1),
        Reason.NEGATIVE_DWELL,
        "dwell_ms",
    ),
    (
        "absurd dwell",
        Source.VIEWS,
        _line(Source.VIEWS, dwell_ms=MAX_DWELL_MS + 1),
        Reason.ABSURD_DWELL,
        "dwell_ms",
    ),
    (
        "zero propensity",
        Source.IMPRESSIONS,
        _line(Source.IMPRESSIONS, propensity=0),
        Reason.PROPENSITY_OUT_OF_RANGE,
        "propensity",
    ),
    (
        "zero float propensity",
        Source.IMPRESSIONS,
        _line(Source.IMPRESSIONS, propensity=0.0),
        Reason.PROPENSITY_OUT_OF_RANGE,
        "propensity",
    ),
    (
        "propensity above one",
        Source.IMPRESSIONS,
        _line(Source.IMPRESSIONS, propensity=1.5),
        Reason.PROPENSITY_OUT_OF_RANGE,
        "propensity",
    ),
    (
        "negative propensity",
        Source.IMPRESSIONS,
        _line(Source.IMPRESSIONS, propensity=-0.25),
        Reason.PROPENSITY_OUT_OF_RANGE,
        "propensity",
    ),
    (
        "position zero",
        Source.IMPRESSIONS,
        _line(Source.IMPRESSIONS, position=0),
        Reason.OUT_OF_RANGE,
        "position",
    ),
    (
        "position too deep",
        Source.IMPRESSIONS,
        _line(Source.IMPRESSIONS, position=MAX_POSITION + 1),
        Reason.OUT_OF_RANGE,
        "position",
    ),
    (
        "completion above one",
        Source.VIEWS,
        _line(Source.VIEWS, completion_ratio=1.2),
        Reason.OUT_OF_RANGE,
        "completion_ratio",
    ),
    (
        "negative fixation",
        Source.GAZE,
        _line(Source.GAZE, fixation_ms=-1),
        Reason.OUT_OF_RANGE,
        "fixation_ms",
    ),
    (
        "endless fixation",
        Source.GAZE,
        _line(Source.GAZE, fixation_ms=MAX_FIXATION_MS + 1),
        Reason.OUT_OF_RANGE,
        "fixation_ms",
    ),
    (
        "negative duration",
        Source.ITEMS,
        _line(Source.ITEMS, duration_s=-3.0),
        Reason.OUT_OF_RANGE,
        "duration_s",
    ),
]


def test_fixtures_cover_every_source() -> None:
    assert set(VALID) == set(Source)
    for source, record in VALID.items():
        assert list(record) == [field.name for field in SCHEMAS[source]]


@pytest.mark.parametrize("source", list(Source))
def test_valid_record_of_every_source_passes(source: Source) -> None:
    line = orjson.dumps(VALID[source])

    for raw in (line, line.decode()):
        record, violation = check_line(source, raw)
        assert violation is None
        assert record == VALID[source]


@pytest.mark.parametrize("source", list(Source))
def test_optional_keys_may_be_absent_or_null(source: Source) -> None:
    optional = [field.name for field in SCHEMAS[source] if not field.required]

    absent = _line_without(source, *optional)
    null = _line(source, **dict.fromkeys(optional))

    assert check_line(source, absent)[1] is None
    assert check_line(source, null)[1] is None


@pytest.mark.parametrize(
    ("source", "line", "reason", "field"),
    [case[1:] for case in BAD_LINES],
    ids=[case[0] for case in BAD_LINES],
)
def test_bad_line_gets_its_reason(
    source: Source, line: bytes, reason: Reason, field: str | None
) -> None:
    record, violation = check_line(source, line)

    assert record is None
    assert violation is not None
    assert violation.reason is reason
    assert violation.field == field


def test_every_per_record_reason_is_produced_by_some_bad_line() -> None:
    produced = {case[3] for case in BAD_LINES}

    assert produced == set(Reason) - CROSS_RECORD_REASONS


def test_check_record_rejects_non_objects() -> None:
    violation = check_record(Source.CLICKS, ["event_id", "ts"])

    assert violation is not None
    assert violation.reason is Reason.MALFORMED_JSON


@pytest.mark.parametrize(
    ("source", "changes"),
    [
        (Source.IMPRESSIONS, {"propensity": 1.0}),
        (Source.IMPRESSIONS, {"propensity": 1}),
        (Source.IMPRESSIONS, {"propensity": 1e-12}),
        (Source.IMPRESSIONS, {"position": MAX_POSITION}),
        (Source.VIEWS, {"dwell_ms": 0, "completion_ratio": 0}),
        (Source.VIEWS, {"dwell_ms": MAX_DWELL_MS, "completion_ratio": 1.0}),
        (Source.GAZE, {"fixation_ms": MAX_FIXATION_MS}),
        (Source.ITEMS, {"duration_s": 0.0}),
        (Source.CLICKS, {"ts": "2026-11-01T15:45:00.123+05:30"}),
        (Source.CLICKS, {"ts": "2026-11-01T10:15:00+00:00"}),
    ],
    ids=[
        "propensity one",
        "integer propensity one",
        "tiny propensity",
        "deepest position",
        "zero dwell",
        "longest dwell",
        "longest fixation",
        "zero duration",
        "offset ts",
        "seconds ts",
    ],
)
def test_boundary_values_are_valid(source: Source, changes: dict[str, Any]) -> None:
    assert check_line(source, _line(source, **changes))[1] is None


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-01T10:15:00.123Z",
        "2026-11-01T10:15:00.123+00:00",
        "2026-11-01T15:45:00.123+05:30",
        "2026-11-01T05:15:00.123-05:00",
        "2026-11-01T18:15:00.123+08:00",
    ],
)
def test_timestamps_with_offsets_parse_to_the_same_utc_instant(text: str) -> None:
    parsed = parse_timestamp(text)

    assert parsed == datetime(2026, 11, 1, 10, 15, 0, 123_000, tzinfo=UTC)
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


def test_writer_offsets_round_trip_to_the_same_instant() -> None:
    instant_ms = 1_793_000_000_123
    epoch_ms = np.array([instant_ms, instant_ms, instant_ms, instant_ms + 3_600_000])
    offsets = np.array([0, 330, -300, 480])

    texts = format_timestamps(epoch_ms, offsets)

    assert texts[0].endswith("Z")
    assert texts[1].endswith("+05:30") and texts[2].endswith("-05:00")
    instants = [parse_timestamp(text) for text in texts]
    assert [int(moment.timestamp() * 1000) for moment in instants] == epoch_ms.tolist()


class TestLateness:
    """``lateness_reason`` for a partition starting at 10:00 UTC with two hours' allowance."""

    partition_start = datetime(2026, 11, 1, 10, tzinfo=UTC)
    allowed = timedelta(hours=2)

    def reason(self, event_ts: datetime, **kwargs: Any) -> Reason | None:
        kwargs.setdefault("allowed_lateness", self.allowed)
        return lateness_reason(event_ts, self.partition_start, **kwargs)

    def test_on_time_event_is_accepted(self) -> None:
        assert self.reason(self.partition_start) is None
        assert self.reason(self.partition_start + timedelta(minutes=59, seconds=59)) is None

    def test_slightly_late_event_within_allowance_is_accepted(self) -> None:
        assert self.reason(self.partition_start - timedelta(minutes=30)) is None
        assert self.reason(self.partition_start - self.allowed) is None

    def test_event_later_than_allowance_is_late(self) -> None:
        just_too_late = self.partition_start - self.allowed - timedelta(milliseconds=1)

        assert self.reason(just_too_late) is Reason.LATE_EVENT
        assert self.reason(self.partition_start - timedelta(days=2)) is Reason.LATE_EVENT

    def test_no_allowance_makes_any_earlier_event_late(self) -> None:
        earlier = self.partition_start - timedelta(milliseconds=1)

        assert self.reason(earlier, allowed_lateness=timedelta(0)) is Reason.LATE_EVENT

    def test_event_after_partition_end_plus_skew_is_future(self) -> None:
        end = self.partition_start + timedelta(hours=1)

        assert self.reason(end + timedelta(minutes=4, seconds=59)) is None
        assert self.reason(end + timedelta(minutes=5)) is Reason.FUTURE_EVENT
        assert self.reason(end + timedelta(days=1)) is Reason.FUTURE_EVENT
        assert self.reason(end, allowed_skew=timedelta(0)) is Reason.FUTURE_EVENT

    def test_offset_event_time_is_compared_as_an_instant(self) -> None:
        local = datetime(2026, 11, 1, 15, 45, tzinfo=timezone(timedelta(hours=5, minutes=30)))

        assert self.reason(local, allowed_lateness=timedelta(0)) is None


def test_partition_dir_layout() -> None:
    hour = datetime(2026, 11, 1, 7, 0, tzinfo=UTC)

    directory = partition_dir(Path("/landing"), Source.CLICKS, hour)

    assert directory == Path("/landing/v1/clicks/date=2026-11-01/hour=07")
    assert partition_dir(Path("/landing"), "clicks", hour) == directory


def test_partition_dir_uses_the_utc_hour() -> None:
    local = datetime(2026, 11, 1, 2, 0, tzinfo=timezone(timedelta(hours=5)))

    directory = partition_dir(Path("/landing"), Source.IMPRESSIONS, local)

    assert directory == Path("/landing/v1/impressions/date=2026-10-31/hour=21")


def test_partition_dir_rejects_unknown_sources() -> None:
    with pytest.raises(ValueError):
        partition_dir(Path("/landing"), "podcasts", datetime(2026, 11, 1, tzinfo=UTC))
