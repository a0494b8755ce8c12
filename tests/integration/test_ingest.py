"""Spark ingest of simulated landing partitions: quarantine, dedup, reconciliation, reruns."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from ingest.config import IngestParams
from ingest.interactions import INTERACTIONS, build_interactions, build_interactions_hours
from ingest.job import (
    IngestResult,
    ReconciliationError,
    curated_partition_dir,
    ingest_partition,
    quarantine_partition_dir,
    reconciliation_path,
)
from muma.contract import (
    Reason,
    Source,
    check_line,
    lateness_reason,
    parse_timestamp,
    partition_dir,
)
from muma.landing import read_partition_lines
from simulator.config import BadRecords, SimulatorConfig
from simulator.logs import hours_between, simulate

START = datetime(2026, 11, 1, 16, tzinfo=UTC)
HOURS = list(hours_between(START, START + timedelta(hours=2)))
PARAMS = IngestParams(allowed_lateness_minutes=120, attribution_window_minutes=30)
CROSS_RECORD_REASONS = {Reason.DUPLICATE_EVENT_ID.value, Reason.CLICK_WITHOUT_IMPRESSION.value}


@dataclass
class IngestedRun:
    landing_root: Path
    sidecar_root: Path
    curated_root: Path
    results: dict[tuple[Source, datetime], IngestResult]

    def manifest(self, source: Source, hour: datetime) -> list[dict]:
        path = partition_dir(self.sidecar_root / "injected", source, hour) / "bad.jsonl"
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]

    def quarantine(self, source: Source, hour: datetime) -> Counter[tuple[str, str]]:
        table = pq.read_table(quarantine_partition_dir(self.curated_root, source, hour))
        return Counter(zip(table["raw_line"].to_pylist(), table["reason"].to_pylist(), strict=True))


def ingest_all(spark, landing_root: Path, curated_root: Path) -> dict:
    return {
        (source, hour): ingest_partition(spark, landing_root, curated_root, source, hour, PARAMS)
        for hour in HOURS
        for source in Source
    }


def snapshot(root: Path) -> dict[str, bytes]:
    """Every Parquet file under ``root`` by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def run(spark, tmp_path_factory: pytest.TempPathFactory) -> IngestedRun:
    root = tmp_path_factory.mktemp("ingest")
    config = SimulatorConfig(users=300, items=300, bad_records=BadRecords(share=0.05))
    simulate(
        config, 7, HOURS[0], HOURS[-1] + timedelta(hours=1), root / "landing", root / "sidecar"
    )
    curated_root = root / "curated"
    results = ingest_all(spark, root / "landing", curated_root)
    return IngestedRun(root / "landing", root / "sidecar", curated_root, results)


def test_reconciliation_holds_and_is_written(run: IngestedRun):
    for (source, hour), result in run.results.items():
        lines = read_partition_lines(run.landing_root, source, hour)
        assert result.records_read == len(lines)
        assert result.records_read == (
            result.curated + result.quarantined + result.duplicates_dropped
        )
        assert result.holds
        written = json.loads(reconciliation_path(run.curated_root, source, hour).read_text())
        assert written["records_read"] == result.records_read
        assert written["curated"] == _rows(curated_partition_dir(run.curated_root, source, hour))


def _rows(directory: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in directory.rglob("*.parquet"))


def test_every_injected_bad_record_is_quarantined_with_its_reason(run: IngestedRun):
    checked = Counter()
    for source, hour in run.results:
        expected = Counter(
            (entry["line"], entry["reason"])
            for entry in run.manifest(source, hour)
            if entry["reason"] not in CROSS_RECORD_REASONS
        )
        found = run.quarantine(source, hour)
        assert not expected - found, f"{source} {hour}: missing {expected - found}"
        checked.update(reason for _, reason in expected.elements())
    assert checked[Reason.LATE_EVENT] > 0
    assert checked[Reason.MALFORMED_JSON] > 0


def test_late_events_are_quarantined_as_late(run: IngestedRun):
    for (source, hour), result in run.results.items():
        injected = sum(e["kind"] == "late_event" for e in run.manifest(source, hour))
        assert result.quarantined_by_reason.get(Reason.LATE_EVENT, 0) == injected


def test_duplicates_are_counted_not_curated(spark, run: IngestedRun):
    for (source, hour), result in run.results.items():
        injected = sum(e["kind"] == "duplicate_event_id" for e in run.manifest(source, hour))
        assert result.duplicates_dropped == injected
    assert sum(r.duplicates_dropped for r in run.results.values()) > 0
    for source in Source:
        table = spark.read.parquet(str(run.curated_root / source))
        assert table.count() == table.select("event_id").distinct().count()


