"""The Feast repository against real Feast: SQLite and Redis online stores, point-in-time
training sets, the fast Redis reader, the real-time push path and the streaming job.

Offline tables are small Parquet files written exactly as :mod:`feature_repo.tables` declares
them, with values that encode their own snapshot hour (``hour * 1000 + entity index``), so a
joined value tells which row it came from. Redis tests use DB 13 and a per-run Feast project
(every Feast key ends with the project name) and delete exactly those keys afterwards.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_repo.config import FeaturesParams
from feature_repo.decay import decay_weight
from feature_repo.online import RedisFeatureReader, ViewSpec, redis_client
from feature_repo.realtime import (
    LAST_CLICK_ITEM,
    LAST_CLICK_TS,
    REALTIME_DECAYED,
    REALTIME_TABLE,
    REQUEST_TIME,
    UPDATED_TS,
    RealtimeUpdater,
    StreamSource,
    StreamTotals,
    decayed_counter_names,
    realtime_table,
    start_stream,
)
from feature_repo.store import (
    FeastParams,
    apply,
    get_store,
    materialize,
    repo_config,
    training_set,
)
from feature_repo.tables import (
    ITEM_STATS,
    SEQUENCE_USER_ID,
    USER_ID,
    USER_SEQUENCE,
    USER_STATS,
    Dtype,
    feature_tables,
    partition_dir,
)
from muma.settings import Settings
from muma.testing.redis_server import PrivateRedisServer

REDIS_DB = 13
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
T0 = datetime(2026, 11, 1, 0, tzinfo=UTC)
HOURS = (1, 2, 3, 4)
USERS = [f"u{i}" for i in range(12)]
ITEMS = [f"i{i}" for i in range(40)]
PARAMS = FeaturesParams()
HALF_LIFE = 1.0

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def has_row(index: int, hour: int) -> bool:
    """Every entity at the first snapshot; later only some, so rows have gaps."""
    return hour == 1 or (index + hour) % 3 != 0


def encoded(hour: int, index: int) -> float:
    return hour * 1000.0 + index


def _column(dtype: Dtype, hour: int, indices: list[int], keys: list[str]) -> list:
    if dtype in (Dtype.DOUBLE, Dtype.FLOAT):
        return [encoded(hour, i) for i in indices]
    if dtype is Dtype.BIGINT:
        return [int(encoded(hour, i)) for i in indices]
    if dtype is Dtype.STRING:
        return [f"{key}-h{hour}" for key in keys]
    if dtype is Dtype.FLOAT_ARRAY:
        return [np.array([hour, i, 0.5], dtype=np.float32) for i in indices]
    if dtype is Dtype.STRING_ARRAY:
        return [[f"h{hour}", key] for key in keys]
    return [[hour, i] for i in indices]


def write_tables(data_root: Path) -> None:
    """Snapshots at T0 + 1..4 h for every table of tables.py, per its Parquet layout."""
    for table in feature_tables(PARAMS).values():
        ids = USERS if table.entity_key == USER_ID else ITEMS
        for hour in HOURS:
            stamp = T0 + timedelta(hours=hour)
            indices = [i for i in range(len(ids)) if has_row(i, hour)]
            keys = [ids[i] for i in indices]
            data = {
                table.entity_key: keys,
                table.timestamp_column: pd.to_datetime([stamp] * len(keys), utc=True),
                table.created_column: pd.to_datetime([stamp] * len(keys), utc=True),
            }
            for column in table.features:
                data[column.name] = _column(column.dtype, hour, indices, keys)
            directory = partition_dir(data_root / PARAMS.features_dir, table.name, stamp)
            directory.mkdir(parents=True)
            pd.DataFrame(data)[list(table.columns)].to_parquet(
                directory / "part-00000.snappy.parquet"
            )


def latest_hour(index: int, at: datetime) -> int | None:
    """The snapshot hour Feast must join for entity ``index`` at ``at`` (TTL 24 h)."""
    hours = [h for h in HOURS if has_row(index, h) and T0 + timedelta(hours=h) <= at]
    return max(hours) if hours else None


def delete_project_keys(url: str, project: str) -> int:
    client = redis_client(url)
    keys = list(client.scan_iter(match=b"*" + project.encode(), count=1000))
    if keys:
        client.delete(*keys)
    return len(keys)


class Deployed:
    """One applied and materialised Feast repository."""

    def __init__(self, data_root: Path, redis_url: str | None) -> None:
        self.feast = FeastParams(
            project=f"muma_test_{uuid.uuid4().hex[:8]}", realtime_half_life_hours=HALF_LIFE
        )
        self.settings = Settings(data_root=data_root, redis_url=redis_url)
        write_tables(data_root)
        self.store = apply(self.settings, PARAMS, self.feast)
        # Incremental by interval, as the hourly DAG runs it.
        self.loads = [
            materialize(self.settings, T0, T0 + timedelta(hours=2), PARAMS, self.feast),
            materialize(
                self.settings, T0 + timedelta(hours=2), T0 + timedelta(hours=4), PARAMS, self.feast
            ),
        ]


@pytest.fixture(scope="module")
def sqlite_repo(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    return Deployed(tmp_path_factory.mktemp("feast-sqlite"), None)


@pytest.fixture(scope="module")
def redis_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    deployed = Deployed(tmp_path_factory.mktemp("feast-redis"), REDIS_URL)
    yield deployed
    delete_project_keys(REDIS_URL, deployed.feast.project)


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def repo(request: pytest.FixtureRequest) -> Deployed:
    return request.getfixturevalue(f"{request.param}_repo")


# --- configuration ------------------------------------------------------------------------


def test_config_is_sqlite_by_default_and_redis_with_a_url(tmp_path: Path) -> None:
    config = repo_config(Settings(data_root=tmp_path))
    assert config.online_store.type == "sqlite"
    assert config.repo_path == tmp_path.resolve()
    store = get_store(Settings(data_root=tmp_path))
    assert Path(store.config.online_store.path) == Path("feast/online.db")

    redis_config = repo_config(
        Settings(data_root=tmp_path, redis_url="redis://:s3cret@127.0.0.1:6380/13")
    )
    assert redis_config.online_store.type == "redis"
    assert redis_config.online_store.connection_string == "127.0.0.1:6380,db=13,password=s3cret"


def test_applied_registry_lives_under_the_data_root(sqlite_repo: Deployed) -> None:
    root = sqlite_repo.settings.data_root
    assert (root / "feast" / "registry.db").is_file()
    assert (root / "feast" / "online.db").is_file()
    names = {view.name for view in sqlite_repo.store.list_feature_views()}
    assert set(feature_tables(PARAMS)) | {REALTIME_TABLE} <= names
    services = {service.name for service in sqlite_repo.store.list_feature_services()}
    assert services == {"ranker_v1", "ranker_v1_online", "sequence_v1", "muma_v1"}


# --- materialisation and online reads -----------------------------------------------------


def test_materialised_rows_are_the_latest_per_entity(repo: Deployed) -> None:
    assert sum(load.rows for load in repo.loads) > 0
    # Feature references name each view's own join key: the sequence's is seq_user_id.
    response = repo.store.get_online_features(
        features=[f"{USER_STATS}:news_clicks_1h", f"{USER_SEQUENCE}:seq_item_ids"],
        entity_rows=[{USER_ID: user, SEQUENCE_USER_ID: user} for user in USERS],
    ).to_dict()
    end = T0 + timedelta(hours=4)
    expected = [encoded(latest_hour(i, end), i) for i in range(len(USERS))]
    assert response["news_clicks_1h"] == expected
    assert response["seq_item_ids"][0] == [f"h{latest_hour(0, end)}", "u0"]


def test_feature_services_read_the_sequence_by_user_id(repo: Deployed) -> None:
    """The services map the sequence's join key to user_id: callers pass user_id alone."""
    end = T0 + timedelta(hours=4)
    for name in ("muma_v1", "sequence_v1"):
        response = repo.store.get_online_features(
            features=repo.store.get_feature_service(name),
            entity_rows=[{USER_ID: "u0", "item_id": "i0"}, {USER_ID: "nobody", "item_id": "i0"}],
        ).to_dict()
        assert response["seq_item_ids"] == [[f"h{latest_hour(0, end)}", "u0"], None], name
        assert response["seq_length"][0] == int(encoded(latest_hour(0, end), 0)), name
        # Offline-only columns are not in the view.
        assert "seq_domains" not in response and "seq_categories" not in response


