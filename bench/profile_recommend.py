"""Where one ``/recommend`` request spends its time, measured in process (no HTTP, no load).

Builds the serving benchmark's synthetic world (:mod:`bench.bench_serving`: online rows in a
private ``redis-server``, a MUMA bundle of the default architecture), starts a
:class:`serving.service.Service` in this process without its background threads, and calls
the same users' requests ``--requests`` times, one after another on one thread:

- ``service``: :meth:`Service.recommend` alone, with a median per stage (each stage is a
  function of the request path, timed by wrapping it; ``other`` is the rest), and the CPU time
  of its thread (``service_cpu``: what the request costs, whatever else the machine runs;
  it leaves out the waits for Redis);
- ``asgi``: the whole FastAPI route (request JSON in, response bytes out: body parsing and
  validation, the worker-thread hop, the response model and JSON encoding), driven through
  the ASGI interface without a server, and ``route_overhead``: the same minus the service
  call inside it;
- ``flush``: the background writer's time (impressions and served features) per request.

Medians, because the machine is shared; the load average is recorded with the figures.
``--check FILE`` runs a seeded, fixed-clock series instead and compares the responses, the
impressions and the served features with ``FILE`` (written when absent), so a speed change
can show that it changed no result::

    python -m bench.profile_recommend --users 20000 --requests 400
    python -m bench.profile_recommend --users 2000 --check /tmp/recommend-golden.pkl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_serving import PROJECT, build_world, fill_redis, write_bundle
from muma.testing.redis_server import PrivateRedisServer

TOKEN = "profile-token"
STAGES: tuple[tuple[str, str, str], ...] = (
    # (stage name, module holding the reference, attribute)
    ("friends", "serving.service", "friends_of"),
    ("read_user", "serving.features.RedisOnlineFeatures", "read_user"),
    ("candidates", "serving.service", "generate"),
    ("item_rows", "serving.service.Service", "_item_rows"),
    ("score", "serving.scoring.RequestScorer", "score"),
    ("policy", "serving.service.Service", "_choose"),
    ("log", "serving.service.Service", "_log_served"),
    ("metrics", "serving.service.Service", "_observe"),
)
SUBSTAGES: tuple[tuple[str, str, str], ...] = (
    # parts of the stages above, reported on their own (not subtracted from ``other``)
    ("item_rows.read", "serving.features.RedisOnlineFeatures", "read_items"),
    ("item_rows.encode", "serving.scoring.RequestEncoder", "items"),
    ("score.user", "training.featurize.Featurizer", "encode_user"),
    ("score.inputs", "serving.scoring", "request_inputs"),
    ("score.model", "training.model.request.RequestRanker", "scores"),
)


def _resolve(path: str) -> Any:
    import importlib

    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            target = getattr(target, name)
        return target
    raise ModuleNotFoundError(path)


@contextmanager
def stage_timers(
    spent: dict[str, float], stages: tuple[tuple[str, str, str], ...] = (*STAGES, *SUBSTAGES)
) -> Iterator[None]:
    """Wrap each function of ``stages`` (``(stage, owner, attribute)``) to add its wall time
    to ``spent[stage]``."""
    saved = []
    for stage, owner_path, name in stages:
        owner = _resolve(owner_path)
        original = getattr(owner, name)

        def timed(*args: Any, _original: Callable = original, _stage: str = stage, **kw: Any):
            began = time.perf_counter()
            try:
                return _original(*args, **kw)
            finally:
                spent[_stage] += time.perf_counter() - began

        setattr(owner, name, timed)
        saved.append((owner, name, original))
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def build(work: Path, users: int, items: int, redis_url: str) -> tuple[Any, Any]:
    """``(app, service)`` on a filled private Redis, the service started (no threads)."""
    from pydantic import SecretStr

    from feature_repo.store import FeastParams
    from muma.settings import Settings
    from serving.app import create_app
    from serving.config import CandidateParams, ServeParams

    user_rows, catalog, tables = build_world(users, items)
    bundle_dir = work / "bundle"
    write_bundle(bundle_dir, user_rows, catalog)
    fill_redis(redis_url, user_rows, catalog, tables)
    settings = Settings(
        data_root=work / "data",
        redis_url=redis_url,
        api_token=SecretStr(TOKEN),
        params_path=work / "absent.yaml",
    )
    params = ServeParams(
        candidates=CandidateParams(per_domain=100, max_per_domain=400),
        redis_timeout_ms=250.0,
        index_refresh_seconds=3600.0,
    )
    app = create_app(
        settings,
        params,
        feast=FeastParams(project=PROJECT),
        bundle_dir=bundle_dir,
        background=False,
    )
    service = app.state.service
    service.start(background=False)
    return app, service


async def asgi_post(app: Any, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST through the app's ASGI interface; ``(status, response body)``."""
    sent: list[dict] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return chunks.pop() if chunks else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, content


async def _timed_posts(
    app: Any, bodies: list[dict[str, Any]], inner: dict[str, float]
) -> tuple[list[float], list[float]]:
    """Seconds of each ``/recommend`` through the ASGI interface, one after another, and of
    each the part outside ``inner["service"]`` (filled by a stage timer around the call)."""
    seconds, outside = [], []
    for body in bodies:
        payload = json.dumps(body).encode()
        inner.clear()
        began = time.perf_counter()
        status, _ = await asgi_post(app, "/recommend", payload)
        seconds.append(time.perf_counter() - began)
        outside.append(seconds[-1] - inner["service"])
        if status != 200:
            raise RuntimeError(f"/recommend answered {status}")
    return seconds, outside


