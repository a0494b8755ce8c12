"""The DAGs run end to end through Airflow on a small simulated interval (SQLite).

One pipeline run (fixture ``pipeline``) simulates three hours with an interest shock in the
third, ingests and validates them hour by hour, builds and materialises their features and
monitors them, all with ``dag.test()`` in one Airflow process; the tests read its outputs.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from muma.orchestration import DVC_TARGETS
from muma.settings import Settings
from tests.dags.conftest import END, REPO, START, run_airflow, small_params

pytestmark = pytest.mark.slow

HOURS = ["06", "07", "08"]


def curated_snapshot(curated_root: Path) -> dict[str, object]:
    """Every curated and quarantined Parquet file as an Arrow table, and every
    reconciliation without its timing, by path (staging left out).

    Tables rather than bytes: parquet-mr lists a column chunk's encodings in an order that
    changes from one JVM to the next, so two Spark processes writing the same rows in the
    same order still differ in a few footer bytes.
    """
    import pyarrow.parquet as pq

    snapshot: dict[str, object] = {}
    for path in sorted(curated_root.rglob("*")):
        name = str(path.relative_to(curated_root))
        if "_staging" in path.parts or not path.is_file():
            continue
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            snapshot[name] = (table.schema.metadata, table.to_pylist())
        elif path.suffix == ".json":
            counts = json.loads(path.read_text(encoding="utf-8"))
            counts.pop("seconds", None)
            snapshot[name] = counts
    return snapshot


def test_every_run_of_the_loop_succeeds(pipeline: dict) -> None:
    runs = pipeline["runs"]
    assert [(r["dag_id"], r["state"]) for r in runs] == [
        *[("muma_simulate", "success")] * 3,
        *[("muma_ingest", "success")] * 3,
        ("muma_features", "success"),
        ("muma_monitor", "success"),
    ]


def test_simulate_and_ingest_write_the_intervals_partitions(
    project: Settings, pipeline: dict
) -> None:
    day = "date=2026-11-01"
    landing = project.data_root / "landing" / "v1" / "impressions" / day
    assert sorted(p.name for p in landing.iterdir()) == [f"hour={h}" for h in HOURS]
    curated = project.data_root / "curated"
    for table in ("impressions", "clicks", "interactions"):
        hours = sorted(p.name for p in (curated / table / day).iterdir())
        assert hours == [f"hour={h}" for h in HOURS], table
    reconciliation = curated / "_reconciliation" / "source=interactions" / day
    assert all(json.loads((reconciliation / f"hour={h}.json").read_text())["holds"] for h in HOURS)
    reports = project.params_path.parent / "reports" / "validation" / "interactions" / day
    assert sorted(p.name for p in reports.iterdir()) == [f"hour={h}.json" for h in HOURS]


def test_ingest_publishes_the_curated_asset_with_its_interval(
    airflow: dict[str, str], pipeline: dict
) -> None:
    database = Path(airflow["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.uri = 'muma://curated/interactions' ORDER BY e.id"
        ).fetchall()
    intervals = [json.loads(extra) for (extra,) in rows]
    assert [(i["start"], i["end"]) for i in intervals] == [
        ("2026-11-01T06:00:00+00:00", "2026-11-01T07:00:00+00:00"),
        ("2026-11-01T07:00:00+00:00", "2026-11-01T08:00:00+00:00"),
        ("2026-11-01T08:00:00+00:00", "2026-11-01T09:00:00+00:00"),
    ]


def test_features_are_built_and_materialised_for_the_interval(
    project: Settings, pipeline: dict
) -> None:
    features = project.data_root / "features"
    snapshots = {p.parent.name + "/" + p.name for p in features.glob("*/date=*/hour=*")}
    assert {f"date=2026-11-01/hour={h}" for h in ("07", "08", "09")} <= snapshots
    online = project.data_root / "feast"
    assert any(online.rglob("*.db")), "no online store written"


def test_monitor_decides_and_triggers_training_on_drift(
    project: Settings, pipeline: dict, dag_runs
) -> None:
    (monitor_run,) = dag_runs("muma_monitor")
    reports = project.params_path.parent / "reports" / "monitoring"
    summary_files = list(reports.rglob("summary.json"))
    assert summary_files, "no monitoring summary written"
    summary = json.loads(summary_files[0].read_text())
    retrain = summary["retrain"]
    trains = [r for r in dag_runs("muma_train") if r["run_id"].startswith("drift__")]
    if retrain:
        assert monitor_run["tasks"]["trigger_train"] == "success"
        assert [r["run_id"] for r in trains] == [f"drift__{monitor_run['run_id']}"]
        assert trains[0]["conf"]["reason"] == "drift"
    else:
        assert monitor_run["tasks"]["trigger_train"] == "skipped"
        assert trains == []


def test_hourly_backfill_equals_one_direct_ingest(
    project: Settings, pipeline: dict, tmp_path: Path
) -> None:
    """Two hourly Airflow runs leave the same curated rows, in the same files and order, and
    the same reconciliations as one library run over both hours."""
    direct_root = tmp_path / "direct"
    env = os.environ | {
        "MUMA_DATA_ROOT": str(direct_root),
        "MUMA_PARAMS_PATH": str(project.params_path),
        "MUMA_SPARK_MASTER": "local[2]",
    }
    subprocess.run(
        [
            str(Path(sys.executable).with_name("muma")),
            "ingest",
            "--start",
            START.isoformat(),
            "--end",
            END.isoformat(),
            "--landing",
            str(project.data_root / "landing"),
            "--metrics",
            str(tmp_path / "ingest.json"),
        ],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=600,
    )
    through_airflow = curated_snapshot(project.data_root / "curated")
    direct = curated_snapshot(direct_root / "curated")
    assert any(name.startswith("interactions/") for name in direct)
    assert any(name.startswith("_reconciliation/source=interactions/") for name in direct)
    assert sorted(through_airflow) == sorted(direct)
    assert through_airflow == direct


def test_a_range_run_of_the_ingest_dag_equals_its_hourly_runs(
    project: Settings, airflow: dict[str, str], pipeline: dict, tmp_path: Path
) -> None:
    """One `muma_ingest` run over the three hours (params, as `make demo` runs its day)
    curates what the hourly runs did, and validates each table as one batch of 3 hours."""
    data_root = tmp_path / "data"
    shutil.copytree(project.data_root / "landing", data_root / "landing")
    env = airflow | {"MUMA_DATA_ROOT": str(data_root)}
    conf = json.dumps({"start": START.isoformat(), "end": END.isoformat()})
    output = run_airflow(env, "dags", "test", "muma_ingest", END.isoformat(), "-c", conf)
    assert "state=success" in output
    assert curated_snapshot(data_root / "curated") == curated_snapshot(
        project.data_root / "curated"
    )
    reports = project.params_path.parent / "reports" / "validation" / "interactions"
    batch = reports / f"date={START:%Y-%m-%d}" / f"hours={START:%H}+{len(HOURS)}.json"
    report = json.loads(batch.read_text(encoding="utf-8"))
    assert (report["hours"], report["success"]) == (len(HOURS), True)


def test_the_policy_dag_runs_the_closed_loop_study(
    project: Settings, airflow: dict[str, str]
) -> None:
    """`muma_policy` with a shortened loop (the `days` param, as the demo runs it) writes the
    study's report in the project root: every policy's online CTR and the oracle ahead."""
    conf = json.dumps({"days": 2})
    output = run_airflow(
        airflow, "dags", "test", "muma_policy", "2026-11-08T00:00:00+00:00", "-c", conf
    )
    assert "state=success" in output
    report = json.loads((project.params_path.parent / "metrics" / "policy.json").read_text())
    assert report["params"]["days"] == 2
    policies = report["policies"]
    assert {"random", "greedy", "bandit", "oracle"} <= set(policies)
    assert all(len(entry["daily"]) == 2 for entry in policies.values())
    assert policies["oracle"]["expected_ctr"] > policies["random"]["expected_ctr"]
    assert policies["bandit"]["retrains"], "the bandit never retrained on its own logs"


def test_airflow_dags_test_cli_runs_the_simulate_dag(
    airflow: dict[str, str], tmp_path: Path
) -> None:
    """``airflow dags test`` itself, on a project of its own: one simulated hour."""
    env = airflow | {
        "MUMA_DATA_ROOT": str(tmp_path / "data"),
        "MUMA_PARAMS_PATH": str(small_params(tmp_path / "params.yaml")),
    }
    output = run_airflow(env, "dags", "test", "muma_simulate", "2026-11-01T10:00:00+00:00")
    assert "state=success" in output
    landing = tmp_path / "data" / "landing" / "v1" / "clicks" / "date=2026-11-01" / "hour=09"
    assert (landing / "part-00000.jsonl.gz").is_file()


CODE = ("muma", "simulator", "ingest", "validation", "feature_repo", "training", "monitoring")


def missing_training_pieces() -> list[str]:
    """What ``muma_train`` calls that does not exist (yet)."""
    missing = []
    if importlib.util.find_spec("training.registry") is None:
        missing.append("training/registry.py")
    elif not hasattr(importlib.import_module("training.registry"), "promote"):
        missing.append("training.registry.promote")
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    missing += [f"the {name!r} stage in dvc.yaml" for name in DVC_TARGETS if name not in stages]
    return missing


def test_drift_retrains_and_promotes_a_champion(
    project: Settings, airflow: dict[str, str], pipeline: dict, dag_runs
) -> None:
    """Injected drift -> muma_monitor triggers muma_train -> DVC trains -> a new champion."""
    missing = missing_training_pieces()
    if missing:
        pytest.skip(f"muma_train needs {', '.join(missing)}")
    (monitor_run,) = dag_runs("muma_monitor")
    assert monitor_run["tasks"]["trigger_train"] == "success", "the shock did not trigger"
    root = project.params_path.parent
    # The throwaway project becomes a DVC project whose code is the repository's.
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    for name in CODE:
        (root / name).symlink_to(REPO / name, target_is_directory=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=root, check=True)
    output = run_airflow(airflow, "dags", "test", "muma_train", "2026-11-08T00:00:00+00:00")
    assert "state=success" in output
    models = project.data_root / "models"
    decision = json.loads((models / "decision.json").read_text(encoding="utf-8"))
    champion = json.loads((models / "champion.json").read_text(encoding="utf-8"))
    assert decision["promote"] is True
    assert champion["version"] == decision["challenger_version"]
