"""Hot reload: a promoted champion replaces the model under load without a failed request;
a tampered bundle is refused and the old model keeps serving."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.schemas import RecommendRequest
from serving.service import Service
from training.bundle import ModelBundle
from training.registry import write_json_atomic

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture
def service(tmp_path: Path, bundles, world, redis_server, helpers):
    import redis

    helpers.fill_online(redis.Redis.from_url(redis_server.url), world)
    data_root = tmp_path / "data"
    helpers.promote_dir(data_root, bundles["first"])
    svc = Service(
        helpers.settings_for(data_root, redis_server.url),
        helpers.serve_params(),
        feast=helpers.feast,
    )
    svc.start(background=False)
    yield svc, data_root
    svc.stop()


def test_a_new_champion_is_swapped_in_while_requests_run(service, bundles, helpers):
    svc, data_root = service
    first = svc.manager.state.version
    versions: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def client(user: str) -> None:
        request = RecommendRequest(user_id=user, k=3)
        while not stop.is_set():
            try:
                versions.append(svc.recommend(request)["model_version"])
            except BaseException as error:  # any failure is the test's failure
                errors.append(error)

    threads = [threading.Thread(target=client, args=(f"u{n}",)) for n in range(4)]

    def wait_for(condition, what: str) -> None:
        # Counted in answers, not seconds: on a loaded machine 0.3 s may hold none.
        deadline = time.monotonic() + 60
        while not condition() and not errors:
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    for thread in threads:
        thread.start()
    wait_for(lambda: len(versions) >= 8, "answers from the first champion")
    second = helpers.promote_dir(data_root, bundles["second"])
    assert svc.manager.check().result == "loaded"
    wait_for(lambda: versions.count(second) >= 12, "answers from the new champion")
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    assert first != second and {first, second} <= set(versions)
    swap = versions.index(second)
    assert set(versions[swap + 4 * 2 :]) <= {second}  # at most the in-flight ones finish on the old
    assert svc.manager.state.version == second


def test_the_poller_picks_up_a_promotion(tmp_path: Path, bundles, redis_server, helpers):
    data_root = tmp_path / "data"
    helpers.promote_dir(data_root, bundles["first"])
    app = create_app(helpers.settings_for(data_root, redis_server.url), helpers.serve_params())
    with TestClient(app) as client:
        first = client.get("/ready").json()["model_version"]
        second = helpers.promote_dir(data_root, bundles["second"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if client.post("/recommend", json={"user_id": "u1"}).json()["model_version"] == second:
                break
            time.sleep(0.05)
        assert first != second
        assert client.get("/ready").json()["model_version"] == second
        assert 'muma_model_reloads_total{result="loaded"} 2' in client.get("/metrics").text


@pytest.mark.reliability
def test_a_tampered_bundle_is_refused_and_the_old_model_keeps_serving(service, bundles, helpers):
    svc, data_root = service
    first = svc.manager.state.version
    version = ModelBundle.load(bundles["second"]).version
    target = data_root / "models" / "registry" / version
    shutil.copytree(bundles["second"], target)
    weights = target / "model.pt"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    write_json_atomic(
        data_root / "models" / "champion.json",
        {"version": version, "name": "muma", "path": f"registry/{version}"},
    )
    result = svc.manager.check()
    assert result.result == "refused" and "corrupt or was modified" in result.detail
    assert svc.manager.state.version == first
    assert svc.recommend(RecommendRequest(user_id="u1"))["model_version"] == first
    # Not retried on every poll, only when asked to or when the pointer changes.
    assert svc.manager.check().result == "refused"
    assert svc.metrics.value("muma_model_reloads_total", result="refused") == 1
    assert svc.health()["last_reload"]["result"] == "refused"
    # A broken pointer file is refused the same way.
    (data_root / "models" / "champion.json").write_text("{not json")
    assert svc.manager.check().result == "refused"
    assert svc.manager.state.version == first
