"""Serving speed: ``muma serve`` under a bounded load generator on loopback.

The service runs as ``muma serve`` in its own process (uvicorn, one worker) against a private
``redis-server`` on a free port, filled with synthetic online rows in Feast's layout
(:mod:`serving.online_rows`) for ``users`` users and ``items`` items, and a synthetic MUMA
bundle fitted on rows shaped like the ``muma_v1`` feature service (every user and item
feature of the real tables, 50-item behaviour sequences; seeded initial weights, as speed
does not depend on training). The load generator is this process: ``clients`` concurrent
httpx async clients in a closed loop, for a fixed time, every loop bounded.

Phases (each reports count, throughput, p50/p99, errors, degraded answers):

1. ``recommend``: 300 candidates over 3 domains (100 per domain), k=10 per domain;
2. ``recommend_one_client``: the same with one client (service time without queueing);
   ``recommend_open_50pct`` / ``_80pct``: requests arriving at a fixed rate, half and 80% of
   phase 1's throughput, at most ``clients`` in flight, latency from the scheduled time
   (:func:`open_loop`): the latency a deployment sized for its load would see;
3. ``events``: one click per request;
4. ``recommend_redis_restart``: as 1, with Redis killed at a third of the run and started
   again (from its RDB snapshot) at half of it;
5. ``candidates_<n>``: p99 at 100, 300 and 1,000 candidates (n / 3 per domain), with 32
   clients and with one (``candidates_<n>_one_client``);

plus the server's resident memory (VmRSS and peak VmHWM) after the runs and its mean time
per recommendation stage (from its own ``/metrics``).

Targets (issue 7): /recommend p50 <= 8 ms, p99 <= 25 ms, zero errors; /events p99 <= 5 ms;
zero errors with Redis restarted; resident memory < 1.5 GB at 100,000 users, 50,000 items.
``--quick`` runs 10 s phases (and shorter side phases) on the same world; results go to
``--out`` (default ``bench/results.json`` under the key ``serving``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import conditions, save
from muma.testing.redis_server import PrivateRedisServer

TOKEN = "bench-serving-token"
PROJECT = "bench_serving"
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------ synthetic world
def _column_values(dtype, count: int, rng: np.random.Generator, width: int = 12) -> list:
    from feature_repo.tables import Dtype

    if dtype is Dtype.DOUBLE:
        return (rng.random(count) * 20).tolist()
    if dtype is Dtype.BIGINT:
        return rng.integers(0, 30, count).tolist()
    if dtype is Dtype.FLOAT_ARRAY:
        return [list(row) for row in rng.dirichlet(np.ones(width), count).astype(np.float32)]
    return [None] * count


def build_world(users: int, items: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Online rows for every user (all user tables) and item (``item_hourly_stats``)."""
    from feature_repo.config import FeaturesParams
    from feature_repo.tables import ITEM_STATS, USER_ID, USER_SEQUENCE, feature_tables

    rng = np.random.default_rng(seed)
    params = FeaturesParams()
    tables = feature_tables(params)
    domains = np.asarray(["news", "video", "ad"])[np.arange(items) % 3]
    catalog = {"item_id": [f"i{n}" for n in range(items)], "domain": domains.tolist()}
    catalog["category"] = [
        params.categories[d][n % len(params.categories[d])] for n, d in enumerate(domains)
    ]
    catalog["creator_id"] = [f"c{n % max(items // 20, 1)}" for n in range(items)]
    for column in tables[ITEM_STATS].features:
        if column.name not in catalog:
            catalog[column.name] = _column_values(column.dtype, items, rng)
    user_rows: dict = {"user_id": [f"u{n}" for n in range(users)]}
    widths = {"gaze_region_share": 6}
    for table in tables.values():
        if table.entity_key != USER_ID or table.name == USER_SEQUENCE:
            continue
        for column in table.features:
            width = widths.get(
                column.name, len(params.categories.get(column.name.split("_")[0], [])) or 12
            )
            user_rows[column.name] = _column_values(column.dtype, users, rng, width)
    now = int(T0.timestamp())
    clicked = rng.integers(0, items, (users, params.sequence_length))
    user_rows["seq_item_ids"] = [[f"i{v}" for v in row] for row in clicked]
    gaps = np.sort(rng.integers(60, 7 * 86_400, (users, params.sequence_length)), axis=1)
    user_rows["seq_ts"] = [(now - row).tolist() for row in gaps]
    user_rows["seq_length"] = [params.sequence_length] * users
    return pd.DataFrame(user_rows), pd.DataFrame(catalog), tables


