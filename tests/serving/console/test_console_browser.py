"""The console in a real browser: Debian's headless Chromium driven by Playwright, against the
service running with uvicorn on loopback.

An editor logs in, sees the dashboard's charts drawn from the pipeline outputs, uploads a news
item (a bad upload first), approves it, and finds it among the recommendations of a new user
on the users page (the cold-start path). Screenshots go to ``reports/test-artefacts/console/``.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.config import CandidateParams

CHROMIUM = Path("/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parents[3] / "reports" / "test-artefacts" / "console"

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning"),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)"
    ),
]


@pytest.fixture
def serve_overrides() -> dict:
    # Ten candidates and slates of ten per domain: every candidate is shown, so the page
    # shows whether the approved upload is a candidate at all.
    return {
        "default_k": 10,
        "candidates": CandidateParams(per_domain=10, max_per_domain=80, popular=20, fresh=10),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(console_world) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(console_world.app, host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not running.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def page() -> Iterator:
    sync_api = pytest.importorskip("playwright.sync_api")
    if ARTEFACTS.exists():
        shutil.rmtree(ARTEFACTS)
    ARTEFACTS.mkdir(parents=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        browser.close()
        assert errors == [], f"JavaScript errors: {errors}"


def test_login_upload_approve_recommend_and_dashboard(server, page, console_world, passwords):
    page.goto(f"{server}/console/")
    assert "/console/login" in page.url
    page.fill("input[name=name]", "editor")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    assert "wrong name or password" in page.inner_text("main")
    page.fill("input[name=password]", passwords["editor"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/console/")

    # Dashboard: both charts are drawn from the curated interactions, with real values.
    ctr = page.locator("svg[data-chart=ctr-by-domain]")
    assert ctr.is_visible()
    assert page.locator("svg[data-chart=ctr-by-domain] polyline.series").count() == 3
    points = page.locator("svg[data-chart=ctr-by-domain] circle.point")
    assert points.count() == 18
    values = [float(v) for v in points.evaluate_all("els => els.map(e => e.dataset.value)")]
    assert all(0 <= v <= 1 for v in values) and max(values) > 0
    box = ctr.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100
    bars = page.locator("svg[data-chart=ctr-by-policy] rect.bar")
    assert bars.count() == 2
    widths = bars.evaluate_all("els => els.map(e => e.getBBox().width)")
    assert all(width > 1 for width in widths)
    assert page.locator("svg[data-chart=closed-loop-study] rect.bar").count() == 2
    assert "CTR drop in video" in page.inner_text("#drift")
    assert page.locator("#drift a", has_text="Evidently report").count() == 1
    page.screenshot(path=str(ARTEFACTS / "01-dashboard.png"), full_page=True)

    # A bad upload is refused with messages next to the fields; the typed text stays.
    page.click("nav >> text=Upload")
    page.select_option("#domain", "news")
    page.fill("#title", "No")
    page.fill("textarea[name=text]", "A storm closed the harbour for three days.")
    page.fill("input[name=creator_id]", "desk-7")
    page.click("#upload-form button[type=submit]")
    assert "a title of 3 to 200 characters" in page.inner_text("[data-field=title]")
    assert page.input_value("textarea[name=text]") == "A storm closed the harbour for three days."
    page.screenshot(path=str(ARTEFACTS / "02-upload-invalid.png"), full_page=True)

    # The domain choice filters the categories (the page's script); then a valid upload.
    page.select_option("#domain", "video")
    hidden = page.locator("#category option[data-domain=news]").evaluate_all(
        "els => els.every(e => e.hidden)"
    )
    assert hidden
    page.select_option("#domain", "news")
    page.select_option("#category", "world")
    page.fill("#title", "Harbour reopens after the storm")
    page.click("#upload-form button[type=submit]")
    page.wait_for_url("**/console/review?done=*")
    pending = page.locator("#pending tr[data-item]")
    assert pending.count() == 1
    item = pending.first.get_attribute("data-item")
    page.screenshot(path=str(ARTEFACTS / "03-review-queue.png"), full_page=True)

    # Before approval, a new user's slates do not hold it.
    page.goto(f"{server}/console/users?user_id=reader-new")
    assert page.locator(f"table.slate tr[data-item='{item}']").count() == 0

    page.goto(f"{server}/console/review")
    page.click(f"#pending button[data-action=approve][data-item='{item}']")
    page.wait_for_url("**/console/review?done=*")
    assert page.locator(f"#approved tr[data-item='{item}']").count() == 1
    assert page.locator("#pending tr[data-item]").count() == 0

    # Recommended now: the users page asks the service's own recommend path.
    page.click("nav >> text=Users")
    page.fill("input[name=user_id]", "reader-new")
    page.click("#lookup button[type=submit]")
    assert "cold-start path" in page.inner_text("#recommendations")
    row = page.locator(f"table.slate[data-domain=news] tr[data-item='{item}']")
    assert row.count() == 1
    score, propensity = (float(v) for v in row.locator("td").all_inner_texts()[2:4])
    assert 0 < score < 1 and 0 < propensity <= 1
    page.screenshot(path=str(ARTEFACTS / "04-user-recommendations.png"), full_page=True)
    assert sorted(p.name for p in ARTEFACTS.glob("*.png")) == [
        "01-dashboard.png",
        "02-upload-invalid.png",
        "03-review-queue.png",
        "04-user-recommendations.png",
    ]
