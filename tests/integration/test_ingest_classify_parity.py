"""The vectorised path classifies every line exactly as the contract's ``check_line`` does.

Lines: a simulated landing zone with every injected bad kind, plus near-valid variants of
valid lines for each source -- the JSON subtleties where Arrow's reader and the contract may
differ (numbers in string fields, ``1.0`` for ints, strings for numbers, booleans,
nulls, extra, repeated or missing keys, key order, timestamp offsets, unicode, escapes,
whitespace, range and lateness edges).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from ingest.classify import classify_line, to_column_value
from ingest.config import IngestParams
from ingest.curate import classify_partition, split_lines
from ingest.schemas import RAW_LINE, REASON
from muma.contract import SCHEMAS, FieldType, Source
from muma.landing import read_partition_lines
from simulator.config import BadRecords, SimulatorConfig
from simulator.logs import hours_between, simulate

START = datetime(2026, 11, 1, 16, tzinfo=UTC)
HOURS = list(hours_between(START, START + timedelta(hours=2)))
PARAMS = IngestParams(allowed_lateness_minutes=120)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_ODD_VALUES: list[object] = [
    None,
    True,
    False,
    0,
    -0.0,
    1,
    -1,
    1.0,
    2.5,
    1e2,
    2**63,
    -(2**63) - 1,
    10**30,
    "",
    " ",
    "1",
    "1.0",
    "0.5",
    "true",
    "null",
    "NaN",
    "é",
    "\u0000x",
    [],
    {},
    [1],
    {"a": 1},
]
_RAW_VALUES = [
    "-0",
    "1.0",
    "1e2",
    "1E+2",
    "0.10",
    "00",
    "01",
    "1.",
    ".5",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "1e-400",
    "0.0000000000000000000001",
    "123456789012345678901234567890",
    '"a\\u0041"',
    '"a\\"b"',
    '"\\u00e9"',
    '"é"',
    '"tab\\t"',
    '"\'"',
]
_TIMESTAMPS = [
    "2026-11-01T16:30:00Z",
    "2026-11-01T16:30:00+00:00",
    "2026-11-01T17:30:00+01:00",
    "2026-11-01T16:30:00-00:00",
    "2026-11-01T16:30:00.1Z",
    "2026-11-01T16:30:00.123456Z",
    "2026-11-01T16:30:00.1234567Z",
    "2026-11-01T16:30:00",
    "2026-11-01 16:30:00Z",
    "2026-11-01t16:30:00z",
    "2026-11-01T16:30:00+00:60",
    "2026-11-02T16:29:00+23:59",
    "2026-11-01T16:30:00+24:00",
    "2026-02-30T16:30:00Z",
    "2026-11-01T24:00:00Z",
    "2026-11-01T16:30:60Z",
    "2026-11-01T16:30Z",
    "2026-11-01",
    "20261101T163000Z",
    "2026-W44-7T16:30:00Z",
    "0001-01-01T00:00:00Z",
    "2026-11-01T16:30:00.Z",
    " 2026-11-01T16:30Z",
    # Lateness and future edges for the partition starting at 16:00 (lateness 120 min).
    "2026-11-01T14:00:00Z",
    "2026-11-01T13:59:59.999999Z",
    "2026-11-01T17:04:59.999999Z",
    "2026-11-01T17:05:00Z",
    "2026-11-01T18:05:00+01:00",
]


def _dumps(record: dict) -> str:
    """Compact JSON as writers emit it; ``json`` also writes ints beyond 64 bits and NaN."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


def _raw_with(record: dict, name: str, raw: str) -> str:
    """``record`` as JSON with ``name``'s value replaced by the literal text ``raw``."""
    marker = "__raw_marker__"
    return _dumps({**record, name: marker}).replace(f'"{marker}"', raw)


def near_valid_variants(line: str, source: Source) -> list[str]:
    """Lines one edit away from the valid ``line``: shapes, types, values, keys."""
    record = orjson.loads(line)
    names = [field.name for field in SCHEMAS[source]]
    variants = [
        " " + line,
        line + " ",
        line + "\r",
        "\t" + line,
        line.replace(":", ": ", 1),
        line.replace(",", " ,", 1),
        line + "\n",
        "[" + line + "]",
        line[:-1] + ',"extra":1}',
        line[:-1] + f',"event_id":{orjson.dumps(record["event_id"]).decode()}}}',
        line[:-1] + ',"event_id":"other"}',
        line[:-1] + ',"ts":null}',
        _dumps(dict(reversed(list(record.items())))),
        line.replace('"', "'"),
        '{"' + names[0] + '":' + orjson.dumps(record[names[0]]).decode() + "," + line[1:],
    ]
    for field in SCHEMAS[source]:
        without = {k: v for k, v in record.items() if k != field.name}
        variants += [_dumps(without), _dumps({**record, field.name: None})]
        variants += [_dumps({**record, field.name: value}) for value in _ODD_VALUES]
        variants += [_raw_with(record, field.name, raw) for raw in _RAW_VALUES]
        if field.type is FieldType.TIMESTAMP:
            variants += [_dumps({**record, field.name: ts}) for ts in _TIMESTAMPS]
        if field.allowed:
            variants += [
                _dumps({**record, field.name: value})
                for value in (*field.allowed, field.allowed[0].upper(), field.allowed[0] + " ")
            ]
        for bound in (field.minimum, field.maximum):
            if bound is None:
                continue
            for delta in (-1, -1e-9, 0, 1e-9, 1):
                value = bound + delta
                if field.type is FieldType.INT:
                    value = int(bound) + int(delta)
                variants.append(_dumps({**record, field.name: value}))
            variants.append(_raw_with(record, field.name, f"{bound:.1f}"))
    return variants


