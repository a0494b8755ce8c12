"""Real-time user features: click and view events folded into decayed counters and pushed.

Each user has one real-time row (view :data:`REALTIME_TABLE`): per-domain click, view and
dwell counters decayed with one half-life to ``rt_updated_ts`` (the newest event folded in),
and the last click. A row is a decayed state, and two states combine exactly:
``merge(a at ta, b at tb) = a * decay(T - ta) + b * decay(T - tb)`` at ``T = max(ta, tb)``,
with :func:`feature_repo.decay.decay_weight`, the function of the Spark feature build. So a
batch of events is first aggregated per user (:func:`aggregate_events` in pandas for serving,
:func:`spark_aggregate_events` in the streaming job) and then merged into the stored row
(:func:`merge_aggregates`); the order in which events arrive does not change the counters.

**Event-time guard.** An event that arrives after a newer one never overwrites a newer value:
``rt_updated_ts`` never moves back, the last click changes only for a newer click, and a late
event adds exactly its decayed weight at the stored time to the counters (as if it had come on
time) instead of replacing them. Feast's Redis store skips a write whose row timestamp is not
newer than the stored one (within one batch too since the fix of feast issue 5163), and its
SQLite store upserts blindly; so the guard lives here and holds for both, and each pushed row
gets a Feast timestamp newer than the stored row's (``rt_row_ts``), or Redis would drop the
late events' contributions. The read-merge-push sequence assumes one writer per user at a time
(partition the event stream by ``user_id``).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .decay import decay_weight
from .tables import (
    CREATED_TIMESTAMP,
    DOMAINS,
    EVENT_TIMESTAMP,
    USER_ID,
    Dtype,
    FeatureColumn,
    FeatureTable,
)

if TYPE_CHECKING:
    from feast import FeatureStore
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming import StreamingQuery

REALTIME_TABLE = "user_realtime_activity"
REALTIME_DECAYED = "user_request_decayed_activity"
REQUEST_SOURCE = "request_context"
REQUEST_TIME = "request_time_s"
UPDATED_TS = "rt_updated_ts"
LAST_CLICK_ITEM = "rt_last_click_item_id"
LAST_CLICK_TS = "rt_last_click_ts"
ROW_TS = "rt_row_ts"

ROW_TS_STEP_S = 0.001
"""A late-only update is stamped this much after the stored row (Redis keeps newer rows)."""

EVENT_COLUMNS = ("user_id", "item_id", "domain", "kind", "ts", "dwell_ms")
"""Columns of an event frame: ``ts`` is epoch seconds (float), ``dwell_ms`` 0 for clicks."""


class EventKind(StrEnum):
    CLICK = "click"
    VIEW = "view"


def decayed_counter_names() -> tuple[str, ...]:
    """The decayed counters of the real-time row, per domain: clicks, views, dwell ms."""
    return tuple(
        f"rt_{domain}_{what}" for domain in DOMAINS for what in ("clicks", "views", "dwell_ms")
    )


def realtime_table(half_life_hours: float) -> FeatureTable:
    """Declaration of the real-time row (same shape as the offline tables)."""
    counters = [
        FeatureColumn(name, Dtype.DOUBLE, f"decayed (half-life {half_life_hours} h) to updated")
        for name in decayed_counter_names()
    ]
    return FeatureTable(
        REALTIME_TABLE,
        USER_ID,
        (
            *counters,
            FeatureColumn(LAST_CLICK_ITEM, Dtype.STRING, "item of the newest click; null if none"),
            FeatureColumn(LAST_CLICK_TS, Dtype.DOUBLE, "its time, epoch seconds; null if none"),
            FeatureColumn(UPDATED_TS, Dtype.DOUBLE, "time of the newest event folded, epoch s"),
            FeatureColumn(ROW_TS, Dtype.DOUBLE, "Feast timestamp of the row, epoch s"),
        ),
        "real-time per-user activity pushed from serving events and the streaming job",
    )


def events_frame(events: Sequence[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Validate events into a frame of :data:`EVENT_COLUMNS`.

    Args:
        events: Records or a frame with ``user_id``, ``item_id``, ``domain``, ``kind``
            (click/view), ``ts`` (epoch seconds or aware datetimes) and ``dwell_ms``.

    Raises:
        ValueError: A missing column, unknown kind or domain, non-finite time, negative dwell.
    """
    frame = pd.DataFrame(events).copy() if not isinstance(events, pd.DataFrame) else events.copy()
    if frame.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in EVENT_COLUMNS})
    if "dwell_ms" not in frame:
        frame["dwell_ms"] = 0
    missing = [name for name in EVENT_COLUMNS if name not in frame]
    if missing:
        raise ValueError(f"events lack columns {missing}")
    if not pd.api.types.is_numeric_dtype(frame["ts"]):
        stamps = pd.to_datetime(frame["ts"], utc=True)
        frame["ts"] = stamps.astype("int64") / 1e9
    frame["ts"] = frame["ts"].astype(float)
    frame["dwell_ms"] = frame["dwell_ms"].fillna(0).astype(float)
    bad_kind = ~frame["kind"].isin([kind.value for kind in EventKind])
    if bad_kind.any():
        raise ValueError(f"unknown event kinds {sorted(set(frame['kind'][bad_kind]))}")
    bad_domain = ~frame["domain"].isin([domain.value for domain in DOMAINS])
    if bad_domain.any():
        raise ValueError(f"unknown domains {sorted(set(frame['domain'][bad_domain]))}")
    if not np.isfinite(frame["ts"]).all():
        raise ValueError("event ts must be finite")
    if (frame["dwell_ms"] < 0).any():
        raise ValueError("dwell_ms must be >= 0")
    if frame["user_id"].isna().any() or frame["item_id"].isna().any():
        raise ValueError("user_id and item_id are required")
    return frame[list(EVENT_COLUMNS)]