def test_materialize_rejects_bad_intervals(sqlite_repo: Deployed) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        materialize(sqlite_repo.settings, datetime(2026, 11, 1), datetime(2026, 11, 2))
    with pytest.raises(ValueError, match="empty interval"):
        materialize(sqlite_repo.settings, T0 + timedelta(hours=1), T0)
    with pytest.raises(ValueError, match="unknown batch views"):
        materialize(sqlite_repo.settings, T0, T0 + timedelta(hours=1), views=["nope"])


# --- point-in-time training sets -----------------------------------------------------------


def test_training_set_is_point_in_time_correct(sqlite_repo: Deployed) -> None:
    rng = np.random.default_rng(3)
    minutes = rng.integers(0, 5 * 60, size=120)
    users = rng.integers(0, len(USERS), size=120)
    items = rng.integers(0, len(ITEMS), size=120)
    stamps = [T0 + timedelta(minutes=int(m)) for m in minutes]
    # Impressions exactly at a snapshot see that snapshot's row (it used only earlier events).
    stamps[:4] = [T0 + timedelta(hours=h) for h in HOURS]
    # A slate: one user, five items, one time (Feast's Dask store alone would keep one row).
    users[4:9], items[4:9] = 5, [1, 2, 3, 4, 5]
    stamps[4:9] = [T0 + timedelta(hours=2, minutes=30)] * 5
    impressions = pd.DataFrame(
        {
            "user_id": [USERS[u] for u in users],
            "item_id": [ITEMS[i] for i in items],
            "ts": pd.to_datetime(stamps, utc=True),
            "clicked": rng.integers(0, 2, size=120),
        }
    )
    frame = training_set(sqlite_repo.settings, impressions, "ranker_v1", sqlite_repo.feast)

    assert len(frame) == len(impressions)
    assert frame["clicked"].tolist() == impressions["clicked"].tolist()
    for row, user, item in zip(frame.itertuples(), users, items, strict=True):
        at = row.event_timestamp.to_pydatetime()
        for value, index in ((row.news_clicks_1h, user), (row.clicks_1h, item)):
            hour = latest_hour(int(index), at)
            if hour is None:
                assert np.isnan(value)
                continue
            assert value == encoded(hour, index)
            # The row used is stamped at or before the impression: nothing leaks.
            assert T0 + timedelta(hours=hour) <= at


