"""Malformed requests to every endpoint: never a 5xx, always a clear 4xx, and the service
still answers correctly afterwards.

A seeded generator builds requests from valid ones by mutation: broken or truncated JSON,
invalid UTF-8, wrong types, missing and extra keys, NaN and infinities, huge and negative
numbers, huge strings, deep nesting, wrong content types, wrong methods, unknown paths,
bad or missing tokens, oversize bodies; events get negative dwell, bad timestamps and
unknown types.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app

pytestmark = [
    pytest.mark.reliability,
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning"),
]

REQUESTS = 2_000
API = [
    ("POST", "/recommend"),
    ("POST", "/events"),
    ("POST", "/admin/reload"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
]
"""The JSON API; the test checks the app has no other route outside mounted sub-apps."""
_PATH_VALUES = ["2026-11-01", "../../etc/passwd", "%00", "x" * 500, "é", "i3"]
_ODD: list[object] = [
    None,
    True,
    -1,
    0,
    2**80,
    -(2**80),
    1e308,
    math.nan,
    math.inf,
    "",
    "x" * 5_000,
    "\u202e\ud800\x00",
    [],
    {},
    [[[]]],
    {"a": {"b": {"c": [1]}}},
]
_VALID_RECOMMEND = {"user_id": "u1", "k": 4, "domains": ["news", "ad"], "context": {"page": "home"}}
_VALID_EVENTS = [
    {"type": "click", "user_id": "u1", "item_id": "i3", "request_id": "r1"},
    {"type": "view", "user_id": "u2", "item_id": "i4", "dwell_ms": 3000, "completion_ratio": 0.5},
    {"type": "gaze", "user_id": "u3", "item_id": "i5", "region": "top_left", "fixation_ms": 300},
    {"type": "social_edge", "user_id": "u1", "friend_id": "u2", "relation": "friend"},
]


def _mutate(rng: random.Random, body: dict) -> dict:
    body = json.loads(json.dumps(body))
    for _ in range(rng.randint(1, 3)):
        keys = list(body)
        action = rng.randrange(4)
        if action == 0 and keys:
            body[rng.choice(keys)] = rng.choice(_ODD)
        elif action == 1 and keys:
            body.pop(rng.choice(keys))
        elif action == 2:
            body[rng.choice(["surprise", "", "__proto__", "ümlaut"])] = rng.choice(_ODD)
        else:
            extreme = {"dwell_ms": -5, "fixation_ms": 10**9, "ts": "yesterday", "type": "purchase"}
            key = rng.choice(list(extreme))
            body[key] = extreme[key]
    return body


def _encode(rng: random.Random, payload: object) -> bytes:
    text = json.dumps(payload, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
    choice = rng.randrange(10)
    if choice == 0:
        return text[: rng.randrange(0, max(len(text), 1))]  # truncated
    if choice == 1:
        return text.replace(b'"', b"\xff", 1)  # invalid UTF-8
    if choice == 2:
        return b"[" * 5_000 + b"]" * 5_000  # deep nesting
    return text


def app_endpoints(app) -> list[tuple[str, str]]:
    """``(method, path)`` of every route, mounted sub-apps (the console) included."""
    from starlette.routing import Mount

    found = []

    def walk(routes, prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(route.routes, prefix + route.path)
            elif getattr(route, "methods", None):
                found.extend((method, prefix + route.path) for method in sorted(route.methods))

    walk(app.routes, "")
    return sorted(set(found) - {("HEAD", path) for _, path in found})


def _form_body(rng: random.Random) -> tuple[str, bytes]:
    choice = rng.randrange(4)
    if choice == 0:
        return "application/x-www-form-urlencoded", b"user=%ff%fe&password=&csrf=" + b"A" * 300
    if choice == 1:
        return "multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data"
    if choice == 2:
        return "multipart/form-data", b"no boundary at all"
    return "application/x-www-form-urlencoded", bytes(rng.randrange(256) for _ in range(200))


def fuzz_requests(
    count: int, seed: int, token: str, endpoints: list[tuple[str, str]]
) -> Iterator[tuple[str, str, dict]]:
    """``(method, path, httpx request arguments)``: ``count`` malformed requests."""
    rng = random.Random(seed)
    for n in range(count):
        method, path = endpoints[n % len(endpoints)]
        while "{" in path:
            start, end = path.index("{"), path.index("}")
            path = path[:start] + rng.choice(_PATH_VALUES) + path[end + 1 :]
        headers = {"content-type": rng.choice(["application/json"] * 4 + ["text/plain", ""])}
        if path in ("/events", "/admin/reload"):
            headers["Authorization"] = rng.choice(
                [f"Bearer {token}"] * 3
                + ["", "Bearer", "Basic abc", f"bearer  {token}x", "Bearer \u00e9".encode()]
            )
        if path == "/recommend":
            payload: object = _mutate(rng, _VALID_RECOMMEND)
        elif path == "/events":
            events = [_mutate(rng, rng.choice(_VALID_EVENTS)) for _ in range(rng.randint(0, 4))]
            payload = rng.choice([{"events": events}, events, {"events": events * 300}, events[:1]])
        else:
            payload = _mutate(rng, {"force": True})
        if rng.random() < 0.15:  # the wrong method or an unknown path
            method = rng.choice(["GET", "PUT", "DELETE", "PATCH", "POST"])
            path = rng.choice([path, path + "/x", "/recommend/../events", "/%ff", "/" + "a" * 3000])
        arguments: dict = {"headers": headers, "params": {}}
        if rng.random() < 0.1:
            arguments["params"] = {"k": rng.choice(["-1", "NaN", "\x00", "9" * 40])}
        if method in ("POST", "PUT", "PATCH"):
            content = _encode(rng, payload)
            if path.startswith("/console") and rng.random() < 0.7:
                headers["content-type"], content = _form_body(rng)
            if rng.random() < 0.03:
                content = b'{"user_id": "u1", "context": {"blob": "' + b"z" * 70_000 + b'"}}'
            arguments["content"] = content
        yield method, path, arguments


@pytest.fixture
def client(tmp_path: Path, bundles, world, redis_server, helpers) -> Iterator[TestClient]:
    import redis

    helpers.fill_online(redis.Redis.from_url(redis_server.url), world)
    data_root = tmp_path / "data"
    helpers.promote_dir(data_root, bundles["first"])
    app = create_app(
        helpers.settings_for(data_root, redis_server.url),
        helpers.serve_params(),
        feast=helpers.feast,
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_malformed_requests_get_clear_4xx_never_5xx(client: TestClient, helpers, reliability):
    statuses: Counter[int] = Counter()
    by_endpoint: Counter[str] = Counter()
    unclear = []
    endpoints = app_endpoints(client.app)
    assert {path for _, path in endpoints if not path.startswith("/console")} >= {
        path for _, path in API
    }
    assert any(path.startswith("/console") for _, path in endpoints)
    for method, path, arguments in fuzz_requests(REQUESTS, 5, helpers.token, endpoints):
        response = client.request(method, path, **arguments)
        statuses[response.status_code] += 1
        by_endpoint[path if len(path) < 40 else path[:40] + "..."] += 1
        assert response.status_code < 500, (method, path, arguments, response.text[:500])
        if response.status_code >= 400 and path.startswith("/console"):
            if not response.text.strip():
                unclear.append((method, path, response.status_code, "empty body"))
        elif response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = None
            if not (isinstance(body, dict) and (body.get("detail") or body.get("error"))):
                unclear.append((method, path, response.status_code, response.text[:200]))
    assert not unclear, unclear[:5]
    assert statuses[422] > 50 and statuses[401] > 10 and statuses[413] > 3, statuses
    # Still healthy and correct afterwards.
    answer = client.post("/recommend", json={"user_id": "u5", "k": 3})
    assert answer.status_code == 200 and answer.json()["degraded"] is False
    assert client.get("/health").status_code == 200
    reliability.record(
        "bad_input_http",
        {
            "requests": sum(statuses.values()),
            "status_counts": {str(code): count for code, count in sorted(statuses.items())},
            "server_errors": sum(count for code, count in statuses.items() if code >= 500),
            "endpoints": [f"{method} {path}" for method, path in endpoints],
        },
    )
