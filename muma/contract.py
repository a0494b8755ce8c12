"""The landing-zone data contract, declared once for the simulator, importers, ingest and tests.

Every source arrives as gzip JSON Lines, one object per line, partitioned as a log shipper
writes it::

    <landing_root>/v<CONTRACT_VERSION>/<source>/date=YYYY-MM-DD/hour=HH/part-NNNNN.jsonl.gz

A record is *valid* when it is a JSON object holding every required key of its source with
the declared type and within the declared range. :func:`check_line` returns the first
violated rule as a :class:`Reason`; ingest quarantines the raw line under that reason code.
Rules that need more than one record (duplicate event ids, clicks without an impression,
events later than the allowed lateness) are declared here too, as reason codes and
:func:`lateness_reason`, and applied by ingest.

The human-readable version of this module is ``docs/data-contract.md``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

CONTRACT_VERSION = 1
"""Bumped on any breaking change; the version is part of the landing path."""

MAX_DWELL_MS = 6 * 3600 * 1000
"""Dwell or watch time above six hours is not a person reading or watching: quarantined."""

MAX_POSITION = 100
MAX_FIXATION_MS = 60_000


class Source(StrEnum):
    """Landing-zone sources."""

    IMPRESSIONS = "impressions"
    CLICKS = "clicks"
    VIEWS = "views"
    SOCIAL_EDGES = "social_edges"
    GAZE = "gaze"
    ITEMS = "items"


class Domain(StrEnum):
    """Content domains MUMA recommends in."""

    NEWS = "news"
    VIDEO = "video"
    AD = "ad"


class Relation(StrEnum):
    FRIEND = "friend"
    FAMILY = "family"
    FOLLOW = "follow"


class EdgeAction(StrEnum):
    ADDED = "added"
    REMOVED = "removed"


class ScreenRegion(StrEnum):
    """Coarse screen regions of an eye-tracking hotspot (rows top/middle/bottom x columns)."""

    TOP_LEFT = "top_left"
    TOP_RIGHT = "top_right"
    MIDDLE_LEFT = "middle_left"
    MIDDLE_RIGHT = "middle_right"
    BOTTOM_LEFT = "bottom_left"
    BOTTOM_RIGHT = "bottom_right"


class Reason(StrEnum):
    """Quarantine reason codes. Stable strings: dashboards and tests match on them."""

    MALFORMED_JSON = "malformed_json"
    MISSING_KEY = "missing_key"
    WRONG_TYPE = "wrong_type"
    UNKNOWN_DOMAIN = "unknown_domain"
    INVALID_VALUE = "invalid_value"
    NEGATIVE_DWELL = "negative_dwell"
    ABSURD_DWELL = "absurd_dwell"
    PROPENSITY_OUT_OF_RANGE = "propensity_out_of_range"
    OUT_OF_RANGE = "out_of_range"
    LATE_EVENT = "late_event"
    FUTURE_EVENT = "future_event"
    CLICK_WITHOUT_IMPRESSION = "click_without_impression"
    DUPLICATE_EVENT_ID = "duplicate_event_id"


class FieldType(StrEnum):
    STRING = "string"
    INT = "int"
    FLOAT = "float"
    TIMESTAMP = "timestamp"


@dataclass(frozen=True, slots=True)
class Field:
    """One key of a landing record.

    Attributes:
        name: JSON key.
        type: Declared type; timestamps are ISO-8601 strings with an explicit UTC offset.
        required: Whether the key must be present and non-null.
        allowed: For enumerated strings, the allowed values.
        minimum: Inclusive lower bound for numbers (``None``: unbounded).
        maximum: Inclusive upper bound for numbers (``None``: unbounded).
        exclusive_minimum: Whether ``minimum`` itself is excluded.
        range_reason: Reason code when the value is out of range.
        doc: One line for ``docs/data-contract.md``.
    """

    name: str
    type: FieldType
    required: bool = True
    allowed: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    range_reason: Reason = Reason.OUT_OF_RANGE
    doc: str = ""


def _enum_values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


_EVENT_ID = Field("event_id", FieldType.STRING, doc="globally unique id of the event (dedup key)")
_TS = Field("ts", FieldType.TIMESTAMP, doc="event time, ISO-8601 with UTC offset")
_USER = Field("user_id", FieldType.STRING, doc="user id")
_ITEM = Field("item_id", FieldType.STRING, doc="item id")
_DOMAIN = Field(
    "domain",
    FieldType.STRING,
    allowed=_enum_values(Domain),
    range_reason=Reason.UNKNOWN_DOMAIN,
    doc="content domain: news, video or ad",
)

SCHEMAS: dict[Source, tuple[Field, ...]] = {
    Source.IMPRESSIONS: (
        _EVENT_ID,
        _TS,
        Field("request_id", FieldType.STRING, doc="id of the recommendation request"),
        _USER,
        _ITEM,
        _DOMAIN,
        Field(
            "position",
            FieldType.INT,
            minimum=1,
            maximum=MAX_POSITION,
            doc="1-based slot position in the slate",
        ),
        Field("policy", FieldType.STRING, doc="name of the policy that chose the item"),
        Field("model_version", FieldType.STRING, doc="version of the scoring model"),
        Field(
            "propensity",
            FieldType.FLOAT,
            minimum=0.0,
            maximum=1.0,
            exclusive_minimum=True,
            range_reason=Reason.PROPENSITY_OUT_OF_RANGE,
            doc="exact probability with which the policy put this item in this slot, given "
            "the slots above it (Plackett-Luce); in (0, 1]",
        ),
    ),
    Source.CLICKS: (
        _EVENT_ID,
        _TS,
        Field("request_id", FieldType.STRING, doc="request whose impression was clicked"),
        _ITEM,
        _USER,
    ),
    Source.VIEWS: (
        _EVENT_ID,
        _TS,
        _USER,
        _ITEM,
        Field(
            "dwell_ms",
            FieldType.INT,
            minimum=0,
            maximum=MAX_DWELL_MS,
            range_reason=Reason.ABSURD_DWELL,
            doc="dwell (news, ads) or watch time (video) in milliseconds",
        ),
        Field(
            "completion_ratio",
            FieldType.FLOAT,
            minimum=0.0,
            maximum=1.0,
            doc="share of the article read or the video watched, in [0, 1]",
        ),
        Field(
            "request_id",
            FieldType.STRING,
            required=False,
            doc="request of the impression, when the client knows it",
        ),
    ),
    Source.SOCIAL_EDGES: (
        _EVENT_ID,
        _TS,
        _USER,
        Field("friend_id", FieldType.STRING, doc="the other user of the relation"),
        Field(
            "relation",
            FieldType.STRING,
            allowed=_enum_values(Relation),
            range_reason=Reason.INVALID_VALUE,
            doc="friend, family or follow",
        ),
        Field(
            "action",
            FieldType.STRING,
            allowed=_enum_values(EdgeAction),
            range_reason=Reason.INVALID_VALUE,
            doc="added or removed",
        ),
    ),
    Source.GAZE: (
        _EVENT_ID,
        _TS,
        _USER,
        _ITEM,
        Field(
            "region",
            FieldType.STRING,
            allowed=_enum_values(ScreenRegion),
            range_reason=Reason.INVALID_VALUE,
            doc="screen region of the hotspot",
        ),
        Field(
            "fixation_ms",
            FieldType.INT,
            minimum=0,
            maximum=MAX_FIXATION_MS,
            doc="total fixation time on the item in milliseconds",
        ),
        Field("request_id", FieldType.STRING, required=False, doc="request whose slate was seen"),
    ),
    Source.ITEMS: (
        _EVENT_ID,
        _TS,
        _ITEM,
        _DOMAIN,
        Field("category", FieldType.STRING, doc="editorial category"),
        Field(
            "creator_id",
            FieldType.STRING,
            doc="author (news), director/channel (video), advertiser (ad)",
        ),
        Field("title", FieldType.STRING, doc="title"),
        Field("text", FieldType.STRING, required=False, doc="abstract or description"),
        Field("publish_ts", FieldType.TIMESTAMP, doc="publication time, ISO-8601 with offset"),
        Field(
            "duration_s",
            FieldType.FLOAT,
            required=False,
            minimum=0.0,
            maximum=86_400.0,
            doc="video length in seconds (video only)",
        ),
    ),
}
"""Keys of every source, in the order writers emit them."""


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a record breaks the contract."""

    reason: Reason
    field: str | None
    detail: str