def test_training_set_rejects_bad_input(sqlite_repo: Deployed) -> None:
    naive = pd.DataFrame({"user_id": ["u1"], "item_id": ["i1"], "ts": [datetime(2026, 11, 1)]})
    with pytest.raises(ValueError, match="timezone-aware"):
        training_set(sqlite_repo.settings, naive, "ranker_v1", sqlite_repo.feast)
    with pytest.raises(ValueError, match="lack columns"):
        training_set(sqlite_repo.settings, naive.drop(columns="item_id"), "ranker_v1")
    aware = naive.assign(ts=pd.to_datetime(naive["ts"], utc=True))
    with pytest.raises(ValueError, match="unknown feature service"):
        training_set(sqlite_repo.settings, aware, "ranker_v0", sqlite_repo.feast)
    with pytest.raises(ValueError, match="request-time view"):
        training_set(sqlite_repo.settings, aware, "ranker_v1_online", sqlite_repo.feast)


# --- fast Redis reads -----------------------------------------------------------------------


def reader_for(deployed: Deployed) -> RedisFeatureReader:
    tables = feature_tables(PARAMS)
    user_views = [
        ViewSpec.from_table(tables[USER_STATS]),
        ViewSpec.from_table(realtime_table(HALF_LIFE)),
    ]
    return RedisFeatureReader(
        redis_client(REDIS_URL),
        deployed.feast.project,
        {
            USER_ID: user_views,
            SEQUENCE_USER_ID: [ViewSpec.from_table(tables[USER_SEQUENCE])],
            "item_id": [ViewSpec.from_table(tables[ITEM_STATS])],
        },
    )


