"""The private ``redis-server`` helper (:mod:`muma.testing.redis_server`) that the tests and
benchmarks use: it starts, answers, dies on a kill, comes back on the same port, applies its
configuration and never leaves a process behind, also when starting fails.
"""

from __future__ import annotations

import gc
import os
import socket
import stat
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from muma.testing.redis_server import HOST, PrivateRedisServer, RedisServerError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_ping_kill_refused_restart_ping(tmp_path: Path) -> None:
    with PrivateRedisServer(tmp_path) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=2)
        assert client.ping()
        port, pid = server.port, server.pid
        assert pid is not None and _alive(pid)

        server.kill()
        assert not server.running and server.pid is None and not _alive(pid)
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis.from_url(server.url, socket_timeout=2).ping()

        server.start()
        assert server.port == port and server.pid != pid
        assert redis.Redis.from_url(server.url, socket_timeout=2).ping()

        server.restart()
        assert server.port == port and server.client(socket_timeout=2).ping()


def test_a_restart_comes_back_empty_unless_a_snapshot_was_saved(tmp_path: Path) -> None:
    with PrivateRedisServer(tmp_path) as server:
        server.client().set(b"k", b"1")
        server.restart()
        assert server.client().get(b"k") is None  # no persistence
        server.client().set(b"k", b"2")
        server.client().save()
        server.restart()
        assert server.client().get(b"k") == b"2"  # reloaded from dump.rdb


def test_configuration_password_and_db(tmp_path: Path) -> None:
    with PrivateRedisServer(
        tmp_path, password="p@ss:word", db=3, config={"hash-max-listpack-value": 1024}
    ) as server:
        client = redis.Redis.from_url(server.url)
        client.set(b"k", b"v")
        assert redis.Redis(port=server.port, password="p@ss:word", db=0).dbsize() == 0
        assert server.client().get(b"k") == b"v"
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=server.port, retry=Retry(NoBackoff(), 0)).ping()
        settings = client.config_get("*")
        assert settings["save"] == ""
        assert settings["appendonly"] == "no"
        assert settings["bind"] == HOST
        assert settings["hash-max-listpack-value"] == "1024"
        assert Path(settings["dir"]).resolve() == tmp_path.resolve()


@pytest.mark.parametrize("option", ["port", "--save", "dir", ""])
def test_managed_or_empty_options_are_refused(option: str) -> None:
    with pytest.raises(ValueError, match="option"):
        PrivateRedisServer(config={option: "1"})


def test_the_context_kills_the_server_and_removes_its_own_directory_on_error() -> None:
    with pytest.raises(KeyError), PrivateRedisServer() as server:
        pid, directory = server.pid, server.directory
        assert pid is not None and directory.is_dir()
        raise KeyError("a failing test")
    assert not _alive(pid) and not directory.exists()
    with pytest.raises(RuntimeError, match="closed"):
        server.start()


def test_a_given_directory_is_kept_and_a_collected_server_is_killed(tmp_path: Path) -> None:
    server = PrivateRedisServer(tmp_path)
    server.start()
    pid = server.pid
    assert pid is not None
    del server  # the owner forgot to close it
    gc.collect()  # a failed PING while starting leaves a reference cycle behind
    assert not _alive(pid) and tmp_path.is_dir()


def test_a_bad_option_fails_fast_with_the_log_and_leaves_nothing(tmp_path: Path) -> None:
    server = PrivateRedisServer(tmp_path, config={"no-such-option": "1"}, ready_timeout_s=20)
    with pytest.raises(RedisServerError, match="exited with code") as failure:
        server.start()
    assert "no-such-option" in str(failure.value).split("(tail) ---")[1]
    assert not server.running


def test_a_failed_start_in_the_context_removes_its_own_directory() -> None:
    server = PrivateRedisServer(config={"no-such-option": "1"})
    with pytest.raises(RedisServerError), server:
        pass
    assert not server.directory.exists()


def test_a_server_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    fake = tmp_path / "fake-redis-server"
    fake.write_text(
        f'#!/bin/sh\necho "pretending to be redis"\necho $$ > {pid_file}\nexec sleep 60\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    server = PrivateRedisServer(tmp_path, ready_timeout_s=0.5, executable=str(fake))
    with pytest.raises(RedisServerError, match=r"did not answer within 0\.5 s") as failure:
        server.start()
    assert "pretending to be redis" in str(failure.value)
    assert not _alive(int(pid_file.read_text()))


def test_a_taken_port_moves_the_first_start_but_not_a_restart(tmp_path: Path) -> None:
    server = PrivateRedisServer(tmp_path)
    with socket.socket() as squatter:
        squatter.bind((HOST, server.port))
        squatter.listen()
        taken = server.port
        server.start()
        try:
            assert server.port != taken and server.client().ping()
        finally:
            server.kill()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((HOST, server.port))
        squatter.listen()
        with pytest.raises(RedisServerError, match="Address already in use") as failure:
            server.start()
        assert failure.value.port_taken and not server.running
    server.close()
