"""End to end through Feast itself: offline tables -> ``feast apply`` -> materialise into the
embedded SQLite online store -> the API without Redis reads them with the Feast SDK, and
events go through ``FeatureStore.push``."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from feature_repo.config import FeaturesParams
from feature_repo.realtime import REALTIME_TABLE
from feature_repo.store import FeastParams, apply, get_store, materialize
from feature_repo.tables import Dtype, feature_tables, partition_dir
from serving.app import create_app

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings(
        "ignore::FutureWarning", "ignore::DeprecationWarning", "ignore::UserWarning"
    ),
]

FEAST = FeastParams(project="serving_sdk_test")


def _default(dtype: Dtype, rows: int) -> list:
    if dtype in (Dtype.DOUBLE, Dtype.FLOAT):
        return [0.0] * rows
    if dtype is Dtype.BIGINT:
        return [0] * rows
    if dtype is Dtype.STRING:
        return [""] * rows
    if dtype is Dtype.FLOAT_ARRAY:
        return [[0.0] * 12 for _ in range(rows)]
    return [[] for _ in range(rows)]


def write_offline(world, data_root: Path, snapshot) -> None:
    """The world's users and items as one snapshot of every offline table."""
    params = FeaturesParams()
    for table in feature_tables(params).values():
        source = world.users if table.entity_key == "user_id" else world.catalog
        rows = len(source)
        data = {
            table.entity_key: source[table.entity_key].tolist(),
            table.timestamp_column: pd.to_datetime([snapshot] * rows, utc=True),
            table.created_column: pd.to_datetime([snapshot] * rows, utc=True),
        }
        for column in table.features:
            if column.name in source:
                values = source[column.name].tolist()
                if column.dtype is Dtype.FLOAT_ARRAY:
                    values = [[float(v) for v in value] for value in values]
                data[column.name] = values
            else:
                data[column.name] = _default(column.dtype, rows)
        if table.name == "user_click_sequence":
            data["seq_length"] = [len(v) for v in data["seq_item_ids"]]
        directory = partition_dir(data_root / params.features_dir, table.name, snapshot)
        directory.mkdir(parents=True)
        pd.DataFrame(data).to_parquet(directory / "part-00000.snappy.parquet")


def test_the_api_on_feasts_sqlite_store(tmp_path: Path, bundles, world, helpers):
    data_root = tmp_path / "data"
    snapshot = pd.Timestamp.now(tz="UTC").floor("h").to_pydatetime()
    write_offline(world, data_root, snapshot)
    settings = helpers.settings_for(data_root, None)
    apply(settings, FeaturesParams(), FEAST)
    materialize(
        settings,
        snapshot - timedelta(hours=1),
        snapshot + timedelta(minutes=1),
        FeaturesParams(),
        FEAST,
    )
    helpers.promote_dir(data_root, bundles["first"])
    app = create_app(settings, helpers.serve_params(), feast=FEAST)
    with TestClient(app) as client:
        answer = client.post("/recommend", json={"user_id": "u3", "k": 3}).json()
        assert answer["degraded"] is False and answer["cold_start"] is False
        assert all(len(slate) == 3 for slate in answer["slates"].values())
        assert client.get("/health").json()["candidate_index"]["from_store"] is True
        assert client.post("/recommend", json={"user_id": "nobody"}).json()["cold_start"] is True
        click = {
            "type": "click",
            "user_id": "u3",
            "item_id": "i0",
            "request_id": answer["request_id"],
        }
        assert (
            client.post("/events", json={"events": [click]}, headers=helpers.auth).status_code
            == 202
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and client.get("/health").json()["events"]["pushed"] < 1:
            time.sleep(0.1)
    store = get_store(settings, FEAST)
    row = store.get_online_features(
        features=[f"{REALTIME_TABLE}:rt_news_clicks", f"{REALTIME_TABLE}:rt_last_click_item_id"],
        entity_rows=[{"user_id": "u3"}],
    ).to_dict()
    assert row["rt_last_click_item_id"] == ["i0"]
    assert np.isclose(row["rt_news_clicks"][0], 1.0)
