"""The DAG files: they load without errors and follow the project's DAG conventions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from muma.orchestration import dags_folder

EXPECTED = {
    "muma_simulate",
    "muma_ingest",
    "muma_features",
    "muma_monitor",
    "muma_train",
    "muma_policy",
}
HEAVY = ("torch", "pyspark", "feast", "great_expectations", "evidently", "pandas")
DAG_FILES = sorted(p for p in dags_folder().glob("*.py") if p.name != "__init__.py")


def test_dagbag_loads_every_dag_without_import_errors(dag_facts: dict) -> None:
    assert dag_facts["import_errors"] == {}
    assert set(dag_facts["dags"]) == EXPECTED


def test_one_dag_per_file_named_after_it(dag_facts: dict) -> None:
    for dag_id, facts in dag_facts["dags"].items():
        assert Path(facts["fileloc"]).name == f"{dag_id}.py"


@pytest.mark.parametrize("dag_id", sorted(EXPECTED))
def test_dag_conventions(dag_facts: dict, dag_id: str) -> None:
    facts = dag_facts["dags"][dag_id]
    assert "muma" in facts["tags"] and len(facts["tags"]) >= 2
    assert facts["retries"], "a DAG without tasks"
    assert all(retries >= 2 for retries in facts["retries"].values()), facts["retries"]
    assert facts["catchup"] is False
    assert facts["max_active_runs"] == 1
    assert facts["has_doc"]


def test_schedules(dag_facts: dict) -> None:
    timetables = {dag_id: facts["timetable"] for dag_id, facts in dag_facts["dags"].items()}
    assert timetables["muma_features"] == "AssetTriggeredTimetable"
    for dag_id in EXPECTED - {"muma_features"}:
        # Data-interval timetables: a run knows the hour or day it covers.
        assert timetables[dag_id] == "CronDataIntervalTimetable"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_nothing_heavy(path: Path) -> None:
    """Parsing a DAG file must stay cheap: heavy libraries load inside tasks only."""
    code = f"""
        import importlib.util, json, sys
        spec = importlib.util.spec_from_file_location("dag_under_test", {str(path)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
