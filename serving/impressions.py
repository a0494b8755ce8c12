"""Writing what the service served and received: landing-zone records and served features.

- Impressions (one per shown item: request id, position, policy, model version, exact
  propensity) and events go to the landing zone in the data contract, as gzip JSON Lines
  in their hour's partition, so ingest, off-policy evaluation and monitoring read serving
  logs exactly like the simulator's or an importer's.
- The feature values each impression was scored with go to a Parquet sidecar,
  ``<data_root>/serving/features/date=YYYY-MM-DD/hour=HH/part-*.parquet``, so monitoring
  compares what was served with what training saw.

Requests only append to memory; a background thread writes every ``flush_seconds`` (or at
``flush_records``) one new file per partition with a unique part name, written to a hidden
temporary name and renamed, so readers (Spark skips dot-files) never see half a file.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from muma.contract import Source
from muma.landing import write_partition_bytes


def hour_of(epoch_s: float) -> datetime:
    """Start of the UTC hour holding ``epoch_s``."""
    return datetime.fromtimestamp(int(epoch_s) // 3600 * 3600, UTC)


def iso_utc(epoch_s: float) -> str:
    """ISO-8601 with milliseconds and ``Z``, the landing zone's timestamp form."""
    stamp = datetime.fromtimestamp(epoch_s, UTC)
    return f"{stamp:%Y-%m-%dT%H:%M:%S}.{stamp.microsecond // 1000:03d}Z"


def _stack_columns(parts: list[dict[str, list[Any]]]) -> dict[str, list[Any]]:
    """Columns of several record batches one after another (a column a batch lacks is None),
    in the order the columns first appear."""
    names = list(dict.fromkeys(name for part in parts for name in part))
    out: dict[str, list[Any]] = {name: [] for name in names}
    for part in parts:
        rows = len(next(iter(part.values()))) if part else 0
        for name in names:
            out[name].extend(part.get(name) or [None] * rows)
    return out


def _arrow_table(columns: dict[str, list[Any]]) -> Any:
    """A ``pyarrow.Table`` of the columns, typed as pandas would write them to Parquet.

    Arrow infers each column's type from its values (in C++, far cheaper than a pandas
    frame of Python objects): NaN is null as in ``DataFrame.to_parquet``, and timestamps
    keep nanoseconds and their zone, so the file reads back the frame the pandas writer
    gave (tested).
    """
    import pandas as pd
    import pyarrow as pa

    arrays = {}
    for name, values in columns.items():
        first = next((value for value in values if value is not None), None)
        if isinstance(first, pd.Timestamp):
            arrays[name] = pa.array(pd.DatetimeIndex(values))
        else:
            arrays[name] = pa.array(values, from_pandas=True)
    return pa.table(arrays)


def features_dir(data_root: Path) -> Path:
    """Root of the served-features sidecar."""
    return Path(data_root) / "serving" / "features"


def plain_value(value: Any, width: int) -> Any:
    """A feature value as the sidecar stores it: float, list of floats, or None.

    Args:
        value: The value as read from the online store.
        width: The column's width (0: a scalar column).
    """
    if width:
        if isinstance(value, list | tuple | np.ndarray):
            return [float(v) for v in value]
        return None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class FeatureRecord:
    """Served features of one request's impressions, kept as the request had them.

    Queuing one costs the request next to nothing; the writer thread converts the values
    (:func:`plain_value`) and expands them to one row per impression
    (:meth:`columns`): the impression's ``meta``, then the user's columns (the same on every
    row), then the item's, a later part's value winning when two parts share a name.

    Attributes:
        meta: Column -> ``N`` values, one per impression (event id, request id, ids,
            position, policy, model version, propensity, degraded...).
        user: The user's raw feature values by name (the featurizer's user columns).
        user_widths: Each user column's name and width (0: scalar), in output order.
        seq_length: Length of the user's behaviour sequence.
        items: ``N x C`` object array, the raw item values of each impression.
        item_widths: Each item column's name and width, the order of ``items``' columns.
        hour: Partition hour.
    """

    meta: dict[str, list[Any]]
    user: dict[str, Any]
    user_widths: list[tuple[str, int]]
    seq_length: int
    items: np.ndarray
    item_widths: list[tuple[str, int]]
    hour: datetime

    def __len__(self) -> int:
        return len(self.items)

    def columns(self) -> dict[str, list[Any]]:
        """Column -> ``N`` values in the sidecar's form (see the class docstring)."""
        rows = len(self)
        user = {name: plain_value(self.user.get(name), width) for name, width in self.user_widths}
        user["seq_length"] = self.seq_length
        items = {
            name: [plain_value(value, width) for value in self.items[:, index].tolist()]
            for index, (name, width) in enumerate(self.item_widths)
        }
        out: dict[str, list[Any]] = {}
        for name in {**self.meta, **user, **items}:
            if name in items:
                out[name] = items[name]
            elif name in user:
                out[name] = [user[name]] * rows
            else:
                out[name] = self.meta[name]
        return out


