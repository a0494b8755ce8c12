"""Fast online reads of Feast's Redis layout: one user and hundreds of candidates per request.

Feast's Redis store keeps one hash per entity key (``feast/infra/online_stores/redis.py``):

- key: ``serialize_entity_key(entity_key, v3) + project`` where, for one string join key,
  ``serialize_entity_key`` is ``<I 1> <I STRING=2> <I len(join_key)> join_key <I STRING=2>
  <I len(value)> value`` (little-endian ``uint32``);
- field of a feature: ``murmur3_32(f"{view}:{feature}")`` as 4 little-endian bytes;
- field ``_ts:{view}``: the row's event time as a protobuf ``Timestamp``;
- value: a serialised ``feast.types.Value`` protobuf. A double is tag ``0x29`` followed by 8
  little-endian bytes, so a column of doubles decodes with one ``numpy.frombuffer``.

Every view joined on ``user_id`` shares the user's hash; the behaviour sequence is joined on
``seq_user_id`` (:data:`feature_repo.tables.SEQUENCE_USER_ID`), so it has a hash of its own
and a user is two keys: its plans here are keyed by join key, so reading both is still one
round trip.

:class:`RedisFeatureReader` sends one ``HMGET`` per entity (all requested views of that entity
at once) in a single round trip and decodes doubles in bulk; other types go through the
protobuf. The round trip goes through :class:`RawPipeline`: the request is packed from
precomputed bytes (only the keys change between requests) and the replies are parsed by one
``hiredis.Reader``. redis-py's pipeline builds and parses each of the 301 commands of a
request in Python, about 10 us each, which made its "floor" 4-8 ms for one user and 300
items while Redis itself spends about 1 ms on them. ``tests/integration/test_feast.py``
checks parity with ``FeatureStore.get_online_features``.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import mmh3
import numpy as np
import pandas as pd

from .tables import Dtype, FeatureTable

if TYPE_CHECKING:
    import redis

STRING_VALUE_TYPE = 2
"""``feast.ValueType.STRING``, the type tag of a string join key in the key bytes."""

DOUBLE_TAG = 0x29
"""Protobuf tag of ``Value.double_val`` (field 5, wire type 1)."""

STRING_TAG = 0x12
"""Protobuf tag of ``Value.string_val`` (field 2, wire type 2)."""

_DOUBLE_SIZE = 9
_BYTE_OFFSETS = np.arange(1, _DOUBLE_SIZE)
_DOUBLE_RECORD = np.dtype([("tag", "u1"), ("value", "<f8")])


def feature_field(view: str, feature: str) -> bytes:
    """The Redis hash field Feast uses for ``view:feature`` (murmur3_32, little-endian)."""
    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


def entity_key_prefix(join_key: str) -> bytes:
    """Bytes of a single string join key before its value (see the module docstring)."""
    name = join_key.encode("utf-8")
    return struct.pack("<III", 1, STRING_VALUE_TYPE, len(name)) + name


def redis_key(prefix: bytes, value: str, project_suffix: bytes) -> bytes:
    """Feast's Redis key of one string entity value."""
    encoded = value.encode("utf-8")
    return prefix + struct.pack("<II", STRING_VALUE_TYPE, len(encoded)) + encoded + project_suffix


