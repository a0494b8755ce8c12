"""Redis going away and coming back: degraded answers (never a 5xx), recovery without a
restart, and real-time events kept in memory and on disk, then replayed: none lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feature_repo.online import RedisFeatureReader, ViewSpec
from feature_repo.realtime import aggregate_events, events_frame, realtime_table
from muma.contract import parse_timestamp
from serving.app import create_app
from serving.impressions import iso_utc

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning"),
]


def _wait(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _clicks(user: str, count: int, start_s: float) -> list[dict]:
    """Clicks on news items (``i0, i3, ...``), one a minute from ``start_s``."""
    return [
        {
            "type": "click",
            "user_id": user,
            "item_id": f"i{3 * n}",
            "request_id": f"r-{user}-{n}",
            "ts": iso_utc(start_s + 60 * n),
        }
        for n in range(count)
    ]


def _expected_news_clicks(events: list[dict], half_life: float) -> float:
    """The counter the events must give, from the real-time module's own aggregation."""
    frame = events_frame(
        [
            {
                "user_id": e["user_id"],
                "item_id": e["item_id"],
                "domain": "news",
                "kind": "click",
                "ts": parse_timestamp(e["ts"]).timestamp(),
            }
            for e in events
        ]
    )
    return float(aggregate_events(frame, half_life)["rt_news_clicks"].iloc[0])


def _stored_news_clicks(url: str, project: str, user: str, half_life: float) -> float:
    import redis

    table = realtime_table(half_life)
    reader = RedisFeatureReader(
        redis.Redis.from_url(url), project, {"user_id": [ViewSpec.from_table(table)]}
    )
    frame = reader.read_frame(table.name, [user], ["rt_news_clicks"])
    return float(frame["rt_news_clicks"].iloc[0])


def _app_on_filled_redis(tmp_path: Path, bundles, world, redis_server, helpers):
    """The API with the first bundle as champion, on the test Redis filled with the world."""
    import redis

    helpers.fill_online(redis.Redis.from_url(redis_server.url), world)
    data_root = tmp_path / "data"
    helpers.promote_dir(data_root, bundles["first"])
    return create_app(helpers.settings_for(data_root, redis_server.url), helpers.serve_params())


def test_redis_down_gives_degraded_answers_and_recovers(
    tmp_path: Path, bundles, world, redis_server, helpers
):
    import redis

    app = _app_on_filled_redis(tmp_path, bundles, world, redis_server, helpers)
    with TestClient(app) as client:
        assert client.post("/recommend", json={"user_id": "u5"}).json()["degraded"] is False
        redis_server.kill()
        for user in ("u5", "u6", "nobody"):
            response = client.post("/recommend", json={"user_id": user, "k": 4})
            assert response.status_code == 200
            answer = response.json()
            assert answer["degraded"] is True
            assert all(len(slate) == 4 for slate in answer["slates"].values())
            assert all(0 < item["propensity"] <= 1 for s in answer["slates"].values() for item in s)
        assert client.get("/ready").status_code == 200
        assert client.get("/health").json()["online_store"]["healthy"] is False
        assert "muma_fallback_total 3" in client.get("/metrics").text

        redis_server.start()
        helpers.fill_online(redis.Redis.from_url(redis_server.url), world)

        def recovered() -> bool:
            return client.post("/recommend", json={"user_id": "u5"}).json()["degraded"] is False

        assert _wait(recovered), "the service did not recover after Redis came back"
        assert client.get("/health").json()["online_store"]["healthy"] is True


def test_with_redis_down_cached_items_are_served_past_their_ttl(
    tmp_path: Path, bundles, world, redis_server, helpers
):
    import numpy as np

    app = _app_on_filled_redis(tmp_path, bundles, world, redis_server, helpers)
    with TestClient(app) as client:
        answer = client.post("/recommend", json={"user_id": "u5", "k": 3}).json()
        service = client.app.state.service
        state = service.manager.state
        shown = [item["item_id"] for slate in answer["slates"].values() for item in slate]
        slots, fresh = state.items.lookup(shown, time.time())
        assert fresh.all(), "the request's candidates were not cached"
        before = state.items.rows(slots)
        redis_server.kill()
        later = time.time() + 10 * service.params.item_cache_seconds
        rows, degraded = service._item_rows(state, [*shown, "never-seen"], later, None, False)
        assert degraded is True
        np.testing.assert_array_equal(rows.item_dense[:-1], before.item_dense)
        assert rows.raw[:-1].tolist() == before.raw.tolist()
        assert rows.item[-1] == 1  # unseen and not in the fallback: the unknown item


