"""Spark schemas of the curated and quarantine tables, derived from :data:`muma.contract.SCHEMAS`.

The contract is declared once, in :mod:`muma.contract`; nothing here lists a source's keys.
"""

from __future__ import annotations

from pyspark.sql.types import (
    DataType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from muma.contract import SCHEMAS, FieldType, Source

_SPARK_TYPES: dict[FieldType, DataType] = {
    FieldType.STRING: StringType(),
    FieldType.INT: LongType(),
    FieldType.FLOAT: DoubleType(),
    FieldType.TIMESTAMP: TimestampType(),
}

RAW_LINE, REASON, FIELD, DETAIL = "raw_line", "reason", "field", "detail"
"""Quarantine columns: the line as it landed, and why it is quarantined."""

QUARANTINE_SCHEMA = StructType(
    [
        StructField(RAW_LINE, StringType(), nullable=False),
        StructField(REASON, StringType(), nullable=False),
        StructField(FIELD, StringType(), nullable=True),
        StructField(DETAIL, StringType(), nullable=True),
    ]
)
"""Columns of quarantine files; ``source``, ``date`` and ``hour`` come from the directory names."""


def curated_schema(source: Source) -> StructType:
    """Typed columns of ``source``'s curated table, in writer order; timestamps are UTC."""
    return StructType(
        [
            StructField(field.name, _SPARK_TYPES[field.type], nullable=not field.required)
            for field in SCHEMAS[source]
        ]
    )


def has_domain(source: Source) -> bool:
    """Whether ``source`` carries a content domain (its curated table is partitioned by it)."""
    return any(field.name == "domain" for field in SCHEMAS[source])
