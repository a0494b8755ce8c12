"""One Great Expectations suite per curated table, built from the data contract.

Column names, types, required keys, ranges and allowed values come from
:data:`muma.contract.SCHEMAS` (through :func:`ingest.schemas.curated_schema` for the Spark
types); nothing here lists a source's columns. The ``interactions`` table is the impressions'
columns plus the click and view labels that :func:`ingest.interactions.build_interactions`
adds, so its rules are composed from the impressions and views contracts.

Every expectation carries its :class:`~validation.config.Check` and its severity in ``meta``
(and GX's own ``severity``), so a result names what failed and whether it fails the stage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from muma.contract import SCHEMAS, Domain, Field, Source

from .config import INTERACTIONS, TABLES, Check, ValidationParams

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite
    from great_expectations.expectations import Expectation
    from pyspark.sql.types import StructType

_CLICK_LABELS = ("clicked", "click_ts")
_VIEW_LABELS = ("dwell_ms", "completion_ratio")
"""Columns ``build_interactions`` adds to each impression; the view labels keep the views
contract's ranges but are null when no view was attributed."""


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """What a curated column must hold.

    Attributes:
        name: Column name.
        spark_type: Name of the Spark type class (``StringType``, ``LongType``, ...).
        required: Never null.
        allowed: Allowed values of an enumerated string.
        minimum: Inclusive (or, with ``exclusive_minimum``, exclusive) lower bound.
        maximum: Inclusive upper bound.
        exclusive_minimum: Whether ``minimum`` itself is excluded.
    """

    name: str
    spark_type: str
    required: bool
    allowed: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False

    @classmethod
    def from_contract(cls, field: Field, spark_type: str) -> ColumnRule:
        return cls(
            name=field.name,
            spark_type=spark_type,
            required=field.required,
            allowed=field.allowed,
            minimum=field.minimum,
            maximum=field.maximum,
            exclusive_minimum=field.exclusive_minimum,
        )


def _source_rules(source: Source) -> dict[str, ColumnRule]:
    from ingest.schemas import curated_schema

    types = {column.name: type(column.dataType).__name__ for column in curated_schema(source)}
    return {
        field.name: ColumnRule.from_contract(field, types[field.name]) for field in SCHEMAS[source]
    }


def check_table(table: str) -> str:
    """Return ``table`` as a plain string if it is a curated table, else raise a ``ValueError``."""
    table = str(table)
    if table not in TABLES:
        raise ValueError(f"unknown curated table {table!r}; known tables: {', '.join(TABLES)}")
    return table


def table_rules(table: str) -> tuple[ColumnRule, ...]:
    """Columns of a curated table as read back from one partition directory.

    Sources with a ``domain`` keep it as a ``domain=<d>`` directory, which Spark reads back
    as a string column, so its rule does not change.
    """
    table = check_table(table)
    if table != INTERACTIONS:
        return tuple(_source_rules(Source(table)).values())
    impressions = _source_rules(Source.IMPRESSIONS)
    views = _source_rules(Source.VIEWS)
    clicked = ColumnRule(_CLICK_LABELS[0], "BooleanType", required=True)
    click_ts = replace(impressions["ts"], name=_CLICK_LABELS[1], required=False)
    labels = [replace(views[name], required=False) for name in _VIEW_LABELS]
    return (*impressions.values(), clicked, click_ts, *labels)


def spark_schema(table: str) -> StructType:
    """The Spark schema of :func:`table_rules`, for reading an empty partition."""
    from pyspark.sql import types

    return types.StructType(
        [
            types.StructField(rule.name, getattr(types, rule.spark_type)(), not rule.required)
            for rule in table_rules(table)
        ]
    )


def row_count_bounds(previous_rows: int, ratio: float) -> tuple[int, int]:
    """Row-count bounds within ``ratio`` times fewer or more rows than ``previous_rows``.

    Example:
        ``row_count_bounds(300, 3.0) == (100, 900)``; an empty previous partition allows
        ``(0, ceil(ratio))`` rows, so a trickle after an empty hour is not flagged.
    """
    if previous_rows < 0:
        raise ValueError(f"previous_rows must be >= 0, got {previous_rows}")
    low = math.floor(previous_rows / ratio)
    high = math.ceil(max(previous_rows, 1) * ratio)
    return low, high


class _SuiteBuilder:
    """Collects expectations, stamping each with its check and severity."""

    def __init__(self, table: str, params: ValidationParams) -> None:
        self.table = table
        self.params = params
        self.expectations: list[Expectation] = []

    def add(self, check: Check, expectation_class: type[Expectation], **kwargs: Any) -> None:
        severity = self.params.severity(check)
        self.expectations.append(
            expectation_class(
                **kwargs,
                severity=severity.value,
                meta={"check": check.value, "severity": severity.value, "table": self.table},
            )
        )