@dataclass
class LogStats:
    written: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    files: int = 0
    failures: int = 0
    last_error: str | None = None


class ServingLog:
    """Buffered, thread-safe writer of landing records and served features.

    Args:
        landing_root: Landing zone root (``Settings.landing_root``).
        data_root: Data root (the features sidecar lives under it).
        flush_seconds: Write interval of the background thread.
        flush_records: Write as soon as this many records wait.
    """

    def __init__(
        self, landing_root: Path, data_root: Path, flush_seconds: float, flush_records: int
    ) -> None:
        self.landing_root = Path(landing_root)
        self.features_root = features_dir(data_root)
        self.flush_seconds = flush_seconds
        self.flush_records = flush_records
        self._lock = threading.Lock()
        self._lines: dict[tuple[Source, datetime], list[bytes]] = defaultdict(list)
        self._features: list[FeatureRecord] = []
        self._pending = 0
        self._sequence = 0
        self._prefix = f"part-serve-{socket.gethostname()}-{os.getpid()}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = LogStats()

    # ------------------------------------------------------------------------- appending
    def append(self, source: Source, records: list[dict[str, Any]], epoch_s: list[float]) -> None:
        """Queue contract records of ``source``; ``epoch_s`` gives each one's partition."""
        lines = [orjson.dumps(record) for record in records]
        with self._lock:
            for line, stamp in zip(lines, epoch_s, strict=True):
                self._lines[(source, hour_of(stamp))].append(line)
            self._pending += len(lines)
            full = self._pending >= self.flush_records
        if full:
            self._wake.set()

    def append_features(self, record: FeatureRecord) -> None:
        with self._lock:
            self._features.append(record)

    # -------------------------------------------------------------------------- writing
    def _part(self) -> str:
        self._sequence += 1
        return f"{self._prefix}-{int(time.time() * 1000)}-{self._sequence:06d}"

    def flush(self) -> int:
        """Write everything queued now; returns the number of landing records written."""
        with self._lock:
            lines, self._lines = self._lines, defaultdict(list)
            features, self._features = self._features, []
            self._pending = 0
        written = 0
        for (source, hour), batch in lines.items():
            try:
                write_partition_bytes(
                    self.landing_root, source, hour, b"\n".join(batch) + b"\n", part=self._part()
                )
            except OSError as error:  # keep them for the next flush
                self._requeue(source, hour, batch, error)
                continue
            written += len(batch)
            self.stats.written[str(source)] += len(batch)
            self.stats.files += 1
        if features:
            try:
                self._write_features(features)
            except (OSError, ValueError) as error:
                self.stats.failures += 1
                self.stats.last_error = f"served features: {error}"
        return written

    def _requeue(self, source: Source, hour: datetime, batch: list[bytes], error: OSError) -> None:
        with self._lock:
            self._lines[(source, hour)][:0] = batch
            self._pending += len(batch)
        self.stats.failures += 1
        self.stats.last_error = f"{source}: {error}"

    def _write_features(self, records: list[FeatureRecord]) -> None:
        import pyarrow.parquet as pq

        by_hour: dict[datetime, list[FeatureRecord]] = defaultdict(list)
        for record in records:
            by_hour[record.hour].append(record)
        for hour, group in by_hour.items():
            directory = self.features_root / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
            directory.mkdir(parents=True, exist_ok=True)
            part = self._part()
            temporary = directory / f".{part}.parquet.tmp"
            table = _arrow_table(_stack_columns([record.columns() for record in group]))
            pq.write_table(table, temporary)
            os.replace(temporary, directory / f"{part}.parquet")

    # --------------------------------------------------------------------- the thread
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="serving-log", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def stop(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()
