"""ingest_range: batched ingest equals hour-by-hour ingest, byte for byte, and counts absences."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.config import IngestParams
from ingest.job import ingest_partition, reconciliation_path
from ingest.publish import staging_dir
from ingest.run import ingest_range, range_hours
from muma.contract import Source, partition_dir
from simulator.config import BadRecords, SimulatorConfig
from simulator.logs import simulate

START = datetime(2026, 11, 1, 16, tzinfo=UTC)
END = START + timedelta(hours=3)
PARAMS = IngestParams(allowed_lateness_minutes=120, attribution_window_minutes=30)
SOURCES = [Source.IMPRESSIONS, Source.CLICKS, Source.GAZE]


def snapshot(root: Path) -> dict[str, bytes]:
    """Parquet files of the source tables and their quarantine (interactions left out)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*.parquet"))
        if "interactions" not in str(p.relative_to(root))
    }


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("range")
    config = SimulatorConfig(users=250, items=250, bad_records=BadRecords(share=0.06))
    simulate(config, 5, START, END, root / "landing", root / "sidecar")
    # A copy of the first clicks hour landing again two hours later: cross-hour duplicates.
    first = partition_dir(root / "landing", Source.CLICKS, START)
    last = partition_dir(root / "landing", Source.CLICKS, START + timedelta(hours=2))
    shutil.copy(first / "part-00000.jsonl.gz", last / "part-00001.jsonl.gz")
    shutil.rmtree(partition_dir(root / "landing", Source.GAZE, START + timedelta(hours=1)))
    return root / "landing"