def test_spark_reasons_equal_check_line(run: IngestedRun):
    for source, hour in run.results:
        expected = Counter()
        for raw in read_partition_lines(run.landing_root, source, hour):
            record, violation = check_line(source, raw)
            reason = (
                violation.reason
                if violation
                else lateness_reason(parse_timestamp(record["ts"]), hour, PARAMS.allowed_lateness)
            )
            if reason is not None:
                expected[(raw.decode(), reason.value)] += 1
        assert run.quarantine(source, hour) == expected, f"{source} {hour}"


def test_curated_rows_are_typed_and_utc(spark, run: IngestedRun):
    impressions = spark.read.parquet(str(run.curated_root / Source.IMPRESSIONS))
    assert dict(impressions.dtypes)["ts"] == "timestamp"
    assert dict(impressions.dtypes)["position"] == "bigint"
    assert {"date", "hour", "domain"} <= set(impressions.columns)
    curated_ts = dict(
        zip(
            *pq.read_table(run.curated_root / Source.IMPRESSIONS, columns=["event_id", "ts"])
            .to_pydict()
            .values(),
            strict=True,
        )
    )
    landed_ts, raw_ts = {}, []
    for hour in HOURS:
        for raw in read_partition_lines(run.landing_root, Source.IMPRESSIONS, hour):
            record, violation = check_line(Source.IMPRESSIONS, raw)
            if violation is None and record["event_id"] in curated_ts:
                landed_ts[record["event_id"]] = parse_timestamp(record["ts"])
                raw_ts.append(record["ts"])
    assert landed_ts == curated_ts
    assert any(not ts.endswith("Z") for ts in raw_ts), "no local offsets were normalised"


def test_rerun_replaces_partitions_byte_identically(spark, run: IngestedRun):
    before = snapshot(run.curated_root)
    rerun = ingest_all(spark, run.landing_root, run.curated_root)
    assert snapshot(run.curated_root) == before
    for key, result in rerun.items():
        assert result.duplicates_dropped == run.results[key].duplicates_dropped
        assert result.curated == run.results[key].curated
    assert not list((run.curated_root / "_staging").iterdir())


def test_events_curated_in_an_earlier_partition_are_duplicates(spark, run: IngestedRun, tmp_path):
    """The same hour landing again two hours later: every accepted event is a duplicate."""
    curated_root = tmp_path / "curated"
    shutil.copytree(run.curated_root, curated_root)
    landing_root = tmp_path / "landing"
    later = HOURS[0] + timedelta(hours=2)
    target = partition_dir(landing_root, Source.IMPRESSIONS, later)
    shutil.copytree(partition_dir(run.landing_root, Source.IMPRESSIONS, HOURS[0]), target)
    result = ingest_partition(spark, landing_root, curated_root, Source.IMPRESSIONS, later, PARAMS)
    first = run.results[(Source.IMPRESSIONS, HOURS[0])]
    assert result.curated == 0
    assert result.duplicates_dropped == first.curated + first.duplicates_dropped
    assert result.quarantined == first.quarantined


def test_failed_reconciliation_publishes_nothing(spark, run: IngestedRun, tmp_path, monkeypatch):
    curated_root = tmp_path / "curated"
    shutil.copytree(run.curated_root, curated_root)
    before = snapshot(curated_root)
    monkeypatch.setattr("ingest.job.row_count", lambda directory: 0)
    with pytest.raises(ReconciliationError, match="nothing published"):
        ingest_partition(spark, run.landing_root, curated_root, Source.VIEWS, HOURS[0], PARAMS)
    assert snapshot(curated_root) == before


@pytest.fixture(scope="module")
def interactions(spark, run: IngestedRun) -> dict:
    return {hour: build_interactions(spark, run.curated_root, hour, PARAMS) for hour in HOURS}


def test_one_interaction_per_impression(spark, run: IngestedRun, interactions: dict):
    for hour, result in interactions.items():
        assert result.holds
        assert result.interactions == run.results[(Source.IMPRESSIONS, hour)].curated
    table = spark.read.parquet(str(run.curated_root / INTERACTIONS))
    assert table.count() == table.select("event_id").distinct().count()
    assert {"clicked", "dwell_ms", "position", "propensity", "policy", "model_version"} <= set(
        table.columns
    )


