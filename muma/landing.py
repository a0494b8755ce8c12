"""Writing the landing zone in the data contract's format (gzip JSON Lines, source/date/hour).

Used by the simulator, the real-data importers and, later, the serving API's impression log.
Files are written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import gzip
import io
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from .contract import SCHEMAS, FieldType, Source, partition_dir

GZIP_LEVEL = 1
"""Log shippers favour speed; level 1 costs about 10% more bytes than level 6."""


TS_FORMAT_UTC = "%Y-%m-%dT%H:%M:%S%.3fZ"


def _timestamp_expr(column: str, offsets: pl.Expr | None) -> pl.Expr:
    """Polars expression rendering epoch-ms ints as ISO-8601 with an explicit offset."""
    utc = pl.from_epoch(pl.col(column), time_unit="ms").dt.to_string(TS_FORMAT_UTC)
    if offsets is None:
        return utc.alias(column)
    local = pl.from_epoch(pl.col(column) + offsets * 60_000, time_unit="ms").dt.to_string(
        "%Y-%m-%dT%H:%M:%S%.3f"
    )
    sign = pl.when(offsets < 0).then(pl.lit("-")).otherwise(pl.lit("+"))
    hours = (offsets.abs() // 60).cast(pl.Utf8).str.zfill(2)
    minutes = (offsets.abs() % 60).cast(pl.Utf8).str.zfill(2)
    with_offset = pl.concat_str([local, sign, hours, pl.lit(":"), minutes])
    return pl.when(offsets == 0).then(utc).otherwise(with_offset).alias(column)


def format_timestamps(epoch_ms: np.ndarray, offset_minutes: np.ndarray | None = None) -> np.ndarray:
    """ISO-8601 strings with an explicit offset for epoch-millisecond times.

    Args:
        epoch_ms: ``N`` int64 milliseconds since the Unix epoch (UTC).
        offset_minutes: ``N`` local UTC offsets in minutes to write the times in (default UTC).
    """
    frame = pl.DataFrame({"ts": np.asarray(epoch_ms, dtype=np.int64)})
    offsets = None
    if offset_minutes is not None:
        frame = frame.with_columns(pl.Series("_offset", np.asarray(offset_minutes, dtype=np.int64)))
        offsets = pl.col("_offset")
    return frame.select(_timestamp_expr("ts", offsets)).to_series().to_numpy()


def render_frame(
    source: Source,
    frame: pd.DataFrame | pl.DataFrame,
    prefixes: Mapping[str, str] | None = None,
    ts_offset_minutes: np.ndarray | None = None,
) -> pl.DataFrame:
    """Turn a producer's frame into the contract's columns and string forms.

    Integer columns named in ``prefixes`` become ``prefix + number`` strings (ids);
    timestamp fields held as epoch-ms integers become ISO-8601 strings, ``ts`` in the
    given local offsets (minutes; 0 means UTC, written with ``Z``).
    """
    data = frame if isinstance(frame, pl.DataFrame) else pl.from_pandas(frame)
    expressions: list[pl.Expr] = []
    for name, prefix in (prefixes or {}).items():
        expressions.append(pl.concat_str([pl.lit(prefix), pl.col(name).cast(pl.Utf8)]).alias(name))
    offsets = None
    if ts_offset_minutes is not None:
        data = data.with_columns(
            pl.Series("_offset", np.asarray(ts_offset_minutes, dtype=np.int64))
        )
        offsets = pl.col("_offset")
    for field in SCHEMAS[source]:
        if (
            field.type is FieldType.TIMESTAMP
            and field.name in data.columns
            and (data.schema[field.name].is_integer())
        ):
            expressions.append(_timestamp_expr(field.name, offsets if field.name == "ts" else None))
    if expressions:
        data = data.with_columns(expressions)
    return data.select([field.name for field in SCHEMAS[source] if field.name in data.columns])


def _has_missing(column: pl.Series) -> bool:
    """Nulls, or NaNs in a float column (written as ``null`` by ``write_ndjson``)."""
    return column.null_count() > 0 or (column.dtype.is_float() and bool(column.is_nan().any()))


def frame_to_jsonl(
    source: Source,
    frame: pd.DataFrame | pl.DataFrame,
    prefixes: Mapping[str, str] | None = None,
    ts_offset_minutes: np.ndarray | None = None,
) -> bytes:
    """Serialise a producer's frame as ``source``'s JSON Lines (see :func:`render_frame`).

    Optional columns that are null are left out of the line, as a producer would.
    """
    if len(frame) == 0:
        return b""
    rendered = render_frame(source, frame, prefixes, ts_offset_minutes)
    buffer = io.BytesIO()
    # Polars writes shortest round-trip floats (exact propensities), ten times faster than pandas.
    rendered.write_ndjson(buffer)
    text = buffer.getvalue()
    for field in SCHEMAS[source]:
        if (
            not field.required
            and field.name in rendered.columns
            and _has_missing(rendered[field.name])
        ):
            text = text.replace(f',"{field.name}":null'.encode(), b"")
    return text


def write_partition_bytes(
    landing_root: Path,
    source: Source,
    hour_start: datetime,
    payload: bytes,
    part: str = "part-00000",
) -> Path:
    """Atomically write one gzip JSON Lines file into the partition of ``hour_start``.

    Returns the path written. An existing file of the same name is replaced.
    """
    directory = partition_dir(landing_root, source, hour_start)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{part}.jsonl.gz"
    tmp = directory / f".{part}.jsonl.gz.tmp-{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(gzip.compress(payload, compresslevel=GZIP_LEVEL, mtime=0))
    os.replace(tmp, target)
    return target


def read_partition_lines(landing_root: Path, source: Source, hour_start: datetime) -> list[bytes]:
    """All raw lines of one landing partition, in file order (for tests and small tools)."""
    lines: list[bytes] = []
    directory = partition_dir(landing_root, source, hour_start)
    for path in sorted(directory.glob("*.jsonl.gz")):
        with gzip.open(path, "rb") as handle:
            lines.extend(line.rstrip(b"\n") for line in handle if line.strip())
    return lines


_PARTITION = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})$")
_PARTITION_IN_PATH = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})(?:/|$)")


def partition_hour(path: Path) -> datetime:
    """Start hour (UTC) of the ``date=YYYY-MM-DD/hour=HH`` partition holding ``path``.

    Raises:
        ValueError: ``path`` lies in no such partition.
    """
    match = _PARTITION_IN_PATH.search(Path(path).as_posix())
    if match is None:
        raise ValueError(f"{path} lies in no date=/hour= partition")
    return datetime.fromisoformat(f"{match[1]}T{match[2]}:00:00").replace(tzinfo=UTC)


def partition_hours(root: Path, table: str) -> list[datetime]:
    """Start hours (UTC) of the ``<table>/date=YYYY-MM-DD/hour=HH`` partitions under ``root``.

    ``root`` is a landing version root (``<landing>/v1``) or the curated root; partitions
    without any file are ignored, so an aborted write of an empty directory is not a partition.
    """
    hours = set()
    base = Path(root) / table
    for directory in base.glob("date=*/hour=*"):
        match = _PARTITION.search(directory.as_posix())
        if match and directory.is_dir() and any(p.is_file() for p in directory.rglob("*")):
            hours.add(datetime.fromisoformat(f"{match[1]}T{match[2]}:00:00").replace(tzinfo=UTC))
    return sorted(hours)