def count_late(events: pd.DataFrame, stored_updated: pd.Series) -> int:
    """Events at or before their user's stored ``rt_updated_ts`` (NaN: no row yet)."""
    stored = events["user_id"].map(stored_updated).astype(float).to_numpy()
    return int((np.isfinite(stored) & (events["ts"].to_numpy() <= stored)).sum())


def aggregate_events(events: pd.DataFrame, half_life_hours: float) -> pd.DataFrame:
    """Per user, the events' counters decayed to the user's newest event time.

    Args:
        events: Frame of :func:`events_frame`.
        half_life_hours: Half-life of the counters.

    Returns:
        One row per user: ``user_id``, ``rt_updated_ts`` (newest event time), every counter of
        :func:`decayed_counter_names`, the newest click's item and time (null if none) and
        ``events`` (how many were folded).
    """
    columns = [
        USER_ID,
        UPDATED_TS,
        *decayed_counter_names(),
        LAST_CLICK_ITEM,
        LAST_CLICK_TS,
        "events",
    ]
    if events.empty:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    newest = events.groupby("user_id")["ts"].transform("max").to_numpy()
    weight = decay_weight(newest - events["ts"].to_numpy(), half_life_hours)
    is_click = (events["kind"] == EventKind.CLICK).to_numpy()
    is_view = ~is_click
    parts = pd.DataFrame({USER_ID: events["user_id"].to_numpy()})
    for domain in DOMAINS:
        in_domain = (events["domain"] == domain).to_numpy()
        parts[f"rt_{domain}_clicks"] = weight * (is_click & in_domain)
        parts[f"rt_{domain}_views"] = weight * (is_view & in_domain)
        parts[f"rt_{domain}_dwell_ms"] = (
            weight * (is_view & in_domain) * events["dwell_ms"].to_numpy()
        )
    out = parts.groupby(USER_ID, sort=True).sum()
    out[UPDATED_TS] = events.groupby("user_id")["ts"].max()
    out["events"] = events.groupby("user_id").size()
    clicks = events[is_click].sort_values("ts", kind="stable")
    last = clicks.groupby("user_id").tail(1).set_index("user_id")
    out[LAST_CLICK_ITEM] = last["item_id"].reindex(out.index)
    out[LAST_CLICK_TS] = last["ts"].reindex(out.index)
    return out.reset_index()[columns]