async def _posts(app: Any, bodies: list[dict[str, Any]]) -> list[tuple[int, Any]]:
    """``(status, decoded answer)`` of each ``/recommend``, one after another."""
    answers = []
    for body in bodies:
        status, content = await asgi_post(app, "/recommend", json.dumps(body).encode())
        answers.append((status, json.loads(content)))
    return answers


def _bodies(users: int, count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {"user_id": f"u{int(rng.integers(0, users))}", "k": 10, "candidates": 100}
        for _ in range(count)
    ]


def measure(app: Any, service: Any, users: int, requests: int) -> dict[str, Any]:
    """Medians (ms) of the service call, its stages, the ASGI route and the log flush."""
    from serving.schemas import RecommendRequest

    bodies = _bodies(users, requests)
    for body in bodies[:30]:  # warm-up: item cache, allocator, lazy imports
        service.recommend(RecommendRequest(**body))
    service.log.flush()
    cache = service.manager.state.items
    hits, misses = cache.hits, cache.misses
    totals, cpu, per_stage = [], [], defaultdict(list)
    spent: dict[str, float] = defaultdict(float)
    with stage_timers(spent):
        for body in bodies:
            spent.clear()
            began, began_cpu = time.perf_counter(), time.thread_time()
            service.recommend(RecommendRequest(**body))
            totals.append(time.perf_counter() - began)
            cpu.append(time.thread_time() - began_cpu)
            for stage, _, _ in (*STAGES, *SUBSTAGES):
                per_stage[stage].append(spent.get(stage, 0.0))
            per_stage["other"].append(totals[-1] - sum(spent[stage] for stage, _, _ in STAGES))
    hit_rate = (cache.hits - hits) / max(cache.hits - hits + cache.misses - misses, 1)
    began = time.perf_counter()
    service.log.flush()
    flush_ms = 1e3 * (time.perf_counter() - began) / len(bodies)
    inner: dict[str, float] = defaultdict(float)
    with stage_timers(inner, (("service", "serving.service.Service", "recommend"),)):
        asgi, route = asyncio.run(_timed_posts(app, _bodies(users, requests, seed=2), inner))
    service.log.flush()

    def ms(values: list[float], q: float = 50) -> float:
        return round(1e3 * float(np.percentile(values, q)), 3)

    return {
        "requests": len(bodies),
        "service_p50_ms": ms(totals),
        "service_p90_ms": ms(totals, 90),
        "service_cpu_p50_ms": ms(cpu),
        "stage_p50_ms": {stage: ms(values) for stage, values in per_stage.items()},
        "stage_mean_ms": {
            stage: round(1e3 * float(np.mean(values)), 3) for stage, values in per_stage.items()
        },
        "item_cache_hit_rate": round(hit_rate, 3),
        "asgi_p50_ms": ms(asgi),
        "asgi_p90_ms": ms(asgi, 90),
        "route_overhead_p50_ms": ms(route),
        "flush_per_request_ms": round(flush_ms, 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _served(service: Any, data_root: Path) -> dict[str, Any]:
    """Every impression line and served-features row written so far, in a stable order."""
    import gzip

    import pandas as pd

    service.log.flush()
    lines = []
    for path in sorted((data_root / "landing").rglob("*.jsonl.gz")):
        lines.extend(gzip.decompress(path.read_bytes()).decode().splitlines())
    frames = [pd.read_parquet(p) for p in sorted((data_root / "serving").rglob("*.parquet"))]
    features = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    features = features.sort_values("event_id", kind="stable").reset_index(drop=True)
    return {"impressions": sorted(lines), "features": features}


def check(app: Any, service: Any, users: int, requests: int, golden: Path) -> str:
    """Seeded, fixed-clock requests through the route; compare with ``golden`` (or write it)."""
    import pandas as pd

    import serving.service as service_module

    clock = 1_790_000_000.0
    counter = iter(range(1_000_000))
    real_rng, real_time, real_uuid = np.random.default_rng, time.time, uuid.uuid4
    np.random.default_rng = lambda seed=None: real_rng(seed if seed is not None else 12345)
    service_module.time.time = lambda: clock  # type: ignore[attr-defined]
    uuid.uuid4 = lambda: uuid.UUID(int=next(counter))
    try:
        responses = asyncio.run(_posts(app, _bodies(users, requests, seed=1)))
        served = _served(service, Path(service.settings.data_root))
    finally:
        np.random.default_rng, time.time, uuid.uuid4 = real_rng, real_time, real_uuid
    got = {"responses": responses, **served}
    if not golden.exists():
        golden.write_bytes(pickle.dumps(got))
        return f"wrote {golden} ({len(responses)} responses, {len(got['impressions'])} lines)"
    want = pickle.loads(golden.read_bytes())
    assert got["responses"] == want["responses"], "responses differ"
    assert got["impressions"] == want["impressions"], "impression lines differ"
    pd.testing.assert_frame_equal(got["features"], want["features"])
    return f"identical to {golden}: {len(responses)} responses, {len(got['impressions'])} lines"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000, help="synthetic users")
    parser.add_argument("--items", type=int, default=50_000, help="synthetic items")
    parser.add_argument("--requests", type=int, default=400, help="timed requests")
    parser.add_argument("--check", type=Path, help="compare results with this file instead")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="profile-recommend-"))
    try:
        with PrivateRedisServer(work / "redis", ready_timeout_s=120) as redis_server:
            app, service = build(work, args.users, args.items, redis_server.url)
            try:
                if args.check is not None:
                    print(check(app, service, args.users, args.requests, args.check))
                    return
                result = measure(app, service, args.users, args.requests)
            finally:
                service.stop()
        print(json.dumps(result, indent=2))
        if args.out is not None:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