def resp_bulk(value: bytes) -> bytes:
    """One RESP bulk string: ``$<len>\\r\\n<value>\\r\\n``."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def resp_command(*args: bytes) -> bytes:
    """One Redis command in RESP (an array of bulk strings)."""
    return b"*%d\r\n" % len(args) + b"".join(resp_bulk(arg) for arg in args)


def _decode_value(raw: bytes | None) -> Any:
    """One ``Value`` protobuf to a Python value (``None`` for missing or null)."""
    if not raw:
        return None
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    value = Value()
    value.ParseFromString(raw)
    if value.WhichOneof("val") in (None, "null_val"):
        return None
    return feast_value_type_to_python_type(value)


def decode_doubles(raw: Sequence[bytes | None]) -> np.ndarray:
    """Bulk-decode ``Value(double_val=...)`` bytes; missing or null values become NaN.

    Every 9-byte value starting with :data:`DOUBLE_TAG` is decoded by one gather over the
    joined bytes; anything else (another numeric type) goes through the protobuf.

    Returns:
        ``float64`` array, ``shape (len(raw),)``.
    """
    values = list(raw)
    if None in values:
        values = [b"" if value is None else value for value in values]
    out = np.full(len(values), np.nan)
    if not values:
        return out
    joined_bytes = b"".join(values)
    if len(joined_bytes) == _DOUBLE_SIZE * len(values) and set(map(len, values)) == {_DOUBLE_SIZE}:
        records = np.frombuffer(joined_bytes, dtype=_DOUBLE_RECORD)
        if (records["tag"] == DOUBLE_TAG).all():
            return records["value"].copy()
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    joined = np.frombuffer(joined_bytes, dtype=np.uint8)
    starts = np.cumsum(lengths) - lengths
    sized = lengths == _DOUBLE_SIZE
    is_double = sized.copy()
    is_double[sized] = joined[starts[sized]] == DOUBLE_TAG
    if is_double.any():
        gathered = joined[starts[is_double, None] + _BYTE_OFFSETS]
        out[is_double] = np.ascontiguousarray(gathered).view("<f8")[:, 0]
    for index in np.flatnonzero(~is_double & (lengths > 0)):
        decoded = _decode_value(values[index])
        if decoded is not None:
            out[index] = float(decoded)
    return out


def decode_string(raw: bytes | None) -> str | None:
    """A ``Value(string_val=...)``; short strings skip the protobuf (tag 0x12, 1-byte length)."""
    if raw and raw[0] == STRING_TAG and raw[1] < 0x80 and len(raw) == raw[1] + 2:
        return raw[2:].decode("utf-8")
    decoded = _decode_value(raw)
    return None if decoded is None else str(decoded)


def decode_strings(raw: Sequence[bytes | None]) -> list[str | None]:
    """:func:`decode_string` over a column (the common short-string case inlined)."""
    return [
        value[2:].decode("utf-8")
        if value and value[0] == STRING_TAG and value[1] < 0x80 and len(value) == value[1] + 2
        else decode_string(value)
        for value in raw
    ]


@dataclass(frozen=True)
class ViewSpec:
    """The features read from one view, and their column types.

    Attributes:
        view: Feature view name.
        features: Feature names, in output order.
        dtypes: Their types (doubles decode in bulk).
    """

    view: str
    features: tuple[str, ...]
    dtypes: tuple[Dtype, ...]

    @classmethod
    def from_table(cls, table: FeatureTable, features: Sequence[str] | None = None) -> ViewSpec:
        names = tuple(features or table.view_feature_names)
        return cls(table.name, names, tuple(table.column(name).dtype for name in names))


@dataclass
class EntityFeatures:
    """Features of several entities of one join key.

    Attributes:
        ids: Entity ids, ``shape (N,)``, in request order.
        doubles: Double features, ``N x D`` (NaN when missing), columns ``double_names``.
        double_names: ``view:feature`` of each column of ``doubles``.
        others: Non-double features by ``view:feature``, one list of N values each.
        found: Whether each entity had a row in each view, by view, ``shape (N,)`` booleans.
    """

    ids: list[str]
    doubles: np.ndarray
    double_names: list[str]
    others: dict[str, list[Any]]
    found: dict[str, np.ndarray]

    def columns(self, full_names: bool = False) -> dict[str, Any]:
        """All features by ``feature`` (or ``view:feature``): ``N`` doubles or ``N`` values."""
        data: dict[str, Any] = {}
        for index, name in enumerate(self.double_names):
            data[name if full_names else name.split(":", 1)[1]] = self.doubles[:, index]
        for name, values in self.others.items():
            data[name if full_names else name.split(":", 1)[1]] = values
        return data

    def frame(self, full_names: bool = False) -> pd.DataFrame:
        """All features as a DataFrame (column ``feature`` or ``view:feature``)."""
        return pd.DataFrame(self.columns(full_names))


class _EntityPlan:
    """Precomputed hash fields, request bytes and decoders for one join key and its views."""

    def __init__(self, join_key: str, views: Sequence[ViewSpec], project: str) -> None:
        self.join_key = join_key
        self.prefix = entity_key_prefix(join_key)
        self.suffix = project.encode("utf-8")
        self.views = list(views)
        self.fields: list[bytes] = []
        self.double_slots: list[int] = []
        self.double_names: list[str] = []
        self.other_slots: list[tuple[int, str, Dtype]] = []
        self.ts_slots: dict[str, int] = {}
        for spec in self.views:
            for name, dtype in zip(spec.features, spec.dtypes, strict=True):
                slot = len(self.fields)
                self.fields.append(feature_field(spec.view, name))
                if dtype is Dtype.DOUBLE:
                    self.double_slots.append(slot)
                    self.double_names.append(f"{spec.view}:{name}")
                else:
                    self.other_slots.append((slot, f"{spec.view}:{name}", dtype))
            self.ts_slots[spec.view] = len(self.fields)
            self.fields.append(f"_ts:{spec.view}".encode())
        # ``HMGET <key> <fields...>`` in RESP: everything but the key is the same every time.
        self.command_head = b"*%d\r\n$5\r\nHMGET\r\n" % (len(self.fields) + 2)
        self.command_tail = b"".join(resp_bulk(name) for name in self.fields)
        self.view_double_columns = {
            spec.view: [i for i, n in enumerate(self.double_names) if n.startswith(f"{spec.view}:")]
            for spec in self.views
        }

    def keys(self, ids: Sequence[str]) -> list[bytes]:
        return [redis_key(self.prefix, value, self.suffix) for value in ids]

    def packed(self, ids: Sequence[str]) -> list[bytes]:
        """RESP bytes of one ``HMGET`` per id (to be joined into one request)."""
        head, tail = self.command_head, self.command_tail
        return [head + resp_bulk(key) + tail for key in self.keys(ids)]

    def decode(
        self, ids: Sequence[str], replies: Sequence[Sequence[bytes | None]]
    ) -> EntityFeatures:
        """Decode one ``HMGET`` reply per id (``len(self.fields)`` values each)."""
        count, width = len(ids), len(self.fields)
        flat = list(chain.from_iterable(replies))
        if len(replies) != count or len(flat) != count * width:
            raise ValueError(
                f"expected {count} replies of {width} values, got {len(replies)} "
                f"with {len(flat)} values"
            )
        if self.double_slots:
            columns = [flat[slot::width] for slot in self.double_slots]
            doubles = decode_doubles(list(chain.from_iterable(columns)))
            doubles = doubles.reshape(len(self.double_slots), count).T.copy()
        else:
            doubles = np.empty((count, 0))
        others: dict[str, list[Any]] = {}
        for slot, name, dtype in self.other_slots:
            column = flat[slot::width]
            if dtype is Dtype.STRING:
                others[name] = decode_strings(column)
            else:
                others[name] = [_decode_value(value) for value in column]
        found = {
            view: np.array([value is not None for value in flat[slot::width]], dtype=bool)
            for view, slot in self.ts_slots.items()
        }
        for view, present in found.items():
            names = self.view_double_columns[view]
            if names and not present.all():
                doubles[np.ix_(~present, names)] = np.nan
        return EntityFeatures(list(ids), doubles, list(self.double_names), others, found)


class RawPipeline:
    """Sends a pre-packed batch of Redis commands in one write and parses every reply in C.

    Connects like the given ``redis.Redis`` client (host and port or Unix socket, DB,
    username, password, timeouts) and keeps its own small pool of sockets, one per concurrent
    caller; a process that forks starts a fresh pool. For other connection kinds (TLS,
    Sentinel) it goes through one of the client's own connections, which is slower.

    Errors are raised as redis-py's: ``redis.exceptions.ConnectionError`` or
    ``TimeoutError`` for the transport (the socket is dropped), ``ResponseError`` for an
    error reply. A command sent on a pooled socket that turns out dead (e.g. Redis
    restarted) is resent once on a new socket, so callers must only send idempotent
    commands (reads).

    Args:
        client: ``redis.Redis`` whose server and DB to use.
        receive_buffer_bytes: Size of each socket's receive buffer.
    """

    def __init__(self, client: redis.Redis, receive_buffer_bytes: int = 1 << 18) -> None:
        import redis as redis_module

        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        self.client = client
        self.address: tuple[str, int] | str | None
        if pool.connection_class is redis_module.Connection:
            self.address = (str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379)))
        elif pool.connection_class is redis_module.UnixDomainSocketConnection:
            self.address = str(kwargs["path"])
        else:
            self.address = None
        self.timeout: float | None = kwargs.get("socket_timeout")
        self.connect_timeout: float | None = kwargs.get("socket_connect_timeout") or self.timeout
        handshake = []
        if kwargs.get("password"):
            credentials = [kwargs["password"]]
            if kwargs.get("username"):
                credentials.insert(0, kwargs["username"])
            handshake.append(resp_command(b"AUTH", *(_bytes(value) for value in credentials)))
        if int(kwargs.get("db") or 0):
            handshake.append(resp_command(b"SELECT", b"%d" % int(kwargs["db"])))
        self.handshake = handshake
        self.receive_buffer_bytes = receive_buffer_bytes
        self._idle: list[tuple[socket.socket, bytearray]] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def execute(self, payload: bytes, replies: int, raise_errors: bool = True) -> list[Any]:
        """Send ``payload`` (``replies`` commands in RESP) and return every reply in order.

        Args:
            payload: The commands, packed (see :func:`resp_command`).
            replies: How many commands ``payload`` holds.
            raise_errors: Raise the first error reply; otherwise error replies are returned in
                their place, as exceptions.

        Raises:
            redis.exceptions.ConnectionError: The server is unreachable or hung up.
            redis.exceptions.TimeoutError: No complete answer within ``socket_timeout``.
            redis.exceptions.ResponseError: A command answered with an error.
        """
        if self.address is None:
            answers = self._through_client(payload, replies)
            return _checked(answers) if raise_errors else answers
        connection, reused = self._take()
        try:
            answers = self._exchange(connection, payload, replies)
        except _Dead as dead:
            connection[0].close()
            if not reused:
                raise dead.error from None
            connection, _ = self._connect(), False
            try:
                answers = self._exchange(connection, payload, replies)
            except _Dead as again:
                connection[0].close()
                raise again.error from None
        self._give(connection)
        return _checked(answers) if raise_errors else answers

    def close(self) -> None:
        """Close every idle socket."""
        with self._lock:
            idle, self._idle = self._idle, []
        for sock, _ in idle:
            sock.close()

    def _exchange(
        self, connection: tuple[socket.socket, bytearray], payload: bytes, replies: int
    ) -> list[Any]:
        import hiredis
        import redis as redis_module

        sock, buffer = connection
        reader = hiredis.Reader()
        answers: list[Any] = []
        try:
            sock.sendall(payload)
            while len(answers) < replies:
                size = sock.recv_into(buffer)
                if not size:
                    raise _Dead(redis_module.exceptions.ConnectionError("Redis closed the socket"))
                reader.feed(buffer, 0, size)
                answer = reader.gets()
                while answer is not False:
                    answers.append(answer)
                    answer = reader.gets()
        except TimeoutError as error:  # socket.timeout: the server may still answer later
            sock.close()
            raise redis_module.exceptions.TimeoutError(f"Redis: {error}") from None
        except OSError as error:
            raise _Dead(redis_module.exceptions.ConnectionError(f"Redis: {error}")) from None
        except BaseException:
            sock.close()  # half-read replies would be taken for the next request's
            raise
        if len(answers) != replies:
            sock.close()
            raise redis_module.exceptions.ConnectionError(
                f"Redis sent {len(answers)} replies for {replies} commands"
            )
        return answers

    def _take(self) -> tuple[tuple[socket.socket, bytearray], bool]:
        with self._lock:
            if self._pid != os.getpid():
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _give(self, connection: tuple[socket.socket, bytearray]) -> None:
        with self._lock:
            if self._pid == os.getpid():
                self._idle.append(connection)
                return
        connection[0].close()

    def _connect(self) -> tuple[socket.socket, bytearray]:
        import redis as redis_module

        try:
            if isinstance(self.address, str):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.connect_timeout)
                sock.connect(self.address)
            else:
                assert self.address is not None
                sock = socket.create_connection(self.address, timeout=self.connect_timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.timeout)
        except TimeoutError as error:
            raise redis_module.exceptions.TimeoutError(f"Redis connect: {error}") from None
        except OSError as error:
            raise redis_module.exceptions.ConnectionError(f"Redis connect: {error}") from None
        connection = (sock, bytearray(self.receive_buffer_bytes))
        if self.handshake:
            try:
                _checked(self._exchange(connection, b"".join(self.handshake), len(self.handshake)))
            except _Dead as dead:
                sock.close()
                raise dead.error from None
            except BaseException:
                sock.close()
                raise
        return connection

    def _through_client(self, payload: bytes, replies: int) -> list[Any]:
        import redis as redis_module

        pool = self.client.connection_pool
        connection = pool.get_connection()
        answers: list[Any] = []
        try:
            connection.send_packed_command([payload])
            for _ in range(replies):
                try:
                    answers.append(connection.read_response())
                except redis_module.exceptions.ResponseError as error:
                    answers.append(error)
        except BaseException:
            connection.disconnect()
            raise
        finally:
            pool.release(connection)
        return answers


class _Dead(Exception):
    """The socket failed before a complete answer; ``error`` is what to raise."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _checked(answers: list[Any]) -> list[Any]:
    import hiredis
    import redis as redis_module

    for answer in answers:
        if isinstance(answer, hiredis.ReplyError | redis_module.exceptions.ResponseError):
            raise redis_module.exceptions.ResponseError(str(answer))
    return answers