def build_suite(
    table: str,
    params: ValidationParams,
    previous_rows: int | None = None,
    rows_by_domain: Mapping[str, int] | None = None,
) -> ExpectationSuite:
    """The expectation suite of one partition of a curated table.

    Args:
        table: A curated table (:data:`validation.config.TABLES`).
        params: The ``validate`` section of params.yaml.
        previous_rows: Rows of the previous hour's partition; ``None`` (no previous partition)
            or a table outside ``params.row_count_change_tables`` adds no row-count check.
        rows_by_domain: Rows per domain of this partition; a domain's CTR is checked only
            from ``params.min_impressions_for_ctr`` rows on.

    Returns:
        A suite named after the table, not yet added to any data context.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    table = check_table(table)
    rules = table_rules(table)
    suite = _SuiteBuilder(table, params)
    suite.add(
        Check.SCHEMA,
        gxe.ExpectTableColumnsToMatchSet,
        column_set=[rule.name for rule in rules],
        exact_match=True,
    )
    for rule in rules:
        suite.add(
            Check.SCHEMA, gxe.ExpectColumnValuesToBeOfType, column=rule.name, type_=rule.spark_type
        )
    for rule in rules:
        if rule.required:
            suite.add(Check.NOT_NULL, gxe.ExpectColumnValuesToNotBeNull, column=rule.name)
    if any(rule.name == "event_id" for rule in rules):
        suite.add(Check.UNIQUE_EVENT_ID, gxe.ExpectColumnValuesToBeUnique, column="event_id")
    for rule in rules:
        if rule.allowed is not None:
            suite.add(
                Check.ALLOWED_VALUES,
                gxe.ExpectColumnValuesToBeInSet,
                column=rule.name,
                value_set=list(rule.allowed),
            )
    for rule in rules:
        _add_range(suite, rule, params)
    if table == INTERACTIONS:
        _add_interaction_checks(suite, params, rows_by_domain or {}, Column)
    if previous_rows is not None and table in params.row_count_change_tables:
        low, high = row_count_bounds(previous_rows, params.max_row_count_ratio)
        suite.add(
            Check.ROW_COUNT_CHANGE,
            gxe.ExpectTableRowCountToBeBetween,
            min_value=low,
            max_value=high,
        )
    return gx.ExpectationSuite(
        name=f"curated.{table}",
        expectations=suite.expectations,
        meta={"table": table, "previous_rows": previous_rows},
    )


def _add_range(suite: _SuiteBuilder, rule: ColumnRule, params: ValidationParams) -> None:
    import great_expectations.expectations as gxe

    if rule.minimum is None and rule.maximum is None:
        return
    check, maximum = Check.VALUE_RANGE, rule.maximum
    if rule.name == "propensity":
        check = Check.PROPENSITY
    elif rule.name == "dwell_ms":
        check, maximum = Check.DWELL, params.max_dwell_ms
    suite.add(
        check,
        gxe.ExpectColumnValuesToBeBetween,
        column=rule.name,
        min_value=rule.minimum,
        max_value=maximum,
        strict_min=rule.exclusive_minimum,
    )


def _add_interaction_checks(
    suite: _SuiteBuilder,
    params: ValidationParams,
    rows_by_domain: Mapping[str, int],
    column: type,
) -> None:
    """Click labels agree with each other; the CTR of each domain is plausible.

    ``click_ts`` is set exactly when ``clicked`` is, so the CTR of a domain is the share of
    its rows with a ``click_ts`` (GX has no mean of a boolean column on Spark).
    """
    import great_expectations.expectations as gxe

    clicked, click_ts = _CLICK_LABELS
    suite.add(
        Check.ATTRIBUTION,
        gxe.ExpectColumnValuesToNotBeNull,
        column=click_ts,
        row_condition=column(clicked) == True,  # noqa: E712 (builds a GX condition)
    )
    suite.add(
        Check.ATTRIBUTION,
        gxe.ExpectColumnValuesToBeNull,
        column=click_ts,
        row_condition=column(clicked) == False,  # noqa: E712 (builds a GX condition)
    )
    suite.add(
        Check.ATTRIBUTION,
        gxe.ExpectColumnPairValuesAToBeGreaterThanB,
        column_A=click_ts,
        column_B="ts",
        or_equal=True,
        ignore_row_if="either_value_is_missing",
    )
    for domain in Domain:
        bounds = params.ctr_bounds.get(domain)
        if bounds is None or rows_by_domain.get(domain.value, 0) < params.min_impressions_for_ctr:
            continue
        suite.add(
            Check.CTR,
            gxe.ExpectColumnProportionOfNonNullValuesToBeBetween,
            column=click_ts,
            min_value=bounds.min,
            max_value=bounds.max,
            row_condition=column("domain") == domain.value,
        )
