"""Bulk materialisation into Feast's Redis online store: the offline Parquet written straight
into Feast's Redis layout, byte for byte what ``FeatureStore.materialize`` writes.

``feast materialize`` on the file offline store reads through Dask (most of its time goes to
pickling task graphs), builds a protobuf per value and a redis-py command per row: about
1,000 rows per second here. This path does the same work in bulk, view by view:

1. read the rows stamped in ``[start, end]`` (both ends included, as Feast's file store) with
   ``pyarrow.dataset``, keep each entity's latest row by event then created timestamp;
2. encode values as Feast does: doubles and strings by hand (``Value`` tag, then 8 bytes or a
   length-prefixed string, vectorised over a column); every other type through Feast's own
   ``python_values_to_proto_values`` on the same arrow-to-numpy input Feast gives it;
3. per chunk of entities, read the stored ``_ts:<view>`` fields and skip a row that is not
   newer, as Feast's Redis store does, then write ``HSET`` (and ``EXPIRE`` when Feast's
   ``key_ttl_seconds`` is set) in one pre-packed request through
   :class:`feature_repo.online.RawPipeline`;
4. record the interval in the registry (``apply_materialization``), as ``materialize`` does.

``tests/integration/test_feast_bulk_load.py`` loads the same tables both ways and compares
every Redis hash byte for byte, and reads the bulk-loaded rows with ``get_online_features``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .data_sources import source_column
from .online import RawPipeline, entity_key_prefix, feature_field, redis_key, resp_bulk
from .realtime import encode_string, encode_timestamp, encode_varint

if TYPE_CHECKING:
    import pyarrow as pa
    from feast import FeatureStore, FeatureView

CHUNK_ROWS = 2_000
"""Entities per round trip (one ``HMGET`` and one ``HSET`` each)."""

ENCODE_ROWS = 20_000
"""Entities encoded at a time (the encoded bytes of one such slice are held in memory)."""

_DOUBLE_RECORD = np.dtype([("tag", "u1"), ("value", "<f8")])


@dataclass(frozen=True)
class ViewLoad:
    """One view's bulk load.

    Attributes:
        view: Feature view name.
        rows: Offline rows stamped in the interval.
        entities: Distinct entities among them (their latest rows were offered).
        written: Entities written (the rest were not newer than what Redis holds).
        seconds: Wall time.
    """

    view: str
    rows: int
    entities: int
    written: int
    seconds: float


def encode_doubles(values: np.ndarray) -> list[bytes]:
    """``Value(double_val=v)`` bytes of a ``float64`` column; NaN (null) is the empty value.

    Args:
        values: ``shape (N,)``.
    """
    records = np.empty(len(values), dtype=_DOUBLE_RECORD)
    records["tag"] = 0x29
    records["value"] = values
    raw = records.tobytes()
    out = [raw[start : start + 9] for start in range(0, len(raw), 9)]
    for index in np.flatnonzero(np.isnan(values)).tolist():
        out[index] = b""
    return out


def varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf varints of ``int64`` values (negatives as 10-byte two's complement).

    Returns:
        The encodings back to back (``uint8``) and each value's byte length, ``shape (N,)``.
    """
    unsigned = np.asarray(values, dtype=np.int64).astype(np.uint64)
    groups = np.empty((len(unsigned), 10), dtype=np.uint8)
    lengths = np.ones(len(unsigned), dtype=np.int64)
    for index in range(10):
        shifted = unsigned >> np.uint64(7 * index)
        groups[:, index] = (shifted & np.uint64(0x7F)).astype(np.uint8)
        if index:
            lengths += shifted != 0
    position = np.arange(10)
    groups[position < (lengths - 1)[:, None]] |= 0x80
    return groups[position < lengths[:, None]], lengths


def _wrap(tag: bytes, inner: bytes) -> bytes:
    """A length-delimited protobuf field: tag, varint length, bytes."""
    return tag + encode_varint(len(inner)) + inner


def _list_values(
    tag: bytes, column: pa.ChunkedArray, element_bytes: Any, packed: bool
) -> list[bytes]:
    """Feast's ``Value(<type>_list_val=...)`` bytes of an arrow list column.

    Args:
        tag: The ``Value`` field's tag bytes.
        column: ``list<...>`` column, ``N`` rows (null row: the empty ``Value``).
        element_bytes: Function of the flat element array (nulls replaced by the default
            Feast uses) returning the element encodings back to back and each one's start
            offset, ``shape (E + 1,)``.
        packed: Numeric lists are one packed field (``0x0a``, length, payload); string
            lists are one field per element, which ``element_bytes`` includes.
    """
    import pyarrow as pa

    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    row_offsets = lists.offsets.to_numpy()
    row_offsets = row_offsets - row_offsets[0]
    buffer, element_starts = element_bytes(lists.flatten())
    byte_offsets = element_starts[row_offsets].tolist()
    valid = lists.is_valid().to_numpy(zero_copy_only=False).tolist()
    out = []
    for row, present in enumerate(valid):
        if not present:
            out.append(b"")
            continue
        payload = buffer[byte_offsets[row] : byte_offsets[row + 1]]
        if packed and payload:
            payload = _wrap(b"\x0a", payload)
        out.append(_wrap(tag, payload))
    return out