def test_clicks_are_attributed_or_quarantined(spark, run: IngestedRun, interactions: dict):
    table = spark.read.parquet(str(run.curated_root / INTERACTIONS))
    for hour, result in interactions.items():
        injected = {
            orjson.loads(entry["line"])["event_id"]
            for entry in run.manifest(Source.CLICKS, hour)
            if entry["reason"] == Reason.CLICK_WITHOUT_IMPRESSION
        }
        quarantined = pq.read_table(quarantine_partition_dir(run.curated_root, INTERACTIONS, hour))
        assert set(quarantined["reason"].to_pylist()) <= {Reason.CLICK_WITHOUT_IMPRESSION.value}
        found = {orjson.loads(line)["event_id"] for line in quarantined["raw_line"].to_pylist()}
        assert found == injected
        # Every simulated click has its impression in the same hour, each on a distinct one.
        assert result.clicked == result.clicks_attributed
    clicked = table.where("clicked")
    assert clicked.count() > 0
    assert clicked.where("dwell_ms IS NOT NULL").count() >= 0.8 * clicked.count()
    assert table.where("NOT clicked AND click_ts IS NOT NULL").count() == 0


def test_hours_built_together_equal_hour_by_hour(spark, run: IngestedRun, tmp_path):
    # Without hour 0's news impressions, their clicks of hours 0 and 1 are unattributed.
    roots = {"alone": tmp_path / "alone", "together": tmp_path / "together"}
    for root in roots.values():
        for source in (Source.IMPRESSIONS, Source.CLICKS, Source.VIEWS):
            shutil.copytree(run.curated_root / str(source), root / str(source))
        shutil.rmtree(curated_partition_dir(root, Source.IMPRESSIONS, HOURS[0]) / "domain=news")
    alone = [build_interactions(spark, roots["alone"], hour, PARAMS) for hour in HOURS]
    together = build_interactions_hours(spark, roots["together"], reversed(HOURS), PARAMS)
    assert [r.hour_start for r in together] == [h.isoformat() for h in HOURS]
    assert sum(r.clicks_without_impression for r in together) > 0
    for one, both in zip(alone, together, strict=True):
        assert both.holds
        assert asdict(one) | {"seconds": 0} == asdict(both) | {"seconds": 0}
        hour = datetime.fromisoformat(both.hour_start)
        written = json.loads(reconciliation_path(roots["together"], INTERACTIONS, hour).read_text())
        assert written == asdict(both)
    for table in (INTERACTIONS, f"quarantine/source={INTERACTIONS}"):
        assert snapshot(roots["together"] / table) == snapshot(roots["alone"] / table)


def test_hours_without_curated_impressions_build_nothing(spark, run: IngestedRun, tmp_path):
    together = tmp_path / "curated"
    shutil.copytree(run.curated_root / str(Source.IMPRESSIONS), together / str(Source.IMPRESSIONS))
    absent = HOURS[-1] + timedelta(hours=5)
    with pytest.raises(FileNotFoundError, match=f"{absent:%Y-%m-%dT%H}"):
        build_interactions_hours(spark, together, [HOURS[0], absent], PARAMS)
    assert not (together / INTERACTIONS).exists()


def test_the_spark_connect_dispatch_labels_what_the_rdd_dispatch_does(
    spark, run: IngestedRun, tmp_path
):
    """Spark Connect has no RDDs: the same hours through ``mapInArrow`` give the same."""
    from ingest.interactions import _task
    from ingest.job import run_on_executors
    from ingest.label import OUTCOME_SCHEMA, run_hours

    def tasks(staging: Path) -> list:
        return [_task(run.curated_root, staging, hour, 1, PARAMS) for hour in HOURS]

    slots = [[1], [0]]
    arrow_tasks = tasks(tmp_path / "arrow")
    through_arrow = sorted(
        run_on_executors(
            spark, slots, lambda slot: run_hours(arrow_tasks, slot), OUTCOME_SCHEMA, connect=True
        )
    )
    direct = sorted(
        report for slot in slots for report in run_hours(tasks(tmp_path / "direct"), slot)
    )
    assert through_arrow == direct
    assert snapshot(tmp_path / "arrow") == snapshot(tmp_path / "direct")


def test_interactions_that_do_not_reconcile_publish_nothing(
    spark, run: IngestedRun, tmp_path, monkeypatch
):
    import ingest.interactions as interactions_module

    root = tmp_path / "curated"
    for source in (Source.IMPRESSIONS, Source.CLICKS, Source.VIEWS):
        shutil.copytree(run.curated_root / str(source), root / str(source))
    real_run = interactions_module._run

    def one_row_short(spark, tasks):
        outcomes = real_run(spark, tasks)
        outcomes[HOURS[1].isoformat()].interactions -= 1
        return outcomes

    monkeypatch.setattr(interactions_module, "_run", one_row_short)
    with pytest.raises(ReconciliationError, match=f"{HOURS[1]:%Y-%m-%dT%H}"):
        build_interactions_hours(spark, root, HOURS, PARAMS)
    assert not (root / INTERACTIONS).exists()
    assert not (root / "_reconciliation").exists()
    assert not any((root / "_staging").glob("*/*"))