def parse_timestamp(value: Any) -> datetime | None:
    """Parse an ISO-8601 timestamp with an explicit offset into an aware UTC datetime.

    Returns ``None`` for anything else (naive timestamps included: a log line without a
    time zone cannot be placed in time).
    """
    if not isinstance(value, str) or len(value) < 19:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def _type_ok(field: Field, value: Any) -> bool:
    if field.type is FieldType.STRING:
        return isinstance(value, str) and value != ""
    if field.type is FieldType.INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if field.type is FieldType.FLOAT:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    return parse_timestamp(value) is not None


def _range_violation(field: Field, value: Any) -> Violation | None:
    if field.allowed is not None and value not in field.allowed:
        return Violation(field.range_reason, field.name, f"{value!r} not in {field.allowed}")
    if field.minimum is not None:
        too_low = value <= field.minimum if field.exclusive_minimum else value < field.minimum
        if too_low:
            reason = Reason.NEGATIVE_DWELL if field.name == "dwell_ms" else field.range_reason
            return Violation(reason, field.name, f"{value!r} below minimum {field.minimum}")
    if field.maximum is not None and value > field.maximum:
        return Violation(field.range_reason, field.name, f"{value!r} above maximum {field.maximum}")
    return None


def check_record(source: Source, record: Any) -> Violation | None:
    """Return the first contract violation of a decoded record, or ``None`` when valid.

    Checks run in a fixed order (keys, then types, then values) so every bad record gets one
    deterministic reason code.
    """
    if not isinstance(record, Mapping):
        return Violation(
            Reason.MALFORMED_JSON, None, f"expected an object, got {type(record).__name__}"
        )
    fields = SCHEMAS[source]
    for field in fields:
        if field.required and record.get(field.name) is None:
            return Violation(Reason.MISSING_KEY, field.name, f"missing required key {field.name!r}")
    for field in fields:
        value = record.get(field.name)
        if value is not None and not _type_ok(field, value):
            return Violation(
                Reason.WRONG_TYPE, field.name, f"{field.name}={value!r} is not a {field.type}"
            )
    for field in fields:
        value = record.get(field.name)
        if value is not None and field.type is not FieldType.TIMESTAMP:
            violation = _range_violation(field, value)
            if violation is not None:
                return violation
    return None


