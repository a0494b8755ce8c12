"""The contract's classification of one landing line, and the strict shape grammar.

The contract is :func:`muma.contract.check_line` plus :func:`muma.contract.lateness_reason`:
:func:`classify_line` applies both and gives the reason code a line is quarantined under.
Running it per line costs tens of microseconds, so ingest (:mod:`ingest.curate`) proves most
lines valid with Arrow's vectorised kernels and sends only the rest here.

:func:`shape_pattern` is a strict, anchored regular expression built from
:data:`muma.contract.SCHEMAS` that admits a subset of JSON with one reading only -- the
source's keys in writer order, no other or repeated keys, no whitespace, strings of printable
ASCII without escapes, integers without a fraction or exponent,
``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)`` timestamps. Ingest uses it to pick the lines a
lenient parser may read when the partition as a whole does not parse.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from muma.contract import (
    SCHEMAS,
    FieldType,
    Source,
    check_line,
    lateness_reason,
    parse_timestamp,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
ALLOWED_SKEW = timedelta(minutes=5)
"""Clock skew allowance of :func:`muma.contract.lateness_reason` (its default)."""

_STRING = r'"[ !#-\[\]-~]+"'
"""A non-empty JSON string of printable ASCII without quote, backslash or escapes."""
_INT = r"(?:0|-?[1-9][0-9]{0,17})"
"""A JSON integer that fits a 64-bit long, no fraction, exponent, sign on zero or padding."""
_FLOAT = r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,25})?(?:[eE][-+]?[0-9]{1,2})?"
"""A JSON number whose double is finite and not subnormal-rounded to zero."""
TIMESTAMP_PATTERN = (
    r'"(?:19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}'
    r'(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})"'
)
"""ISO-8601 with an explicit offset; calendar validity is checked on the value."""
_VALUE_PATTERNS = {
    FieldType.STRING: _STRING,
    FieldType.INT: _INT,
    FieldType.FLOAT: _FLOAT,
    FieldType.TIMESTAMP: TIMESTAMP_PATTERN,
}


def shape_pattern(source: Source) -> str:
    """Regular expression (Java and RE2 alike) of the lines with one reading for ``source``.

    Keys come in :data:`muma.contract.SCHEMAS` order; an optional key is absent, ``null`` or
    a value. ``\\A``/``\\z`` anchor the whole line (``$`` would allow a trailing newline).
    """
    parts = []
    for n, field in enumerate(SCHEMAS[source]):
        value = _VALUE_PATTERNS[field.type]
        comma = "," if n else ""
        if field.required:
            parts.append(f'{comma}"{field.name}":{value}')
        else:
            parts.append(f'(?:{comma}"{field.name}":(?:null|{value}))?')
    return r"\A\{" + "".join(parts) + r"\}\z"


def to_column_value(field_type: FieldType, value: Any) -> Any:
    if value is None:
        return None
    if field_type is FieldType.TIMESTAMP:
        return (parse_timestamp(value) - _EPOCH) // _MICROSECOND
    if field_type is FieldType.FLOAT:
        return float(value)
    return value


def classify_line(
    source: Source, line: str | bytes, partition_start: datetime, allowed_lateness: timedelta
) -> tuple[dict[str, Any] | None, tuple[str, str | None, str] | None]:
    """``(record, None)`` for a line to curate, ``(None, (reason, field, detail))`` otherwise."""
    record, violation = check_line(source, line)
    if violation is not None:
        return None, (violation.reason.value, violation.field, violation.detail)
    event_ts = parse_timestamp(record["ts"])
    late = lateness_reason(event_ts, partition_start, allowed_lateness, ALLOWED_SKEW)
    if late is not None:
        detail = f"ts={record['ts']} for partition {partition_start.isoformat()}"
        return None, (late.value, "ts", detail)
    return record, None
