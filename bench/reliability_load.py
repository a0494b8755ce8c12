"""Sustained load on ``muma serve``: /recommend and /events together at 32 concurrent clients.

The reliability suite's load part (``make reliability`` runs it for 10 minutes; ``make test``
for a short run). It reuses :mod:`bench.bench_serving`'s machinery: a private
``redis-server`` on a free port filled with synthetic online rows, a synthetic MUMA bundle
promoted as champion, ``muma serve`` in its own process (uvicorn, one worker), and closed-loop
httpx clients on loopback. Of the clients, three quarters ask ``/recommend`` (100 candidates
per domain, k=10) and one quarter post one click per request to ``/events``, all at once for
``seconds``. The server's resident memory is sampled every few seconds from ``/proc``:
the start figure is taken after a warm-up, the end figure after the run.

Targets (issues 7 and 10): zero errors; stable memory; /recommend p99 <= 25 ms and /events
p99 <= 5 ms (the serving targets, reported, not asserted: this 2-core machine misses them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from bench import bench_serving as serving
from bench.common import conditions
from muma.testing.redis_server import PrivateRedisServer

TARGET_RECOMMEND_P99_MS = 25.0
TARGET_EVENTS_P99_MS = 5.0


def run_load(
    seconds: float,
    clients: int = 32,
    users: int = 5_000,
    items: int = 3_000,
    sample_every: float | None = None,
) -> dict:
    """Serve ``clients`` closed-loop clients for ``seconds``; return errors, latency, memory.

    Memory is sampled every ``sample_every`` seconds (default: a tenth of the run, at most 5 s).
    """
    sample_every = sample_every or min(5.0, max(seconds / 10, 0.5))
    if clients < 2:
        raise ValueError("need at least 2 clients: one for /recommend, one for /events")
    work = Path(tempfile.mkdtemp(prefix="muma-reliability-load-"))
    redis_server = PrivateRedisServer(work, ready_timeout_s=120)
    server = None
    try:
        redis_server.start()
        user_rows, catalog, tables = serving.build_world(users, items)
        data_root = work / "data"
        version = serving.write_bundle(work / "bundle", user_rows, catalog)
        from training.registry import write_json_atomic

        shutil.copytree(work / "bundle", data_root / "models" / "registry" / version)
        write_json_atomic(
            data_root / "models" / "champion.json",
            {"version": version, "name": "muma", "path": f"registry/{version}"},
        )
        serving.fill_redis(redis_server.url, user_rows, catalog, tables)
        del user_rows, catalog
        params_path = work / "params.yaml"
        params_path.write_text(
            yaml.safe_dump(
                {
                    "feast": {"project": serving.PROJECT},
                    "serve": {
                        "candidates": {"per_domain": 100, "max_per_domain": 400},
                        "flush_seconds": 2.0,
                    },
                }
            )
        )
        port = serving._free_port()
        server = serving.start_server(
            data_root, redis_server.url, params_path, port, work / "server.log"
        )
        base = f"http://127.0.0.1:{port}"
        asyncio.run(serving.closed_loop(base, "recommend", 4, 3.0, users))  # warm-up
        asyncio.run(serving.closed_loop(base, "events", 2, 1.0, users))
        start_memory = serving.rss_mb(server.pid)
        samples: list[tuple[float, float]] = []
        began = time.monotonic()

        async def sample_memory() -> None:
            while time.monotonic() - began < seconds:
                samples.append(
                    (round(time.monotonic() - began, 1), serving.rss_mb(server.pid)["VmRSS"])
                )
                await asyncio.sleep(sample_every)

        events_clients = max(1, clients // 4)

        async def both() -> tuple[dict, dict]:
            recommend, events = await asyncio.gather(
                serving.closed_loop(
                    base,
                    "recommend",
                    clients - events_clients,
                    seconds,
                    users,
                    during=sample_memory,
                ),
                serving.closed_loop(base, "events", events_clients, seconds, users, seed=1),
            )
            return recommend, events

        recommend, events = asyncio.run(both())
        end_memory = serving.rss_mb(server.pid)
        # Threads and buffers grow while the clients ramp up: memory is stable when the end
        # is close to the largest figure of the run's first quarter (at least two samples).
        ramp = max(seconds / 4, 2 * sample_every)
        settled = max([rss for at, rss in samples if at <= ramp] or [start_memory["VmRSS"]])
        alive = server.poll() is None
        log_tail = (work / "server.log").read_text(errors="replace")[-2000:]
        return {
            **conditions(),
            "seconds": seconds,
            "clients": clients,
            "recommend_clients": clients - events_clients,
            "events_clients": events_clients,
            "users": users,
            "items": items,
            "candidates_per_domain": 100,
            "recommend": recommend,
            "events": events,
            "errors": recommend["errors"] + events["errors"],
            "requests": recommend["requests"] + events["requests"],
            "server_alive": alive,
            "rss_mb_start": start_memory["VmRSS"],
            "rss_mb_settled": settled,
            "rss_mb_end": end_memory["VmRSS"],
            "rss_mb_peak": end_memory["VmHWM"],
            "rss_mb_samples": samples,
            "target_recommend_p99_ms": TARGET_RECOMMEND_P99_MS,
            "target_events_p99_ms": TARGET_EVENTS_P99_MS,
            "load_average_1m_after": round(os.getloadavg()[0], 2),
            "server_log_tail": log_tail if not alive else "",
        }
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        redis_server.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the load")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--users", type=int, default=5_000, help="users in the online store")
    parser.add_argument("--items", type=int, default=3_000, help="items in the catalog")
    args = parser.parse_args()
    result = run_load(args.seconds, args.clients, args.users, args.items)
    print(json.dumps(result, indent=2))
