"""A private, throw-away ``redis-server`` for tests and benchmarks.

Tests and benchmarks must never touch the shared Redis on 6379, and some of them kill Redis
on purpose. :class:`PrivateRedisServer` starts ``redis-server`` on a free loopback port in a
directory of its own, waits until it answers, kills it (``SIGKILL``: a crash, not a clean
shutdown) and starts it again on the same port::

    with PrivateRedisServer(config={"hash-max-listpack-value": 1024}) as server:
        client = redis.Redis.from_url(server.url)
        ...
        server.kill()     # clients now get "connection refused"
        server.start()    # same port, same directory

Persistence is off (``--save ''``, ``--appendonly no``), so a restart comes back empty, as
after losing the node, unless a caller wrote a snapshot with an explicit ``SAVE``: the
server reloads ``dump.rdb`` from its directory, which is how the serving benchmark restarts
Redis with its data.

The process never outlives its owner: leaving the ``with`` block (also on an exception),
:meth:`PrivateRedisServer.close`, garbage collection of the object and interpreter exit each
kill it. Only a ``SIGKILL`` of the Python process itself can orphan it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
LOG_NAME = "redis-server.log"
SNAPSHOT_NAME = "dump.rdb"
DEFAULT_READY_TIMEOUT_S = 30.0
KILL_WAIT_S = 30.0
LOG_TAIL_CHARS = 2000
PORT_ATTEMPTS = 3
_MANAGED_OPTIONS = frozenset(
    {"port", "bind", "save", "appendonly", "dir", "dbfilename", "requirepass", "logfile"}
)


class RedisServerError(RuntimeError):
    """``redis-server`` exited or did not answer in time; the message ends with its log.

    Attributes:
        port_taken: The server could not listen because another process holds the port.
    """

    def __init__(self, message: str, *, port_taken: bool = False) -> None:
        super().__init__(message)
        self.port_taken = port_taken


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (the OS picks it; another process may take it
    before it is used, which :meth:`PrivateRedisServer.start` survives on a first start)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _kill_process(process: subprocess.Popen) -> None:
    """Kill and reap ``process`` if it still runs (safe to call on an exited one)."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=KILL_WAIT_S)


