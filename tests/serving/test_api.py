"""The HTTP surface: recommendations, events, auth, bad input, health, readiness, metrics."""

from __future__ import annotations

import gc
import gzip
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from muma.contract import Source, check_line
from serving.app import create_app
from serving.impressions import features_dir

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture
def served(
    tmp_path: Path, bundles, world, redis_server, helpers
) -> Iterator[tuple[TestClient, Path]]:
    import redis

    helpers.fill_online(redis.Redis.from_url(redis_server.url), world)
    data_root = tmp_path / "data"
    helpers.promote_dir(data_root, bundles["first"])
    app = create_app(
        helpers.settings_for(data_root, redis_server.url),
        helpers.serve_params(),
        feast=helpers.feast,
        features=None,
    )
    with TestClient(app) as client:
        yield client, data_root


def _landing_lines(data_root: Path, source: Source) -> list[bytes]:
    lines = []
    for path in sorted((data_root / "landing" / "v1" / str(source)).rglob("*.jsonl.gz")):
        with gzip.open(path, "rb") as handle:
            lines.extend(line.rstrip(b"\n") for line in handle if line.strip())
    return lines


def test_recommend_returns_a_slate_per_domain_with_propensities(served):
    client, _ = served
    answer = client.post("/recommend", json={"user_id": "u3", "k": 4}).json()
    assert set(answer["slates"]) == {"news", "video", "ad"}
    assert not answer["degraded"] and not answer["cold_start"]
    for domain, slate in answer["slates"].items():
        assert [item["position"] for item in slate] == [1, 2, 3, 4]
        assert len({item["item_id"] for item in slate}) == 4
        assert all(0 < item["propensity"] <= 1 and 0 < item["score"] < 1 for item in slate)
        assert answer["candidates"][domain] >= 4

    one = client.post(
        "/recommend", json={"user_id": "u3", "domains": ["video"], "k": 2, "candidates": 10}
    ).json()
    assert list(one["slates"]) == ["video"] and len(one["slates"]["video"]) == 2
    assert one["candidates"] == {"video": 10}


def test_unknown_user_gets_the_cold_start_path(served):
    client, _ = served
    response = client.post("/recommend", json={"user_id": "someone-new", "k": 3})
    assert response.status_code == 200
    answer = response.json()
    assert answer["cold_start"] and not answer["degraded"]
    assert all(len(slate) == 3 for slate in answer["slates"].values())


def test_impressions_and_served_features_are_logged_in_the_contract(served):
    client, data_root = served
    answers = [
        client.post("/recommend", json={"user_id": f"u{n}", "k": 3}).json() for n in range(4)
    ]
    client.app.state.service.log.flush()
    lines = _landing_lines(data_root, Source.IMPRESSIONS)
    assert len(lines) == 4 * 3 * 3
    records = []
    for line in lines:
        record, violation = check_line(Source.IMPRESSIONS, line)
        assert violation is None, violation
        records.append(record)
    by_request = {answer["request_id"]: answer for answer in answers}
    for record in records:
        answer = by_request[record["request_id"]]
        shown = answer["slates"][record["domain"]][record["position"] - 1]
        assert shown["item_id"] == record["item_id"]
        assert shown["propensity"] == record["propensity"]
        assert record["model_version"] == answer["model_version"]
        assert record["policy"] == answer["policy"]
    served_features = pd.concat(
        pd.read_parquet(path) for path in features_dir(data_root).rglob("*.parquet")
    )
    assert set(served_features["event_id"]) == {record["event_id"] for record in records}
    assert {"news_clicks_24h", "news_category_interest", "ctr_24h", "seq_length"} <= set(
        served_features.columns
    )
    assert served_features["news_clicks_24h"].notna().all()