def _same(left, right) -> bool:
    if left is None or (isinstance(left, float) and np.isnan(left)):
        return right is None or (isinstance(right, float) and np.isnan(right))
    if isinstance(left, list | np.ndarray):
        return right is not None and np.array_equal(np.asarray(left), np.asarray(right))
    return left == right


@pytest.mark.redis
def test_fast_reader_matches_get_online_features(redis_repo: Deployed) -> None:
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from feature_repo.online import entity_key_prefix, redis_key

    project = redis_repo.feast.project
    ours = redis_key(entity_key_prefix("item_id"), "i7", project.encode())
    theirs = _redis_key(
        project, EntityKey(join_keys=["item_id"], entity_values=[Value(string_val="i7")])
    )
    assert ours == theirs

    reader = reader_for(redis_repo)
    items = [*ITEMS, "no-such-item"]
    fast = reader.read({USER_ID: ["u4"], SEQUENCE_USER_ID: ["u4"], "item_id": items})
    tables = feature_tables(PARAMS)
    item_names = list(tables[ITEM_STATS].feature_names)
    naive = redis_repo.store.get_online_features(
        features=[f"{ITEM_STATS}:{name}" for name in item_names],
        entity_rows=[{"item_id": item} for item in items],
    ).to_dict()
    got = fast["item_id"].frame()
    for name in item_names:
        for left, right in zip(got[name].tolist(), naive[name], strict=True):
            assert _same(left, right), name
    assert fast["item_id"].found[ITEM_STATS].tolist() == [True] * len(ITEMS) + [False]

    sequence_names = tables[USER_SEQUENCE].view_feature_names
    naive_user = redis_repo.store.get_online_features(
        features=[f"{USER_STATS}:{n}" for n in tables[USER_STATS].feature_names]
        + [f"{USER_SEQUENCE}:{n}" for n in sequence_names],
        entity_rows=[{USER_ID: "u4", SEQUENCE_USER_ID: "u4"}],
    ).to_dict()
    for key, names in (
        (USER_ID, tables[USER_STATS].feature_names),
        (SEQUENCE_USER_ID, sequence_names),
    ):
        frame = fast[key].frame()
        for name in names:
            assert _same(frame[name].iloc[0], naive_user[name][0]), name
    assert fast[SEQUENCE_USER_ID].frame()["seq_item_ids"].iloc[0] == ["h4", "u4"]


def test_batch_features_stay_a_listpack_beside_a_full_sequence(tmp_path: Path) -> None:
    """On Redis' default configuration a user with a full 50-item sequence keeps its batch
    features in a compact listpack under 2 KB: the sequence, whose values pass the 64-byte
    listpack limit, has a key of its own, which Feast's own reads still find."""
    from bench.bench_features import T0 as SNAPSHOT
    from bench.bench_features import write_tables as write_worst_case
    from feature_repo.online import entity_key_prefix, redis_key

    write_worst_case(tmp_path, users=20, items=20)  # every user: 50 random item ids
    feast = FeastParams(project="listpack_test")
    with PrivateRedisServer() as server:
        settings = Settings(data_root=tmp_path, redis_url=server.url)
        store = apply(settings, PARAMS, feast)
        interval = (SNAPSHOT - timedelta(hours=1), SNAPSHOT + timedelta(hours=1))
        materialize(settings, *interval, PARAMS, feast)
        client = redis_client(server.url)
        assert client.config_get("hash-max-listpack-value")["hash-max-listpack-value"] == "64"
        suffix = feast.project.encode()
        batch = redis_key(entity_key_prefix(USER_ID), "u3", suffix)
        sequence = redis_key(entity_key_prefix(SEQUENCE_USER_ID), "u3", suffix)
        assert client.object("encoding", batch) == b"listpack"
        assert client.memory_usage(batch, samples=0) < 2048
        assert client.object("encoding", sequence) == b"hashtable"  # what it would have made
        assert f"_ts:{USER_SEQUENCE}".encode() not in client.hkeys(batch)

        expected = pd.read_parquet(tmp_path / PARAMS.features_dir / USER_SEQUENCE)
        expected = expected.set_index(USER_ID).loc["u3"]
        got = store.get_online_features(
            features=store.get_feature_service("muma_v1"),
            entity_rows=[{USER_ID: "u3", "item_id": "i0"}],
        ).to_dict()
        assert got["seq_item_ids"][0] == list(expected["seq_item_ids"])
        assert len(got["seq_item_ids"][0]) == 50
        assert got["seq_ts"][0] == list(expected["seq_ts"])
        assert got["friend_count"][0] is not None
        client.close()