def _float_elements(flat: pa.Array) -> tuple[bytes, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pc.cast(pc.fill_null(flat, 0.0), pa.float32()).to_numpy(zero_copy_only=False)
    return values.astype("<f4").tobytes(), np.arange(len(values) + 1) * 4


def _int64_elements(flat: pa.Array) -> tuple[bytes, np.ndarray]:
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pc.cast(pc.fill_null(flat, 0), pa.int64()).to_numpy(zero_copy_only=False)
    encoded, lengths = varints(values)
    return encoded.tobytes(), np.concatenate([[0], np.cumsum(lengths)])


def _string_elements(flat: pa.Array) -> tuple[bytes, np.ndarray]:
    """Each string as one ``StringList.val`` field (``0x0a``, varint length, UTF-8), vectorised.

    The output interleaves per-element prefixes with the UTF-8 bytes, which arrow already
    holds back to back: a mask marks the prefix positions and both streams are scattered in
    order.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    strings = pc.cast(pc.fill_null(flat, ""), pa.large_string())
    count = len(strings)
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64)[
        strings.offset : strings.offset + count + 1
    ]
    data = np.frombuffer(strings.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    lengths = np.diff(offsets)
    length_bytes, length_sizes = varints(lengths)
    prefix_sizes = 1 + length_sizes
    prefix_starts = np.concatenate([[0], np.cumsum(prefix_sizes)])
    prefixes = np.empty(prefix_starts[-1], dtype=np.uint8)
    is_tag = np.zeros(len(prefixes), dtype=bool)
    is_tag[prefix_starts[:-1]] = True
    prefixes[is_tag] = 0x0A
    prefixes[~is_tag] = length_bytes
    starts = np.concatenate([[0], np.cumsum(prefix_sizes + lengths)])
    marks = np.zeros(starts[-1] + 1, dtype=np.int8)
    marks[starts[:-1]] += 1
    marks[starts[:-1] + prefix_sizes] -= 1
    in_prefix = np.cumsum(marks[:-1], dtype=np.int8) > 0
    out = np.empty(starts[-1], dtype=np.uint8)
    out[in_prefix] = prefixes
    out[~in_prefix] = data
    return out.tobytes(), starts


_LIST_ENCODERS = {
    "FLOAT_LIST": (b"\x82\x01", _float_elements, True),
    "INT64_LIST": (b"\x72", _int64_elements, True),
    "STRING_LIST": (b"\x62", _string_elements, False),
}
"""``Value`` field tag (fields 16, 14, 12), element encoder and packing of each list type."""


def _encode_column(column: pa.ChunkedArray, value_type: Any) -> list[bytes]:
    """Feast's bytes of every value of one arrow column of Feast type ``value_type``.

    Doubles, strings and float, int64 and string lists are encoded here (vectorised where
    it pays); anything else goes through Feast's ``python_values_to_proto_values``.
    """
    import pyarrow as pa
    from feast.type_map import python_values_to_proto_values
    from feast.value_type import ValueType

    if value_type == ValueType.DOUBLE and pa.types.is_floating(column.type):
        return encode_doubles(column.to_numpy(zero_copy_only=False).astype(float))
    if value_type == ValueType.STRING and pa.types.is_string(column.type):
        return [encode_string(value) for value in column.to_pylist()]
    if value_type.name in _LIST_ENCODERS and pa.types.is_list(column.type):
        tag, elements, packed = _LIST_ENCODERS[value_type.name]
        return _list_values(tag, column, elements, packed)
    values = column.to_numpy(zero_copy_only=False)
    return [
        value.SerializeToString() for value in python_values_to_proto_values(values, value_type)
    ]


def latest_rows(
    path: Path,
    join_key: str,
    columns: Sequence[str],
    start: datetime,
    end: datetime,
    timestamp_field: str,
    created_column: str | None,
) -> tuple[pa.Table, int]:
    """Each entity's latest row stamped in ``[start, end]``, and how many rows were stamped.

    Latest is by event timestamp, then created timestamp, then file order, which is what
    Feast's file offline store keeps (it sorts by created, then event time, keeps the last).

    Returns:
        The rows (``join_key``, ``timestamp_field`` and ``columns``) and the row count.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    wanted = [join_key, timestamp_field, *([created_column] if created_column else []), *columns]
    if not path.exists():
        return pa.table({name: pa.array([], pa.null()) for name in wanted}), 0
    dataset = ds.dataset(str(path), format="parquet", partitioning="hive")
    if dataset.schema.field(timestamp_field).type.tz is None:  # naive: UTC by convention
        start, end = (bound.astimezone(UTC).replace(tzinfo=None) for bound in (start, end))
    stamp = ds.field(timestamp_field)
    table = dataset.to_table(columns=wanted, filter=(stamp >= start) & (stamp <= end))
    if table.num_rows == 0:
        return table, 0
    order = [(timestamp_field, "ascending")]
    if created_column:
        order.append((created_column, "ascending"))
    table = table.take(pc.sort_indices(table, sort_keys=order))
    keys = table.column(join_key).to_numpy(zero_copy_only=False)
    # The last occurrence of each key in time order: the first in the reversed order.
    _, first_reversed = np.unique(keys[::-1], return_index=True)
    keep = np.sort(len(keys) - 1 - first_reversed)
    return table.take(pa.array(keep)), len(keys)


def _timestamp_bytes(stamps: pa.ChunkedArray) -> tuple[list[bytes], np.ndarray]:
    """Feast's ``_ts`` bytes (microsecond precision, as Feast keeps) and the nanoseconds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    micros = pc.cast(pc.cast(stamps, pa.timestamp("us", tz="UTC")), pa.int64())
    micros = micros.to_numpy(zero_copy_only=False)
    seconds, remainder = np.divmod(micros, 1_000_000)
    encoded = [
        encode_timestamp(s, r * 1000)
        for s, r in zip(seconds.tolist(), remainder.tolist(), strict=True)
    ]
    return encoded, micros * 1000


def _stored_nanos(raw: bytes | None) -> int:
    """A stored ``_ts`` protobuf ``Timestamp`` as nanoseconds (0 when absent)."""
    if not raw:
        return 0
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.ParseFromString(raw)
    return stamp.seconds * 1_000_000_000 + stamp.nanos


def load_view(
    store: FeatureStore,
    client: Any,
    view: FeatureView,
    start: datetime,
    end: datetime,
    key_ttl_seconds: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ViewLoad:
    """Load one batch view's rows stamped in ``[start, end]`` into Feast's Redis layout.

    Args:
        store: The Feast store (registry, repo path, project).
        client: ``redis.Redis`` of the online store (its server and DB).
        view: A batch feature view with one string join key and a file source.
        start: Interval start, aware.
        end: Interval end, aware.
        key_ttl_seconds: Feast's ``key_ttl_seconds`` (``None``: keys do not expire).
        chunk_rows: Entities per round trip.

    Raises:
        ValueError: A view this path does not handle (several join keys, a non-string key,
            a versioned view name); use ``FeatureStore.materialize`` for it.
    """
    from feast.value_type import ValueType

    began = time.perf_counter()
    if len(view.join_keys) != 1:
        raise ValueError(f"{view.name}: bulk load handles one join key, not {view.join_keys}")
    (join_key,) = view.join_keys
    key_types = {column.name: column.dtype.to_value_type() for column in view.entity_columns}
    if key_types.get(join_key) != ValueType.STRING:
        raise ValueError(f"{view.name}: bulk load handles string join keys only")
    source = view.batch_source
    path = Path(source.path)
    if not path.is_absolute():
        path = Path(store.config.repo_path) / path
    features = [(field.name, field.dtype.to_value_type()) for field in view.features]
    # The file columns behind the view's names (the sequence's ``seq_user_id`` is ``user_id``).
    key_column = source_column(source, join_key)
    table, rows = latest_rows(
        path,
        key_column,
        [source_column(source, name) for name, _ in features],
        start,
        end,
        source.timestamp_field,
        source.created_timestamp_column or None,
    )
    project = store.project
    prefix, suffix = entity_key_prefix(join_key), project.encode("utf-8")
    keys = [
        redis_key(prefix, value, suffix)
        for value in table.column(key_column).to_pylist()  # type: ignore[union-attr]
    ]
    written = 0
    if keys:
        fields = [feature_field(view.name, name) for name, _ in features]
        ts_field = f"_ts:{view.name}".encode()
        writer = RawPipeline(client)
        try:
            # Encode ENCODE_ROWS at a time (bounded memory), write chunk_rows per round trip.
            for first in range(0, len(keys), ENCODE_ROWS):
                part = table.slice(first, ENCODE_ROWS)
                pairs = [
                    hset_pairs(field, part.column(source_column(source, name)), value_type)
                    for field, (name, value_type) in zip(fields, features, strict=True)
                ]
                stamps, nanos = _timestamp_bytes(part.column(source.timestamp_field))
                for begin in range(0, part.num_rows, chunk_rows):
                    stop = min(begin + chunk_rows, part.num_rows)
                    written += _write_chunk(
                        writer,
                        keys[first + begin : first + stop],
                        [column[begin:stop] for column in pairs],
                        stamps[begin:stop],
                        nanos[begin:stop],
                        ts_field,
                        key_ttl_seconds,
                    )
        finally:
            writer.close()
    store.registry.apply_materialization(view, project, start, end)
    return ViewLoad(view.name, rows, len(keys), written, time.perf_counter() - began)


def hset_pairs(field: bytes, column: pa.ChunkedArray, value_type: Any) -> list[bytes]:
    """``field value`` of every row of a column, as RESP bulk strings ready for ``HSET``.

    Doubles (most columns) are laid out in one numpy record array: the field's bulk string,
    ``$9``, the ``Value`` tag, 8 bytes, CRLF; a null is ``$0`` (the empty ``Value``).
    """
    import pyarrow as pa
    from feast.value_type import ValueType

    field_bulk = resp_bulk(field)
    if value_type == ValueType.DOUBLE and pa.types.is_floating(column.type):
        values = column.to_numpy(zero_copy_only=False).astype(float)
        layout = np.dtype(
            [
                ("field", np.uint8, len(field_bulk)),
                ("head", np.uint8, 4),
                ("tag", np.uint8),
                ("value", "<f8"),
                ("tail", np.uint8, 2),
            ]
        )
        records = np.empty(len(values), dtype=layout)
        records["field"] = np.frombuffer(field_bulk, dtype=np.uint8)
        records["head"] = np.frombuffer(b"$9\r\n", dtype=np.uint8)
        records["tag"] = 0x29
        records["value"] = values
        records["tail"] = np.frombuffer(b"\r\n", dtype=np.uint8)
        raw, size = records.tobytes(), layout.itemsize
        out = [raw[start : start + size] for start in range(0, len(raw), size)]
        for index in np.flatnonzero(np.isnan(values)).tolist():
            out[index] = field_bulk + b"$0\r\n\r\n"
        return out
    return [field_bulk + resp_bulk(value) for value in _encode_column(column, value_type)]


def _write_chunk(
    writer: RawPipeline,
    keys: list[bytes],
    pairs: list[list[bytes]],
    stamps: list[bytes],
    nanos: np.ndarray,
    ts_field: bytes,
    key_ttl_seconds: int | None,
) -> int:
    """Write the rows newer than what Redis holds (Feast's rule); returns how many.

    Args:
        writer: The transport.
        keys: Redis keys of the chunk's entities, ``shape (R,)``.
        pairs: Per feature, :func:`hset_pairs` of the chunk's rows.
        stamps: Feast's ``_ts`` bytes per row.
        nanos: Event times in ns per row (compared with the stored ``_ts``).
        ts_field: ``_ts:<view>``.
        key_ttl_seconds: Feast's key expiry, if any.
    """
    ts_request = b"".join(
        b"*3\r\n$5\r\nHMGET\r\n" + resp_bulk(key) + resp_bulk(ts_field) for key in keys
    )
    stored = writer.execute(ts_request, len(keys))
    head = b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * (len(pairs) + 1))
    ts_bulk = resp_bulk(ts_field)
    expire = b""
    if key_ttl_seconds:
        expire = resp_bulk(b"%d" % key_ttl_seconds)
    commands: list[bytes] = []
    for row, row_pairs in enumerate(zip(*pairs, strict=True)):
        previous = _stored_nanos(stored[row][0])
        if previous and int(nanos[row]) <= previous:
            continue
        key_bulk = resp_bulk(keys[row])
        command = b"".join([head, key_bulk, ts_bulk, resp_bulk(stamps[row]), *row_pairs])
        if expire:
            command += b"*3\r\n$6\r\nEXPIRE\r\n" + key_bulk + expire
        commands.append(command)
    if commands:
        writer.execute(b"".join(commands), len(commands) * (2 if expire else 1))
    return len(commands)


def bulk_materialize(
    store: FeatureStore,
    client: Any,
    views: Sequence[str],
    start: datetime,
    end: datetime,
    key_ttl_seconds: int | None = None,
) -> list[ViewLoad]:
    """:func:`load_view` for each named batch view of ``store``.

    Raises:
        ValueError: Naive times, or the online store is not Redis.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if getattr(store.config.online_store, "type", None) != "redis":
        raise ValueError("bulk materialisation writes Feast's Redis layout; the store is not Redis")
    if store.config.registry.enable_online_feature_view_versioning:
        raise ValueError("bulk materialisation does not write versioned view names")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    return [
        load_view(store, client, store.get_feature_view(name), start, end, key_ttl_seconds)
        for name in views
    ]