def merge_aggregates(
    stored: pd.DataFrame, aggregates: pd.DataFrame, half_life_hours: float
) -> pd.DataFrame:
    """New real-time rows: the stored state and the batch's aggregate combined at the later time.

    Args:
        stored: Stored rows indexed by ``user_id`` (counters, last click, ``rt_updated_ts``,
            ``rt_row_ts``; NaN for users without a row). Must cover every aggregated user.
        aggregates: Output of :func:`aggregate_events` or :func:`spark_aggregate_events`.
        half_life_hours: Half-life of the counters.

    Returns:
        Rows ready for ``FeatureStore.push``: ``user_id``, ``event_timestamp`` (newer than the
        stored row's), ``created_timestamp`` and every real-time feature.
    """
    rows = aggregates.set_index(USER_ID)
    before = stored.reindex(rows.index)
    t0 = before[UPDATED_TS].astype(float).to_numpy()
    tb = rows[UPDATED_TS].astype(float).to_numpy()
    known = np.isfinite(t0)
    t_new = np.where(known, np.fmax(t0, tb), tb)
    keep_old = np.where(known, decay_weight(np.where(known, t_new - t0, 0.0), half_life_hours), 0.0)
    bring_new = decay_weight(t_new - tb, half_life_hours)
    merged = pd.DataFrame(index=rows.index)
    for name in decayed_counter_names():
        old = before[name].astype(float).fillna(0.0).to_numpy()
        merged[name] = old * keep_old + rows[name].astype(float).to_numpy() * bring_new
    old_click = before[LAST_CLICK_TS].astype(float).to_numpy()
    new_click = rows[LAST_CLICK_TS].astype(float).to_numpy()
    take_new = np.isfinite(new_click) & ~(np.isfinite(old_click) & (old_click >= new_click))
    last_item = rows[LAST_CLICK_ITEM].where(take_new, before[LAST_CLICK_ITEM]).astype(object)
    merged[LAST_CLICK_ITEM] = last_item.where(last_item.notna(), None)
    merged[LAST_CLICK_TS] = np.where(take_new, new_click, old_click)
    merged[UPDATED_TS] = t_new
    previous_row = before[ROW_TS].astype(float).to_numpy()
    row_ts = np.where(
        np.isfinite(previous_row), np.fmax(t_new, previous_row + ROW_TS_STEP_S), t_new
    )
    merged[ROW_TS] = row_ts
    merged[EVENT_TIMESTAMP] = pd.to_datetime(row_ts, unit="s", utc=True)
    merged[CREATED_TIMESTAMP] = pd.Timestamp(datetime.now(UTC))
    return merged.reset_index()


def decay_to_request(
    stored: pd.DataFrame, request_time_s: pd.Series | np.ndarray | float, half_life_hours: float
) -> pd.DataFrame:
    """Stored real-time counters decayed from ``rt_updated_ts`` to the request time.

    The request-time half of the one decay definition: the on-demand view
    ``user_request_decayed_activity`` and serving's fast path both call this.

    Args:
        stored: Rows with every counter of :func:`decayed_counter_names` and
            ``rt_updated_ts`` (NaN/None for users without a real-time row).
        request_time_s: Request time(s), epoch seconds, scalar or one per row.
        half_life_hours: Half-life of the counters.

    Returns:
        Columns ``<counter>_now``, ``shape (len(stored), 9)``; zeros for users without a row.
        A request time before the update (clock skew) counts as the update time.
    """
    updated = pd.to_numeric(stored[UPDATED_TS], errors="coerce").to_numpy(dtype=float)
    now = np.broadcast_to(np.asarray(request_time_s, dtype=float), updated.shape)
    known = np.isfinite(updated)
    ages = np.where(known, np.maximum(now - np.where(known, updated, 0.0), 0.0), 0.0)
    weights = np.where(known, decay_weight(ages, half_life_hours), 0.0)
    out = pd.DataFrame(index=stored.index)
    for name in decayed_counter_names():
        values = pd.to_numeric(stored[name], errors="coerce").fillna(0.0).to_numpy(dtype=float)
        out[f"{name}_now"] = values * weights
    return out


@dataclass
class PushResult:
    """What one push did.

    Attributes:
        events: Events offered.
        late: Events older than their user's stored row: folded into the counters at the
            stored time, leaving ``rt_updated_ts`` and the last click alone.
        rows: User rows pushed.
        read_ms: Time reading the stored rows.
        fold_ms: Time aggregating and merging.
        push_ms: Time writing (``FeatureStore.push`` or the direct Redis writer).
    """

    events: int
    late: int
    rows: int
    read_ms: float = 0.0
    fold_ms: float = 0.0
    push_ms: float = 0.0
    pushed: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)