# --- real-time push path ---------------------------------------------------------------------


def click(user: str, item: str, ts: float, domain: str = "news") -> dict:
    return {"user_id": user, "item_id": item, "domain": domain, "kind": "click", "ts": ts}


def view(user: str, item: str, ts: float, dwell_ms: int, domain: str = "video") -> dict:
    return {
        "user_id": user,
        "item_id": item,
        "domain": domain,
        "kind": "view",
        "ts": ts,
        "dwell_ms": dwell_ms,
    }


def read_realtime(deployed: Deployed, users: list[str], request_time: float) -> dict:
    features = [f"{REALTIME_TABLE}:{n}" for n in realtime_table(HALF_LIFE).feature_names]
    features += [f"{REALTIME_DECAYED}:{n}_now" for n in decayed_counter_names()]
    return deployed.store.get_online_features(
        features=features,
        entity_rows=[{USER_ID: user, REQUEST_TIME: request_time} for user in users],
    ).to_dict()


def test_push_folds_events_and_decays_to_request_time(repo: Deployed) -> None:
    user = f"rt-{uuid.uuid4().hex[:6]}"
    base = T0.timestamp() + 10 * 3600
    updater = RealtimeUpdater(repo.store, HALF_LIFE)
    first = updater.push_events([click(user, "a", base), view(user, "b", base + 60, 30_000)])
    second = updater.push_events([click(user, "c", base + 1800, "ad")])
    assert (first.rows, first.late, second.rows, second.late) == (1, 0, 1, 0)

    request = base + 3600
    got = read_realtime(repo, [user], request)
    # Counters decayed event by event to the request time, with the one decay function.
    assert got["rt_news_clicks_now"][0] == pytest.approx(decay_weight(3600, HALF_LIFE), rel=1e-12)
    assert got["rt_ad_clicks_now"][0] == pytest.approx(decay_weight(1800, HALF_LIFE), rel=1e-12)
    assert got["rt_video_dwell_ms_now"][0] == pytest.approx(
        30_000 * decay_weight(3540, HALF_LIFE), rel=1e-12
    )
    assert got[LAST_CLICK_ITEM][0] == "c"
    assert got[UPDATED_TS][0] == base + 1800
    unknown = read_realtime(repo, ["nobody"], request)
    assert unknown["rt_news_clicks_now"] == [0.0]


def test_late_event_never_overwrites_a_newer_value(repo: Deployed) -> None:
    user = f"late-{uuid.uuid4().hex[:6]}"
    base = T0.timestamp() + 20 * 3600
    updater = RealtimeUpdater(repo.store, HALF_LIFE)
    # Out of order within one batch: the newest click is the last click, whatever the order.
    updater.push_events([click(user, "new", base + 100), click(user, "old", base)])
    late = updater.push_events([click(user, "late", base + 50), click(user, "late2", base + 100)])
    after = read_realtime(repo, [user], base + 200)
    assert (late.late, late.rows) == (2, 1)
    # Newer values stay: the last click and the update time do not move back ...
    assert after[LAST_CLICK_ITEM] == ["new"]
    assert after[LAST_CLICK_TS] == [base + 100]
    assert after[UPDATED_TS] == [base + 100]
    # ... and the late clicks count exactly as if they had come on time (Redis accepted the
    # write because the row's Feast timestamp moved on by a millisecond).
    assert after["rt_row_ts"][0] == pytest.approx(base + 100.001, abs=1e-6)
    expected = sum(decay_weight(200 - offset, HALF_LIFE) for offset in (100, 0, 50, 100))
    assert after["rt_news_clicks_now"][0] == pytest.approx(expected, rel=1e-12)