def synthetic_training(
    users: pd.DataFrame, catalog: pd.DataFrame, seed: int = 0, rows_per_user: int = 4
):
    """``(rows, featurizer)``: ``muma_v1``-shaped training rows (random clicks, one request
    per sampled user) and the featurizer fitted on them with the default train params."""
    from feature_repo.config import FeaturesParams
    from training.config import TrainParams
    from training.featurize import Featurizer
    from training.pipeline import feature_names

    rng = np.random.default_rng(seed)
    params = TrainParams()
    user_names, item_names = feature_names(FeaturesParams(), params.feature_service)
    sample = users.sample(min(len(users), 5000), random_state=seed).reset_index(drop=True)
    picks = rng.integers(0, len(catalog), (len(sample), rows_per_user))
    rows = catalog.iloc[picks.ravel()].reset_index(drop=True)
    for name in [*user_names, "seq_item_ids", "seq_ts", "user_id"]:
        # repeat keeps numeric dtypes
        rows[name] = sample[name].repeat(rows_per_user).reset_index(drop=True)
    rows["request_id"] = [f"r{n // rows_per_user}" for n in range(len(rows))]
    rows["ts"] = pd.Timestamp(T0)
    rows["clicked"] = rng.random(len(rows)) < 0.2
    friends = pd.DataFrame({"user_id": users["user_id"], "friend_id": users["user_id"].shift(-1)})
    featurizer = Featurizer.fit(
        rows,
        catalog[["item_id", "domain", "category", "creator_id"]],
        friends.dropna(),
        user_feature_names=user_names,
        item_feature_names=item_names,
        graph=params.muma.graph,
        long_length=params.long_length,
        recent_length=min(params.muma.encoder.recent_length, params.long_length),
        seed=seed,
    )
    return rows, featurizer


def write_bundle(directory: Path, users: pd.DataFrame, catalog: pd.DataFrame, seed: int = 0) -> str:
    """A MUMA bundle fitted on ``muma_v1``-shaped rows (seeded initial weights)."""
    import torch

    from training.bundle import ModelBundle, build_model
    from training.config import TrainParams
    from training.pipeline import model_config

    params = TrainParams()
    _, featurizer = synthetic_training(users, catalog, seed)
    config = model_config(params, featurizer)
    torch.manual_seed(seed)
    bundle = ModelBundle("muma", "muma", config, build_model("muma", config), featurizer, 1.0)
    bundle.info = {"serving_position": params.serving_position, "synthetic": True}
    bundle.save(directory)
    return bundle.version


def fill_redis(url: str, users: pd.DataFrame, catalog: pd.DataFrame, tables: dict) -> float:
    import redis

    from feature_repo.tables import ITEM_ID, USER_ID
    from serving.online_rows import write_rows

    began = time.perf_counter()
    client = redis.Redis.from_url(url)
    for table in tables.values():
        frame = users if table.entity_key == USER_ID else catalog
        assert table.entity_key in (USER_ID, ITEM_ID)
        write_rows(client, PROJECT, table, frame, T0, batch=5000)
    client.save()
    return time.perf_counter() - began


