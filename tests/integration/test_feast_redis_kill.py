"""Redis killed during a Feast materialisation, then restarted: the run fails with a Redis
connection error instead of hanging or reporting success, and rerunning the same interval
loads every entity's latest row.

Redis is a private ``redis-server`` on a free port (never the shared one), without
persistence, so the restart comes back empty, as after losing the node. The offline tables
are small Parquet snapshots written as :mod:`feature_repo.tables` declares them; each value
encodes its snapshot hour and entity (``hour * 1000 + index``), so a read tells which row was
loaded.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_repo.config import FeaturesParams
from feature_repo.store import FeastParams, apply, materialize
from feature_repo.tables import USER_ID, USER_STATS, Dtype, feature_tables, partition_dir
from muma.settings import Settings
from muma.testing.redis_server import PrivateRedisServer

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.slow,
    pytest.mark.filterwarnings(
        "ignore::FutureWarning", "ignore::DeprecationWarning", "ignore::RuntimeWarning"
    ),
]

T0 = datetime(2026, 11, 1, 0, tzinfo=UTC)
HOURS = (1, 2)
USERS = [f"u{i}" for i in range(1500)]
ITEMS = [f"i{i}" for i in range(300)]
PARAMS = FeaturesParams()


def _column(dtype: Dtype, hour: int, count: int, keys: list[str]) -> list:
    values = [hour * 1000.0 + i for i in range(count)]
    if dtype in (Dtype.DOUBLE, Dtype.FLOAT):
        return values
    if dtype is Dtype.BIGINT:
        return [int(v) for v in values]
    if dtype is Dtype.STRING:
        return [f"{key}-h{hour}" for key in keys]
    if dtype is Dtype.FLOAT_ARRAY:
        return [np.array([hour, i], dtype=np.float32) for i in range(count)]
    if dtype is Dtype.STRING_ARRAY:
        return [[f"h{hour}", key] for key in keys]
    return [[hour, i] for i in range(count)]


def _write_tables(data_root: Path) -> None:
    for table in feature_tables(PARAMS).values():
        keys = USERS if table.entity_key == USER_ID else ITEMS
        for hour in HOURS:
            stamp = pd.to_datetime([T0 + timedelta(hours=hour)] * len(keys), utc=True)
            data = {
                table.entity_key: keys,
                table.timestamp_column: stamp,
                table.created_column: stamp,
            }
            for column in table.features:
                data[column.name] = _column(column.dtype, hour, len(keys), keys)
            directory = partition_dir(
                data_root / PARAMS.features_dir, table.name, T0 + timedelta(hours=hour)
            )
            directory.mkdir(parents=True)
            pd.DataFrame(data)[list(table.columns)].to_parquet(
                directory / "part-00000.snappy.parquet"
            )


def test_redis_killed_during_materialisation_then_the_rerun_loads_everything(
    tmp_path: Path, reliability
):
    import redis

    with PrivateRedisServer(tmp_path) as server:
        settings = Settings(data_root=tmp_path / "data", redis_url=server.url)
        feast = FeastParams(project="reliability_materialise", materialize_engine="feast")
        _write_tables(settings.data_root)
        store = apply(settings, PARAMS, feast)
        start, end = T0, T0 + timedelta(hours=len(HOURS) + 1)
        watcher = redis.Redis(port=server.port, socket_timeout=0.5)
        killed_at_keys = []

        def kill_once_loading() -> None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    keys = watcher.dbsize()
                except redis.exceptions.ConnectionError:
                    return
                if keys > 0:
                    killed_at_keys.append(keys)
                    server.kill()
                    return
                time.sleep(0.002)

        killer = threading.Thread(target=kill_once_loading)
        killer.start()
        began = time.monotonic()
        with pytest.raises(redis.exceptions.ConnectionError):
            materialize(settings, start, end, PARAMS, feast)
        failed_after = time.monotonic() - began
        killer.join(timeout=30)
        expected_keys = len(USERS) + len(ITEMS)
        assert killed_at_keys and killed_at_keys[0] < expected_keys, "killed too late"

        server.start()  # empty: no persistence
        rerun = materialize(settings, start, end, PARAMS, feast)
        assert rerun.rows > 0
        response = store.get_online_features(
            features=[f"{USER_STATS}:news_clicks_1h"],
            entity_rows=[{USER_ID: user} for user in USERS],
        ).to_dict()
        latest = max(HOURS)
        assert response["news_clicks_1h"] == [latest * 1000.0 + i for i in range(len(USERS))]
        reliability.record(
            "fault_redis_killed_materialise",
            {
                "keys_when_killed": killed_at_keys[0],
                "entities": expected_keys,
                "failed_after_seconds": round(failed_after, 2),
                "rerun_rows": rerun.rows,
            },
        )