def test_bare_push_on_sqlite_lets_an_older_row_win(sqlite_repo: Deployed) -> None:
    """Why the guard is ours: Feast's SQLite store upserts an older row over a newer one."""
    from feast.data_source import PushMode

    user = f"bare-{uuid.uuid4().hex[:6]}"
    base = T0.timestamp() + 30 * 3600
    updater = RealtimeUpdater(sqlite_repo.store, HALF_LIFE)
    newer = updater.push_events([click(user, "newer", base + 100)]).pushed
    older = newer.assign(
        **{
            LAST_CLICK_ITEM: "older",
            UPDATED_TS: base,
            "event_timestamp": pd.to_datetime([base], unit="s", utc=True),
        }
    )
    sqlite_repo.store.push("user_realtime_source", older, to=PushMode.ONLINE)
    assert read_realtime(sqlite_repo, [user], base + 200)[LAST_CLICK_ITEM] == ["older"]


@pytest.mark.redis
def test_fast_reader_serves_the_realtime_updater(redis_repo: Deployed) -> None:
    user = f"fast-{uuid.uuid4().hex[:6]}"
    base = T0.timestamp() + 40 * 3600
    reader = reader_for(redis_repo)
    updater = RealtimeUpdater(redis_repo.store, HALF_LIFE, reader=reader)
    arrivals = []
    for step in range(20):
        arrived = time.perf_counter()
        updater.push_events([click(user, f"x{step}", base + step)])
        stored = reader.read_frame(REALTIME_TABLE, [user], [LAST_CLICK_ITEM, UPDATED_TS])
        assert stored[LAST_CLICK_ITEM].iloc[0] == f"x{step}"
        arrivals.append(time.perf_counter() - arrived)
    # Readable as soon as the push returns (freshness figures are in bench/bench_features.py).
    assert max(arrivals) < 5.0
    assert updater.push_events([click(user, "old", base + 3)]).late == 1
    got = read_realtime(redis_repo, [user], base + 19)
    assert got[LAST_CLICK_ITEM] == ["x19"]
    expected = sum(decay_weight(19 - step, HALF_LIFE) for step in [*range(20), 3])
    assert got["rt_news_clicks_now"][0] == pytest.approx(expected, rel=1e-12)


# --- Spark Structured Streaming ----------------------------------------------------------------