@pytest.fixture(scope="module")
def hourly(spark, landing: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    curated = tmp_path_factory.mktemp("hourly") / "curated"
    for hour in range_hours(START, END):
        for source in SOURCES:
            if partition_dir(landing, source, hour).is_dir():
                ingest_partition(spark, landing, curated, source, hour, PARAMS)
    return curated


def test_batched_range_equals_hour_by_hour(spark, landing: Path, hourly: Path, tmp_path: Path):
    curated = tmp_path / "curated"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    leftover = staging_dir(curated).with_name(
        f"{socket.gethostname()}-{dead.stdout.strip()}-{'a' * 32}"
    )
    (leftover / "curated").mkdir(parents=True)
    result = ingest_range(
        spark, landing, curated, START, END, PARAMS, sources=SOURCES, hours_per_batch=2
    )
    assert snapshot(curated) == snapshot(hourly)
    assert len(result.partitions) == 8
    assert result.absent == [(str(Source.GAZE), (START + timedelta(hours=1)).isoformat())]
    for partition in result.partitions:
        hour = datetime.fromisoformat(partition.hour_start)
        alone = json.loads(reconciliation_path(hourly, partition.source, hour).read_text())
        together = asdict(partition)
        assert {k: v for k, v in together.items() if k != "seconds"} == {
            k: v for k, v in alone.items() if k != "seconds"
        }
        assert partition.holds
    clicks_last = [
        p
        for p in result.partitions
        if p.source == "clicks"
        and p.hour_start.startswith(f"{START + timedelta(hours=2):%Y-%m-%dT%H}")
    ]
    assert clicks_last[0].duplicates_dropped > 0
    totals = result.totals()
    assert totals["records_read"] == (
        totals["curated"] + totals["quarantined"] + totals["duplicates_dropped"]
    )
    assert sum(totals["quarantined_by_reason"].values()) == totals["quarantined"]
    assert [r.hour_start for r in result.interactions] == [
        h.isoformat() for h in range_hours(START, END)
    ]
    assert all(r.holds for r in result.interactions)
    assert not leftover.exists()
    assert not list((curated / "_staging").iterdir())

    rerun = ingest_range(
        spark, landing, curated, START, END, PARAMS, sources=SOURCES, interactions=False
    )
    assert [asdict(p) | {"seconds": 0} for p in rerun.partitions] == [
        asdict(p) | {"seconds": 0} for p in result.partitions
    ]
    assert snapshot(curated) == snapshot(hourly)
    assert result.cleanup.staging_removed == [leftover]


def test_bad_ranges_are_refused(spark, landing: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="not after"):
        ingest_range(spark, landing, tmp_path, END, START, PARAMS)
    with pytest.raises(ValueError, match="on the hour"):
        ingest_range(spark, landing, tmp_path, START + timedelta(minutes=5), END, PARAMS)
    with pytest.raises(ValueError, match="hours_per_batch"):
        ingest_range(spark, landing, tmp_path, START, END, PARAMS, hours_per_batch=0)


def test_clean_batch_is_written_without_a_shuffle_and_equals_hour_by_hour(
    spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Every line on the fast path, one file per hour: no repartition, same bytes as alone."""
    from pyspark.sql import DataFrame

    config = SimulatorConfig(users=200, items=200)
    simulate(config, 7, START, END, tmp_path / "landing", tmp_path / "sidecar")
    landing = tmp_path / "landing"
    hours = range_hours(START, END)
    alone = tmp_path / "alone"
    for hour in hours:
        for source in SOURCES:
            ingest_partition(spark, landing, alone, source, hour, PARAMS)

    def no_shuffle(*args, **kwargs):
        raise AssertionError("a clean batch must not be repartitioned")

    monkeypatch.setattr(DataFrame, "repartition", no_shuffle)
    together = tmp_path / "together"
    result = ingest_range(
        spark, landing, together, START, END, PARAMS, sources=SOURCES, interactions=False
    )
    assert result.quarantined == result.duplicates_dropped == 0
    assert result.records_read == result.curated > 0
    assert snapshot(together) == snapshot(alone)
    ingest_range(spark, landing, together, START, END, PARAMS, sources=SOURCES, interactions=False)
    assert snapshot(together) == snapshot(alone)


def test_a_failing_batch_publishes_neither_itself_nor_the_batches_staged_after_it(
    spark, landing: Path, hourly: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Batches are staged ahead while one is published: a failure leaves no staged batch."""
    import ingest.job as job

    calls = {"n": 0}
    real_row_count = job.row_count

    def failing_second_batch(directory: Path) -> int:
        # The first batch is one hour of three sources: two counts per partition.
        calls["n"] += 1
        return real_row_count(directory) if calls["n"] <= 2 * len(SOURCES) else -1

    monkeypatch.setattr(job, "row_count", failing_second_batch)
    curated = tmp_path / "curated"
    with pytest.raises(job.ReconciliationError, match="nothing published"):
        ingest_range(
            spark, landing, curated, START, END, PARAMS, sources=SOURCES, hours_per_batch=1
        )
    hours = {
        part
        for path in curated.rglob("*.parquet")
        for part in path.relative_to(curated).parts
        if part.startswith("hour=")
    }
    assert hours == {f"hour={START:%H}"}
    assert not list((curated / "_staging").iterdir())
    first_hour = {k: v for k, v in snapshot(hourly).items() if f"hour={START:%H}" in k.split("/")}
    assert snapshot(curated) == first_hour


def test_the_spark_connect_dispatch_reports_what_the_rdd_dispatch_does(
    spark, landing: Path, tmp_path: Path
):
    """Spark Connect has no RDDs: the same slots run through ``mapInArrow`` give the same."""
    from ingest.curate import OUTCOME_SCHEMA, PartitionTask, run_slot
    from ingest.job import run_on_executors

    def tasks(root: Path) -> list[PartitionTask]:
        return [
            PartitionTask(
                source=source,
                start_micros=(START - datetime(1970, 1, 1, tzinfo=UTC))
                // timedelta(microseconds=1),
                files=tuple(
                    str(p) for p in sorted(partition_dir(landing, source, START).iterdir())
                ),
                curated_dir=str(root / str(source) / "curated"),
                quarantine_dir=str(root / str(source) / "quarantine"),
            )
            for source in SOURCES
        ]

    slots = [[0, 2], [1]]
    lateness = PARAMS.allowed_lateness
    arrow_tasks = tasks(tmp_path / "arrow")
    through_arrow = sorted(
        run_on_executors(
            spark,
            slots,
            lambda slot: run_slot(arrow_tasks, slot, lateness),
            OUTCOME_SCHEMA,
            connect=True,
        )
    )
    direct = sorted(
        report for slot in slots for report in run_slot(tasks(tmp_path / "direct"), slot, lateness)
    )
    assert [(i, o) for i, o, _ in through_arrow] == [(i, o) for i, o, _ in direct]
    assert [bytes(h) for _, _, h in through_arrow] == [h for _, _, h in direct]
    assert snapshot(tmp_path / "arrow") == snapshot(tmp_path / "direct")


def test_both_dispatch_paths_collect_the_same_rows_including_empty_slots(spark):
    from ingest.curate import OUTCOME_SCHEMA
    from ingest.job import run_on_executors

    def work(slot: list[int]) -> list[tuple[int, str, bytes]]:
        return [(i, f"task {i}", bytes([i])) for i in slot]

    slots = [[2, 0], [], [1]]
    rows = {
        connect: sorted(run_on_executors(spark, slots, work, OUTCOME_SCHEMA, connect=connect))
        for connect in (False, True)
    }
    assert [tuple(r) for r in rows[True]] == rows[False]
    assert rows[False] == [(0, "task 0", b"\x00"), (1, "task 1", b"\x01"), (2, "task 2", b"\x02")]
