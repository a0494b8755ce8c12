"""The ingest runs unchanged under spark-submit, on spark-submit's master."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ingest.job import reconciliation_path
from muma.contract import Source
from simulator.config import SimulatorConfig
from simulator.logs import simulate

pytestmark = pytest.mark.slow

HOUR = datetime(2026, 11, 1, 16, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def test_spark_submit_runs_the_ingest_on_its_master(tmp_path: Path):
    data_root = tmp_path / "data"
    simulate(
        SimulatorConfig(users=200, items=200),
        3,
        HOUR,
        HOUR + timedelta(hours=1),
        data_root / "landing",
    )
    submit = Path(sys.executable).parent / "spark-submit"
    env = {
        **os.environ,
        "MUMA_DATA_ROOT": str(data_root),
        "MUMA_SPARK_MASTER": "local[2]",  # spark-submit's --master must win over this
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    metrics = tmp_path / "ingest.json"
    done = subprocess.run(
        [
            str(submit),
            "--master",
            "local[1]",
            str(ROOT / "ingest" / "submit.py"),
            "--date",
            f"{HOUR:%Y-%m-%d}",
            "--hour",
            f"{HOUR:%H}",
            "--metrics",
            str(metrics),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "on local[1]" in " ".join(done.stdout.split())  # the console wraps lines
    figures = json.loads(metrics.read_text())
    assert figures["records_read"] > 0
    for source in Source:
        written = json.loads(reconciliation_path(data_root / "curated", source, HOUR).read_text())
        assert written["holds"]