# ------------------------------------------------------------------------------ the server
def rss_mb(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            name, amount, _ = line.split()
            values[name.rstrip(":")] = round(int(amount) / 1024, 1)
    return values


def start_server(data_root: Path, redis_url: str, params_path: Path, port: int, log: Path):
    import httpx

    env = {key: value for key, value in os.environ.items() if not key.startswith("MUMA_")} | {
        "MUMA_DATA_ROOT": str(data_root),
        "MUMA_REDIS_URL": redis_url,
        "MUMA_API_TOKEN": TOKEN,
        "MUMA_PARAMS_PATH": str(params_path),
    }
    muma = Path(sys.executable).with_name("muma")
    process = subprocess.Popen(
        [str(muma), "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=str(data_root),
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"muma serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("muma serve did not become ready")


def server_stages(base: str) -> dict[str, float]:
    """Mean server-side time per recommendation stage over the whole run, from /metrics."""
    import httpx

    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        for suffix, into in (("_sum", sums), ("_count", counts)):
            if line.startswith(f"muma_stage_seconds{suffix}{{"):
                stage = line.split('stage="', 1)[1].split('"', 1)[0]
                into[stage] = float(line.rsplit(" ", 1)[1])
    return {
        stage: round(1e3 * sums[stage] / counts[stage], 2) for stage in sums if counts.get(stage)
    }


# -------------------------------------------------------------------------- load generator
def summary(samples: list[tuple[float, int, bool]], seconds: float) -> dict:
    latencies = np.asarray([s[0] for s in samples]) * 1e3
    ok = [s for s in samples if s[1] in (200, 202)]
    return {
        "requests": len(samples),
        "seconds": round(seconds, 2),
        "throughput_rps": round(len(samples) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(float(np.percentile(latencies, 50)), 2) if len(latencies) else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 2) if len(latencies) else None,
        "errors": len(samples) - len(ok),
        "degraded": sum(1 for s in samples if s[2]),
    }


async def closed_loop(
    base: str,
    kind: str,
    clients: int,
    seconds: float,
    users: int,
    per_domain: int = 100,
    during=None,
    seed: int = 0,
) -> dict:
    """``clients`` loops of one request after another for ``seconds`` (bounded)."""
    import httpx

    samples: list[tuple[float, int, bool]] = []
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def one(client: httpx.AsyncClient, worker: int) -> None:
        local = np.random.default_rng(seed * 1000 + worker)
        for _ in range(1_000_000):  # bounded; the deadline ends it first
            if time.monotonic() >= deadline:
                return
            user = f"u{int(local.integers(0, users))}"
            began = time.perf_counter()
            try:
                if kind == "events":
                    event = {
                        "type": "click",
                        "user_id": user,
                        "item_id": f"i{int(local.integers(0, 1000))}",
                        "request_id": f"bench-{worker}",
                    }
                    response = await client.post(
                        "/events", json={"events": [event]}, headers=headers
                    )
                    degraded = False
                else:
                    body = {"user_id": user, "k": 10, "candidates": per_domain}
                    response = await client.post("/recommend", json=body)
                    degraded = response.status_code == 200 and response.json()["degraded"]
                status = response.status_code
            except httpx.HTTPError:
                status, degraded = 599, False
            samples.append((time.perf_counter() - began, status, degraded))

    began = time.monotonic()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        tasks = [asyncio.create_task(one(client, n)) for n in range(clients)]
        if during is not None:
            tasks.append(asyncio.create_task(during()))
        await asyncio.gather(*tasks)
    return summary(samples, time.monotonic() - began)


async def open_loop(
    base: str, rate: float, clients: int, seconds: float, users: int, seed: int = 1
) -> dict:
    """Requests arriving at a fixed ``rate`` per second (Poisson), at most ``clients`` at once.

    A closed loop of 32 clients measures a saturated service: its latency is the queue
    (Little's law: 32 / throughput), whatever the service time. Here arrivals do not wait for
    answers, and each latency is measured from the request's *scheduled* time, so a stalled
    service is charged for the requests it delayed (no coordinated omission). An arrival that
    finds ``clients`` requests in flight waits for a free client, and that wait counts too.
    """
    import httpx

    rng = np.random.default_rng(seed)
    samples: list[tuple[float, int, bool]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    slots = asyncio.Semaphore(clients)

    async def one(client: httpx.AsyncClient, scheduled: float, user: str) -> None:
        async with slots:
            try:
                response = await client.post("/recommend", json={"user_id": user, "k": 10})
                status = response.status_code
                degraded = status == 200 and response.json()["degraded"]
            except httpx.HTTPError:
                status, degraded = 599, False
        samples.append((time.perf_counter() - scheduled, status, degraded))

    began = time.perf_counter()
    tasks = []
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        due = began
        while due - began < seconds:
            due += float(rng.exponential(1.0 / rate))
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            user = f"u{int(rng.integers(0, users))}"
            tasks.append(asyncio.create_task(one(client, due, user)))
        await asyncio.gather(*tasks)
    result = summary(samples, time.perf_counter() - began)
    result["offered_rps"] = rate
    return result


# --------------------------------------------------------------------------------- main
PHASES = (
    "recommend",
    "recommend_one_client",
    "events",
    "recommend_open_50pct",
    "recommend_open_80pct",
    "recommend_redis_restart",
    *(f"candidates_{n}{tail}" for n in (100, 300, 1000) for tail in ("", "_one_client")),
)
"""Every phase, in the order run (the open-loop phases need ``recommend``'s throughput)."""


def run(
    quick: bool,
    users: int,
    items: int,
    clients: int,
    seconds: float,
    phases: set[str] | None = None,
) -> dict:
    """Build the world, start the server and run ``phases`` (all when None).

    Raises:
        ValueError: An unknown phase, or an open-loop phase without ``recommend``.
    """
    import yaml

    wanted = set(PHASES) if phases is None else set(phases)
    if wanted - set(PHASES):
        raise ValueError(f"unknown phases {sorted(wanted - set(PHASES))}; known: {PHASES}")
    if {"recommend_open_50pct", "recommend_open_80pct"} & wanted and "recommend" not in wanted:
        raise ValueError("the open-loop phases run at shares of the recommend phase's throughput")

    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    redis_server = PrivateRedisServer(work, ready_timeout_s=120)  # 100k users load slowly
    server = None
    try:
        redis_server.start()
        began = time.perf_counter()
        user_rows, catalog, tables = build_world(users, items)
        world_s = time.perf_counter() - began
        data_root = work / "data"
        bundle_dir = work / "bundle"
        version = write_bundle(bundle_dir, user_rows, catalog)
        from serving.online_rows import write_rows  # noqa: F401 - fail early if missing
        from training.registry import write_json_atomic

        registry = data_root / "models" / "registry" / version
        shutil.copytree(bundle_dir, registry)
        write_json_atomic(
            data_root / "models" / "champion.json",
            {"version": version, "name": "muma", "path": f"registry/{version}"},
        )
        bundle_s = time.perf_counter() - began - world_s
        fill_s = fill_redis(redis_server.url, user_rows, catalog, tables)
        del user_rows, catalog
        params_path = work / "params.yaml"
        params_path.write_text(
            yaml.safe_dump(
                {
                    "feast": {"project": PROJECT},
                    "serve": {
                        "candidates": {"per_domain": 100, "max_per_domain": 400},
                        "redis_timeout_ms": 250.0,
                        "redis_retry_seconds": 0.5,
                        "flush_seconds": 2.0,
                    },
                }
            )
        )
        port = _free_port()
        started = time.perf_counter()
        server = start_server(data_root, redis_server.url, params_path, port, work / "server.log")
        startup_s = time.perf_counter() - started
        base = f"http://127.0.0.1:{port}"
        asyncio.run(closed_loop(base, "recommend", 4, 2.0, users))  # warm-up
        results: dict[str, dict] = {}
        side = max(seconds / 3, 5.0)
        closed = {
            "recommend": ("recommend", clients, seconds),
            "recommend_one_client": ("recommend", 1, side),
            "events": ("events", clients, side),
        }
        for name, (kind, count, length) in closed.items():
            if name in wanted:
                results[name] = asyncio.run(closed_loop(base, kind, count, length, users))
        # The same service at half and at 80% of the saturated throughput just measured.
        for share in (0.5, 0.8):
            name = f"recommend_open_{int(share * 100)}pct"
            if name in wanted:
                saturated = results["recommend"]["throughput_rps"]
                results[name] = asyncio.run(
                    open_loop(base, max(share * saturated, 1.0), clients, seconds, users)
                )

        async def restart() -> None:
            await asyncio.sleep(seconds / 3)
            redis_server.kill()
            await asyncio.sleep(seconds / 2 - seconds / 3)
            await asyncio.to_thread(redis_server.start)

        if "recommend_redis_restart" in wanted:
            results["recommend_redis_restart"] = asyncio.run(
                closed_loop(base, "recommend", clients, seconds, users, during=restart)
            )
        for total in (100, 300, 1000):
            per_domain = -(-total // 3)
            for tail, count in (("", clients), ("_one_client", 1)):
                if f"candidates_{total}{tail}" in wanted:
                    results[f"candidates_{total}{tail}"] = asyncio.run(
                        closed_loop(base, "recommend", count, side, users, per_domain=per_domain)
                    )
        memory = rss_mb(server.pid)
        stages = server_stages(base)
        load = os.getloadavg()[0]
        return {
            **conditions(),
            "quick": quick,
            "users": users,
            "items": items,
            "clients": clients,
            "phase_seconds": seconds,
            "side_phase_seconds": side,
            "model": "muma, train defaults (embedding 16, history 50), synthetic weights",
            "setup_seconds": {
                "world": round(world_s, 1),
                "bundle": round(bundle_s, 1),
                "redis_fill": round(fill_s, 1),
                "server_start": round(startup_s, 1),
            },
            "phases": results,
            "server_memory_mb": memory,
            "server_stage_mean_ms": stages,
            "load_average_1m_after": round(load, 2),
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


def main(quick: bool = False, out: Path | None = None, phases: set[str] | None = None) -> dict:
    """Run every phase (or ``phases``); merge the result into ``bench/results.json`` (or
    ``out``; a run of some phases only must give ``out``).

    Raises:
        ValueError: Some phases only, without ``out``.
    """
    if phases is not None and out is None:
        raise ValueError(
            "a run of some phases only needs --out (bench/results.json holds full runs)"
        )
    seconds = 10.0 if quick else 60.0
    result = run(quick, users=100_000, items=50_000, clients=32, seconds=seconds, phases=phases)
    if out is None:
        save("serving", result)
    else:
        data = json.loads(out.read_text()) if out.exists() else {}
        data["serving"] = result
        out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s phases instead of 60 s")
    parser.add_argument("--out", type=Path, help="results file (default bench/results.json)")
    parser.add_argument(
        "--phases",
        help=f"comma-separated phases to run (default all; needs --out): {', '.join(PHASES)}",
    )
    args = parser.parse_args()
    chosen = None if args.phases is None else {p.strip() for p in args.phases.split(",") if p}
    main(quick=args.quick, out=args.out, phases=chosen)