class RedisFeatureReader:
    """Reads Feast-written features straight from Redis with one pipelined round trip.

    Args:
        client: A ``redis.Redis`` on the online store's server and DB.
        project: The Feast project (the key suffix).
        entities: Per join key, the views (and features) to read.

    Values older than a view's TTL are returned as stored (Feast would hide them); the
    feature tables write a row per entity at least once per TTL.
    """

    def __init__(
        self,
        client: redis.Redis,
        project: str,
        entities: dict[str, Sequence[ViewSpec]],
    ) -> None:
        self.client = client
        self.project = project
        self.plans = {key: _EntityPlan(key, views, project) for key, views in entities.items()}
        self.pipeline = RawPipeline(client)

    def read(self, requests: dict[str, Sequence[str]]) -> dict[str, EntityFeatures]:
        """Features of the requested ids per join key, in one Redis round trip.

        Args:
            requests: Entity ids per join key, e.g. ``{"user_id": [u], "item_id": items}``.
        """
        unknown = set(requests) - set(self.plans)
        if unknown:
            raise KeyError(f"no views configured for join keys {sorted(unknown)}")
        parts: list[bytes] = []
        for key, ids in requests.items():
            parts += self.plans[key].packed(ids)
        replies = self.pipeline.execute(b"".join(parts), len(parts)) if parts else []
        result = {}
        start = 0
        for key, ids in requests.items():
            result[key] = self.plans[key].decode(ids, replies[start : start + len(ids)])
            start += len(ids)
        return result

    def read_frame(self, view: str, ids: Sequence[str], features: Sequence[str]) -> pd.DataFrame:
        """One view's features of ``ids`` as a frame with the join key column (NaN if none)."""
        for key, plan in self.plans.items():
            for spec in plan.views:
                if spec.view == view:
                    got = self.read({key: list(ids)})[key]
                    frame = got.frame()
                    frame.insert(0, key, list(ids))
                    return frame[[key, *features]]
        raise KeyError(f"view {view!r} is not configured")


def redis_client(url: str) -> redis.Redis:
    """A Redis client for ``Settings.redis_url`` (binary replies, hiredis parser if present)."""
    import redis

    return redis.Redis.from_url(url, decode_responses=False)
