"""Fast online reads of Feast's Redis layout: one user and hundreds of candidates per request.

Feast's Redis store keeps one hash per entity key (``feast/infra/online_stores/redis.py``):

- key: ``serialize_entity_key(entity_key, v3) + project`` where, for one string join key,
  ``serialize_entity_key`` is ``<I 1> <I STRING=2> <I len(join_key)> join_key <I STRING=2>
  <I len(value)> value`` (little-endian ``uint32``);
- field of a feature: ``murmur3_32(f"{view}:{feature}")`` as 4 little-endian bytes;
- field ``_ts:{view}``: the row's event time as a protobuf ``Timestamp``;
- value: a serialised ``feast.types.Value`` protobuf. A double is tag ``0x29`` followed by 8
  little-endian bytes, so a column of doubles decodes with one ``numpy.frombuffer``.

:class:`RedisFeatureReader` sends one pipelined ``HMGET`` per entity (all requested views of
that entity at once) in a single round trip and decodes doubles in bulk; other types go through
the protobuf. ``tests/integration/test_feast_online.py`` checks parity with
``FeatureStore.get_online_features``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
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

_NAN_DOUBLE = bytes([DOUBLE_TAG]) + struct.pack("<d", float("nan"))


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

    Returns:
        ``float64`` array, ``shape (len(raw),)``.
    """
    fixed = [
        value if value is not None and len(value) == 9 and value[0] == DOUBLE_TAG else None
        for value in raw
    ]
    for index, value in enumerate(fixed):
        if value is None:
            decoded = _decode_value(raw[index])
            fixed[index] = (
                _NAN_DOUBLE
                if decoded is None
                else bytes([DOUBLE_TAG]) + struct.pack("<d", float(decoded))
            )
    records = np.frombuffer(b"".join(fixed), dtype=np.dtype([("tag", "u1"), ("value", "<f8")]))
    return records["value"].copy()


def decode_string(raw: bytes | None) -> str | None:
    """A ``Value(string_val=...)``; short strings skip the protobuf (tag 0x12, 1-byte length)."""
    if raw and raw[0] == 0x12 and raw[1] < 0x80 and len(raw) == raw[1] + 2:
        return raw[2:].decode("utf-8")
    decoded = _decode_value(raw)
    return None if decoded is None else str(decoded)


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
        names = tuple(features or table.feature_names)
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

    def frame(self, full_names: bool = False) -> pd.DataFrame:
        """All features as a DataFrame (column ``feature`` or ``view:feature``)."""
        data: dict[str, Any] = {}
        for index, name in enumerate(self.double_names):
            data[name if full_names else name.split(":", 1)[1]] = self.doubles[:, index]
        for name, values in self.others.items():
            data[name if full_names else name.split(":", 1)[1]] = values
        return pd.DataFrame(data)


class _EntityPlan:
    """Precomputed hash fields and decoders for one join key and its views."""

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

    def keys(self, ids: Sequence[str]) -> list[bytes]:
        return [redis_key(self.prefix, value, self.suffix) for value in ids]

    def decode(self, ids: Sequence[str], replies: list[list[bytes | None]]) -> EntityFeatures:
        width = len(self.fields)
        flat = [value for reply in replies for value in reply]
        if self.double_slots:
            picked = [
                flat[row * width + slot] for row in range(len(ids)) for slot in self.double_slots
            ]
            doubles = decode_doubles(picked).reshape(len(ids), len(self.double_slots))
        else:
            doubles = np.empty((len(ids), 0))
        others: dict[str, list[Any]] = {}
        for slot, name, dtype in self.other_slots:
            column = [flat[row * width + slot] for row in range(len(ids))]
            decoder = decode_string if dtype is Dtype.STRING else _decode_value
            others[name] = [decoder(value) for value in column]
        found = {
            view: np.array([flat[row * width + slot] is not None for row in range(len(ids))])
            for view, slot in self.ts_slots.items()
        }
        for view, present in found.items():
            names = [i for i, n in enumerate(self.double_names) if n.startswith(f"{view}:")]
            if names and not present.all():
                doubles[np.ix_(~present, names)] = np.nan
        return EntityFeatures(list(ids), doubles, list(self.double_names), others, found)


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

    def read(self, requests: dict[str, Sequence[str]]) -> dict[str, EntityFeatures]:
        """Features of the requested ids per join key, in one Redis round trip.

        Args:
            requests: Entity ids per join key, e.g. ``{"user_id": [u], "item_id": items}``.
        """
        unknown = set(requests) - set(self.plans)
        if unknown:
            raise KeyError(f"no views configured for join keys {sorted(unknown)}")
        pipe = self.client.pipeline(transaction=False)
        for key, ids in requests.items():
            plan = self.plans[key]
            for redis_key_bytes in plan.keys(ids):
                pipe.hmget(redis_key_bytes, plan.fields)
        replies = pipe.execute()
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
