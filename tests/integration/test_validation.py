"""Great Expectations validation of curated partitions: clean data passes, broken data fails."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from ingest.config import IngestParams
from ingest.interactions import INTERACTIONS, build_interactions
from ingest.job import curated_partition_dir, ingest_partition
from muma.contract import SCHEMAS, Source
from simulator.config import SimulatorConfig
from simulator.logs import simulate
from validation.config import TABLES, Check, CtrBounds, ValidationParams
from validation.run import (
    PartitionNotFoundError,
    ValidationFailed,
    ValidationResult,
    consecutive_runs,
    validate_hours,
    validate_partition,
)
from validation.suites import build_suite, row_count_bounds, table_rules

HOUR = datetime(2026, 11, 1, 16, tzinfo=UTC)
INGEST = IngestParams(allowed_lateness_minutes=120, attribution_window_minutes=30)


@dataclass
class Curated:
    root: Path
    reports_dir: Path
    results: dict[str, ValidationResult]


@pytest.fixture(scope="module")
def curated(spark, tmp_path_factory: pytest.TempPathFactory) -> Curated:
    """One simulated hour, ingested and validated table by table."""
    root = tmp_path_factory.mktemp("validation")
    simulate(
        SimulatorConfig(users=300, items=300),
        11,
        HOUR,
        HOUR + timedelta(hours=1),
        root / "landing",
        root / "sidecar",
    )
    curated_root = root / "curated"
    for source in Source:
        ingest_partition(spark, root / "landing", curated_root, source, HOUR, INGEST)
    build_interactions(spark, curated_root, HOUR, INGEST)
    reports_dir = root / "reports"
    # Pass or fail does not depend on the result format; BOOLEAN_ONLY skips collecting
    # examples of unexpected values, one Spark job per column check.
    params = ValidationParams(reports_dir=reports_dir, result_format="BOOLEAN_ONLY")
    results = validate_hours(spark, curated_root, TABLES, [HOUR], params)
    return Curated(curated_root, reports_dir, {result.table: result for result in results})


def _copy(curated: Curated, tmp_path: Path) -> Path:
    root = tmp_path / "curated"
    shutil.copytree(curated.root, root)
    return root


def _write_rows(directory: Path, template: Path, rows: list[dict]) -> None:
    """Write ``rows`` beside a curated file, with its column types (every column nullable)."""
    schema = pq.read_schema(template)
    schema = pa.schema([field.with_nullable(True) for field in schema])
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), directory / "part-tampered.parquet")


def _footer_rows(directory: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in directory.rglob("*.parquet"))


def test_tables_are_the_sources_and_interactions():
    assert set(TABLES) == {source.value for source in Source} | {INTERACTIONS}


def test_suites_follow_the_contract():
    params = ValidationParams()
    for source in Source:
        assert [rule.name for rule in table_rules(source)] == [f.name for f in SCHEMAS[source]]
    impressions = build_suite(Source.IMPRESSIONS, params, previous_rows=300)
    columns_checked = {
        (e.expectation_type, getattr(e, "column", None)) for e in impressions.expectations
    }
    for field in SCHEMAS[Source.IMPRESSIONS]:
        assert ("expect_column_values_to_not_be_null", field.name) in columns_checked
        assert ("expect_column_values_to_be_of_type", field.name) in columns_checked
    propensity = next(
        e for e in impressions.expectations if e.meta["check"] == Check.PROPENSITY.value
    )
    assert (propensity.min_value, propensity.max_value, propensity.strict_min) == (0.0, 1.0, True)
    row_count = next(
        e for e in impressions.expectations if e.meta["check"] == Check.ROW_COUNT_CHANGE.value
    )
    assert (row_count.min_value, row_count.max_value) == (100, 900)
    assert row_count.meta["severity"] == "warning"
    assert {e.meta["severity"] for e in impressions.expectations} == {"critical", "warning"}
    made_critical = ValidationParams(critical=(*params.critical, Check.ROW_COUNT_CHANGE))
    suite = build_suite(Source.IMPRESSIONS, made_critical, previous_rows=300)
    assert {
        e.meta["severity"] for e in suite.expectations if e.meta["check"] == "row_count_change"
    } == {"critical"}
    # Items and social edges start with a full snapshot: no row-count check by default.
    items = build_suite(Source.ITEMS, params, previous_rows=300)
    assert all(e.meta["check"] != Check.ROW_COUNT_CHANGE.value for e in items.expectations)


def test_row_count_bounds():
    assert row_count_bounds(300, 3.0) == (100, 900)
    assert row_count_bounds(0, 3.0) == (0, 3)
    with pytest.raises(ValueError, match="previous_rows"):
        row_count_bounds(-1, 3.0)


def test_params_reject_unknown_keys_tables_and_checks():
    with pytest.raises(ValidationError, match="extra"):
        ValidationParams(max_dwel_ms=10)
    with pytest.raises(ValidationError, match="unknown tables"):
        ValidationParams(row_count_change_tables=("impressions", "podcasts"))
    with pytest.raises(ValidationError):
        ValidationParams(critical=("schema", "vibes"))
    with pytest.raises(ValidationError, match="above max"):
        CtrBounds(min=0.5, max=0.1)


def test_clean_partitions_pass_every_critical_expectation(curated: Curated):
    assert set(curated.results) == set(TABLES)
    for table, result in curated.results.items():
        assert result.success, f"{table}: {[str(f) for f in result.critical_failures]}"
        assert result.critical_failures == ()
        assert result.warnings == (), f"{table}: {[str(f) for f in result.warnings]}"
        assert result.evaluated > len(table_rules(table))
        directory = curated_partition_dir(curated.root, table, HOUR)
        assert result.row_count == _footer_rows(directory) > 0
        assert result.previous_row_count is None
        result.raise_for_critical()


def test_reports_are_written_as_json_and_data_docs(curated: Curated):
    for table, result in curated.results.items():
        assert result.json_path == (
            curated.reports_dir / table / "date=2026-11-01" / "hour=16.json"
        )
        report = json.loads(result.json_path.read_text())
        assert report["success"] is True
        assert report["row_count"] == result.row_count
        gx_result = report["great_expectations"]
        assert gx_result["statistics"]["evaluated_expectations"] == result.evaluated
        checks = {r["expectation_config"]["meta"]["check"] for r in gx_result["results"]}
        assert {"schema", "not_null"} <= checks
        assert result.data_docs_path.is_file()
        assert result.data_docs_path.suffix == ".html"
        assert (curated.reports_dir / "data_docs") in result.data_docs_path.parents
    index = (curated.reports_dir / "data_docs" / "index.html").read_text()
    # Every table's run is still listed after the later runs rebuilt the index.
    for table in TABLES:
        assert f"curated.{table}" in index
    impressions = json.loads(curated.results[Source.IMPRESSIONS].json_path.read_text())
    checks = {
        r["expectation_config"]["meta"]["check"]
        for r in impressions["great_expectations"]["results"]
    }
    assert {"propensity", "value_range", "allowed_values", "unique_event_id"} <= checks
    interactions = json.loads(curated.results[INTERACTIONS].json_path.read_text())
    checks = {
        r["expectation_config"]["meta"]["check"]
        for r in interactions["great_expectations"]["results"]
    }
    assert {"ctr", "attribution", "dwell"} <= checks


def test_failing_expectations_fail_the_stage_and_are_named(spark, curated: Curated, tmp_path):
    root = _copy(curated, tmp_path)
    partition = curated_partition_dir(root, Source.IMPRESSIONS, HOUR)
    template = next((partition / "domain=news").glob("*.parquet"))
    good = pq.read_table(template).slice(0, 1).to_pylist()[0]
    bad_propensity = {**good, "event_id": "tampered-1", "propensity": 1.5}
    no_user = {**good, "event_id": "tampered-2", "user_id": None}
    _write_rows(partition / "domain=news", template, [bad_propensity, no_user])
    _write_rows(partition / "domain=podcast", template, [{**good, "event_id": "tampered-3"}])

    params = ValidationParams(reports_dir=tmp_path / "reports")
    result = validate_partition(spark, root, Source.IMPRESSIONS, HOUR, params)

    assert not result.success
    failed = {(f.check, f.column) for f in result.critical_failures}
    assert failed == {
        ("propensity", "propensity"),
        ("not_null", "user_id"),
        ("allowed_values", "domain"),
    }
    propensity = next(f for f in result.critical_failures if f.check == "propensity")
    assert "1.5" in propensity.observed
    assert json.loads(result.json_path.read_text())["success"] is False
    with pytest.raises(ValidationFailed) as raised:
        result.raise_for_critical()
    message = str(raised.value)
    assert "3 critical expectation(s) failed" in message
    assert "propensity: expect_column_values_to_be_between(propensity)" in message
    assert "not_null: expect_column_values_to_not_be_null(user_id)" in message
    assert "allowed_values: expect_column_values_to_be_in_set(domain)" in message
    assert "'podcast'" in message
    assert "not_null: expect_column_values_to_not_be_null(user_id) -> 1 of" in message


def test_warnings_keep_success(spark, curated: Curated, tmp_path):
    """Five times as many rows an hour earlier, and a CTR far above the plausible range."""
    root = _copy(curated, tmp_path)
    partition = curated_partition_dir(root, INTERACTIONS, HOUR)
    previous = curated_partition_dir(root, INTERACTIONS, HOUR - timedelta(hours=1))
    template = next((partition / "domain=news").glob("*.parquet"))
    rows = pq.read_table(template).to_pylist()
    _write_rows(previous / "domain=news", template, rows * 5 * 3)
    news_rows = len(rows)
    params = ValidationParams(
        reports_dir=tmp_path / "reports",
        ctr_bounds={"news": CtrBounds(min=0.0, max=0.0001)},
        min_impressions_for_ctr=1,
    )

    result = validate_partition(spark, root, INTERACTIONS, HOUR, params)

    assert result.success, [str(f) for f in result.critical_failures]
    assert result.previous_row_count == news_rows * 15
    assert {(f.check, f.severity) for f in result.warnings} == {
        ("row_count_change", "warning"),
        ("ctr", "warning"),
    }
    ctr = next(f for f in result.warnings if f.check == "ctr")
    assert ctr.kwargs["row_condition"] == "domain == 'news'"
    result.raise_for_critical()
    report = json.loads(result.json_path.read_text())
    assert {w["check"] for w in report["warnings"]} == {"row_count_change", "ctr"}


def test_missing_partition_and_unknown_table_are_clear_errors(spark, curated: Curated, tmp_path):
    params = ValidationParams(reports_dir=tmp_path / "reports")
    with pytest.raises(PartitionNotFoundError, match="no curated clicks partition"):
        validate_partition(spark, curated.root, "clicks", HOUR + timedelta(hours=3), params)
    with pytest.raises(ValueError, match="unknown curated table 'podcasts'"):
        validate_hours(spark, curated.root, ["impressions", "podcasts"], [HOUR], params)
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_partition(spark, curated.root, "clicks", HOUR.replace(tzinfo=None), params)
    with pytest.raises(ValueError, match="start of an hour"):
        validate_partition(spark, curated.root, "clicks", HOUR.replace(minute=30), params)
    assert not (tmp_path / "reports").exists()


def test_an_hour_without_events_validates_as_empty(spark, curated: Curated, tmp_path):
    root = _copy(curated, tmp_path)
    later = HOUR + timedelta(hours=2)
    curated_partition_dir(root, Source.GAZE, later).mkdir(parents=True)
    params = ValidationParams(reports_dir=tmp_path / "reports", result_format="BOOLEAN_ONLY")
    result = validate_partition(spark, root, Source.GAZE, later, params)
    assert result.success
    assert (result.row_count, result.previous_row_count) == (0, None)
    assert result.json_path.is_file()


def test_consecutive_hours_group_into_runs():
    hours = [HOUR + timedelta(hours=n) for n in (5, 0, 1, 2, 7, 6, 1)]
    assert consecutive_runs(hours) == [(HOUR, 3), (HOUR + timedelta(hours=5), 3)]
    assert consecutive_runs([]) == []


def test_a_range_is_validated_as_one_batch_per_table(spark, curated: Curated, tmp_path):
    """A run that ingested two hours: one checkpoint per table over both, bad rows named."""
    root = _copy(curated, tmp_path)
    later = HOUR + timedelta(hours=1)
    partition = curated_partition_dir(root, Source.IMPRESSIONS, HOUR)
    template = next((partition / "domain=news").glob("*.parquet"))
    good = pq.read_table(template).slice(0, 1).to_pylist()[0]
    _write_rows(
        curated_partition_dir(root, Source.IMPRESSIONS, later) / "domain=news",
        template,
        [{**good, "event_id": "late-1", "propensity": 0.0}],
    )
    curated_partition_dir(root, Source.GAZE, later).mkdir(parents=True)
    params = ValidationParams(reports_dir=tmp_path / "reports", result_format="BOOLEAN_ONLY")

    results = validate_hours(
        spark, root, [Source.IMPRESSIONS, Source.GAZE], [HOUR, later], params, one_batch=True
    )

    by_table = {result.table: result for result in results}
    assert len(results) == 2
    impressions, gaze = by_table[Source.IMPRESSIONS], by_table[Source.GAZE]
    assert (impressions.hours, impressions.label) == (2, f"{HOUR:%Y-%m-%dT%H}+2h")
    assert impressions.row_count == curated.results[Source.IMPRESSIONS].row_count + 1
    assert {(f.check, f.column) for f in impressions.critical_failures} == {
        ("propensity", "propensity")
    }
    assert impressions.json_path.name == f"hours={HOUR:%H}+2.json"
    assert json.loads(impressions.json_path.read_text())["hours"] == 2
    assert "+2h: 1 critical expectation(s) failed" in str(ValidationFailed(impressions))
    assert gaze.success and gaze.row_count == curated.results[Source.GAZE].row_count
    with pytest.raises(ValueError, match="at least one hour"):
        validate_partition(spark, root, Source.GAZE, HOUR, params, hours=0)
