"""Every DAG task rerun for the same data interval gives identical outputs.

The DAGs' tasks are thin wrappers over :mod:`muma.orchestration`; this runs those functions
for one interval (simulate, ingest, validate, build features, Feast apply and materialise,
monitor), hashes every output after each task, then reruns each task for the same interval
in place and compares. Parquet and gzip outputs must be byte-identical; JSON outputs must be
equal once the fields that record *when* or *how long* are dropped (wall times, run ids,
timestamps of the run); the online store must hold the same values. Evidently's HTML (which
embeds random element ids) is compared through its JSON summary; Great Expectations' own
store (``_gx``: its suites with fresh UUIDs and its history of validation results) and
Data Docs are left out, the pipeline's validation reports are compared. Training and
promotion (DVC) are not rerun here.

Long (several Spark and Great Expectations jobs twice): it runs in ``make reliability``
(``MUMA_RELIABILITY_FULL=1``), not in ``make test``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning"),
    pytest.mark.skipif(
        os.environ.get("MUMA_RELIABILITY_FULL") != "1",
        reason="long: runs in make reliability (MUMA_RELIABILITY_FULL=1)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 1, 0, tzinfo=UTC)
END = START + timedelta(hours=3)
VOLATILE = ("seconds", "time", "duration", "run_id", "run_name", "created", "timestamp", "_at")
RUN_IDENTITIES = {"id", "workspace_run"}
"""Keys naming a run rather than its result: Great Expectations gives suites and expectations
a fresh UUID each time it saves them, and each monitor run adds a new Evidently snapshot."""
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
"""Great Expectations' checkpoint and validation ids in the reports are fresh per run."""


def _stable(value):
    """JSON without the keys that record when a run happened, how long it took or its id."""
    if isinstance(value, dict):
        return {
            k: _stable(v)
            for k, v in value.items()
            if k not in RUN_IDENTITIES and not any(word in k.lower() for word in VOLATILE)
        }
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, str) and UUID.match(value):
        return "<uuid>"
    return value


def _digest(path: Path) -> str:
    if path.suffix == ".json":
        content = json.dumps(_stable(json.loads(path.read_text())), sort_keys=True).encode()
    elif path.name.endswith(".gz"):
        content = gzip.decompress(path.read_bytes())
    else:
        content = path.read_bytes()
    return hashlib.sha256(content).hexdigest()


def _outputs(root: Path) -> dict[str, str]:
    skipped = (".html", ".db", ".lock", ".log", ".pyc")
    return {
        str(path.relative_to(root)): _digest(path)
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and not path.name.endswith(skipped)
        and ".airflow" not in path.parts
        and "evidently-workspace" not in path.parts
        and "data_docs" not in path.parts
        and "_gx" not in path.parts
    }


def _json_texts(root: Path) -> dict[str, str]:
    """Stable JSON outputs as text, to show what changed when a rerun differs."""
    return {
        str(path.relative_to(root)): json.dumps(_stable(json.loads(path.read_text())))
        for path in root.rglob("*.json")
        if not {".airflow", "evidently-workspace", "_gx"} & set(path.parts)
    }


def _online_values(settings, feast_params) -> dict:
    from feature_repo.store import get_store
    from feature_repo.tables import USER_ID, USER_STATS

    store = get_store(settings, feast_params)
    users = [{USER_ID: f"u{n:07d}"} for n in range(200)]
    return store.get_online_features(
        features=[f"{USER_STATS}:news_clicks_1h", f"{USER_STATS}:video_clicks_24h"],
        entity_rows=users,
    ).to_dict()


def test_every_task_rerun_for_the_same_interval_gives_identical_outputs(
    tmp_path: Path, reliability
):
    from feature_repo.store import FeastParams
    from muma import orchestration as tasks
    from muma.params import load_section
    from muma.settings import Settings

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["simulate"]["world"].update({"users": 400, "items": 300})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    settings = tasks.resolve_settings(
        Settings(
            data_root=tmp_path / "data",
            params_path=tmp_path / "params.yaml",
            spark_master="local[2]",
            airflow_home=tmp_path / ".airflow",
            seed=7,
        )
    )
    feast_params = load_section(settings.params_path, "feast", FeastParams)
    steps = [
        ("simulate", lambda: tasks.simulate_interval(settings, START, END)),
        ("ingest", lambda: tasks.ingest_interval(settings, START, END)),
        ("validate", lambda: tasks.validate_interval(settings, START, END)),
        ("features", lambda: tasks.build_features_interval(settings, START, END)),
        ("apply", lambda: tasks.apply_feature_store(settings)),
        ("materialize", lambda: tasks.materialize_interval(settings, START, END)),
        ("monitor", lambda: tasks.monitor_interval(settings, START, END)),
    ]
    first: dict[str, dict[str, str]] = {}
    for name, run in steps:
        run()
        first[name] = _outputs(tmp_path)
    online = _online_values(settings, feast_params)
    differences = {}
    texts = _json_texts(tmp_path)
    for name, run in steps:
        before = _outputs(tmp_path)
        run()
        after = _outputs(tmp_path)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        if changed:
            differences[name] = {path: texts.get(path, "")[:300] for path in changed[:5]}
        texts = _json_texts(tmp_path)
    assert not differences, differences
    assert _online_values(settings, feast_params) == online
    reliability.record(
        "idempotency",
        {
            "tasks_rerun": len(steps),
            "outputs_compared": len(first["monitor"]),
            "differences": 0,
            "interval": f"{START.isoformat()} .. {END.isoformat()}",
        },
    )