class RealtimeUpdater:
    """Folds events into the users' real-time rows and pushes them through Feast.

    Args:
        store: A Feast store whose registry holds the real-time view (``store.apply``).
        half_life_hours: Half-life of the counters (the view's, see ``FeastParams``).
        reader: Optional fast reader of the stored rows (``online.RedisFeatureReader``);
            without it the rows are read with ``get_online_features``.
        writer: Optional :class:`RedisRealtimeWriter`; without it rows go through
            ``FeatureStore.push`` (the only way for the SQLite store).
    """

    def __init__(
        self,
        store: FeatureStore,
        half_life_hours: float,
        reader: Any = None,
        writer: RedisRealtimeWriter | None = None,
    ) -> None:
        from .data_sources import REALTIME_PUSH_SOURCE

        self.store = store
        self.half_life_hours = half_life_hours
        self.reader = reader
        self.writer = writer
        self.push_source = REALTIME_PUSH_SOURCE
        self.features = list(realtime_table(half_life_hours).feature_names)

    def stored_rows(self, user_ids: Sequence[str]) -> pd.DataFrame:
        """The stored real-time rows of ``user_ids``, indexed by ``user_id`` (NaN if none)."""
        if self.reader is not None:
            frame = self.reader.read_frame(REALTIME_TABLE, user_ids, self.features)
        else:
            response = self.store.get_online_features(
                features=[f"{REALTIME_TABLE}:{name}" for name in self.features],
                entity_rows=[{USER_ID: user} for user in user_ids],
            )
            frame = response.to_df()
        frame = frame.set_index(USER_ID)
        for name in self.features:
            if name != LAST_CLICK_ITEM:
                frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
        return frame

    def push_events(self, events: Sequence[dict[str, Any]] | pd.DataFrame) -> PushResult:
        """Aggregate, merge and push a batch of events; returns counts and timings."""
        frame = events_frame(events)
        if frame.empty:
            return PushResult(events=0, late=0, rows=0)
        return self._push(frame, None)

    def push_aggregates(self, aggregates: pd.DataFrame) -> PushResult:
        """Merge and push per-user aggregates (the streaming job's micro-batch output)."""
        if aggregates.empty:
            return PushResult(events=0, late=0, rows=0)
        return self._push(None, aggregates)

    def _push(self, frame: pd.DataFrame | None, aggregates: pd.DataFrame | None) -> PushResult:
        from feast.data_source import PushMode

        start = time.perf_counter()
        source = frame if frame is not None else aggregates
        users = sorted(source[USER_ID].unique())  # type: ignore[index]
        stored = self.stored_rows(users)
        read_done = time.perf_counter()
        if frame is not None:
            late = count_late(frame, stored[UPDATED_TS])
            aggregates = aggregate_events(frame, self.half_life_hours)
        else:
            # Per user, whole aggregates older than the stored row (a lower bound of events).
            t0 = aggregates[USER_ID].map(stored[UPDATED_TS]).astype(float)  # type: ignore[index]
            older = (aggregates[UPDATED_TS].astype(float) <= t0).to_numpy()  # type: ignore[index]
            late = int(aggregates.loc[older, "events"].sum())  # type: ignore[union-attr]
        rows = merge_aggregates(stored, aggregates, self.half_life_hours)  # type: ignore[arg-type]
        fold_done = time.perf_counter()
        if self.writer is not None:
            self.writer.write(rows)
        else:
            self.store.push(self.push_source, rows, to=PushMode.ONLINE)
        done = time.perf_counter()
        return PushResult(
            events=int(aggregates["events"].sum()),  # type: ignore[index]
            late=late,
            rows=len(rows),
            read_ms=(read_done - start) * 1e3,
            fold_ms=(fold_done - read_done) * 1e3,
            push_ms=(done - fold_done) * 1e3,
            pushed=rows,
        )


# --- direct Redis writes ------------------------------------------------------------------

GUARD_FIELD_PREFIX = "_muma_ts_ns:"
"""Hash field holding the row's Feast timestamp as 20-digit nanoseconds, for the Lua guard."""

