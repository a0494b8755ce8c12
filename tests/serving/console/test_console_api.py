"""The console over HTTP (FastAPI's TestClient): access, CSRF, roles, validation, review, and
that only approved uploads are ever recommended."""

from __future__ import annotations

import gzip
import re
import time

import orjson
import pytest
from fastapi.testclient import TestClient

from muma.contract import Source, check_line
from serving.console.store import Status

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

UPLOAD = {
    "domain": "news",
    "title": "Harbour reopens after the storm",
    "text": "The port authority reopened the harbour on Monday.",
    "category": "world",
    "creator_id": "desk-7",
}


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', html)
    assert match, "page has no CSRF token"
    return match[1]


def login(client: TestClient, name: str, password: str) -> str:
    """Log in; returns a CSRF token of the new session."""
    token = csrf_of(client.get("/console/login").text)
    answer = client.post(
        "/console/login",
        data={"name": name, "password": password, "csrf_token": token, "next": "/console/"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/console/").text)


@pytest.fixture
def client(console_world):
    with TestClient(console_world.app) as client:
        yield client


def upload(client: TestClient, token: str, **fields) -> str:
    answer = client.post(
        "/console/upload", data={**UPLOAD, **fields, "csrf_token": token}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return re.search(r"uploaded\+(up-[0-9a-f]+)", answer.headers["location"])[1]


def test_every_page_needs_a_login(client):
    for path in (
        "/console/",
        "/console/upload",
        "/console/review",
        "/console/users",
        "/console/operators",
        "/console/reports/monitoring/2026-11-01/report.html",
    ):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/console/login?next=")
    client.cookies.set("muma_console", "eyJ1IjoiYWRtaW4ifQ.forged", path="/console")
    assert client.get("/console/", follow_redirects=False).status_code == 303
    metrics = client.get("/metrics").text  # labelled with the full path, not the mount's
    assert 'muma_http_requests_total{endpoint="/console/users",status="303"} 1' in metrics


def test_wrong_password_is_refused(client, passwords):
    token = csrf_of(client.get("/console/login").text)
    for name, password in (("admin", "not-the-password"), ("nobody", passwords["admin"])):
        answer = client.post(
            "/console/login", data={"name": name, "password": password, "csrf_token": token}
        )
        assert answer.status_code == 401
        assert "wrong name or password" in answer.text
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_posts_without_the_csrf_token_get_403(client, console_world, passwords):
    token = csrf_of(client.get("/console/login").text)
    answer = client.post("/console/login", data={"name": "admin", "password": passwords["admin"]})
    assert answer.status_code == 403
    token = login(client, "editor", passwords["editor"])
    assert client.post("/console/upload", data=UPLOAD).status_code == 403
    assert (
        client.post("/console/upload", data={**UPLOAD, "csrf_token": "0" * 64}).status_code == 403
    )
    assert console_world.store.uploads() == []
    item = upload(client, token)
    refused = client.post(f"/console/review/{item}", data={"decision": "approve"})
    assert refused.status_code == 403
    assert console_world.store.upload(item).status is Status.PENDING


def test_the_session_of_another_client_carries_a_different_token(console_world, passwords):
    with TestClient(console_world.app) as first, TestClient(console_world.app) as second:
        login(first, "editor", passwords["editor"])
        other = login(second, "admin", passwords["admin"])
        assert (
            first.post("/console/upload", data={**UPLOAD, "csrf_token": other}).status_code == 403
        )


def test_an_editor_cannot_manage_operators(client, console_world, passwords):
    token = login(client, "editor", passwords["editor"])
    assert client.get("/console/operators").status_code == 403
    answer = client.post(
        "/console/operators",
        data={
            "name": "intruder",
            "password": "long-enough-pw",
            "role": "admin",
            "csrf_token": token,
        },
    )
    assert answer.status_code == 403
    assert (
        client.post(
            "/console/operators/admin/active", data={"active": "0", "csrf_token": token}
        ).status_code
        == 403
    )
    assert [o.name for o in console_world.store.operators()] == ["admin", "editor"]
    assert console_world.store.operator("admin").active


def test_an_admin_adds_and_disables_operators(client, console_world, passwords):
    token = login(client, "admin", passwords["admin"])
    weak = client.post(
        "/console/operators",
        data={"name": "newbie", "password": "short", "role": "editor", "csrf_token": token},
    )
    assert weak.status_code == 422 and "at least 10 characters" in weak.text
    added = client.post(
        "/console/operators",
        data={
            "name": "newbie",
            "password": "a-long-password",
            "role": "editor",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert added.status_code == 303
    assert console_world.store.operator("newbie").role == "editor"
    client.post("/console/operators/newbie/active", data={"active": "0", "csrf_token": token})
    assert not console_world.store.operator("newbie").active
    assert console_world.store.authenticate("newbie", "a-long-password") is None
    last = client.post("/console/operators/admin/active", data={"active": "0", "csrf_token": token})
    assert last.status_code == 409 and "last active admin" in last.text


def test_invalid_uploads_get_clear_messages_and_keep_the_input(client, console_world, passwords):
    token = login(client, "editor", passwords["editor"])
    answer = client.post(
        "/console/upload",
        data={
            "domain": "news",
            "title": "ab",
            "category": "cooking",
            "creator_id": "",
            "text": "kept text",
            "duration_s": "90",
            "csrf_token": token,
        },
    )
    assert answer.status_code == 422
    html = answer.text
    assert "a title of 3 to 200 characters is required" in html
    assert "for news, one of:" in html
    assert "author, channel or advertiser" in html
    assert "only videos have a duration" in html
    assert "kept text" in html  # nothing the editor typed is lost
    bad_domain = client.post(
        "/console/upload", data={**UPLOAD, "domain": "podcast", "csrf_token": token}
    )
    assert bad_domain.status_code == 422 and "choose one of: news, video, ad" in bad_domain.text
    video = client.post(
        "/console/upload",
        data={
            **UPLOAD,
            "domain": "video",
            "category": "sports",
            "duration_s": "-3",
            "csrf_token": token,
        },
    )
    assert video.status_code == 422 and "between 0 and 86400" in video.text
    assert console_world.store.uploads() == []


def _recommended(client: TestClient, domain: str, users: list[str]) -> set[str]:
    items = set()
    for user in users:
        answer = client.post(
            "/recommend", json={"user_id": user, "domains": [domain], "k": 5, "candidates": 10}
        ).json()
        items |= {entry["item_id"] for entry in answer["slates"][domain]}
    return items


def test_approved_items_are_recommended_and_enter_the_landing_zone(
    client, console_world, passwords
):
    token = login(client, "editor", passwords["editor"])
    item = upload(client, token)
    users = ["u1", "u2", "someone-new"]
    assert item not in _recommended(client, "news", users)  # pending: never served
    answer = client.post(
        f"/console/review/{item}",
        data={"decision": "approve", "csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    # k=5 of 10 candidates: the approved upload is a candidate of every request.
    for user in users:
        reply = client.post(
            "/recommend", json={"user_id": user, "domains": ["news"], "k": 10, "candidates": 10}
        ).json()
        assert item in {entry["item_id"] for entry in reply["slates"]["news"]}, user
    lines = []  # written at approval, not by a later flush
    for path in (console_world.data_root / "landing" / "v1" / "items").rglob("*.jsonl.gz"):
        with gzip.open(path, "rb") as handle:
            lines += [line for line in handle if line.strip()]
    assert len(lines) == 1
    record, violation = check_line(Source.ITEMS, lines[0])
    assert violation is None and record["item_id"] == item and record["category"] == "world"
    assert record["title"] == UPLOAD["title"]


def test_rejected_and_withdrawn_items_are_never_recommended(client, console_world, passwords):
    token = login(client, "editor", passwords["editor"])
    rejected = upload(client, token, title="Rejected story")
    withdrawn = upload(client, token, title="Withdrawn story")
    client.post(f"/console/review/{rejected}", data={"decision": "reject", "csrf_token": token})
    client.post(f"/console/review/{withdrawn}", data={"decision": "approve", "csrf_token": token})
    served_while_approved = client.post(
        "/recommend", json={"user_id": "u4", "domains": ["news"], "k": 10, "candidates": 10}
    ).json()
    assert withdrawn in {entry["item_id"] for entry in served_while_approved["slates"]["news"]}
    client.post(f"/console/review/{withdrawn}", data={"decision": "reject", "csrf_token": token})
    again = client.post(
        f"/console/review/{rejected}", data={"decision": "approve", "csrf_token": token}
    )
    assert again.status_code == 409  # a rejected item cannot be approved later
    served = _recommended(client, "news", [f"u{n}" for n in range(12)] + ["new-1", "new-2"])
    assert rejected not in served and withdrawn not in served
    statuses = {u.item_id: u.status for u in console_world.store.uploads()}
    assert statuses == {rejected: Status.REJECTED, withdrawn: Status.REJECTED}
    landed = list((console_world.data_root / "landing" / "v1" / "items").rglob("*.jsonl.gz"))
    assert [p.name for p in landed] == [f"part-console-{withdrawn}.jsonl.gz"]  # only approved


def test_a_blocked_item_in_the_vocabulary_is_dropped_from_every_source(world, helpers, tmp_path):
    """After retraining, an uploaded item can be in the model's vocabulary: blocked ids still go."""
    from serving.candidates import CandidateIndex, generate

    featurizer = world.featurizer
    index = CandidateIndex.build(featurizer, None, helpers.serve_params())
    plain = generate(featurizer, index, "u3", [], [], ["news"], 30, helpers.serve_params())
    victim = int(plain.ids["news"][0])
    blocked = generate(
        featurizer, index, "u3", [], [], ["news"], 30, helpers.serve_params(), blocked={victim}
    )
    assert victim in plain.ids["news"].tolist() and victim not in blocked.ids["news"].tolist()
    cold = generate(
        featurizer,
        index,
        "u3",
        [],
        [],
        ["news"],
        30,
        helpers.serve_params(),
        uploaded={"news": ["up-new"]},
    )
    assert cold.tokens(featurizer, "news")[0] == "up-new" and cold.count("news") == 30


def test_dashboard_shows_the_pipeline_outputs(client, passwords):
    login(client, "editor", passwords["editor"])
    html = client.get("/console/").text
    assert html.count('class="point"') == 18  # 3 domains x 6 hours
    assert 'data-series="bandit"' in html and 'data-series="epsilon_greedy"' in html
    assert "CTR drop in video" in html and "retrain" in html
    assert "muma_monitor" in html and "state-failed" in html
    report = client.get("/console/reports/monitoring/2026-11-01/report.html")
    assert report.status_code == 200 and "Evidently drift report" in report.text
    assert client.get("/console/reports/monitoring/..%2F..%2Fetc/report.html").status_code == 404
    assert "No offline feature partitions" in html  # an empty state, not a figure
    assert "test AUC, video" in html and "0.6932" in html
    assert 'data-chart="closed-loop-study"' in html and "17.76%" in html


def test_users_page_shows_profile_and_recommendations(client, console_world, passwords):
    login(client, "editor", passwords["editor"])
    html = client.get("/console/users", params={"user_id": "u3"}).text
    assert "Online features of" in html
    assert html.count('class="slate"') == 3 and "propensity" in html
    assert 'href="/console/users?user_id=u2"' in html  # u3's friend in the fixture's graph
    new = client.get("/console/users", params={"user_id": "nobody-yet"}).text
    assert "a cold-start user" in new and "cold-start path" in new
    bad = client.get("/console/users", params={"user_id": "<script>"})
    assert bad.status_code == 422 and "<script>" not in bad.text
    # A preview: no impression logged, no recommendation counted.
    client.app.state.service.log.flush()
    landing = console_world.data_root / "landing" / "v1" / "impressions"
    assert not list(landing.rglob("*.jsonl.gz"))
    assert "muma_recommendations_total{" not in client.get("/metrics").text


def test_empty_states_before_any_pipeline_output(tmp_path, helpers):
    from serving.app import create_app
    from serving.console.store import ConsoleStore, store_path

    data_root = tmp_path / "empty"
    ConsoleStore(store_path(data_root)).add_operator("admin", "admin-password-1", "admin")
    app = create_app(helpers.settings_for(data_root), helpers.serve_params(), feast=helpers.feast)
    with TestClient(app) as client:
        login(client, "admin", "admin-password-1")
        html = client.get("/console/").text
        assert "<svg" not in html
        assert "no curated interactions under" in html
        assert "no monitoring run under" in html
        assert "no champion promoted yet" in html
        assert "no Airflow runs recorded" in html
        assert "No offline feature partitions" in html
        assert "no closed-loop study at" in html
        users = client.get("/console/users", params={"user_id": "u1"}).text
        assert "no model is loaded yet" in users


def test_uploaded_text_is_escaped_on_every_page(client, passwords):
    token = login(client, "editor", passwords["editor"])
    upload(client, token, title="<script>alert(1)</script> breaking", text="<img src=x onerror=1>")
    html = client.get("/console/review").text
    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; breaking" in html


def test_repeated_failed_logins_are_throttled(client, passwords):
    token = csrf_of(client.get("/console/login").text)
    for _ in range(5):
        wrong = {"name": "admin", "password": "guess-guess", "csrf_token": token}
        assert client.post("/console/login", data=wrong).status_code == 401
    right = {"name": "admin", "password": passwords["admin"], "csrf_token": token}
    refused = client.post("/console/login", data=right, follow_redirects=False)
    assert refused.status_code == 429 and "too many failed logins" in refused.text
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_a_corrupt_output_is_an_empty_state_not_an_error(client, console_world, passwords):
    login(client, "editor", passwords["editor"])
    part = next((console_world.data_root / "curated" / "interactions").rglob("*.parquet"))
    part.write_bytes(b"not parquet")
    (console_world.data_root / "reports" / "monitoring" / "2026-11-01" / "summary.json").write_text(
        "{broken"
    )
    answer = client.get("/console/")
    assert answer.status_code == 200
    assert "cannot be read" in answer.text and 'data-chart="ctr-by-domain"' not in answer.text
    assert "summary.json cannot be read" in answer.text


def test_an_approval_by_another_process_is_served_within_seconds(client, console_world):
    """Another writer of the store (a second worker, a script): seen within the 2 s refresh."""
    other = console_world.store  # its own connection and write counter, like another process
    item = other.add_upload({**UPLOAD, "title": "Approved elsewhere"}, "editor")
    client.post(
        "/recommend", json={"user_id": "u5", "domains": ["news"], "k": 10, "candidates": 10}
    )
    other.review(item.item_id, Status.APPROVED, "editor")
    began = time.monotonic()
    while item.item_id not in _recommended_all(client, "u5"):
        assert time.monotonic() - began < 5, "not served 5 s after the approval"
        time.sleep(0.1)
    assert time.monotonic() - began <= 3.0


def _recommended_all(client: TestClient, user: str) -> set[str]:
    answer = client.post(
        "/recommend", json={"user_id": user, "domains": ["news"], "k": 10, "candidates": 10}
    ).json()
    return {entry["item_id"] for entry in answer["slates"]["news"]}


def test_rejecting_a_pending_item_removes_a_record_left_by_a_crashed_approval(
    client, console_world, passwords
):
    from muma.landing import write_partition_bytes
    from serving.console.routes import landing_record
    from serving.impressions import hour_of

    token = login(client, "editor", passwords["editor"])
    item = upload(client, token)
    now = time.time()
    record = landing_record(console_world.store.upload(item), now)
    # What an approval writes before changing the status, had the process died right after.
    stray = write_partition_bytes(
        console_world.data_root / "landing",
        Source.ITEMS,
        hour_of(now),
        orjson.dumps(record) + b"\n",
        part=f"part-console-{item}",
    )
    client.post(f"/console/review/{item}", data={"decision": "reject", "csrf_token": token})
    assert console_world.store.upload(item).status is Status.REJECTED
    assert not stray.exists()