def contract_valid_line(source: Source, hour: datetime) -> str:
    """A valid line of ``source`` built from the contract alone (sources the small simulated
    world may leave without a valid line, such as gaze)."""
    record: dict[str, object] = {}
    for field in SCHEMAS[source]:
        if field.allowed:
            record[field.name] = field.allowed[0]
        elif field.type is FieldType.STRING:
            record[field.name] = f"{field.name[0]}0001"
        elif field.type is FieldType.INT:
            record[field.name] = int(field.minimum or 0) + 1
        elif field.type is FieldType.FLOAT:
            record[field.name] = 0.5
        else:
            record[field.name] = f"{hour + timedelta(minutes=30):%Y-%m-%dT%H:%M:%S}.250Z"
    return _dumps(record)


def python_classification(source: Source, line: str, start: datetime) -> tuple:
    record, quarantine = classify_line(source, line, start, PARAMS.allowed_lateness)
    if quarantine is not None:
        return (line, quarantine[0], None)
    values = tuple(to_column_value(f.type, record.get(f.name)) for f in SCHEMAS[source])
    return (line, None, values)


def arrow_classification(source: Source, lines: list[str], start: datetime, route: str):
    """``(line, reason, typed values)`` per line from the vectorised path and the contract.

    ``route``: ``"partition"`` classifies the lines as one partition (the injected bad lines
    make Arrow's reader fail on it as a whole, so the regular expression picks the lines it
    parses); ``"line"`` classifies each line as a partition of its own, so every line Arrow's
    reader takes goes through the whole-partition route and its column checks.
    """
    start_micros = (start - _EPOCH) // timedelta(microseconds=1)
    groups = [lines] if route == "partition" else [[line] for line in lines]
    names = [field.name for field in SCHEMAS[source]]
    found: Counter = Counter()
    accepted: set[str] = set()
    for group in groups:
        data = "".join(line + "\n" for line in group).encode()
        classified = classify_partition(
            split_lines(data), source, start_micros, PARAMS.allowed_lateness
        )
        raw = [line.decode() for line in classified.raw_lines().to_pylist()]
        for line, row in zip(raw, classified.curated.to_pylist(), strict=True):
            found[(line, None, tuple(row[name] for name in names))] += 1
        for row in classified.quarantine.to_pylist():
            found[(row[RAW_LINE], row[REASON], None)] += 1
        accepted.update(raw[: classified.vectorised])
    return found, accepted


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("parity")
    config = SimulatorConfig(users=200, items=200, bad_records=BadRecords(share=0.08))
    simulate(config, 11, HOURS[0], HOURS[-1] + timedelta(hours=1), root / "landing", root / "side")
    return root / "landing"


@pytest.mark.parametrize("route", ["partition", "line"])
@pytest.mark.parametrize("source", list(Source))
def test_vectorised_path_equals_check_line(landing: Path, source: Source, route: str):
    hour = max(HOURS, key=lambda h: len(read_partition_lines(landing, source, h)))
    simulated = [raw.decode() for raw in read_partition_lines(landing, source, hour)]
    valid = [line for line in simulated if python_classification(source, line, hour)[1] is None]
    seeds = [*valid[:2], contract_valid_line(source, hour)]
    assert python_classification(source, seeds[-1], hour)[1] is None
    # A landing line never holds a newline: the reader splits there.
    variants = [v for line in seeds for v in near_valid_variants(line, source) if "\n" not in v]
    lines = simulated + seeds + variants
    expected = Counter(python_classification(source, line, hour) for line in lines)
    found, accepted = arrow_classification(source, lines, hour, route)
    assert found == expected
    reasons = {reason for _, reason, _ in expected if reason}
    assert len(reasons) >= 3, reasons
    # The vectorised path must carry the simulated valid lines, or it is no fast path.
    assert seeds[-1] in accepted
    assert sum(line in accepted for line in valid) >= 0.95 * len(valid)
    if route == "line":
        # Keys in another order: the regular expression refuses the shape, Arrow's reader
        # of a whole partition takes it.
        assert _dumps(dict(reversed(list(orjson.loads(seeds[-1]).items())))) in accepted