_GUARDED_HSET = """
local previous = redis.call('HGET', KEYS[1], ARGV[1])
if previous and previous >= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], unpack(ARGV, 3))
return 1
"""
"""Write a row only if it is newer than the stored one, atomically (Redis runs a script alone).
Zero-padded decimal strings compare like the numbers they spell."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_double(value: float) -> bytes:
    """``Value(double_val=value)`` serialised; NaN (missing) is the empty ``Value``."""
    if value != value:
        return b""
    return b"\x29" + struct.pack("<d", value)


def encode_string(value: str | None) -> bytes:
    """``Value(string_val=value)`` serialised; ``None`` is the empty ``Value``."""
    if value is None:
        return b""
    raw = value.encode("utf-8")
    return b"\x12" + _varint(len(raw)) + raw


def encode_timestamp(seconds: int, nanos: int) -> bytes:
    """``google.protobuf.Timestamp`` serialised (what Feast keeps in ``_ts:<view>``)."""
    out = b""
    if seconds:
        out += b"\x08" + _varint(seconds)
    if nanos:
        out += b"\x10" + _varint(nanos)
    return out


class RedisRealtimeWriter:
    """Writes real-time rows straight into Feast's Redis layout, guarded atomically.

    Same keys, hash fields and protobuf values as Feast's Redis store (see
    :mod:`feature_repo.online`), so ``get_online_features`` and the fast reader read the rows;
    plus one field, ``_muma_ts_ns:<view>``, that a Lua script compares so that an older row
    never replaces a newer one even with concurrent writers (Feast's own check reads and
    writes in two round trips). One pipelined round trip per batch.

    Args:
        client: ``redis.Redis`` of the online store (binary replies).
        project: Feast project (key suffix).
        half_life_hours: Half-life of the counters (selects the view's schema).
        key_ttl_seconds: Optional key expiry, as Feast's ``key_ttl_seconds``.
    """

    def __init__(
        self,
        client: Any,
        project: str,
        half_life_hours: float,
        key_ttl_seconds: int | None = None,
    ) -> None:
        from .online import entity_key_prefix, feature_field

        table = realtime_table(half_life_hours)
        self.client = client
        self.key_ttl_seconds = key_ttl_seconds
        self.prefix = entity_key_prefix(USER_ID)
        self.suffix = project.encode("utf-8")
        self.fields = {name: feature_field(REALTIME_TABLE, name) for name in table.feature_names}
        self.ts_field = f"_ts:{REALTIME_TABLE}".encode()
        self.guard_field = f"{GUARD_FIELD_PREFIX}{REALTIME_TABLE}".encode()
        self.script = client.register_script(_GUARDED_HSET)

    def write(self, rows: pd.DataFrame) -> int:
        """Write rows of :func:`merge_aggregates`; returns how many were newer and written."""
        from .online import redis_key

        if rows.empty:
            return 0
        nanos = (
            pd.to_datetime(rows[EVENT_TIMESTAMP], utc=True)
            .astype("datetime64[ns, UTC]")
            .astype("int64")
            .to_numpy()
        )
        columns = {name: rows[name].tolist() for name in self.fields if name != LAST_CLICK_ITEM}
        last_items = rows[LAST_CLICK_ITEM].tolist()
        pipe = self.client.pipeline(transaction=False)
        for index, user in enumerate(rows[USER_ID].tolist()):
            key = redis_key(self.prefix, user, self.suffix)
            stamp = int(nanos[index])
            args: list[bytes | str] = [self.guard_field, f"{stamp:020d}"]
            args += [self.ts_field, encode_timestamp(stamp // 10**9, stamp % 10**9)]
            for name, values in columns.items():
                args += [self.fields[name], encode_double(float(values[index]))]
            item = last_items[index]
            args += [
                self.fields[LAST_CLICK_ITEM],
                encode_string(None if item is None or item != item else str(item)),
            ]
            self.script(keys=[key], args=args, client=pipe)
            if self.key_ttl_seconds:
                pipe.expire(key, self.key_ttl_seconds)
        replies = pipe.execute()
        step = 2 if self.key_ttl_seconds else 1
        return int(sum(replies[::step]))


# --- Spark Structured Streaming -------------------------------------------------------------


@dataclass(frozen=True)
class StreamSource:
    """Where the streaming job reads events.

    Attributes:
        path: Directory of JSON Lines event files (the local file source).
        kafka_bootstrap: Kafka bootstrap servers; when set, ``path`` is ignored.
        kafka_topic: Kafka topic of JSON events.
        max_files_per_trigger: File source batch size.
    """

    path: Path | None = None
    kafka_bootstrap: str | None = None
    kafka_topic: str = "muma-events"
    max_files_per_trigger: int = 100


def event_schema():
    """Spark schema of an event: ``ts`` is an ISO-8601 timestamp, ``dwell_ms`` optional."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

    return StructType(
        [
            StructField("user_id", StringType(), False),
            StructField("item_id", StringType(), False),
            StructField("domain", StringType(), False),
            StructField("kind", StringType(), False),
            StructField("ts", TimestampType(), False),
            StructField("dwell_ms", LongType(), True),
        ]
    )


def read_event_stream(spark: SparkSession, source: StreamSource) -> DataFrame:
    """The streaming DataFrame of events: a JSON file directory, or Kafka when configured."""
    from pyspark.sql import functions as F

    if source.kafka_bootstrap:
        raw = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", source.kafka_bootstrap)
            .option("subscribe", source.kafka_topic)
            .load()
        )
        parsed = raw.select(
            F.from_json(F.col("value").cast("string"), event_schema()).alias("event")
        ).select("event.*")
    elif source.path is not None:
        parsed = (
            spark.readStream.schema(event_schema())
            .option("maxFilesPerTrigger", source.max_files_per_trigger)
            .json(str(source.path))
        )
    else:
        raise ValueError("StreamSource needs a path or kafka_bootstrap")
    return parsed.where(
        F.col("user_id").isNotNull()
        & F.col("ts").isNotNull()
        & F.col("kind").isin([kind.value for kind in EventKind])
        & F.col("domain").isin([domain.value for domain in DOMAINS])
    )