def write_events(directory: Path, name: str, events: list[dict]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for event in events:
        record = dict(event)
        record["ts"] = datetime.fromtimestamp(record["ts"], UTC).isoformat()
        lines.append(json.dumps(record))
    staged = directory / f".{name}.tmp"
    staged.write_text("\n".join(lines) + "\n")
    os.replace(staged, directory / f"{name}.json")


@pytest.mark.slow
def test_streaming_job_aggregates_and_pushes(spark, sqlite_repo: Deployed, tmp_path: Path) -> None:
    base = T0.timestamp() + 50 * 3600
    rng = np.random.default_rng(11)
    users = [f"s{i}-{uuid.uuid4().hex[:4]}" for i in range(6)]
    events = []
    for n in range(300):
        user = users[int(rng.integers(0, len(users)))]
        ts = base + float(rng.integers(0, 3600))
        domain = ["news", "video", "ad"][int(rng.integers(0, 3))]
        if rng.random() < 0.4:
            events.append(click(user, f"it{n}", ts, domain))
        else:
            events.append(view(user, f"it{n}", ts, int(rng.integers(0, 60_000)), domain))
    inbox = tmp_path / "events"
    write_events(inbox, "part-0", events[:150])
    write_events(inbox, "part-1", events[150:])
    updater = RealtimeUpdater(sqlite_repo.store, HALF_LIFE)
    totals = StreamTotals()
    source = StreamSource(path=inbox, max_files_per_trigger=1)
    query = start_stream(spark, source, updater, tmp_path / "checkpoint", True, totals=totals)
    query.awaitTermination(timeout=300)
    assert query.exception() is None
    assert totals.batches == 2 and totals.events == 300

    # Late arrivals in a later file: folded into the counters, nothing moves back.
    newest = {u: max(e["ts"] for e in events if e["user_id"] == u) for u in users}
    late = [click(u, "late", newest[u] - 1) for u in users]
    write_events(inbox, "part-2", late)
    query = start_stream(spark, source, updater, tmp_path / "checkpoint", True, totals=totals)
    query.awaitTermination(timeout=300)
    assert totals.batches == 3 and totals.events == 306 and totals.late >= len(users)

    request = base + 7200
    after = read_realtime(sqlite_repo, users, request)
    every = events + late
    for position, user in enumerate(users):
        assert after[UPDATED_TS][position] == newest[user]
        mine = [e for e in every if e["user_id"] == user]
        for domain in ("news", "video", "ad"):
            clicks = sum(
                decay_weight(request - e["ts"], HALF_LIFE)
                for e in mine
                if e["kind"] == "click" and e["domain"] == domain
            )
            dwell = sum(
                e["dwell_ms"] * decay_weight(request - e["ts"], HALF_LIFE)
                for e in mine
                if e["kind"] == "view" and e["domain"] == domain
            )
            assert after[f"rt_{domain}_clicks_now"][position] == pytest.approx(clicks, rel=1e-9)
            assert after[f"rt_{domain}_dwell_ms_now"][position] == pytest.approx(dwell, rel=1e-9)
        last = max((e for e in mine if e["kind"] == "click"), key=lambda e: e["ts"])
        assert after[LAST_CLICK_TS][position] == last["ts"]
        assert after[LAST_CLICK_ITEM][position] == last["item_id"]


# --- direct Redis writes ---------------------------------------------------------------------


@pytest.mark.redis
def test_direct_writer_matches_feast_and_guards_atomically(redis_repo: Deployed) -> None:
    from feature_repo.realtime import RedisRealtimeWriter

    client = redis_client(REDIS_URL)
    reader = reader_for(redis_repo)
    writer = RedisRealtimeWriter(client, redis_repo.feast.project, HALF_LIFE)
    direct = RealtimeUpdater(redis_repo.store, HALF_LIFE, reader=reader, writer=writer)
    via_feast = RealtimeUpdater(redis_repo.store, HALF_LIFE, reader=reader)
    base = T0.timestamp() + 60 * 3600
    events = [
        click("w", "a", base, "news"),
        view("w", "b", base + 30, 12_000, "video"),
        click("w", "c", base + 90, "ad"),
    ]
    twins = [f"direct-{uuid.uuid4().hex[:6]}", f"feast-{uuid.uuid4().hex[:6]}"]
    for user, updater in zip(twins, (direct, via_feast), strict=True):
        updater.push_events([{**event, "user_id": user} for event in events])
        updater.push_events([click(user, "late", base + 10)])
    got = read_realtime(redis_repo, twins, base + 600)
    for name, values in got.items():
        if name != USER_ID:
            assert _same(values[0], values[1]), name
    assert got[LAST_CLICK_ITEM][0] == "c"

    # The guard is in Redis: replaying an older row is refused and changes nothing.
    stored = reader.read_frame(REALTIME_TABLE, [twins[0]], [LAST_CLICK_ITEM, "rt_row_ts"])
    older = direct.push_events([click("again", "x", base)]).pushed.assign(
        user_id=twins[0], event_timestamp=pd.to_datetime([base], unit="s", utc=True)
    )
    assert writer.write(older) == 0
    again = reader.read_frame(REALTIME_TABLE, [twins[0]], [LAST_CLICK_ITEM, "rt_row_ts"])
    assert again.equals(stored)