def check_line(source: Source, line: str | bytes) -> tuple[dict[str, Any] | None, Violation | None]:
    """Decode one JSON line and check it; returns ``(record, None)`` or ``(None, violation)``."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return None, Violation(Reason.MALFORMED_JSON, None, str(error))
    violation = check_record(source, record)
    return (None, violation) if violation else (record, None)


def lateness_reason(
    event_ts: datetime,
    partition_start: datetime,
    allowed_lateness: timedelta,
    allowed_skew: timedelta = timedelta(minutes=5),
) -> Reason | None:
    """Whether an event may be accepted into the partition that starts at ``partition_start``.

    An event may arrive in a later hour's partition than its own (a slow client), up to
    ``allowed_lateness``; later than that it is quarantined as ``late_event``. An event time
    after the partition's end plus the clock skew allowance is ``future_event``.
    """
    if event_ts < partition_start - allowed_lateness:
        return Reason.LATE_EVENT
    if event_ts >= partition_start + timedelta(hours=1) + allowed_skew:
        return Reason.FUTURE_EVENT
    return None


def partition_dir(landing_root: Path, source: Source | str, hour_start: datetime) -> Path:
    """Directory of one landing partition: ``v1/<source>/date=YYYY-MM-DD/hour=HH``."""
    hour_start = hour_start.astimezone(UTC)
    return (
        Path(landing_root)
        / f"v{CONTRACT_VERSION}"
        / str(Source(source))
        / f"date={hour_start:%Y-%m-%d}"
        / f"hour={hour_start:%H}"
    )


def field_names(source: Source) -> list[str]:
    """Keys of ``source`` in writer order."""
    return [field.name for field in SCHEMAS[source]]
