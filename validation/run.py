"""Validate curated partitions with a Great Expectations checkpoint on their Spark DataFrame.

A batch is one table's partition of one hour, or, for a run that ingested a range of hours
at once (a backfill, the demo's day), that table's partitions of the whole range as one
DataFrame: one checkpoint per table and run instead of one per table and hour.
:func:`validate_partition` never raises on failing expectations: it returns a
:class:`ValidationResult` naming the failed critical expectations and the warnings, and writes
it as JSON (with GX's full result) and as Data Docs HTML::

    <reports_dir>/<table>/date=YYYY-MM-DD/hour=HH.json        (one hour)
    <reports_dir>/<table>/date=YYYY-MM-DD/hours=HH+N.json     (N hours from HH)
    <reports_dir>/data_docs/index.html
    <reports_dir>/_gx/{expectations,validations}/   (the stores Data Docs are rendered from)

The wrapper (CLI, DAG task) decides to fail, with :meth:`ValidationResult.raise_for_critical`.
GX runs in an ephemeral context: no project directory, no usage statistics, no progress bars.
Its suite and validation stores live under ``_gx/`` so that each run's Data Docs index keeps
the pages of every earlier run instead of pruning them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from ingest.job import curated_partition_dir
from ingest.publish import row_count, write_json

from .config import Severity, ValidationParams
from .suites import build_suite, check_table, spark_schema

if TYPE_CHECKING:
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.data_context import AbstractDataContext
    from pyspark.sql import DataFrame, SparkSession

DATA_DOCS_DIR = "data_docs"
GX_STORES_DIR = "_gx"
DATA_DOCS_SITE = "muma"
DATASOURCE = "curated"
BATCH_DEFINITION = "partition"


class PartitionNotFoundError(FileNotFoundError):
    """The curated partition to validate does not exist (ingest has not run for it)."""


@dataclass(frozen=True, slots=True)
class FailedExpectation:
    """One expectation that did not hold.

    Attributes:
        check: Kind of check (:class:`validation.config.Check` value).
        severity: ``critical`` or ``warning``.
        expectation: GX expectation type, e.g. ``expect_column_values_to_be_between``.
        column: The column it is about, if any (``click_ts, ts`` for a column pair).
        kwargs: Its arguments other than the column (bounds, value set, row condition).
        observed: What was found: unexpected counts and examples, an observed value, or the
            error GX raised while evaluating it.
    """

    check: str
    severity: str
    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    observed: str

    @property
    def name(self) -> str:
        """``<check>: <expectation>(<column>)``, the identifier a message leads with."""
        return f"{self.check}: {self.expectation}({self.column or ''})"

    def __str__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.kwargs.items())
        return f"{self.name}{f' [{arguments}]' if arguments else ''} -> {self.observed}"


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """Outcome of validating one batch: a table's partition, or its partitions of a range.

    Attributes:
        table: Curated table.
        hour_start: Landing hour of the (first) partition (UTC).
        success: No critical expectation failed (warnings may have).
        critical_failures: Failed expectations whose check is critical.
        warnings: Failed expectations whose check is a warning.
        evaluated: Expectations evaluated.
        row_count: Rows in the batch.
        previous_row_count: Rows in the as many hours just before (``None``: one is missing).
        json_path: The JSON report.
        data_docs_path: The Data Docs page of this validation.
        failed_checks: Kinds of check that failed.
        hours: Hours in the batch, from ``hour_start``.
    """

    table: str
    hour_start: datetime
    success: bool
    critical_failures: tuple[FailedExpectation, ...]
    warnings: tuple[FailedExpectation, ...]
    evaluated: int
    row_count: int
    previous_row_count: int | None
    json_path: Path
    data_docs_path: Path
    failed_checks: frozenset[str] = field(default=frozenset())
    hours: int = 1

    @property
    def label(self) -> str:
        """``2026-11-01T05``, or ``2026-11-01T00+24h`` for a batch of several hours."""
        return f"{self.hour_start:%Y-%m-%dT%H}" + (f"+{self.hours}h" if self.hours > 1 else "")

    def raise_for_critical(self) -> None:
        """Raise :class:`ValidationFailed` naming each failed critical expectation, if any."""
        if not self.success:
            raise ValidationFailed(self)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (what the report file holds besides GX's own result)."""
        payload = asdict(self)
        payload["hour_start"] = self.hour_start.isoformat()
        payload["json_path"] = str(self.json_path)
        payload["data_docs_path"] = str(self.data_docs_path)
        payload["failed_checks"] = sorted(self.failed_checks)
        return payload