def test_bad_bodies_get_422_with_clear_messages(served):
    client, _ = served
    cases = [
        ({"user_id": "u1", "k": 0}, "k: Input should be greater than or equal to 1"),
        (
            {"user_id": "u1", "domains": ["music"]},
            "domains.0: Input should be 'news', 'video' or 'ad'",
        ),
        ({"user_id": "u1", "surprise": 1}, "surprise: Extra inputs are not permitted"),
        ({"domains": ["news"]}, "user_id: Field required"),
        ({"user_id": "u1", "domains": ["news", "news"]}, "domains must be distinct"),
        ({"user_id": "u1", "candidates": 10_000}, "exceeds serve.candidates.max_per_domain"),
    ]
    for body, message in cases:
        response = client.post("/recommend", json=body)
        assert response.status_code == 422, body
        assert message in str(response.json()), response.json()
    broken = client.post(
        "/recommend", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["error"] == "invalid request"


@pytest.mark.reliability
def test_oversize_bodies_get_413(served):
    client, _ = served
    big = {"user_id": "u1", "context": {"blob": "x" * 100_000}}
    assert client.post("/recommend", json=big).status_code == 413

    def chunks():
        yield b'{"user_id": "u1", "context": {"blob": "'
        for _ in range(20):
            yield b"y" * 10_000
        yield b'"}}'

    streamed = client.post(
        "/recommend", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413


@pytest.mark.reliability
def test_write_endpoints_need_the_bearer_token(served, helpers):
    client, _ = served
    event = {"events": [{"type": "click", "user_id": "u1", "item_id": "i3", "request_id": "r1"}]}
    assert client.post("/events", json=event).status_code == 401
    wrong = client.post("/events", json=event, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/events", json=event, headers=helpers.auth).status_code == 202
    reload = client.post("/admin/reload", headers=helpers.auth)
    assert reload.status_code == 200 and reload.json()["result"] == "unchanged"


@pytest.mark.reliability
def test_without_a_configured_token_writes_are_refused(tmp_path, bundles, redis_server, helpers):
    data_root = tmp_path / "data"
    helpers.promote_dir(data_root, bundles["first"])
    settings = helpers.settings_for(data_root, redis_server.url, token=None)
    app = create_app(settings, helpers.serve_params())
    with TestClient(app) as client:
        response = client.post("/admin/reload", headers={"Authorization": "Bearer anything"})
        assert response.status_code == 503 and "MUMA_API_TOKEN" in response.json()["detail"]


def test_events_are_checked_against_the_contract_and_logged(served, helpers):
    client, data_root = served
    bad = client.post(
        "/events",
        json={
            "events": [
                {
                    "type": "view",
                    "user_id": "u1",
                    "item_id": "i3",
                    "dwell_ms": -5,
                    "completion_ratio": 0.5,
                },
                {"type": "click", "user_id": "u1"},
                {"type": "poke", "user_id": "u1"},
                {
                    "type": "gaze",
                    "user_id": "u1",
                    "item_id": "i3",
                    "region": "top_left",
                    "fixation_ms": 10,
                    "x": 1,
                },
            ]
        },
        headers=helpers.auth,
    )
    assert bad.status_code == 422
    reasons = [(e["index"], e["reason"], e["field"]) for e in bad.json()["detail"]]
    assert reasons == [
        (0, "negative_dwell", "dwell_ms"),
        (1, "missing_key", "request_id"),
        (2, "invalid_value", "type"),
        (3, "invalid_value", "x"),
    ]
    good = client.post(
        "/events",
        json={
            "events": [
                {"type": "click", "user_id": "u1", "item_id": "i3", "request_id": "r1"},
                {
                    "type": "view",
                    "user_id": "u1",
                    "item_id": "i3",
                    "dwell_ms": 4000,
                    "completion_ratio": 0.5,
                },
                {
                    "type": "gaze",
                    "user_id": "u1",
                    "item_id": "i3",
                    "region": "top_left",
                    "fixation_ms": 10,
                },
                {
                    "type": "social_edge",
                    "user_id": "u1",
                    "friend_id": "u2",
                    "relation": "friend",
                    "action": "added",
                },
            ]
        },
        headers=helpers.auth,
    )
    assert good.status_code == 202
    assert good.json()["accepted"] == 4 and good.json()["realtime_queued"] == 2
    client.app.state.service.log.flush()
    for source in (Source.CLICKS, Source.VIEWS, Source.GAZE, Source.SOCIAL_EDGES):
        lines = _landing_lines(data_root, source)
        assert len(lines) == 1, source
        assert check_line(source, lines[0])[1] is None


def test_health_ready_metrics_and_openapi(served):
    client, _ = served
    client.post("/recommend", json={"user_id": "u1"})
    assert client.get("/health").json()["online_store"]["healthy"] is True
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    text = client.get("/metrics").text
    for name in (
        'muma_http_requests_total{endpoint="/recommend",status="200"} 1',
        "muma_http_request_seconds_bucket",
        "muma_fallback_total",
        "muma_online_store_up 1",
        "muma_candidate_index_age_seconds",
        'muma_model_info{version="',
    ):
        assert name in text, name
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/events", "/health", "/ready", "/metrics", "/admin/reload"} <= set(paths)
    assert gc.get_freeze_count() > 0  # the start-up heap is out of the collector's way


def test_without_a_champion_the_service_is_not_ready(tmp_path, helpers):
    app = create_app(helpers.settings_for(tmp_path / "empty", None), helpers.serve_params())
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/ready").status_code == 503
        response = client.post("/recommend", json={"user_id": "u1"})
        assert response.status_code == 503 and "no champion" in response.json()["detail"]


def test_the_bandit_policy_logs_floored_propensities_and_learns_from_clicks(
    tmp_path, bundles, world, redis_server, helpers
):
    import redis

    helpers.fill_online(redis.Redis.from_url(redis_server.url), world)
    data_root = tmp_path / "data"
    helpers.promote_dir(data_root, bundles["first"])
    app = create_app(
        helpers.settings_for(data_root, redis_server.url), helpers.serve_params(policy="bandit")
    )
    with TestClient(app) as client:
        answer = client.post("/recommend", json={"user_id": "u2", "k": 3}).json()
        assert answer["policy"] == "bandit"
        floor = min(0.001, 0.5 / 30)
        assert all(i["propensity"] >= floor for s in answer["slates"].values() for i in s)
        bandits = client.app.state.service.manager.state.bandits
        assert bandits["news"].observations["news"] == 3
        shown = answer["slates"]["news"][0]["item_id"]
        before = bandits["news"].response["news"].copy()
        click = {
            "type": "click",
            "user_id": "u2",
            "item_id": shown,
            "request_id": answer["request_id"],
        }
        assert (
            client.post("/events", json={"events": [click]}, headers=helpers.auth).status_code
            == 202
        )
        assert not (bandits["news"].response["news"] == before).all()


def test_muma_serve_runs_the_app_with_uvicorn(tmp_path, bundles, monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    from muma.cli import app as cli

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda api, **kwargs: calls.append((api, kwargs)))
    monkeypatch.setenv("MUMA_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("MUMA_PARAMS_PATH", str(tmp_path / "none.yaml"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["serve", "--port", "8123", "--bundle", str(bundles["first"])])
    assert result.exit_code == 0, result.output
    ((api, kwargs),) = calls
    assert kwargs == {"host": "127.0.0.1", "port": 8123, "log_level": "info"}
    assert api.state.service.manager.pinned == bundles["first"]
