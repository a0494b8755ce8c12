"""Classification of landing lines: a native Spark fast path, the contract's Python for the rest.

The contract is :func:`muma.contract.check_line` (plus :func:`muma.contract.lateness_reason`).
Running it per line in Python workers costs tens of microseconds a line, so lines go two ways:

* **Fast path (JVM, no Python).** A line is *accepted* natively only when it can be proved
  valid exactly as ``check_line`` would find it: it must match a strict, anchored regular
  expression (:func:`fast_path_pattern`) built from :data:`muma.contract.SCHEMAS` that admits a
  subset of JSON with one reading only -- the source's keys in writer order, no other or
  repeated keys, no whitespace, strings of printable ASCII without escapes, integers without a
  fraction or exponent, ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)`` timestamps -- and then pass
  every range, enumeration, timestamp and lateness rule, checked natively on the values
  ``from_json`` reads from it. Under that grammar Spark's lenient JSON reader and the strict
  contract read the same values.
* **Fallback (Python).** Every other line -- whatever its problem, or merely an unusual shape
  (key order, whitespace, unicode, escapes, extra keys, naive or odd timestamps) -- goes
  through ``check_line`` in ``mapInArrow``, so every quarantine reason code is the
  contract's own and every unusual-but-valid line is still curated.

The fast path never rejects: at worst it sends a valid line to the fallback. Parity is tested
line by line in ``tests/integration/test_ingest_classify_parity.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from muma.contract import (
    SCHEMAS,
    Field,
    FieldType,
    Source,
    check_line,
    lateness_reason,
    parse_timestamp,
)

from .schemas import DETAIL, FIELD, PARTITION_START, RAW_LINE, REASON

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
ALLOWED_SKEW = timedelta(minutes=5)
"""Clock skew allowance of :func:`muma.contract.lateness_reason` (its default)."""

ACCEPTED = "_accepted"
"""Column of the natively classified frame: the line is proved valid and on time."""
_SHAPED = "_shaped"

_STRING = r'"[ !#-\[\]-~]+"'
"""A non-empty JSON string of printable ASCII without quote, backslash or escapes."""
_INT = r"(?:0|-?[1-9][0-9]{0,17})"
"""A JSON integer that fits a 64-bit long, no fraction, exponent, sign on zero or padding."""
_FLOAT = r"-?(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,25})?(?:[eE][-+]?[0-9]{1,2})?"
"""A JSON number whose double is finite and not subnormal-rounded to zero."""
_TIMESTAMP = (
    r'"(?:19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}'
    r'(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})"'
)
"""ISO-8601 with an explicit offset; calendar validity is checked on the value."""
_VALUE_PATTERNS = {
    FieldType.STRING: _STRING,
    FieldType.INT: _INT,
    FieldType.FLOAT: _FLOAT,
    FieldType.TIMESTAMP: _TIMESTAMP,
}


def fast_path_pattern(source: Source) -> str:
    """Java regular expression of the lines the fast path may accept for ``source``.

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


def _spark_read_type(field: Field):
    from pyspark.sql.types import DoubleType, LongType, StringType

    return {
        FieldType.STRING: StringType(),
        FieldType.INT: LongType(),
        FieldType.FLOAT: DoubleType(),
        FieldType.TIMESTAMP: StringType(),
    }[field.type]


def timestamp_micros(text: Column) -> Column:
    """Epoch microseconds of a string matching the fast path's timestamp grammar, else null.

    Under the grammar (``YYYY-MM-DDTHH:MM:SS[.ffffff]`` then ``Z`` or ``+HH:MM``/``-HH:MM``,
    which the fast path's regular expression guarantees) Spark's own string-to-timestamp
    cast reads the same instant as ``fromisoformat`` and is the cheapest parser Spark has.
    It gives null for impossible dates and times (Feb 30, hour 24, minute or second 60),
    as ``fromisoformat`` rejects them, and for offsets beyond +-18:00, which Python may
    accept: null only sends the line to the Python fallback, never to quarantine.
    """
    from pyspark.sql import functions as F

    return F.unix_micros(text.try_cast("timestamp"))


def _value_ok(field: Field, value: Column) -> Column:
    """Native range and enumeration rules of ``field`` (the value is known to be typed)."""
    from pyspark.sql import functions as F

    ok = F.lit(True)
    if field.type is FieldType.FLOAT:
        ok = ok & ~F.isnan(value) & (F.abs(value) != F.lit(float("inf")))
    if field.allowed is not None:
        ok = ok & value.isin(*field.allowed)
    if field.minimum is not None:
        ok = ok & (value > field.minimum if field.exclusive_minimum else value >= field.minimum)
    if field.maximum is not None:
        ok = ok & (value <= field.maximum)
    return ok


