"""Airflow's metadata database on the PostgreSQL server, as in production."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from muma.orchestration import airflow_env
from muma.settings import Settings
from tests.dags.conftest import airflow_python, project_settings, run_airflow
from tests.dags.test_dag_integrity import EXPECTED

pytestmark = pytest.mark.postgres

HOST, PORT = "127.0.0.1", 5432


def _connect(user: str, database: str = "postgres"):
    import psycopg2

    connection = psycopg2.connect(host=HOST, port=PORT, user=user, dbname=database)
    connection.autocommit = True
    return connection


@pytest.fixture
def database() -> Iterator[str]:
    """A fresh database of our own (trust auth as postgres or root), dropped afterwards."""
    pytest.importorskip("psycopg2", reason="psycopg2-binary (dev extra) is not installed")
    import psycopg2

    for user in ("postgres", "root"):
        try:
            admin = _connect(user)
            break
        except psycopg2.OperationalError as error:
            reason = str(error).strip()
    else:
        pytest.skip(f"no PostgreSQL on {HOST}:{PORT} with trust auth: {reason}")
    name = f"muma_airflow_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://{user}@{HOST}:{PORT}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_metadata_database_on_postgres(database: str, tmp_path: Path) -> None:
    project: Settings = project_settings(tmp_path / "project")
    env = airflow_env(project, tmp_path / "airflow_home") | {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database,
    }
    run_airflow(env, "db", "migrate")
    facts = airflow_python(
        env,
        """
        import json
        from airflow.dag_processing.dagbag import DagBag
        from airflow.settings import engine

        bag = DagBag()
        print(json.dumps({"errors": bag.import_errors, "dags": sorted(bag.dag_ids),
                          "dialect": engine.dialect.name}))
        """,
    )
    assert facts["dialect"] == "postgresql"
    assert facts["errors"] == {}
    assert set(facts["dags"]) == EXPECTED
    output = run_airflow(env, "dags", "test", "muma_simulate", "2026-11-01T04:00:00+00:00")
    assert "state=success" in output
    hour = project.data_root / "landing" / "v1" / "impressions" / "date=2026-11-01" / "hour=03"
    assert (hour / "part-00000.jsonl.gz").is_file()
