"""Per-line classification of a landing partition, run inside Spark's Python workers.

Every line goes through :func:`muma.contract.check_line` and, when valid, through
:func:`muma.contract.lateness_reason`: Spark quarantines exactly the lines the contract
rejects, under exactly the contract's reason code, because it runs the contract's own code.
The price is Python per line (measured: see the ingest report); a native rewrite must keep
``tests/integration/test_ingest.py``'s parity test green.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

from muma.contract import SCHEMAS, FieldType, Source, check_line, lateness_reason, parse_timestamp

from .schemas import DETAIL, FIELD, RAW_LINE, REASON

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _to_column_value(field_type: FieldType, value: Any) -> Any:
    if value is None:
        return None
    if field_type is FieldType.TIMESTAMP:
        return (parse_timestamp(value) - _EPOCH) // _MICROSECOND
    if field_type is FieldType.FLOAT:
        return float(value)
    return value


def classify_line(
    source: Source, line: str, partition_start: datetime, allowed_lateness: timedelta
) -> tuple[dict[str, Any] | None, tuple[str, str | None, str] | None]:
    """``(record, None)`` for a line to curate, ``(None, (reason, field, detail))`` otherwise."""
    record, violation = check_line(source, line)
    if violation is not None:
        return None, (violation.reason.value, violation.field, violation.detail)
    event_ts = parse_timestamp(record["ts"])
    late = lateness_reason(event_ts, partition_start, allowed_lateness)
    if late is not None:
        detail = f"ts={record['ts']} for partition {partition_start.isoformat()}"
        return None, (late.value, "ts", detail)
    return record, None


def line_classifier(
    source: Source, partition_start: datetime, allowed_lateness: timedelta, arrow_schema: pa.Schema
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A ``mapInArrow`` function turning batches of ``value`` lines into classified rows."""
    fields = SCHEMAS[source]

    def classify(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            columns: dict[str, list[Any]] = {name: [] for name in arrow_schema.names}
            for line in batch.column("value").to_pylist():
                record, quarantine = classify_line(source, line, partition_start, allowed_lateness)
                columns[RAW_LINE].append(line)
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