def native_classified(lines: DataFrame, source: Source, allowed_lateness: timedelta) -> DataFrame:
    """Add the typed columns of ``source`` and :data:`ACCEPTED` to ``lines``.

    Args:
        lines: Columns ``value`` (the raw line) and :data:`PARTITION_START` (epoch
            microseconds of the landing partition's hour).
        source: Landing source.
        allowed_lateness: As in :func:`muma.contract.lateness_reason`.

    Returns:
        ``lines`` plus one column per contract field (timestamps as epoch microseconds) and
        ``_accepted``: true only for lines ``check_line`` accepts and lateness lets in.
        Typed columns are meaningful only where ``_accepted`` is true.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import StructField, StructType

    fields = SCHEMAS[source]
    read_schema = StructType(
        [StructField(field.name, _spark_read_type(field), nullable=True) for field in fields]
    )
    # One projection per step, each expensive expression computed once and referenced by
    # name: Spark does not collapse a projection whose non-trivial expressions are used more
    # than once, so the regular expression, the JSON parse and each timestamp run once a row.
    shaped = lines.select(
        "value", PARTITION_START, F.col("value").rlike(fast_path_pattern(source)).alias(_SHAPED)
    )
    parsed = shaped.select(
        "value",
        PARTITION_START,
        _SHAPED,
        F.when(F.col(_SHAPED), F.from_json(F.col("value"), read_schema)).alias("_parsed"),
    )
    typed = parsed.select(
        "value",
        PARTITION_START,
        _SHAPED,
        *[
            (
                timestamp_micros(F.col("_parsed").getField(field.name))
                if field.type is FieldType.TIMESTAMP
                else F.col("_parsed").getField(field.name)
            ).alias(field.name)
            for field in fields
        ],
        *[
            F.col("_parsed").getField(field.name).isNotNull().alias(f"_present_{field.name}")
            for field in fields
        ],
    )
    accepted = F.col(_SHAPED)
    for field in fields:
        value = F.col(field.name)
        rule = value.isNotNull() if field.type is FieldType.TIMESTAMP else _value_ok(field, value)
        present = F.col(f"_present_{field.name}")
        rule = (present & rule) if field.required else (~present | rule)
        accepted = accepted & F.coalesce(rule, F.lit(False))
    lateness_micros = allowed_lateness // _MICROSECOND
    horizon_micros = (timedelta(hours=1) + ALLOWED_SKEW) // _MICROSECOND
    on_time = (F.col("ts") >= F.col(PARTITION_START) - F.lit(lateness_micros)) & (
        F.col("ts") < F.col(PARTITION_START) + F.lit(horizon_micros)
    )
    accepted = accepted & F.coalesce(on_time, F.lit(False))
    return typed.select(
        "value", PARTITION_START, *[field.name for field in fields], accepted.alias(ACCEPTED)
    )


def _to_column_value(field_type: FieldType, value: Any) -> Any:
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


def line_classifier(
    source: Source, allowed_lateness: timedelta, arrow_schema: pa.Schema
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A ``mapInArrow`` function classifying ``value`` lines with the contract's Python.

    Input batches hold ``value`` and :data:`PARTITION_START` (epoch microseconds); output
    rows follow ``arrow_schema`` (:data:`PARTITION_START`, then
    :func:`ingest.schemas.classified_schema`).
    """
    fields = SCHEMAS[source]

    def classify(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            columns: dict[str, list[Any]] = {name: [] for name in arrow_schema.names}
            starts = batch.column(PARTITION_START).to_pylist()
            # Spark's text reader does not validate UTF-8: read the lines as bytes, so a line
            # with invalid bytes is quarantined as malformed JSON instead of failing the job.
            lines = batch.column("value").cast(pa.binary()).to_pylist()
            for line, start in zip(lines, starts, strict=True):
                partition_start = _EPOCH + start * _MICROSECOND
                record, quarantine = classify_line(source, line, partition_start, allowed_lateness)
                columns[PARTITION_START].append(start)
                columns[RAW_LINE].append(line.decode("utf-8", "replace"))
                if quarantine is None:
                    for field in fields:
                        columns[field.name].append(
                            _to_column_value(field.type, record.get(field.name))
                        )
                    reason = field_name = detail = None
                else:
                    for field in fields:
                        columns[field.name].append(None)
                    reason, field_name, detail = quarantine
                columns[REASON].append(reason)
                columns[FIELD].append(field_name)
                columns[DETAIL].append(detail)
            yield pa.RecordBatch.from_pydict(columns, schema=arrow_schema)

    return classify


def classify_lines(
    lines: DataFrame, source: Source, allowed_lateness: timedelta
) -> tuple[DataFrame, DataFrame]:
    """Classify ``lines`` (``value``, :data:`PARTITION_START`): fast path, then fallback.

    Returns:
        ``(natively_annotated, fallback)``: the first is :func:`native_classified`'s frame
        (cache it: both outputs read it); the second is the Python classification of the
        lines the fast path did not accept: :data:`PARTITION_START`, then
        :func:`ingest.schemas.classified_schema`.
        Curated candidates are the accepted rows of the first plus the rows of the second
        without a reason.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import LongType, StructField, StructType

    from .schemas import classified_schema

    annotated = native_classified(lines, source, allowed_lateness)
    schema = StructType(
        [StructField(PARTITION_START, LongType(), nullable=False), *classified_schema(source)]
    )
    classifier = line_classifier(source, allowed_lateness, to_arrow_schema(schema))
    fallback = (
        annotated.where(~F.col(ACCEPTED))
        .select("value", PARTITION_START)
        .mapInArrow(classifier, schema)
    )
    return annotated, fallback
