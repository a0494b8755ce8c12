"""End to end on the real Spark feature build: simulate, ingest, build, apply, materialise,
then a training set on the curated interactions, checked against an independent as-of join."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from feature_repo.config import FeaturesParams
from feature_repo.pipelines import build_features
from feature_repo.store import FeastParams, apply, materialize, training_set
from feature_repo.tables import (
    EVENT_TIMESTAMP,
    ITEM_STATS,
    USER_STATS,
    Dtype,
    feature_tables,
    table_dir,
)
from ingest.config import IngestParams
from ingest.interactions import build_interactions
from ingest.job import ingest_partition
from muma.contract import Source
from muma.settings import Settings
from simulator.config import SimulatorConfig
from simulator.logs import hours_between, simulate

FIRST_HOUR = datetime(2026, 11, 1, 16, tzinfo=UTC)
HOURS = list(hours_between(FIRST_HOUR, FIRST_HOUR + timedelta(hours=2)))
START, END = HOURS[0], HOURS[-1] + timedelta(hours=1)
PARAMS = FeaturesParams(sequence_length=3)
FEAST = FeastParams(project="muma_pipeline_test")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def deployed(spark, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("feast-pipeline")
    simulate(SimulatorConfig(users=150, items=150), 5, START, END, root / "landing")
    curated = root / "curated"
    for hour in HOURS:
        for source in Source:
            ingest_partition(spark, root / "landing", curated, source, hour, IngestParams())
    for hour in HOURS:
        build_interactions(spark, curated, hour, IngestParams())
    build_features(spark, curated, root / PARAMS.features_dir, START, END, PARAMS)
    settings = Settings(data_root=root)
    apply(settings, PARAMS, FEAST)
    for hour in HOURS:
        materialize(settings, hour, hour + timedelta(hours=1), PARAMS, FEAST)
    return settings


def offline(settings: Settings, table: str) -> pd.DataFrame:
    path = table_dir(Path(settings.data_root) / PARAMS.features_dir, table)
    frame = pq.read_table(path).to_pandas().drop(columns=["date", "hour"])
    frame[EVENT_TIMESTAMP] = frame[EVENT_TIMESTAMP].astype("datetime64[ns, UTC]")
    return frame.sort_values(EVENT_TIMESTAMP, kind="stable")


def test_training_set_equals_an_independent_as_of_join(deployed: Settings) -> None:
    interactions = pq.read_table(Path(deployed.data_root) / "curated" / "interactions")
    impressions = interactions.to_pandas()[["user_id", "item_id", "ts", "clicked"]]
    impressions["ts"] = pd.to_datetime(impressions["ts"], utc=True).astype("datetime64[ns, UTC]")
    assert len(impressions) > 200
    frame = training_set(deployed, impressions, "ranker_v1", FEAST)
    assert len(frame) == len(impressions)
    assert frame["clicked"].tolist() == impressions["clicked"].tolist()

    ordered = frame.assign(_row=range(len(frame))).sort_values(EVENT_TIMESTAMP, kind="stable")
    tables = feature_tables(PARAMS)
    checked = 0
    for name in (USER_STATS, ITEM_STATS):
        table = tables[name]
        rows = offline(deployed, name)
        expected = pd.merge_asof(
            ordered[[table.entity_key, EVENT_TIMESTAMP, "_row"]],
            rows.rename(columns={EVENT_TIMESTAMP: "row_ts"}),
            left_on=EVENT_TIMESTAMP,
            right_on="row_ts",
            by=table.entity_key,
            direction="backward",
            tolerance=pd.Timedelta(hours=FEAST.ttl_hours),
        ).sort_values("_row")
        # Point in time: every joined row is stamped at or before its impression.
        matched = expected["row_ts"].notna()
        assert (expected.loc[matched, "row_ts"] <= expected.loc[matched, EVENT_TIMESTAMP]).all()
        assert matched.sum() >= 20
        for column in table.features:
            if column.dtype is not Dtype.DOUBLE:
                continue
            np.testing.assert_allclose(
                frame[column.name].to_numpy(float),
                expected[column.name].to_numpy(float),
                rtol=1e-12,
                equal_nan=True,
                err_msg=f"{name}.{column.name}",
            )
            checked += 1
    assert checked > 20


def _same(left: pd.Series, right: pd.Series) -> bool:
    """Equal cell by cell; lists compared element-wise; null equals null."""

    def missing(value) -> bool:
        return value is None or (isinstance(value, float) and np.isnan(value))

    for a, b in zip(left, right, strict=True):
        if missing(a) or missing(b):
            if missing(a) != missing(b):
                return False
        elif not np.array_equal(np.asarray(a), np.asarray(b)):
            return False
    return True


def test_polars_point_in_time_join_equals_feast(deployed: Settings) -> None:
    """The training engine (feature_repo/pit.py) gives Feast's rows on every column of muma_v1."""
    from feature_repo.pit import point_in_time_features, service_tables

    interactions = pq.read_table(Path(deployed.data_root) / "curated" / "interactions")
    impressions = interactions.to_pandas()[["event_id", "user_id", "item_id", "ts", "clicked"]]
    impressions["ts"] = pd.to_datetime(impressions["ts"], utc=True).astype("datetime64[ns, UTC]")
    reference = training_set(deployed, impressions, "muma_v1", FEAST)
    fast = point_in_time_features(
        Path(deployed.data_root) / PARAMS.features_dir,
        impressions,
        service_tables("muma_v1", feature_tables(PARAMS)),
        timedelta(hours=FEAST.ttl_hours),
    )
    assert fast["event_id"].tolist() == reference["event_id"].tolist()
    features = [
        c
        for c in reference.columns
        if c not in {"event_id", "user_id", "item_id", "clicked", EVENT_TIMESTAMP}
    ]
    assert len(features) > 40 and "seq_item_ids" in features
    assert fast["seq_length"].notna().sum() > 20
    for column in features:
        assert _same(fast[column], reference[column]), column


def test_online_store_holds_each_entitys_latest_row(deployed: Settings) -> None:
    from feature_repo.store import get_store

    rows = offline(deployed, USER_STATS)
    latest = rows.groupby("user_id").tail(1).set_index("user_id").sort_index().head(25)
    store = get_store(deployed, FEAST)
    got = store.get_online_features(
        features=[f"{USER_STATS}:news_clicks_24h", f"{USER_STATS}:video_ctr_1h"],
        entity_rows=[{"user_id": user} for user in latest.index],
    ).to_dict()
    np.testing.assert_allclose(got["news_clicks_24h"], latest["news_clicks_24h"], rtol=1e-12)
    np.testing.assert_allclose(got["video_ctr_1h"], latest["video_ctr_1h"], rtol=1e-12)
