"""The dashboard's DAG runs from Airflow's metadata DB on the PostgreSQL server (as configured
in production through ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``), in a database of our own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.console.dashboard import dag_runs

HOST, PORT = "127.0.0.1", 5432


@pytest.fixture
def metadata_db() -> Iterator[tuple[str, object]]:
    """A fresh database with a ``dag_run`` table (trust auth as postgres or root), dropped after."""
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2-binary (dev extra) is missing")
    admin = None
    for user in ("postgres", "root"):
        try:
            admin = psycopg2.connect(host=HOST, port=PORT, user=user, dbname="postgres")
            break
        except psycopg2.OperationalError as error:
            reason = str(error).strip()
    if admin is None:
        pytest.skip(f"no PostgreSQL on {HOST}:{PORT} with trust auth: {reason}")
    admin.autocommit = True
    name = f"muma_console_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection = psycopg2.connect(host=HOST, port=PORT, user=user, dbname=name)
    connection.autocommit = True
    try:
        yield f"postgresql+psycopg2://{user}@{HOST}:{PORT}/{name}", connection
    finally:
        connection.close()
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


pytestmark = pytest.mark.postgres


def test_dag_runs_are_read_from_postgres(metadata_db, helpers, tmp_path: Path):
    url, connection = metadata_db
    settings = helpers.settings_for(tmp_path)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE dag_run (dag_id TEXT, run_id TEXT, state TEXT, run_type TEXT, "
            "logical_date TIMESTAMPTZ, start_date TIMESTAMPTZ, end_date TIMESTAMPTZ)"
        )
    assert dag_runs(settings, url) == {"available": False, "reason": "no Airflow runs recorded"}
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO dag_run VALUES "
            "('muma_ingest', 'scheduled__1', 'success', 'scheduled', "
            " '2026-11-01 00:00+00', '2026-11-01 01:00+00', '2026-11-01 01:04+00'), "
            "('muma_train', 'manual__2', 'running', 'manual', "
            " '2026-11-02 00:00+00', '2026-11-02 03:00+00', NULL)"
        )
    runs = dag_runs(settings, url)
    assert runs["available"]
    assert [(r["dag_id"], r["state"]) for r in runs["runs"]] == [
        ("muma_train", "running"),
        ("muma_ingest", "success"),
    ]
    missing = dag_runs(settings, url.rsplit("/", 1)[0] + "/no_such_database_here")
    assert not missing["available"] and "cannot be read" in missing["reason"]
