"""Airflow in a temporary AIRFLOW_HOME (SQLite) over a small simulated world.

Every Airflow command runs in a subprocess, so Airflow reads its configuration from the
environment built here and never touches ``.airflow`` or ``data/`` of the repository.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from muma.orchestration import airflow_env, dags_folder
from muma.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")

START = datetime(2026, 11, 1, 6, tzinfo=UTC)
"""A quiet morning hour: few events, so each Spark job is mostly its fixed cost."""
END = START + timedelta(hours=3)
"""Three hours: the training set needs more than its validation and test hour."""
SHOCK_AT = START + timedelta(hours=2)


def small_params(path: Path, **world: object) -> Path:
    """A copy of params.yaml with a small world, cheaper validation and a quick training."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["simulate"]["world"].update({"users": 300, "items": 300, **world})
    params["validate"]["result_format"] = "BOOLEAN_ONLY"
    if "train" in params:
        # One hour to validate, one to test, the rest to train; one quick epoch.
        params["train"]["split"].update({"valid_hours": 1, "test_hours": 1})
        params["train"]["epochs"] = 1
    if "policy" in params:
        # A small closed loop: the policy DAG's run is about its plumbing, not its figures.
        params["policy"]["loop"].update({"users": 150, "items": 150, "candidates": 20})
        params["policy"]["loop"]["train"]["epochs"] = 1
    if "evaluate" in params:
        # A challenger trained on three hours is not calibrated: promote the first one anyway.
        params["evaluate"]["max_ece"] = 1.0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def project_settings(root: Path, **world: object) -> Settings:
    """Settings of a throwaway project under ``root``: its own params.yaml and data root."""
    return load_settings(
        data_root=root / "data",
        params_path=small_params(root / "params.yaml", **world),
        spark_master="local[2]",
        redis_url=None,
    )


def run_airflow(env: dict[str, str], *args: str, timeout: int = 600) -> str:
    """Run ``airflow ARGS``; fail with the tail of its output when it exits non-zero."""
    done = subprocess.run(
        [str(AIRFLOW), *args],
        env=env,
        cwd=Path(env["MUMA_PARAMS_PATH"]).parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"airflow {' '.join(args)} failed:\n{output[-6000:]}"
    return output


def airflow_python(env: dict[str, str], code: str, timeout: int = 300) -> dict:
    """Run ``code`` in a fresh interpreter with ``env``; it prints one JSON line last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        cwd=Path(env["MUMA_PARAMS_PATH"]).parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A small project whose world gets an interest shock in its second hour."""
    return project_settings(
        tmp_path_factory.mktemp("project"),
        shock={"at": SHOCK_AT.isoformat(), "domain": "news", "strength": 3.0, "share": 0.6},
    )


@pytest.fixture(scope="session")
def airflow(project: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a migrated SQLite AIRFLOW_HOME whose DAGs folder is the repo's."""
    env = airflow_env(project, tmp_path_factory.mktemp("airflow_home"))
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(dags_folder())
    run_airflow(env, "db", "migrate")
    return env


@pytest.fixture(scope="session")
def dag_facts(airflow: dict[str, str]) -> dict:
    """What a DagBag of the DAGs folder holds: import errors and each DAG's conventions."""
    return airflow_python(
        airflow,
        """
        import json
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag()
        dags = {}
        for dag_id, dag in bag.dags.items():
            dags[dag_id] = {
                "tags": sorted(dag.tags),
                "catchup": dag.catchup,
                "max_active_runs": dag.max_active_runs,
                "timetable": type(dag.timetable).__name__,
                "retries": {task.task_id: task.retries for task in dag.tasks},
                "has_doc": bool(dag.doc_md),
                "fileloc": dag.fileloc,
            }
        print(json.dumps({"import_errors": bag.import_errors, "dags": dags}))
        """,
    )


@pytest.fixture(scope="session")
def pipeline(project: Settings, airflow: dict[str, str]) -> dict:
    """simulate -> ingest (per hour) -> features -> monitor for three hours, through Airflow."""
    from muma.orchestration import run_demo_via_airflow

    home = Path(airflow["AIRFLOW_HOME"])
    return run_demo_via_airflow(project, START, END, airflow_home=home)


@pytest.fixture(scope="session")
def dag_runs(airflow: dict[str, str], pipeline: dict) -> Callable[[str], list[dict]]:
    """Reads the runs of a DAG, with their task states, from the metadata database."""
    return lambda dag_id: _runs(airflow, dag_id)


def _runs(env: dict[str, str], dag_id: str) -> list[dict]:
    return airflow_python(
        env,
        f"""
        import json
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            runs = [
                {{
                    "run_id": run.run_id,
                    "state": str(run.state),
                    "conf": run.conf,
                    "tasks": {{
                        ti.task_id: str(ti.state)
                        for ti in run.get_task_instances(session=session)
                    }},
                }}
                for run in DagRun.find(dag_id={dag_id!r}, session=session)
            ]
        print(json.dumps({{"runs": runs}}, default=str))
        """,
    )["runs"]