class ValidationFailed(RuntimeError):
    """Critical expectations failed; the message names each of them."""

    def __init__(self, result: ValidationResult) -> None:
        self.result = result
        lines = [
            f"{result.table} {result.label}: "
            f"{len(result.critical_failures)} critical expectation(s) failed "
            f"(report: {result.json_path}, Data Docs: {result.data_docs_path})"
        ]
        lines += [f"  - {failure}" for failure in result.critical_failures]
        super().__init__("\n".join(lines))


def report_path(reports_dir: Path, table: str, hour_start: datetime, hours: int = 1) -> Path:
    """``<reports_dir>/<table>/date=YYYY-MM-DD/hour=HH.json`` (``hours=HH+N.json`` for N > 1)."""
    hour_start = hour_start.astimezone(UTC)
    name = f"hour={hour_start:%H}.json" if hours == 1 else f"hours={hour_start:%H}+{hours}.json"
    return Path(reports_dir) / table / f"date={hour_start:%Y-%m-%d}" / name


def _footer_rows(directories: Iterable[Path]) -> int | None:
    """Rows of partitions from their Parquet footers; ``None`` when one is absent."""
    directories = list(directories)
    if not all(directory.is_dir() for directory in directories):
        return None
    return sum(row_count(directory) for directory in directories)


