"""Feature store speed: online reads, pushes, freshness, materialisation and Redis memory.

Side by side in one run, against a private ``redis-server`` started for the run (default) or
the server of ``--redis-url``, under throw-away Feast projects whose keys are deleted after:

- online read of one user plus 300 candidate items: (a) one naive ``get_online_features``
  call, (b) :class:`feature_repo.online.RedisFeatureReader`, (c) the floor: the same
  ``HMGET`` request, pre-packed, sent and its replies parsed with nothing decoded, and
  (d) the same commands through a redis-py pipeline, undecoded (the old floor); p50 and p99;
- push: one event through :class:`feature_repo.realtime.RealtimeUpdater` and one bare
  ``FeatureStore.push`` row (latency), and batches of events (events/s and rows/s);
- freshness: an event's arrival to its value being readable with the fast reader;
- materialisation rows/s: ``feast materialize`` on 5,000 users and items (25,000 rows, as it
  runs at about a thousand rows a second) and the bulk path
  (:mod:`feature_repo.redis_load`, byte-identical, tested) on the full tables (1M rows);
- ``MEMORY USAGE`` bytes per user and per item with the server's default hash encoding
  limits: a user's batch-features hash (``user_id``) and its behaviour-sequence key
  (``seq_user_id``) apart, and their sum also with ``hash-max-listpack-value 1024`` (keys
  copied with DUMP/RESTORE into a second private server), and the batch hash once more after
  each sampled user gets a real-time row (copies, in a third). ``--memory-only`` measures just
  this (write the tables, bulk-load them, read the sizes) and merges it into the saved
  ``features`` result.

Offline tables are synthetic rows shaped exactly as :mod:`feature_repo.tables` declares.
Targets (issue 4): read p99 <= 5 ms, >= 10x the naive path, <= 10x the floor; freshness
p99 <= 10 ms; batched push >= 20,000 events/s; user batch features < 2 KB in Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import conditions, med, save
from muma.testing.redis_server import PrivateRedisServer

T0 = datetime(2026, 11, 1, 1, tzinfo=UTC)
CANDIDATES = 300
FEAST_MATERIALISE_ENTITIES = 5_000
"""Users and items ``feast materialize`` loads (25,000 rows): it runs at ~1,000 rows/s."""
LISTPACK_VALUE_BYTES = 1024
"""``hash-max-listpack-value`` of the second memory measurement (Redis' default is 64)."""


def _column(dtype, count: int, rng: np.random.Generator) -> list | np.ndarray:
    from feature_repo.tables import Dtype

    if dtype is Dtype.DOUBLE:
        return rng.random(count) * 100
    if dtype is Dtype.FLOAT:
        return rng.random(count).astype(np.float32)
    if dtype is Dtype.BIGINT:
        return rng.integers(0, 1000, count)
    if dtype is Dtype.STRING:
        return [f"v{n}" for n in rng.integers(0, 50, count)]
    if dtype is Dtype.FLOAT_ARRAY:
        return list(rng.random((count, 12)).astype(np.float32))
    if dtype is Dtype.STRING_ARRAY:
        return [[f"i{n}" for n in row] for row in rng.integers(0, 10**6, (count, 50))]
    return list(rng.integers(1_790_000_000, 1_800_000_000, (count, 50)))


def write_tables(data_root: Path, users: int, items: int, seed: int = 0) -> dict[str, int]:
    """One snapshot (T0) of every offline table, ``users`` and ``items`` rows; rows per table."""
    from feature_repo.config import FeaturesParams
    from feature_repo.tables import USER_ID, feature_tables, partition_dir

    rng = np.random.default_rng(seed)
    params = FeaturesParams()
    rows = {}
    for table in feature_tables(params).values():
        count = users if table.entity_key == USER_ID else items
        prefix = "u" if table.entity_key == USER_ID else "i"
        data = {
            table.entity_key: [f"{prefix}{n}" for n in range(count)],
            table.timestamp_column: pd.to_datetime([T0] * count, utc=True),
            table.created_column: pd.to_datetime([T0] * count, utc=True),
        }
        for column in table.features:
            data[column.name] = _column(column.dtype, count, rng)
        directory = partition_dir(data_root / params.features_dir, table.name, T0)
        directory.mkdir(parents=True)
        pd.DataFrame(data).to_parquet(directory / "part-00000.snappy.parquet")
        rows[table.name] = count
    return rows


def percentiles(samples_s: list[float]) -> dict[str, float]:
    values = np.asarray(samples_s) * 1e3
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
    }