class PrivateRedisServer:
    """A ``redis-server`` on a free port of 127.0.0.1 that its owner may kill and restart.

    Args:
        directory: Working directory (snapshot and ``redis-server.log``); default a new
            temporary directory, removed by :meth:`close`. A given directory is kept.
        password: ``requirepass``; in :attr:`url` and :meth:`client` when set.
        db: Database number used by :attr:`url` and :meth:`client`.
        config: Extra server options, ``{"hash-max-listpack-value": 1024}`` becomes
            ``--hash-max-listpack-value 1024``. The options this class manages (port, bind,
            save, appendonly, dir, dbfilename, requirepass, logfile) are refused.
        ready_timeout_s: How long :meth:`start` waits for a ``PING`` answer (a large
            snapshot takes a while to load).
        executable: The ``redis-server`` binary.

    Raises:
        ValueError: ``config`` names a managed option or an empty one.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        password: str | None = None,
        db: int = 0,
        config: Mapping[str, str | int] | None = None,
        ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
        executable: str = "redis-server",
    ) -> None:
        self.config = _checked_config(config or {})
        self.password = password
        self.db = db
        self.ready_timeout_s = ready_timeout_s
        self.executable = executable
        self.port = free_port()
        if directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="muma-redis-"))
            self._remove_directory = weakref.finalize(
                self, shutil.rmtree, self.directory, ignore_errors=True
            )
        else:
            self.directory = Path(directory)
            self.directory.mkdir(parents=True, exist_ok=True)
            self._remove_directory = None
        self.log_path = self.directory / LOG_NAME
        self._process: subprocess.Popen | None = None
        self._kill: weakref.finalize | None = None
        self._served = False
        self._closed = False

    # ------------------------------------------------------------------------- addresses
    @property
    def url(self) -> str:
        """``redis://[:password@]127.0.0.1:<port>/<db>``."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{HOST}:{self.port}/{self.db}"

    def client(self, **options) -> redis.Redis:
        """A redis-py client on this server's address, password and db (``options`` such as
        ``socket_timeout`` are passed on)."""
        return redis.Redis(host=HOST, port=self.port, password=self.password, db=self.db, **options)

    @property
    def pid(self) -> int | None:
        """The running server's process id, ``None`` when it is not running."""
        return self._process.pid if self.running else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may still be loading its snapshot)."""
        return self._process is not None and self._process.poll() is None

    # ------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the server and wait until it answers ``PING``.

        The first start moves to another free port if the chosen one was taken meanwhile;
        later starts keep the port, so clients reconnect to the same address.

        Raises:
            RuntimeError: The server already runs, or :meth:`close` was called.
            RedisServerError: It exited or did not answer within ``ready_timeout_s``; the
                process is killed before raising.
        """
        if self._closed:
            raise RuntimeError("this PrivateRedisServer was closed; make a new one")
        if self.running:
            raise RuntimeError(f"redis-server already runs on port {self.port}")
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                self._launch_and_wait()
                break
            except RedisServerError as error:
                if self._served or attempt == PORT_ATTEMPTS or not error.port_taken:
                    raise
                self.port = free_port()
        self._served = True

    def kill(self) -> None:
        """``SIGKILL`` the server and reap it; nothing is saved. A no-op when not running."""
        if self._kill is not None:
            self._kill()
            self._kill = None
        self._process = None

    def restart(self) -> None:
        """Kill the server and start it again on the same port."""
        self.kill()
        self.start()

    def close(self) -> None:
        """Kill the server for good and remove its directory if this object created it."""
        self.kill()
        self._closed = True
        if self._remove_directory is not None:
            self._remove_directory()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ raises
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------- internals
    def command(self) -> list[str]:
        """The ``redis-server`` command line."""
        arguments = [self.executable, "--port", str(self.port), "--bind", HOST]
        arguments += ["--save", "", "--appendonly", "no"]
        arguments += ["--dir", str(self.directory), "--dbfilename", SNAPSHOT_NAME]
        if self.password:
            arguments += ["--requirepass", self.password]
        for name, value in self.config.items():
            arguments += [f"--{name}", str(value)]
        return arguments

    def _launch_and_wait(self) -> None:
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self._process = process
        # Registered before waiting: an interrupted wait still leaves a killable process.
        self._kill = weakref.finalize(self, _kill_process, process)
        try:
            self._wait_until_ready(process, log_start)
        except BaseException:
            self.kill()
            raise

    def _wait_until_ready(self, process: subprocess.Popen, log_start: int) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if process.poll() is not None:
                raise self._error(f"exited with code {process.returncode}", log_start)
            # No retries: redis-py's default backoff spends seconds on a refused connection.
            probe = self.client(
                socket_timeout=1.0, socket_connect_timeout=1.0, retry=Retry(NoBackoff(), 0)
            )
            try:
                if probe.ping():
                    return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                pass  # not listening yet, or still loading its snapshot (LOADING)
            finally:
                probe.close()
            if time.monotonic() > deadline:
                raise self._error(f"did not answer within {self.ready_timeout_s:g} s", log_start)
            time.sleep(0.05)

    def _error(self, what: str, log_start: int) -> RedisServerError:
        log = _read_from(self.log_path, log_start)
        tail = log[-LOG_TAIL_CHARS:].rstrip() or "(empty)"
        return RedisServerError(
            f"redis-server on {HOST}:{self.port} {what}: {' '.join(self.command())}\n"
            f"--- {self.log_path} (tail) ---\n{tail}",
            port_taken="Address already in use" in log,
        )


def _checked_config(config: Mapping[str, str | int]) -> dict[str, str | int]:
    checked = {}
    for name, value in config.items():
        option = name.removeprefix("--")
        if not option:
            raise ValueError("empty redis-server option name")
        if option in _MANAGED_OPTIONS:
            raise ValueError(f"redis-server option {option!r} is managed by PrivateRedisServer")
        checked[option] = value
    return checked


def _read_from(path: Path, offset: int) -> str:
    """The text of ``path`` from byte ``offset`` on (what one start wrote to the log)."""
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")