def spark_aggregate_events(events: DataFrame, half_life_hours: float) -> DataFrame:
    """Spark twin of :func:`aggregate_events` (same columns, same decay function).

    Args:
        events: Events with ``user_id``, ``item_id``, ``domain``, ``kind``, ``ts`` (epoch
            seconds, double) and ``dwell_ms``.
        half_life_hours: Half-life of the counters.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from .decay import spark_decay_weight

    newest = F.max("ts").over(Window.partitionBy("user_id"))
    weighted = events.withColumn(
        "weight", spark_decay_weight(newest - F.col("ts"), half_life_hours)
    )
    sums = []
    for domain in DOMAINS:
        in_domain = F.col("domain") == domain
        click = in_domain & (F.col("kind") == EventKind.CLICK.value)
        view = in_domain & (F.col("kind") == EventKind.VIEW.value)
        sums += [
            F.sum(F.when(click, F.col("weight")).otherwise(0.0)).alias(f"rt_{domain}_clicks"),
            F.sum(F.when(view, F.col("weight")).otherwise(0.0)).alias(f"rt_{domain}_views"),
            F.sum(
                F.when(view, F.col("weight") * F.coalesce(F.col("dwell_ms"), F.lit(0))).otherwise(
                    0.0
                )
            ).alias(f"rt_{domain}_dwell_ms"),
        ]
    is_click = F.col("kind") == EventKind.CLICK.value
    return weighted.groupBy("user_id").agg(
        F.max("ts").alias(UPDATED_TS),
        *sums,
        F.max_by(F.when(is_click, F.col("item_id")), F.when(is_click, F.col("ts"))).alias(
            LAST_CLICK_ITEM
        ),
        F.max(F.when(is_click, F.col("ts"))).alias(LAST_CLICK_TS),
        F.count(F.lit(1)).alias("events"),
    )


@dataclass
class StreamTotals:
    """Running totals of a streaming job, updated after every micro-batch."""

    batches: int = 0
    events: int = 0
    late: int = 0
    rows: int = 0
    push_ms: list[float] = field(default_factory=list)


def process_micro_batch(
    batch: DataFrame, updater: RealtimeUpdater, totals: StreamTotals | None = None
) -> PushResult:
    """One micro-batch: aggregate per user in Spark, merge with the stored rows, push."""
    from pyspark.sql import functions as F

    events = batch.withColumn("ts", F.col("ts").cast("double"))
    aggregates = spark_aggregate_events(events, updater.half_life_hours).toPandas()
    result = updater.push_aggregates(aggregates)
    if totals is not None:
        totals.batches += 1
        totals.events += result.events
        totals.late += result.late
        totals.rows += result.rows
        totals.push_ms.append(result.push_ms)
    return result


def start_stream(
    spark: SparkSession,
    source: StreamSource,
    updater: RealtimeUpdater,
    checkpoint_dir: Path,
    available_now: bool = False,
    processing_time: str = "1 second",
    totals: StreamTotals | None = None,
) -> StreamingQuery:
    """Start the streaming job that aggregates events and pushes them in micro-batches.

    Args:
        spark: The session.
        source: File directory or Kafka topic of events.
        updater: Pushes the micro-batches' rows through Feast.
        checkpoint_dir: Streaming checkpoint (offsets, so a restart does not re-push).
        available_now: Process what is there now and stop (tests, backfills).
        processing_time: Micro-batch interval otherwise.
        totals: Optional running totals, updated per micro-batch.
    """
    writer = read_event_stream(spark, source).writeStream.foreachBatch(
        lambda batch, _batch_id: process_micro_batch(batch, updater, totals)
    )
    writer = writer.option("checkpointLocation", str(checkpoint_dir))
    if available_now:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=processing_time)
    return writer.start()