def _rows_by_domain(directories: Iterable[Path]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for directory in directories:
        for child in sorted(directory.iterdir()):
            if child.is_dir() and child.name.startswith("domain="):
                domain = child.name.removeprefix("domain=")
                rows[domain] = rows.get(domain, 0) + row_count(child)
    return rows


def read_partition(
    spark: SparkSession, curated_root: Path, table: str, hour_start: datetime
) -> DataFrame:
    """One curated partition as a DataFrame (``domain`` from its directories, if any).

    A partition directory without Parquet files (an hour without events) reads as an empty
    DataFrame of the table's contract schema.

    Raises:
        PartitionNotFoundError: The partition directory does not exist.
    """
    directory = curated_partition_dir(curated_root, check_table(table), hour_start)
    if not directory.is_dir():
        raise PartitionNotFoundError(
            f"no curated {table} partition for {hour_start.astimezone(UTC):%Y-%m-%dT%H:00Z} "
            f"at {directory}; ingest that hour first"
        )
    if not any(directory.rglob("*.parquet")):
        return spark.createDataFrame([], spark_schema(table))
    return spark.read.parquet(str(directory))


def _data_context(reports_dir: Path) -> AbstractDataContext:
    """An ephemeral GX context whose suites, results and Data Docs live under ``reports_dir``."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults()
    stores = dict(defaults.stores)
    for store_name, subdir in (
        (defaults.expectations_store_name, "expectations"),
        (defaults.validation_results_store_name, "validations"),
    ):
        stores[store_name] = {
            **stores[store_name],
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(reports_dir / GX_STORES_DIR / subdir),
            },
        }
    config = DataContextConfig(
        store_backend_defaults=defaults,
        stores=stores,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        data_docs_sites={
            DATA_DOCS_SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(reports_dir / DATA_DOCS_DIR),
                },
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _observed(result: Mapping[str, Any], exception: Mapping[str, Any] | None) -> str:
    if exception and exception.get("raised_exception"):
        return f"error: {exception.get('exception_message')}"
    if "unexpected_count" in result:
        examples = result.get("partial_unexpected_list") or []
        return (
            f"{result['unexpected_count']} of {result.get('element_count')} rows unexpected, "
            f"e.g. {examples[:5]!r}"
        )
    return f"observed {result.get('observed_value')!r}"


def _condition_text(condition: Any) -> str:
    """``domain == 'news'`` for GX's serialised row conditions; anything else as GX prints it."""
    if isinstance(condition, Mapping) and isinstance(condition.get("column"), Mapping):
        name = condition["column"].get("name")
        if condition.get("type") == "nullity":
            return f"{name} IS {'NULL' if condition.get('is_null') else 'NOT NULL'}"
        return f"{name} {condition.get('operator')} {condition.get('parameter')!r}"
    return repr(condition)


def _failures(gx_result: ExpectationSuiteValidationResult) -> list[FailedExpectation]:
    failures = []
    for outcome in gx_result.results:
        if outcome.success:
            continue
        config = outcome.expectation_config
        kwargs = {
            key: value
            for key, value in config.kwargs.items()
            if key not in ("batch_id", "column", "column_A", "column_B")
        }
        if kwargs.get("row_condition") is not None:
            kwargs["row_condition"] = _condition_text(kwargs["row_condition"])
        columns = [config.kwargs.get(key) for key in ("column", "column_A", "column_B")]
        column = ", ".join(str(name) for name in columns if name) or None
        meta = config.meta or {}
        failures.append(
            FailedExpectation(
                check=str(meta.get("check", "unknown")),
                severity=str(meta.get("severity", Severity.CRITICAL.value)),
                expectation=config.type,
                column=column,
                kwargs=kwargs,
                observed=_observed(outcome.result or {}, outcome.exception_info),
            )
        )
    return failures


def _docs_page(context: AbstractDataContext, identifier: Any, reports_dir: Path) -> Path:
    for site in context.get_docs_sites_urls(
        resource_identifier=identifier, site_names=[DATA_DOCS_SITE]
    ):
        url = site.get("site_url")
        if url and url.startswith("file://"):
            return Path(unquote(urlparse(url).path))
    return reports_dir / DATA_DOCS_DIR / "index.html"


def validate_partition(
    spark: SparkSession,
    curated_root: Path,
    table: str,
    hour_start: datetime,
    params: ValidationParams,
    hours: int = 1,
) -> ValidationResult:
    """Run the table's suite as a GX checkpoint on one batch of curated partitions.

    Args:
        spark: The session the partitions are read with.
        curated_root: Root of the curated tables.
        table: A curated table (:data:`validation.config.TABLES`).
        hour_start: Landing hour of the (first) partition (aware datetime).
        params: The ``validate`` section of params.yaml.
        hours: Hours from ``hour_start`` validated as one batch (their DataFrames united);
            the row-count check compares with as many hours just before.

    Returns:
        The result, also written as JSON and Data Docs; failing expectations do not raise.

    Raises:
        ValueError: ``table`` is not a curated table, ``hour_start`` is naive or not the
            start of an hour, or ``hours`` is less than 1.
        PartitionNotFoundError: A partition of the batch does not exist.
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    if hour_start.tzinfo is None:
        raise ValueError(f"hour_start must be timezone-aware, got {hour_start!r}")
    hour_start = hour_start.astimezone(UTC)
    if hour_start != hour_start.replace(minute=0, second=0, microsecond=0):
        raise ValueError(f"hour_start must be the start of an hour, got {hour_start.isoformat()}")
    if hours < 1:
        raise ValueError(f"a batch has at least one hour, got {hours}")
    table = check_table(table)
    curated_root = Path(curated_root)
    batch_hours = [hour_start + timedelta(hours=n) for n in range(hours)]
    frames = [read_partition(spark, curated_root, table, hour) for hour in batch_hours]
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.unionByName(other)
    directories = [curated_partition_dir(curated_root, table, hour) for hour in batch_hours]
    previous_rows = _footer_rows(
        curated_partition_dir(curated_root, table, hour_start - timedelta(hours=n + 1))
        for n in range(hours)
    )
    suite = build_suite(table, params, previous_rows, _rows_by_domain(directories))

    reports_dir = Path(params.reports_dir).resolve()
    context = _data_context(reports_dir)
    frame = frame.cache()
    try:
        rows = frame.count()
        batch = (
            context.data_sources.add_spark(name=DATASOURCE, persist=False)
            .add_dataframe_asset(name=table)
            .add_batch_definition_whole_dataframe(BATCH_DEFINITION)
        )
        suite = context.suites.add_or_update(suite)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{table}.{BATCH_DEFINITION}", data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"validate.{table}",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
                result_format={"result_format": params.result_format},
            )
        )
        # The run time is the batch's first hour, so a rerun replaces its Data Docs page.
        label = f"{hour_start:%Y-%m-%dT%H}" + (f"+{hours}h" if hours > 1 else "")
        run_id = RunIdentifier(run_name=label, run_time=hour_start)
        outcome = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)
    finally:
        frame.unpersist()
    ((identifier, gx_result),) = outcome.run_results.items()

    failures = _failures(gx_result)
    critical = tuple(f for f in failures if f.severity == Severity.CRITICAL)
    result = ValidationResult(
        table=table,
        hour_start=hour_start,
        success=not critical,
        critical_failures=critical,
        warnings=tuple(f for f in failures if f.severity != Severity.CRITICAL),
        evaluated=int(gx_result.statistics["evaluated_expectations"]),
        row_count=rows,
        previous_row_count=previous_rows,
        json_path=report_path(reports_dir, table, hour_start, hours),
        data_docs_path=_docs_page(context, identifier, reports_dir),
        failed_checks=frozenset(f.check for f in failures),
        hours=hours,
    )
    payload = result.summary()
    payload["critical_failures"] = [_failure_json(f) for f in result.critical_failures]
    payload["warnings"] = [_failure_json(f) for f in result.warnings]
    # GX's result round-trips through json for values it leaves as numpy or Decimal.
    payload["great_expectations"] = json.loads(json.dumps(gx_result.to_json_dict(), default=str))
    write_json(result.json_path, payload)
    return result


def _failure_json(failure: FailedExpectation) -> dict[str, Any]:
    return {**asdict(failure), "name": failure.name, "message": str(failure)}


def validate_hours(
    spark: SparkSession,
    curated_root: Path,
    tables: Iterable[str],
    hours: Iterable[datetime],
    params: ValidationParams,
    one_batch: bool = False,
) -> list[ValidationResult]:
    """:func:`validate_partition` for every table of every hour.

    Args:
        one_batch: Validate each run of consecutive hours of a table as one batch (one
            checkpoint per table and run of hours) instead of hour by hour.

    Raises:
        ValueError: A table is unknown (checked before anything runs).
        PartitionNotFoundError: A partition does not exist.
    """
    tables = [check_table(table) for table in tables]
    hours = sorted(set(hours))
    if not one_batch:
        return [
            validate_partition(spark, curated_root, table, hour, params)
            for hour in hours
            for table in tables
        ]
    return [
        validate_partition(spark, curated_root, table, first, params, hours=length)
        for first, length in consecutive_runs(hours)
        for table in tables
    ]


def consecutive_runs(hours: Iterable[datetime]) -> list[tuple[datetime, int]]:
    """``(first hour, length)`` of each run of consecutive hours, in order."""
    runs: list[tuple[datetime, int]] = []
    for hour in sorted(set(hours)):
        if runs and runs[-1][0] + timedelta(hours=runs[-1][1]) == hour:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((hour, 1))
    return runs