def timed(fn, repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return samples


def measure_reads(store, reader, client, users: int, items: int, repeats: int, seed: int) -> dict:
    from feature_repo.online import RawPipeline
    from feature_repo.tables import ITEM_STATS, USER_STATS

    rng = np.random.default_rng(seed)
    user_plan = reader.plans["user_id"]
    item_plan = reader.plans["item_id"]
    user_refs = [f"{USER_STATS}:{name}" for name in reader.plans["user_id"].views[0].features]
    item_refs = [f"{ITEM_STATS}:{name}" for name in reader.plans["item_id"].views[0].features]
    requests = []
    for _ in range(repeats):
        user = f"u{rng.integers(0, users)}"
        candidates = [f"i{n}" for n in rng.choice(items, CANDIDATES, replace=False)]
        requests.append((user, candidates))
    raw = RawPipeline(client)
    packed = {
        user: b"".join(user_plan.packed([user]) + item_plan.packed(candidates))
        for user, candidates in requests
    }

    def naive(user, candidates):
        store.get_online_features(
            features=user_refs + item_refs,
            entity_rows=[{"user_id": user, "item_id": item} for item in candidates],
        ).to_dict()

    def fast(user, candidates):
        reader.read({"user_id": [user], "item_id": candidates})

    def floor(user, candidates):
        raw.execute(packed[user], 1 + len(candidates))

    def redis_py(user, candidates):
        pipe = client.pipeline(transaction=False)
        pipe.hmget(user_plan.keys([user])[0], user_plan.fields)
        for key in item_plan.keys(candidates):
            pipe.hmget(key, item_plan.fields)
        pipe.execute()

    out = {}
    for name, fn in (("naive", naive), ("fast", fast), ("floor", floor), ("redis_py", redis_py)):
        fn(*requests[0])  # warm-up: connections, registry cache
        samples = []
        for user, candidates in requests:
            began = time.perf_counter()
            fn(user, candidates)
            samples.append(time.perf_counter() - began)
        out[name] = percentiles(samples)
    out["features_per_item"] = len(item_refs)
    out["features_per_user"] = len(user_refs)
    return out


def measure_push(updater, reader, repeats: int, batch_events: int, seed: int) -> dict:
    """Single-event latency, freshness and batched throughput through ``updater``."""
    from feature_repo.realtime import REALTIME_TABLE, UPDATED_TS

    rng = np.random.default_rng(seed)
    base = T0.timestamp() + 86_400 + seed * 10_000
    domains = np.array(["news", "video", "ad"])
    updated = reader.plans["user_id"].double_names.index(f"{REALTIME_TABLE}:{UPDATED_TS}")

    def event(user: str, ts: float) -> dict:
        return {
            "user_id": user,
            "item_id": f"i{rng.integers(0, 1000)}",
            "domain": str(domains[rng.integers(0, 3)]),
            "kind": "click",
            "ts": ts,
        }

    def readable(user: str) -> float:
        return float(reader.read({"user_id": [user]})["user_id"].doubles[0, updated])

    single, fresh = [], []
    for step in range(repeats):
        user = f"rt{seed}-{step % 50}"
        ts = base + step
        arrived = time.perf_counter()
        updater.push_events([event(user, ts)])
        pushed = time.perf_counter()
        while readable(user) != ts:
            pass
        visible = time.perf_counter()
        single.append(pushed - arrived)
        fresh.append(visible - arrived)

    users = [f"bt{seed}-{n}" for n in range(max(1, batch_events // 5))]
    batches = []
    for batch in range(3):
        stamps = base + 1000 + batch * 100 + rng.random(batch_events) * 50
        frame = pd.DataFrame(
            {
                "user_id": rng.choice(users, batch_events),
                "item_id": [f"i{n}" for n in rng.integers(0, 1000, batch_events)],
                "domain": domains[rng.integers(0, 3, batch_events)],
                "kind": np.where(rng.random(batch_events) < 0.3, "click", "view"),
                "ts": stamps,
                "dwell_ms": rng.integers(0, 60_000, batch_events),
            }
        )
        began = time.perf_counter()
        result = updater.push_events(frame)
        batches.append((time.perf_counter() - began, result))
    seconds = med([s for s, _ in batches])
    return {
        "single_event": percentiles(single),
        "freshness": percentiles(fresh),
        "batch_events": batch_events,
        "batch_rows": batches[0][1].rows,
        "batched_events_per_second": round(batch_events / seconds),
        "batched_rows_per_second": round(batches[0][1].rows / seconds),
        "batch_split_ms": {
            "read": round(med([r.read_ms for _, r in batches]), 1),
            "fold": round(med([r.fold_ms for _, r in batches]), 1),
            "write": round(med([r.push_ms for _, r in batches]), 1),
        },
    }


def measure_bare_push(store, updater, repeats: int) -> dict:
    """One row through ``FeatureStore.push`` alone (Feast's own path, for reference)."""
    from feast.data_source import PushMode

    from feature_repo.data_sources import REALTIME_PUSH_SOURCE

    event = {"user_id": "bare", "item_id": "i", "domain": "news", "kind": "click", "ts": 1.8e9}
    row = updater.push_events([event]).pushed

    def bare_push():
        row["event_timestamp"] = row["event_timestamp"] + pd.Timedelta(milliseconds=1)
        store.push(REALTIME_PUSH_SOURCE, row, to=PushMode.ONLINE)

    return percentiles(timed(bare_push, repeats))


def memory_per_entity(client, project: str, users: int, items: int, sample: int = 200) -> dict:
    """Median ``MEMORY USAGE`` of sampled users' two keys and items' keys (see the module doc).

    Args:
        client: ``redis.Redis`` holding the bulk-loaded rows of :func:`write_tables`.
        project: Their Feast project (the keys' suffix).
        users: Users written (``u0`` ...).
        items: Items written (``i0`` ...).
        sample: Entities sampled of each.
    """
    from feature_repo.online import entity_key_prefix, redis_client, redis_key
    from feature_repo.tables import ITEM_ID, SEQUENCE_USER_ID, USER_ID

    def keys(join_key: str, ids: list[str]) -> list[bytes]:
        prefix, suffix = entity_key_prefix(join_key), project.encode("utf-8")
        return [redis_key(prefix, value, suffix) for value in ids]

    def usage(server, entity_keys: list[bytes]) -> list[int]:
        return [server.memory_usage(key, samples=0) for key in entity_keys]

    rng = np.random.default_rng(7)
    user_ids = [f"u{n}" for n in rng.choice(users, min(sample, users), False)]
    item_ids = [f"i{n}" for n in rng.choice(items, min(sample, items), False)]
    user_keys, sequence_keys = keys(USER_ID, user_ids), keys(SEQUENCE_USER_ID, user_ids)
    batch, sequence = usage(client, user_keys), usage(client, sequence_keys)
    with PrivateRedisServer(config={"hash-max-listpack-value": LISTPACK_VALUE_BYTES}) as server:
        listpack = redis_client(server.url)
        for key in user_keys + sequence_keys:
            listpack.restore(key, 0, client.dump(key), replace=True)
        listpack_batch = usage(listpack, user_keys)
        listpack_sequence = usage(listpack, sequence_keys)
        listpack_encoding = listpack.object("encoding", sequence_keys[0]).decode()
        listpack.close()
    with PrivateRedisServer() as server:  # defaults; the main server's users stay as loaded
        copy = redis_client(server.url)
        for key in user_keys:
            copy.restore(key, 0, client.dump(key), replace=True)
        with_realtime = usage(copy, with_realtime_rows(copy, project, user_ids, user_keys))
        realtime_encoding = copy.object("encoding", user_keys[0]).decode()
        copy.close()
    return {
        "bytes_per_user_batch": round(med(batch)),
        "user_encoding": client.object("encoding", user_keys[0]).decode(),
        "bytes_per_user_sequence": round(med(sequence)),
        "sequence_encoding": client.object("encoding", sequence_keys[0]).decode(),
        "bytes_per_user_total": round(med([b + q for b, q in zip(batch, sequence, strict=True)])),
        "bytes_per_user_total_listpack": round(
            med([b + q for b, q in zip(listpack_batch, listpack_sequence, strict=True)])
        ),
        "sequence_encoding_listpack": listpack_encoding,
        "bytes_per_user_batch_with_realtime": round(med(with_realtime)),
        "user_encoding_with_realtime": realtime_encoding,
        "bytes_per_item": round(med(usage(client, keys(ITEM_ID, item_ids)))),
    }


def with_realtime_rows(
    client, project: str, user_ids: list[str], user_keys: list[bytes]
) -> list[bytes]:
    """Give each user a real-time row (a click and a view through the direct writer, as
    serving writes them, into the user's batch-features hash); returns ``user_keys``."""
    from feature_repo.online import RedisFeatureReader, ViewSpec
    from feature_repo.realtime import RealtimeUpdater, RedisRealtimeWriter, realtime_table
    from feature_repo.tables import USER_ID

    half_life = 1.0
    reader = RedisFeatureReader(
        client, project, {USER_ID: [ViewSpec.from_table(realtime_table(half_life))]}
    )
    writer = RedisRealtimeWriter(client, project, half_life)
    updater = RealtimeUpdater(None, half_life, reader=reader, writer=writer)  # type: ignore[arg-type]
    at = T0.timestamp() + 60
    events = [
        {"user_id": user, "item_id": f"i{n}", "domain": "news", "kind": "click", "ts": at}
        for n, user in enumerate(user_ids)
    ]
    events += [
        {
            "user_id": user,
            "item_id": "i0",
            "domain": "video",
            "kind": "view",
            "ts": at + 30,
            "dwell_ms": 12_000,
        }
        for user in user_ids
    ]
    updater.push_events(events)
    return user_keys


def measure_memory(users: int, items: int) -> dict:
    """:func:`memory_per_entity` alone: the tables written, bulk-loaded into a private server."""
    from feature_repo.config import FeaturesParams
    from feature_repo.online import redis_client
    from feature_repo.store import FeastParams, apply, materialize
    from muma.settings import Settings

    feast = FeastParams(project=f"muma_bench_{uuid.uuid4().hex[:8]}")
    with (
        tempfile.TemporaryDirectory(prefix="muma-bench-memory-") as tmp,
        PrivateRedisServer() as server,
    ):
        rows = write_tables(Path(tmp), users, items)
        settings = Settings(data_root=Path(tmp), redis_url=server.url)
        apply(settings, FeaturesParams(), feast)
        materialize(settings, T0 - timedelta(hours=1), T0 + timedelta(hours=1), feast=feast)
        client = redis_client(server.url)
        memory = memory_per_entity(client, feast.project, users, items)
        client.close()
    return {**conditions(), "users": users, "items": items, "rows_by_table": rows, **memory}


def run_once(redis_url: str, users: int, items: int, repeats: int, batch_events: int) -> dict:
    from feature_repo.config import FeaturesParams
    from feature_repo.online import RedisFeatureReader, ViewSpec, redis_client
    from feature_repo.realtime import RealtimeUpdater, RedisRealtimeWriter, realtime_table
    from feature_repo.store import FeastParams, apply, materialize
    from feature_repo.tables import (
        ITEM_STATS,
        USER_GAZE,
        USER_SOCIAL,
        USER_STATS,
        feature_tables,
    )
    from muma.settings import Settings

    tag = uuid.uuid4().hex[:8]
    feast_engine = FeastParams(project=f"muma_bench_feast_{tag}", materialize_engine="feast")
    bulk_engine = FeastParams(project=f"muma_bench_{tag}", materialize_engine="redis_bulk")
    client = redis_client(redis_url)
    interval = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    try:
        with tempfile.TemporaryDirectory(prefix="muma-bench-feast-") as tmp:
            small_root, root = Path(tmp) / "small", Path(tmp) / "full"
            small = min(users, FEAST_MATERIALISE_ENTITIES)
            write_tables(small_root, small, small)
            small_settings = Settings(data_root=small_root, redis_url=redis_url)
            apply(small_settings, FeaturesParams(), feast_engine)
            feast_load = materialize(small_settings, *interval, feast=feast_engine)
            rows = write_tables(root, users, items)
            settings = Settings(data_root=root, redis_url=redis_url)
            store = apply(settings, FeaturesParams(), bulk_engine)
            bulk_load = materialize(settings, *interval, feast=bulk_engine)
            tables = feature_tables(FeaturesParams())
            batch_user_views = [USER_STATS, USER_SOCIAL, USER_GAZE]
            project = bulk_engine.project
            reader = RedisFeatureReader(
                client,
                project,
                {
                    "user_id": [ViewSpec.from_table(tables[USER_STATS])],
                    "item_id": [ViewSpec.from_table(tables[ITEM_STATS])],
                },
            )
            memory = memory_per_entity(client, project, users, items)
            reads = measure_reads(store, reader, client, users, items, repeats, seed=1)
            half_life = bulk_engine.realtime_half_life_hours
            realtime_reader = RedisFeatureReader(
                client, project, {"user_id": [ViewSpec.from_table(realtime_table(half_life))]}
            )
            via_feast = RealtimeUpdater(store, half_life, realtime_reader)
            writer = RedisRealtimeWriter(client, project, half_life)
            direct = RealtimeUpdater(store, half_life, realtime_reader, writer)
            push = {
                "feast": measure_push(via_feast, realtime_reader, repeats, batch_events, seed=2),
                "direct": measure_push(direct, realtime_reader, repeats, batch_events, seed=3),
                "bare_feast_push_one_row": measure_bare_push(store, via_feast, repeats),
            }
    finally:
        for name in (feast_engine.project, bulk_engine.project):
            keys = list(client.scan_iter(match=b"*" + name.encode(), count=5000))
            for start in range(0, len(keys), 10_000):
                client.delete(*keys[start : start + 10_000])
    return {
        "reads": reads,
        "push": push,
        "memory": memory,
        "materialize": {
            "rows": feast_load.rows,
            "seconds": round(feast_load.seconds, 2),
            "rows_per_second": round(feast_load.rows_per_second),
        },
        "materialize_bulk": {
            "rows": bulk_load.rows,
            "rows_by_table": rows,
            "seconds": round(bulk_load.seconds, 2),
            "rows_per_second": round(bulk_load.rows_per_second),
        },
        "user_batch_views": batch_user_views,
    }


def main(quick: bool = False, redis_url: str | None = None, runs: int | None = None) -> dict:
    """Run the benchmark (on a private Redis unless ``redis_url``) and save its figures.

    Args:
        quick: 5,000 users and items instead of 200,000 (25k offline rows instead of 1M).
        redis_url: Use this Redis instead of a private server per run (one run).
        runs: Repetitions (default 1 quick, 3 full); medians are reported.
    """
    load_before = os.getloadavg()[0]
    # Full: 1M offline rows (200k users x 4 user tables + 200k items) for the bulk path and
    # the reads; quick: 25k rows. Feast's own materialisation always loads 25k rows.
    users, items = (5_000, 5_000) if quick else (200_000, 200_000)
    repeats = 100 if quick else 300
    count = runs or (1 if quick else 3)
    if redis_url:
        runs = [run_once(redis_url, users, items, repeats, 5_000 if quick else 20_000)]
    else:
        runs = []
        for _ in range(count):
            with PrivateRedisServer() as server:
                runs.append(run_once(server.url, users, items, repeats, 5_000 if quick else 20_000))
    load_after = os.getloadavg()[0]

    def pick(*path: str) -> float:
        values = []
        for run in runs:
            value = run
            for part in path:
                value = value[part]
            values.append(value)
        return med(values)

    reads = {
        name: {stat: pick("reads", name, stat) for stat in ("p50_ms", "p99_ms")}
        for name in ("naive", "fast", "floor", "redis_py")
    }
    result = {
        **conditions(),
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(load_after, 2),
        "redis": redis_url or "private redis-server per run (default configuration)",
        "runs": len(runs),
        "users": users,
        "items": items,
        "candidates": CANDIDATES,
        "features_per_item": runs[0]["reads"]["features_per_item"],
        "features_per_user": runs[0]["reads"]["features_per_user"],
        "reads": reads,
        "fast_vs_naive_p99": round(reads["naive"]["p99_ms"] / reads["fast"]["p99_ms"], 1),
        "fast_vs_floor_p99": round(reads["fast"]["p99_ms"] / reads["floor"]["p99_ms"], 2),
        "bare_feast_push_one_row": {
            stat: pick("push", "bare_feast_push_one_row", stat) for stat in ("p50_ms", "p99_ms")
        },
        "push": {
            path: {
                "single_event": {
                    stat: pick("push", path, "single_event", stat) for stat in ("p50_ms", "p99_ms")
                },
                "freshness": {
                    stat: pick("push", path, "freshness", stat) for stat in ("p50_ms", "p99_ms")
                },
                "batched_events_per_second": round(pick("push", path, "batched_events_per_second")),
                "batched_rows_per_second": round(pick("push", path, "batched_rows_per_second")),
                "batch_split_ms": runs[0]["push"][path]["batch_split_ms"],
            }
            for path in ("feast", "direct")
        },
        "batch_events": runs[0]["push"]["feast"]["batch_events"],
        "batch_rows": runs[0]["push"]["feast"]["batch_rows"],
        "materialize_rows": runs[0]["materialize"]["rows"],
        "materialize_rows_per_second": round(pick("materialize", "rows_per_second")),
        "materialize_bulk_rows": runs[0]["materialize_bulk"]["rows"],
        "materialize_bulk_rows_per_second": round(pick("materialize_bulk", "rows_per_second")),
        **memory_figures(runs),
        "user_batch_views": runs[0]["user_batch_views"],
        "targets": {
            "read_p99_ms": 5,
            "fast_vs_naive": 10,
            "fast_vs_floor": 10,
            "freshness_p99_ms": 10,
            "batched_events_per_second": 20_000,
            "user_batch_bytes": 2048,
        },
    }
    save("features", result)
    return result


def memory_figures(runs: list[dict]) -> dict:
    """The saved ``redis_*`` figures: medians over runs of :func:`memory_per_entity`."""

    def pick(name: str) -> float:
        return med([run["memory"][name] for run in runs])

    memory = runs[0]["memory"]
    return {
        "redis_bytes_per_user_batch": round(pick("bytes_per_user_batch")),
        "redis_user_encoding": memory["user_encoding"],
        "redis_bytes_per_user_sequence": round(pick("bytes_per_user_sequence")),
        "redis_sequence_encoding": memory["sequence_encoding"],
        "redis_bytes_per_user_total": round(pick("bytes_per_user_total")),
        "redis_bytes_per_user_total_listpack": round(pick("bytes_per_user_total_listpack")),
        "redis_bytes_per_user_batch_with_realtime": round(
            pick("bytes_per_user_batch_with_realtime")
        ),
        "redis_user_encoding_with_realtime": memory["user_encoding_with_realtime"],
        "redis_listpack_value_bytes": LISTPACK_VALUE_BYTES,
        "redis_bytes_per_item": round(pick("bytes_per_item")),
    }


def save_memory(measured: dict) -> dict:
    """Merge a ``--memory-only`` measurement into the saved ``features`` result; returns it.

    The other figures keep their own run's conditions; ``redis_memory_conditions`` records
    this one's.
    """
    from bench.common import RESULTS
    from feature_repo.tables import USER_GAZE, USER_SOCIAL, USER_STATS

    saved = json.loads(RESULTS.read_text()).get("features", {}) if RESULTS.exists() else {}
    figures = memory_figures([{"memory": measured}])
    saved.update(figures)
    for stale in ("redis_bytes_per_user_batch_listpack", "redis_bytes_per_user_without_sequence"):
        saved.pop(stale, None)  # figures of the layout before the sequence had its own key
    saved["user_batch_views"] = [USER_STATS, USER_SOCIAL, USER_GAZE]
    saved["redis_memory_conditions"] = {
        key: measured[key] for key in ("machine", "date", "users", "items")
    }
    save("features", saved)
    return saved


def memory_line(result: dict) -> str:
    """The Redis memory figures as one line of text."""
    return (
        f"Redis bytes per user: batch hash ({', '.join(result['user_batch_views'])}) "
        f"{result['redis_bytes_per_user_batch']:,} ({result['redis_user_encoding']}); "
        f"sequence key {result['redis_bytes_per_user_sequence']:,} "
        f"({result['redis_sequence_encoding']}); both {result['redis_bytes_per_user_total']:,}, "
        f"{result['redis_bytes_per_user_total_listpack']:,} with hash-max-listpack-value "
        f"{result['redis_listpack_value_bytes']}; batch hash with a real-time row "
        f"{result['redis_bytes_per_user_batch_with_realtime']:,} "
        f"({result['redis_user_encoding_with_realtime']}); per item: "
        f"{result['redis_bytes_per_item']:,}"
    )


def table(result: dict) -> str:
    """The figures as a plain-text table."""
    rows = [
        ("read 1 user + 300 items: naive Feast", result["reads"]["naive"]),
        ("read 1 user + 300 items: fast reader", result["reads"]["fast"]),
        ("read 1 user + 300 items: raw Redis floor", result["reads"]["floor"]),
        ("read 1 user + 300 items: redis-py pipeline", result["reads"]["redis_py"]),
        ("bare FeatureStore.push, one row", result["bare_feast_push_one_row"]),
    ]
    for path in ("feast", "direct"):
        rows += [
            (f"push one event ({path} write)", result["push"][path]["single_event"]),
            (f"freshness, arrival -> readable ({path})", result["push"][path]["freshness"]),
        ]
    lines = [f"{'measure':46} {'p50 ms':>10} {'p99 ms':>10}"]
    lines += [f"{name:46} {stat['p50_ms']:>10} {stat['p99_ms']:>10}" for name, stat in rows]
    lines += [
        "",
        f"fast vs naive p99: x{result['fast_vs_naive_p99']}; "
        f"fast / floor p99: x{result['fast_vs_floor_p99']}",
    ]
    for path in ("feast", "direct"):
        push = result["push"][path]
        lines.append(
            f"batched push ({path}): {push['batched_events_per_second']:,} events/s, "
            f"{push['batched_rows_per_second']:,} user rows/s ({result['batch_events']:,} events "
            f"-> {result['batch_rows']:,} rows per batch; split ms {push['batch_split_ms']})"
        )
    lines += [
        f"materialise, feast: {result['materialize_rows_per_second']:,} rows/s "
        f"({result['materialize_rows']:,} rows); bulk: "
        f"{result['materialize_bulk_rows_per_second']:,} rows/s "
        f"({result['materialize_bulk_rows']:,} rows)",
        memory_line(result),
        f"load average (1 min) before {result['load_average_1m_before']}, after "
        f"{result['load_average_1m_after']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="25k offline rows, one run")
    parser.add_argument(
        "--redis-url",
        default=None,
        help="Redis to use (e.g. redis://127.0.0.1:6379/13); default: a private redis-server",
    )
    parser.add_argument(
        "--runs", type=int, default=None, help="repetitions (default 1 quick, 3 full)"
    )
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="only the Redis memory figures (200,000 users, or 5,000 with --quick), merged "
        "into the saved features result",
    )
    args = parser.parse_args()
    if args.memory_only:
        entities = 5_000 if args.quick else 200_000
        measured = measure_memory(entities, entities)
        print(memory_line(save_memory(measured)))
        print(json.dumps(measured, indent=2))
        raise SystemExit(0)
    figures = main(args.quick, args.redis_url, args.runs)
    print(table(figures))
    print(json.dumps(figures, indent=2))
