"""Writing feature rows straight into Feast's Redis layout (tests, benchmarks, warm-ups).

``feast materialize`` is the production path into the online store; this writes the same
keys, hash fields and ``feast.types.Value`` protobufs (see :mod:`feature_repo.online`)
without a registry, so a test or a benchmark can fill a private Redis with 100,000 users in
seconds. Values are encoded with Feast's own protobuf classes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from feature_repo.online import entity_key_prefix, feature_field, redis_key
from feature_repo.realtime import encode_double, encode_string, encode_timestamp
from feature_repo.tables import Dtype, FeatureTable


def encode_value(value: Any, dtype: Dtype) -> bytes:
    """One value as Feast stores it (the empty ``Value`` for missing)."""
    from feast.protos.feast.types.Value_pb2 import (
        FloatList,
        Int64List,
        StringList,
        Value,
    )

    if value is None or (isinstance(value, float) and np.isnan(value)):
        return b""
    if dtype is Dtype.DOUBLE:
        return encode_double(float(value))
    if dtype is Dtype.STRING:
        return encode_string(str(value))
    if dtype is Dtype.FLOAT:
        return Value(float_val=float(value)).SerializeToString()
    if dtype is Dtype.BIGINT:
        return Value(int64_val=int(value)).SerializeToString()
    if dtype is Dtype.FLOAT_ARRAY:
        return Value(float_list_val=FloatList(val=[float(v) for v in value])).SerializeToString()
    if dtype is Dtype.STRING_ARRAY:
        return Value(string_list_val=StringList(val=[str(v) for v in value])).SerializeToString()
    return Value(int64_list_val=Int64List(val=[int(v) for v in value])).SerializeToString()


def write_rows(
    client: Any,
    project: str,
    table: FeatureTable,
    rows: pd.DataFrame,
    event_time: datetime,
    batch: int = 2000,
) -> int:
    """Write ``rows`` (the entity key column and any of the view's features) of one view.

    Rows are keyed by the entity key column's values under the view's join key, as Feast
    stores them (the sequence: ``user_id`` values under ``seq_user_id``); columns that are
    not in the Feast view (``online=False``) are not written.

    Returns:
        Rows written.
    """
    prefix = entity_key_prefix(table.join_key)
    suffix = project.encode("utf-8")
    names = [name for name in table.view_feature_names if name in rows.columns]
    fields = [feature_field(table.name, name) for name in names]
    dtypes = [table.column(name).dtype for name in names]
    seconds = int(event_time.timestamp())
    stamp = encode_timestamp(seconds, round((event_time.timestamp() - seconds) * 1e9))
    ts_field = f"_ts:{table.name}".encode()
    ids = rows[table.entity_key].astype(str).tolist()
    columns = [rows[name].tolist() for name in names]
    pipe = client.pipeline(transaction=False)
    for index, entity in enumerate(ids):
        mapping: dict[bytes, bytes] = {ts_field: stamp}
        for field, dtype, column in zip(fields, dtypes, columns, strict=True):
            mapping[field] = encode_value(column[index], dtype)
        pipe.hset(redis_key(prefix, entity, suffix), mapping=mapping)
        if (index + 1) % batch == 0:
            pipe.execute()
    pipe.execute()
    return len(ids)


def delete_project_keys(client: Any, project: str, count: int = 5000) -> int:
    """Delete every key of ``project`` (keys end with the project name); returns how many."""
    deleted = 0
    pattern = b"*" + project.encode("utf-8")
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=count):
        batch.append(key)
        if len(batch) >= count:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


def chunks(values: list, size: int) -> Iterable[list]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
