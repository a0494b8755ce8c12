"""A Spark ingest job killed mid-write (SIGKILL to the driver and its JVM): the partition it
was replacing stays intact, its leftovers are recognised as abandoned, and a rerun completes.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.config import IngestParams
from ingest.job import (
    STAGING_DIR,
    curated_partition_dir,
    ingest_partition,
    quarantine_partition_dir,
    reconciliation_path,
)
from ingest.publish import remove_abandoned
from muma.contract import Source, partition_dir
from simulator.config import SimulatorConfig
from simulator.logs import simulate

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

HOUR = datetime(2026, 11, 1, 16, tzinfo=UTC)
PARAMS = IngestParams(allowed_lateness_minutes=120)
CHILD = """
import sys
from datetime import datetime
from pathlib import Path
from ingest.config import IngestParams
from ingest.job import ingest_partition
from ingest.spark import get_spark
spark = get_spark("local[1]", "muma-kill-test")
print("spark up", flush=True)
ingest_partition(
    spark, Path(sys.argv[1]), Path(sys.argv[2]), "impressions",
    datetime.fromisoformat(sys.argv[3]), IngestParams(allowed_lateness_minutes=120),
)
print("finished", flush=True)
"""


def _tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def _outputs(curated: Path) -> dict[str, dict[str, bytes]]:
    return {
        "curated": _tree(curated_partition_dir(curated, Source.IMPRESSIONS, HOUR)),
        "quarantine": _tree(quarantine_partition_dir(curated, Source.IMPRESSIONS, HOUR)),
        "reconciliation": {
            "json": reconciliation_path(curated, Source.IMPRESSIONS, HOUR).read_bytes()
        },
    }


def _staged_files(curated: Path) -> list[Path]:
    staging = curated / STAGING_DIR
    return [p for p in staging.rglob("*") if p.is_file()] if staging.is_dir() else []


def test_killed_mid_write_keeps_the_old_partition_and_the_rerun_completes(
    spark, tmp_path: Path, reliability
):
    landing, curated = tmp_path / "landing", tmp_path / "curated"
    simulate(SimulatorConfig(users=1500, items=300), 3, HOUR, HOUR + timedelta(hours=1), landing)
    first = ingest_partition(spark, landing, curated, Source.IMPRESSIONS, HOUR, PARAMS)
    before = _outputs(curated)

    # New landing data for the same hour: the killed run would replace the partition with it.
    part = partition_dir(landing, Source.IMPRESSIONS, HOUR) / "part-00000.jsonl.gz"
    lines = gzip.decompress(part.read_bytes()).splitlines(keepends=True)
    part.write_bytes(gzip.compress(b"".join(lines[: len(lines) // 2])))

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(landing), str(curated), HOUR.isoformat()],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the driver and its JVM in one process group
    )
    try:
        deadline = time.monotonic() + 240
        while not _staged_files(curated):
            assert child.poll() is None, "the job ended before it wrote anything to kill"
            assert time.monotonic() < deadline, "the job never started writing"
            time.sleep(0.01)
        # Whether it was still running is read before the kill: a poll() after it can already
        # reap the killed child and report -9, which would read as "had ended".
        killed_while_running = child.poll() is None
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
    assert killed_while_running and child.returncode == -signal.SIGKILL
    assert b"finished" not in child.stdout.read()

    assert _outputs(curated) == before, "the killed run changed the published partition"
    assert _staged_files(curated), "the killed run's staging should be left for cleanup"
    cleanup = remove_abandoned(curated)
    assert cleanup.staging_removed and not _staged_files(curated)

    rerun = ingest_partition(spark, landing, curated, Source.IMPRESSIONS, HOUR, PARAMS)
    assert rerun.holds and rerun.records_read == len(lines) // 2 < first.records_read
    assert _outputs(curated) != before
    reliability.record(
        "fault_spark_ingest_killed",
        {
            "records_before": first.records_read,
            "records_rerun": rerun.records_read,
            "old_partition_intact": True,
            "rerun_holds": rerun.holds,
        },
    )
