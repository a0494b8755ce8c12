"""A served console over the serving tests' synthetic world (private Redis, a promoted bundle),
with two operators and the pipeline outputs the dashboard reads: curated interactions of six
hours, a monitoring run with its report, and an Airflow metadata DB with two DAG runs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.console.store import ConsoleStore, store_path

PASSWORDS = {"admin": "admin-password-1", "editor": "editor-password-1"}


@dataclass
class Console:
    app: object
    data_root: Path
    store: ConsoleStore


def write_outputs(data_root: Path, t0, version: str) -> None:
    """Curated interactions (2 policies x 3 domains x 6 hours), a monitor run, Airflow runs,
    and ``muma evaluate``'s metrics of the champion ``version``."""
    rng = np.random.default_rng(3)
    for hour in range(6):
        stamp = t0 + timedelta(hours=hour)
        for domain, rate in (("news", 0.12), ("video", 0.08), ("ad", 0.03)):
            directory = (
                data_root
                / "curated"
                / "interactions"
                / f"date={stamp:%Y-%m-%d}"
                / f"hour={stamp:%H}"
                / f"domain={domain}"
            )
            directory.mkdir(parents=True)
            rows = 200
            pd.DataFrame(
                {
                    "request_id": [f"r{hour}-{i}" for i in range(rows)],
                    "clicked": rng.random(rows) < rate,
                    "policy": np.where(np.arange(rows) % 2 == 0, "bandit", "epsilon_greedy"),
                }
            ).to_parquet(directory / "part-00000.parquet")
    run = data_root / "reports" / "monitoring" / "2026-11-01"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(
        json.dumps(
            {
                "retrain": True,
                "reasons": ["CTR drop in video: 8.05% vs 13.43% (-40%, z -10.8)"],
                "alerts": [],
                "skipped": [],
            }
        )
    )
    (run / "report.html").write_text("<html><body><h1>Evidently drift report</h1></body></html>")
    metrics = data_root / "metrics"
    metrics.mkdir()
    (metrics / "evaluate.json").write_text(
        json.dumps(
            {
                "challenger": {
                    "name": "muma",
                    "version": version,
                    "overall": {"auc": 0.7412, "gauc": 0.7388, "ece": 0.0021},
                    "per_domain": {"news": {"auc": 0.7571}, "video": {"auc": 0.6932}},
                },
                "champion": None,
            }
        )
    )
    (metrics / "policy.json").write_text(
        json.dumps(
            {
                "seconds": 12.5,
                "policies": {
                    "bandit": {
                        "impressions": 5000,
                        "clicks": 286,
                        "ctr": 0.0572,
                        "expected_ctr": 0.0570,
                        "share_of_oracle": 0.32,
                    },
                    "oracle": {
                        "impressions": 5000,
                        "clicks": 888,
                        "ctr": 0.1776,
                        "expected_ctr": 0.1770,
                        "share_of_oracle": 1.0,
                    },
                },
            }
        )
    )
    airflow = data_root / ".airflow"
    airflow.mkdir()
    db = sqlite3.connect(airflow / "airflow.db")
    db.execute(
        "CREATE TABLE dag_run (dag_id TEXT, run_id TEXT, state TEXT, run_type TEXT, "
        "logical_date TEXT, start_date TEXT, end_date TEXT)"
    )
    db.executemany(
        "INSERT INTO dag_run VALUES (?, ?, ?, 'scheduled', ?, ?, ?)",
        [
            (
                "muma_ingest",
                "scheduled__2026-11-01T00",
                "success",
                "2026-11-01T00:00",
                "2026-11-01T01:00",
                "2026-11-01T01:05",
            ),
            (
                "muma_monitor",
                "scheduled__2026-11-01",
                "failed",
                "2026-11-01T00:00",
                "2026-11-02T00:10",
                "2026-11-02T00:12",
            ),
        ],
    )
    db.commit()
    db.close()


@pytest.fixture
def serve_overrides() -> dict:
    """``serve`` params the console's app is built with (a test module may override this)."""
    return {}


@pytest.fixture
def console_world(
    tmp_path: Path, bundles, world, redis_server, helpers, serve_overrides, monkeypatch
) -> Iterator[Console]:
    """The API with its console (not started: tests enter a client or a server)."""
    import redis

    # The DAG runs come from the fixture's SQLite DB, whatever the developer's shell sets.
    monkeypatch.delenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", raising=False)

    from serving.app import create_app

    helpers.fill_online(redis.Redis.from_url(redis_server.url), world)
    data_root = tmp_path / "data"
    version = helpers.promote_dir(data_root, bundles["first"])
    write_outputs(data_root, helpers.t0, version)
    store = ConsoleStore(store_path(data_root))
    for name, password in PASSWORDS.items():
        store.add_operator(name, password, name)
    app = create_app(
        helpers.settings_for(data_root, redis_server.url),
        helpers.serve_params(**serve_overrides),
        feast=helpers.feast,
    )
    yield Console(app, data_root, store)


@pytest.fixture
def passwords() -> dict[str, str]:
    return dict(PASSWORDS)
