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
"""Columns the classifier adds: the line as it landed, and why (if at all) it is quarantined."""

PARTITION_START = "_partition_start"
"""Epoch microseconds of the landing partition's hour a line came from (batched runs)."""

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


def classified_schema(source: Source) -> StructType:
    """Output of the line classifier: the curated columns plus the quarantine columns.

    Timestamps leave the Python worker as epoch microseconds (``LongType``) and become
    ``TimestampType`` in Spark, so no time zone is ever guessed on the Arrow boundary.
    """
    fields = [
        StructField(
            field.name,
            LongType() if field.type is FieldType.TIMESTAMP else _SPARK_TYPES[field.type],
            nullable=True,
        )
        for field in SCHEMAS[source]
    ]
    return StructType(
        [
            StructField(RAW_LINE, StringType(), nullable=False),
            *fields,
            StructField(REASON, StringType(), nullable=True),
            StructField(FIELD, StringType(), nullable=True),
            StructField(DETAIL, StringType(), nullable=True),
        ]
    )


def has_domain(source: Source) -> bool:
    """Whether ``source`` carries a content domain (its curated table is partitioned by it)."""
    return any(field.name == "domain" for field in SCHEMAS[source])
