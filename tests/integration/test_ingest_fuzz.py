"""Bad-input fuzzer for the real Spark ingest: at least 10,000 malformed records across every
landing source, and every record accounted for.

A seeded generator mutates valid simulated records of each source: random truncation, wrong
types, missing keys, huge values, bad unicode (invalid UTF-8, lone surrogates, control
characters, a carriage return inside a line), NaN and infinities, negative or absurd dwell,
propensities out of range, unknown enum values, bad or far-off timestamps, non-objects,
deep nesting and repeated event ids. The partitions go through ``ingest_partition`` as in
production. Nothing may crash, the records read must equal the lines written, and
``read = curated + quarantined (each with a reason) + duplicates`` must hold from the
Parquet files themselves, not only from the job's own reconciliation.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

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
from muma.contract import SCHEMAS, FieldType, Reason, Source, check_line
from muma.landing import read_partition_lines, write_partition_bytes
from simulator.config import SimulatorConfig
from simulator.logs import simulate

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

HOUR = datetime(2026, 11, 1, 16, tzinfo=UTC)
PARAMS = IngestParams(allowed_lateness_minutes=120)
MALFORMED_PER_SOURCE = 1_700
"""6 sources x 1,700 = 10,200 malformed records, on top of the valid ones they came from."""

Mutation = Callable[[random.Random, dict, str], bytes]

_WRONG_VALUES: list[object] = [
    None,
    True,
    [],
    {},
    [1, 2],
    {"nested": {"deeper": [1]}},
    "",
    "12",
    12,
    -1,
    0.5,
    2**70,
]


def _dumps(record: object) -> bytes:
    return json.dumps(record, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def _field(rng: random.Random, source: str, kind: FieldType | None = None) -> str:
    fields = [f for f in SCHEMAS[Source(source)] if kind is None or f.type is kind]
    return rng.choice(fields or list(SCHEMAS[Source(source)])).name


def truncate(rng: random.Random, record: dict, source: str) -> bytes:
    text = _dumps(record)
    return text[: rng.randrange(1, len(text) - 1)]


def wrong_type(rng: random.Random, record: dict, source: str) -> bytes:
    return _dumps(record | {_field(rng, source): rng.choice(_WRONG_VALUES)})


def missing_key(rng: random.Random, record: dict, source: str) -> bytes:
    required = [f.name for f in SCHEMAS[Source(source)] if f.required]
    broken = dict(record)
    for name in rng.sample(required, rng.randint(1, min(3, len(required)))):
        broken.pop(name, None)
    return _dumps(broken)


def huge_value(rng: random.Random, record: dict, source: str) -> bytes:
    value = rng.choice(["x" * rng.choice([10_000, 200_000]), 10**40, -(10**40), 1e308, -1e308])
    return _dumps(record | {_field(rng, source): value})


def bad_unicode(rng: random.Random, record: dict, source: str) -> bytes:
    name = _field(rng, source, FieldType.STRING)
    choice = rng.randrange(5)
    if choice == 0:  # invalid UTF-8 bytes inside a string value
        return _dumps(record | {name: "@@"}).replace(b"@@", b"\xff\xfe\xc3(")
    if choice == 1:  # a lone surrogate, escaped and raw
        return _dumps(record | {name: "a\ud800b"})
    if choice == 2:  # raw control characters and a NUL
        return _dumps(record | {name: "@@"}).replace(b"@@", b"a\x00\x07\x1b")
    if choice == 3:  # a carriage return inside the line (JSON Lines ends records at \n only)
        return _dumps(record | {name: "@@"}).replace(b"@@", b"left\rright")
    return _dumps(record | {name: "emoji \U0001f600 \u202e rtl \ufeff bom"})


def nan_number(rng: random.Random, record: dict, source: str) -> bytes:
    name = _field(rng, source, rng.choice([FieldType.INT, FieldType.FLOAT]))
    return _dumps(record | {name: rng.choice([math.nan, math.inf, -math.inf])})


def negative_dwell(rng: random.Random, record: dict, source: str) -> bytes:
    if source != Source.VIEWS:
        return wrong_type(rng, record, source)
    return _dumps(record | {"dwell_ms": rng.choice([-1, -60_000, 10**12, 6 * 3600 * 1000 + 1])})


def bad_propensity(rng: random.Random, record: dict, source: str) -> bytes:
    if source != Source.IMPRESSIONS:
        return out_of_range(rng, record, source)
    return _dumps(record | {"propensity": rng.choice([0.0, -0.25, 1.0000001, 7, "0.5"])})


def out_of_range(rng: random.Random, record: dict, source: str) -> bytes:
    numbers = [f for f in SCHEMAS[Source(source)] if f.type in (FieldType.INT, FieldType.FLOAT)]
    enums = [f for f in SCHEMAS[Source(source)] if f.allowed]
    if numbers and (not enums or rng.random() < 0.5):
        field = rng.choice(numbers)
        low = -1 if field.minimum is None else field.minimum - 1
        high = 10**9 if field.maximum is None else field.maximum * 2 + 1
        return _dumps(record | {field.name: rng.choice([low, high])})
    if enums:
        field = rng.choice(enums)
        return _dumps(record | {field.name: rng.choice(["", "NEWS", "podcast", "friend "])})
    return bad_timestamp(rng, record, source)


def bad_timestamp(rng: random.Random, record: dict, source: str) -> bytes:
    name = _field(rng, source, FieldType.TIMESTAMP)
    value = rng.choice(
        [
            "yesterday",
            "2026-11-01T16:30:00",  # no offset
            "2026-02-30T16:30:00Z",
            "2026-11-01T25:00:00Z",
            "1970-01-01T00:00:00Z",  # far too late
            "2099-01-01T00:00:00Z",  # from the future
            "2026-11-01T13:00:00Z",  # later than the allowed lateness
            1_762_000_000,
            "",
        ]
    )
    return _dumps(record | {name: value})


def not_an_object(rng: random.Random, record: dict, source: str) -> bytes:
    return rng.choice(
        [
            b"[1, 2, 3]",
            b'"just a string"',
            b"null",
            b"42",
            b"{}",
            b"{,}",
            b"{'single': 'quotes'}",
            b"\x00\x01\x02",
            b"\xef\xbb\xbf" + _dumps(record),  # a byte-order mark before the object
            _dumps(record) + b" trailing",
            _dumps(record) + _dumps(record),  # two objects on one line
            b"[" * 3000 + b"]" * 3000,  # deep nesting
            b'{"a":' * 2000 + b"1" + b"}" * 2000,
        ]
    )


def repeated_key(rng: random.Random, record: dict, source: str) -> bytes:
    name = _field(rng, source)
    text = _dumps(record)
    return text[:-1] + b"," + _dumps({name: rng.choice(_WRONG_VALUES)})[1:]


MUTATIONS: tuple[Mutation, ...] = (
    truncate,
    wrong_type,
    missing_key,
    huge_value,
    bad_unicode,
    nan_number,
    negative_dwell,
    bad_propensity,
    out_of_range,
    bad_timestamp,
    not_an_object,
    repeated_key,
)


def fuzz_lines(
    valid: list[bytes], source: str, count: int, seed: int
) -> tuple[list[bytes], Counter]:
    """``count`` malformed lines mutated from ``valid``, plus 2% exact duplicates of valid ones.

    Returns the lines (valid ones and mutants shuffled together) and how many each mutation made.
    """
    rng = random.Random(f"{seed}-{source}")
    records = [orjson.loads(line) for line in valid]
    made: Counter[str] = Counter()
    lines = list(valid)
    for _ in range(count):
        mutation = rng.choice(MUTATIONS)
        line = mutation(rng, dict(rng.choice(records)), source)
        lines.append(line.replace(b"\n", b"\\n"))  # one record per line, whatever it holds
        made[mutation.__name__] += 1
    duplicates = rng.sample(valid, max(1, len(valid) // 50))
    lines += duplicates
    made["duplicate_of_valid"] += len(duplicates)
    rng.shuffle(lines)
    return lines, made


@pytest.fixture(scope="module")
def fuzzed(spark, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("fuzz")
    simulate(
        SimulatorConfig(users=300, items=300), 11, HOUR, HOUR + timedelta(hours=1), root / "sim"
    )
    landing, curated = root / "landing", root / "curated"
    written: dict[Source, list[bytes]] = {}
    made: dict[Source, Counter] = {}
    for source in Source:
        valid = read_partition_lines(root / "sim", source, HOUR)
        assert valid, f"the simulator wrote no {source} records"
        lines, made[source] = fuzz_lines(valid, source, MALFORMED_PER_SOURCE, seed=10)
        write_partition_bytes(landing, source, HOUR, b"\n".join(lines) + b"\n")
        written[source] = lines
    results = {
        source: ingest_partition(spark, landing, curated, source, HOUR, PARAMS) for source in Source
    }
    return {"curated": curated, "written": written, "made": made, "results": results}


def test_at_least_ten_thousand_malformed_records_over_every_source(fuzzed: dict, reliability):
    made = fuzzed["made"]
    malformed = sum(sum(c.values()) - c["duplicate_of_valid"] for c in made.values())
    assert malformed >= 10_000
    assert set(made) == set(Source)
    for counts in made.values():
        assert {m.__name__ for m in MUTATIONS} <= set(counts)
    reliability.record(
        "bad_input_ingest",
        {
            "malformed_records": malformed,
            "records_written": sum(len(lines) for lines in fuzzed["written"].values()),
            "sources": len(made),
            "mutations": sorted({name for c in made.values() for name in c}),
        },
    )


def test_every_record_is_accounted_for(fuzzed: dict, reliability):
    curated_root = fuzzed["curated"]
    totals = Counter()
    for source, result in fuzzed["results"].items():
        lines = fuzzed["written"][source]
        assert result.records_read == len(lines), source
        curated = pq.read_table(curated_partition_dir(curated_root, source, HOUR)).num_rows
        quarantine = pq.read_table(quarantine_partition_dir(curated_root, source, HOUR))
        assert curated + quarantine.num_rows + result.duplicates_dropped == len(lines), source
        assert all(quarantine["reason"].to_pylist()), f"{source}: a quarantined row has no reason"
        assert set(quarantine["reason"].to_pylist()) <= {reason.value for reason in Reason}
        assert json.loads(reconciliation_path(curated_root, source, HOUR).read_text())["holds"]
        totals.update(
            read=len(lines),
            curated=curated,
            quarantined=quarantine.num_rows,
            duplicates=result.duplicates_dropped,
        )
    lost = totals["read"] - totals["curated"] - totals["quarantined"] - totals["duplicates"]
    assert lost == 0
    reliability.record("bad_input_ingest_accounting", dict(totals) | {"records_lost": lost})


def test_what_the_contract_rejects_is_quarantined_with_its_reason(fuzzed: dict):
    curated_root = fuzzed["curated"]
    for source in Source:
        expected = Counter()
        for line in fuzzed["written"][source]:
            _, violation = check_line(source, line)
            if violation is not None:
                expected[violation.reason.value] += 1
        stored = Counter(
            pq.read_table(quarantine_partition_dir(curated_root, source, HOUR))[
                "reason"
            ].to_pylist()
        )
        for reason, count in expected.items():
            assert stored[reason] >= count, (source, reason, stored[reason], count)
