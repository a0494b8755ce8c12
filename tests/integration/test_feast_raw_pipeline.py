"""The raw pipelined Redis transport of the fast reader and the direct writer.

Against a private ``redis-server`` on a free port with a password (never the shared server),
so the handshake, a restart and a script flush can be tested without touching anyone's keys.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis

from feature_repo.online import RawPipeline, RedisFeatureReader, ViewSpec, resp_command
from feature_repo.realtime import (
    LAST_CLICK_ITEM,
    REALTIME_TABLE,
    UPDATED_TS,
    RealtimeUpdater,
    RedisRealtimeWriter,
    realtime_table,
)
from muma.testing.redis_server import PrivateRedisServer

PASSWORD = "raw-pipeline-test"
DB = 3
HALF_LIFE = 1.0

pytestmark = pytest.mark.redis


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedisServer]:
    with PrivateRedisServer(tmp_path, password=PASSWORD, db=DB) as private:
        yield private


def client_of(server: PrivateRedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)


def hmgets(keys: list[bytes], fields: list[bytes]) -> bytes:
    return b"".join(resp_command(b"HMGET", key, *fields) for key in keys)


def test_replies_equal_redis_py_after_auth_and_select(server: PrivateRedisServer) -> None:
    client = client_of(server)
    for n in range(50):
        client.hset(f"k{n}".encode(), mapping={b"a": f"{n}".encode(), b"\x00\xff": b"\r\n" * n})
    keys = [f"k{n}".encode() for n in range(60)]  # ten missing keys
    fields = [b"a", b"\x00\xff", b"missing"]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, fields)
    assert RawPipeline(client).execute(hmgets(keys, fields), len(keys)) == pipe.execute()
    # The DB was selected: DB 0 holds nothing.
    assert redis.Redis(port=server.port, password=PASSWORD, db=0).dbsize() == 0


def test_error_replies_raise_and_the_socket_stays_usable(server: PrivateRedisServer) -> None:
    client = client_of(server)
    client.set(b"plain", b"x")
    client.hset(b"hash", b"f", b"v")
    raw = RawPipeline(client)
    payload = hmgets([b"hash", b"plain", b"hash"], [b"f"])
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        raw.execute(payload, 3)
    answers = raw.execute(payload, 3, raise_errors=False)
    assert answers[0] == answers[2] == [b"v"] and isinstance(answers[1], Exception)
    assert raw.execute(hmgets([b"hash"], [b"f"]), 1) == [[b"v"]]


def test_a_restart_is_survived_and_a_dead_server_is_a_connection_error(
    server: PrivateRedisServer,
) -> None:
    client = client_of(server)
    raw = RawPipeline(client)
    client.hset(b"h", b"f", b"1")
    assert raw.execute(hmgets([b"h"], [b"f"]), 1) == [[b"1"]]
    server.kill()
    with pytest.raises(redis.exceptions.ConnectionError):
        raw.execute(hmgets([b"h"], [b"f"]), 1)
    server.start()
    client.hset(b"h", b"f", b"2")
    # The pooled socket died with the old server: the read is resent on a new one.
    assert raw.execute(hmgets([b"h"], [b"f"]), 1) == [[b"2"]]


def test_concurrent_callers_get_their_own_answers(server: PrivateRedisServer) -> None:
    client = client_of(server)
    for n in range(200):
        client.hset(f"k{n}".encode(), b"f", f"{n}".encode())
    raw = RawPipeline(client)
    failures: list[str] = []

    def worker(offset: int) -> None:
        for round_ in range(100):
            picked = [(offset * 7 + round_ + i) % 200 for i in range(30)]
            keys = [f"k{n}".encode() for n in picked]
            got = raw.execute(hmgets(keys, [b"f"]), len(keys))
            if got != [[f"{n}".encode()] for n in picked]:
                failures.append(f"worker {offset} round {round_}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_the_writer_reloads_its_script_and_keeps_the_guard(server: PrivateRedisServer) -> None:
    client = client_of(server)
    table = realtime_table(HALF_LIFE)
    reader = RedisFeatureReader(client, "rawtest", {"user_id": [ViewSpec.from_table(table)]})
    writer = RedisRealtimeWriter(client, "rawtest", HALF_LIFE, key_ttl_seconds=3600)
    updater = RealtimeUpdater(None, HALF_LIFE, reader=reader, writer=writer)  # type: ignore[arg-type]
    base = 1_800_000_000.0
    click = {"user_id": "u", "item_id": "a", "domain": "news", "kind": "click", "ts": base}
    assert updater.push_events([click]).rows == 1
    client.script_flush()
    newer = updater.push_events([{**click, "item_id": "b", "ts": base + 60}])
    stored = reader.read_frame(REALTIME_TABLE, ["u"], [LAST_CLICK_ITEM, UPDATED_TS])
    assert stored[LAST_CLICK_ITEM].tolist() == ["b"] and stored[UPDATED_TS].tolist() == [base + 60]
    older = newer.pushed.assign(
        event_timestamp=pd.to_datetime([base], unit="s", utc=True), **{LAST_CLICK_ITEM: "old"}
    )
    assert writer.write(older) == 0
    again = reader.read_frame(REALTIME_TABLE, ["u"], [LAST_CLICK_ITEM, UPDATED_TS])
    assert again.equals(stored)
    key = writer._key("u")
    assert 0 < client.ttl(key) <= 3600
    assert np.isfinite(again[UPDATED_TS]).all()