def test_a_redis_still_loading_its_snapshot_gives_degraded_answers(
    tmp_path: Path, bundles, world, redis_server, helpers
):
    import redis

    app = _app_on_filled_redis(tmp_path, bundles, world, redis_server, helpers)
    with TestClient(app) as client:
        reader = client.app.state.service.manager.state.reader

        def loading(payload: bytes, replies: int, raise_errors: bool = True) -> list:
            raise redis.exceptions.ResponseError("LOADING Redis is loading the dataset in memory")

        reader.raw.execute = loading  # what a restarted server answers until its RDB is read
        response = client.post("/recommend", json={"user_id": "u5", "k": 3})
        assert response.status_code == 200 and response.json()["degraded"] is True


def test_events_while_redis_is_down_are_kept_and_replayed(
    tmp_path: Path, bundles, redis_server, helpers
):
    data_root = tmp_path / "data"
    helpers.promote_dir(data_root, bundles["first"])
    params = helpers.serve_params(spool_memory_events=3)
    app = create_app(helpers.settings_for(data_root, redis_server.url), params, feast=helpers.feast)
    half_life = helpers.feast.realtime_half_life_hours
    start = time.time() - 3600
    events = _clicks("u7", 8, start)
    with TestClient(app) as client:
        redis_server.kill()
        for event in events:
            response = client.post("/events", json={"events": [event]}, headers=helpers.auth)
            assert response.status_code == 202
        health = client.get("/health").json()["events"]
        assert health["queued"] == 8 and health["on_disk"] >= 5
        redis_server.start()
        assert _wait(lambda: client.get("/health").json()["events"]["queued"] == 0)
        assert client.get("/health").json()["events"]["replayed"] >= 5
    stored = _stored_news_clicks(redis_server.url, helpers.feast.project, "u7", half_life)
    assert stored == pytest.approx(_expected_news_clicks(events, half_life), rel=1e-9)


def test_events_spooled_at_shutdown_are_replayed_by_the_next_start(
    tmp_path: Path, bundles, redis_server, helpers
):
    data_root = tmp_path / "data"
    helpers.promote_dir(data_root, bundles["first"])
    settings = helpers.settings_for(data_root, redis_server.url)
    params = helpers.serve_params(spool_memory_events=2)
    events = _clicks("u9", 5, time.time() - 600)
    redis_server.kill()
    with TestClient(create_app(settings, params, feast=helpers.feast)) as client:
        response = client.post("/events", json={"events": events}, headers=helpers.auth)
        assert response.status_code == 202
    spooled = list((data_root / "serving" / "spool").glob("*.jsonl"))
    assert sum(len(path.read_text().splitlines()) for path in spooled) == 5
    redis_server.start()
    with TestClient(create_app(settings, params, feast=helpers.feast)) as client:
        assert _wait(lambda: client.get("/health").json()["events"]["queued"] == 0)
    assert not list((data_root / "serving" / "spool").glob("*.jsonl"))
    half_life = helpers.feast.realtime_half_life_hours
    stored = _stored_news_clicks(redis_server.url, helpers.feast.project, "u9", half_life)
    assert stored == pytest.approx(_expected_news_clicks(events, half_life), rel=1e-9)


@pytest.mark.redis
def test_on_the_shared_redis_db_11_with_an_own_project(tmp_path: Path, bundles, world, helpers):
    """The shared server at 127.0.0.1:6379, DB 11 only; every key of the project is deleted."""
    import uuid

    import redis

    from feature_repo.store import FeastParams
    from serving.online_rows import delete_project_keys

    url = "redis://127.0.0.1:6379/11"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    feast = FeastParams(project=f"serving_test_{uuid.uuid4().hex[:8]}")
    try:
        helpers.fill_online(client, world, project=feast.project)
        data_root = tmp_path / "data"
        helpers.promote_dir(data_root, bundles["first"])
        app = create_app(helpers.settings_for(data_root, url), helpers.serve_params(), feast=feast)
        with TestClient(app) as api:
            answer = api.post("/recommend", json={"user_id": "u2"}).json()
            assert answer["degraded"] is False and answer["cold_start"] is False
            event = _clicks("u2", 1, time.time())
            assert (
                api.post("/events", json={"events": event}, headers=helpers.auth).status_code == 202
            )
            assert _wait(lambda: api.get("/health").json()["events"]["pushed"] == 1)
    finally:
        delete_project_keys(client, feast.project)
    assert not list(client.scan_iter(match=b"*" + feast.project.encode()))
