"""Real-time user features: click and view events folded into decayed counters and pushed.

Each user has one real-time row (view :data:`REALTIME_TABLE`): per-domain click, view and
dwell counters decayed with one half-life to ``rt_updated_ts`` (the newest event folded in),
and the last click. A row is a decayed state, and two states combine exactly:
``merge(a at ta, b at tb) = a * decay(T - ta) + b * decay(T - tb)`` at ``T = max(ta, tb)``,
with :func:`feature_repo.decay.decay_weight`, the function of the Spark feature build. So a
batch of events is first aggregated per user (:func:`aggregate_batch` on numpy columns for
serving, :func:`spark_aggregate_events` in the streaming job) and then merged into the stored
row (:func:`merge_columns`); the order in which events arrive does not change the counters.
:func:`aggregate_events` and :func:`merge_aggregates` are the same two steps on pandas frames.

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
from collections.abc import Iterable, Sequence
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


Columns = dict[str, np.ndarray]
"""Named columns of equal length ``N``: one user (or event) per position."""


@dataclass(frozen=True)
class EventBatch:
    """Validated events as columns, each ``shape (N,)``.

    Attributes:
        user_id: User ids (``object`` array of ``str``).
        item_id: Item ids (``object`` array of ``str``).
        domain: Domains (``object``; values of :data:`DOMAINS`).
        kind: ``"click"`` or ``"view"`` (``object``).
        ts: Event times, epoch seconds (``float64``, finite).
        dwell_ms: Dwell in ms (``float64``, >= 0; 0 for clicks).
    """

    user_id: np.ndarray
    item_id: np.ndarray
    domain: np.ndarray
    kind: np.ndarray
    ts: np.ndarray
    dwell_ms: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def frame(self) -> pd.DataFrame:
        """The events as a frame of :data:`EVENT_COLUMNS`."""
        return pd.DataFrame({name: getattr(self, name) for name in EVENT_COLUMNS})


def _object_column(values: Iterable[Any]) -> np.ndarray:
    """A 1-d ``object`` array of ``values`` (never a 2-d array of sequences)."""
    items = list(values)
    column = np.empty(len(items), dtype=object)
    column[:] = items
    return column


def _seconds(values: list[Any] | np.ndarray) -> np.ndarray:
    """Epoch seconds from numbers, or from aware datetimes or ISO strings (NaN if unparseable)."""
    array = np.asarray(values)
    if array.dtype.kind in "iuf":
        return array.astype(float)
    if array.dtype.kind == "b":
        raise ValueError("event ts must be epoch seconds or timestamps, not booleans")
    if all(
        value is None or (isinstance(value, int | float) and not isinstance(value, bool))
        for value in values
    ):
        return np.array([np.nan if value is None else value for value in values], dtype=float)
    stamps = pd.to_datetime(pd.Series(list(values), dtype=object), utc=True, errors="coerce")
    seconds = stamps.astype("datetime64[ns, UTC]").astype("int64").to_numpy() / 1e9
    return np.where(stamps.isna().to_numpy(), np.nan, seconds)


def event_batch(events: Sequence[dict[str, Any]] | pd.DataFrame) -> EventBatch:
    """Validate events into an :class:`EventBatch` (without pandas for records).

    Args:
        events: Records or a frame with ``user_id``, ``item_id``, ``domain``, ``kind``
            (click/view), ``ts`` (epoch seconds or aware datetimes) and optional
            ``dwell_ms`` (missing or null: 0). Ids become strings.

    Raises:
        ValueError: A missing column, unknown kind or domain, missing or non-finite time,
            negative dwell, missing id.
    """
    if isinstance(events, pd.DataFrame):
        present = set(events.columns)
        count = len(events)

        def column(name: str) -> list[Any]:
            return events[name].tolist()
    else:
        records = list(events)
        present = {name for record in records for name in record}
        count = len(records)

        def column(name: str) -> list[Any]:
            return [record.get(name) for record in records]

    missing = [name for name in EVENT_COLUMNS if name not in present and name != "dwell_ms"]
    if count and missing:
        raise ValueError(f"events lack columns {missing}")
    if not count:
        empty = np.empty(0, dtype=object)
        return EventBatch(empty, empty, empty, empty, np.empty(0), np.empty(0))
    users, items = column("user_id"), column("item_id")
    if any(_missing(value) for value in users) or any(_missing(value) for value in items):
        raise ValueError("user_id and item_id are required")
    kinds, domains = column("kind"), column("domain")
    bad_kinds = set(kinds) - _KINDS
    if bad_kinds:
        raise ValueError(f"unknown event kinds {sorted(map(str, bad_kinds))}")
    bad_domains = set(domains) - _DOMAIN_NAMES
    if bad_domains:
        raise ValueError(f"unknown domains {sorted(map(str, bad_domains))}")
    ts = _seconds(column("ts"))
    if not np.isfinite(ts).all():
        raise ValueError("event ts must be finite epoch seconds or timestamps")
    if "dwell_ms" in present:
        dwell = np.array(
            [0.0 if _missing(value) else value for value in column("dwell_ms")], dtype=float
        )
    else:
        dwell = np.zeros(count)
    if (dwell < 0).any():
        raise ValueError("dwell_ms must be >= 0")
    return EventBatch(
        user_id=_object_column(str(value) for value in users),
        item_id=_object_column(str(value) for value in items),
        domain=_object_column(str(value) for value in domains),
        kind=_object_column(str(value) for value in kinds),
        ts=ts,
        dwell_ms=dwell,
    )


_KINDS = {kind.value for kind in EventKind}
_DOMAIN_NAMES = {str(domain.value) for domain in DOMAINS}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or value is pd.NaT


def events_frame(events: Sequence[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Validate events into a frame of :data:`EVENT_COLUMNS` (see :func:`event_batch`).

    Raises:
        ValueError: A missing column, unknown kind or domain, non-finite time, negative dwell.
    """
    return event_batch(events).frame()


def _batch_of_frame(events: pd.DataFrame) -> EventBatch:
    """An already validated events frame (:func:`events_frame`) as a batch, no checks."""
    return EventBatch(
        *(_object_column(events[name].tolist()) for name in EVENT_COLUMNS[:4]),
        events["ts"].to_numpy(dtype=float),
        events["dwell_ms"].to_numpy(dtype=float),
    )


def count_late(events: pd.DataFrame, stored_updated: pd.Series) -> int:
    """Events at or before their user's stored ``rt_updated_ts`` (NaN: no row yet)."""
    stored = events["user_id"].map(stored_updated).astype(float).to_numpy()
    return int((np.isfinite(stored) & (events["ts"].to_numpy() <= stored)).sum())


def aggregate_batch(events: EventBatch, half_life_hours: float) -> Columns:
    """Per user, the events' counters decayed to the user's newest event time.

    The one implementation of the aggregation (:func:`aggregate_events` wraps it in pandas;
    :func:`spark_aggregate_events` is its Spark twin, tested equal).

    Args:
        events: Validated events, ``N`` of them.
        half_life_hours: Half-life of the counters.

    Returns:
        Columns of ``U`` users sorted by id: ``user_id``, ``rt_updated_ts`` (newest event
        time), every counter of :func:`decayed_counter_names`, the newest click's item and
        time (``None``/NaN if none; the later arrival wins a tie) and ``events`` (how many
        were folded).
    """
    users, inverse = np.unique(events.user_id.astype(str), return_inverse=True)
    inverse = inverse.reshape(-1)
    count = len(users)
    newest = np.full(count, -np.inf)
    np.maximum.at(newest, inverse, events.ts)
    weight = decay_weight(newest[inverse] - events.ts, half_life_hours)
    is_click = events.kind == EventKind.CLICK.value
    is_view = ~is_click
    out: Columns = {USER_ID: users.astype(object), UPDATED_TS: newest}
    for domain in DOMAINS:
        in_domain = events.domain == domain.value
        clicks, views = weight * (is_click & in_domain), weight * (is_view & in_domain)
        out[f"rt_{domain}_clicks"] = np.bincount(inverse, clicks, minlength=count)
        out[f"rt_{domain}_views"] = np.bincount(inverse, views, minlength=count)
        out[f"rt_{domain}_dwell_ms"] = np.bincount(
            inverse, views * events.dwell_ms, minlength=count
        )
    out["events"] = np.bincount(inverse, minlength=count)
    clicks_at = np.flatnonzero(is_click)
    in_time_order = clicks_at[np.argsort(events.ts[clicks_at], kind="stable")]
    newest_first = in_time_order[::-1]
    clicked_users, first = np.unique(inverse[newest_first], return_index=True)
    last = newest_first[first]
    out[LAST_CLICK_ITEM] = np.full(count, None, dtype=object)
    out[LAST_CLICK_ITEM][clicked_users] = events.item_id[last]
    out[LAST_CLICK_TS] = np.full(count, np.nan)
    out[LAST_CLICK_TS][clicked_users] = events.ts[last]
    return out


def aggregate_events(events: pd.DataFrame, half_life_hours: float) -> pd.DataFrame:
    """:func:`aggregate_batch` of a frame of :func:`events_frame`, as a frame (one row a user).

    Returns:
        Columns ``user_id``, ``rt_updated_ts``, the counters, the last click's item and time
        and ``events``.
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
    return pd.DataFrame(aggregate_batch(_batch_of_frame(events), half_life_hours))[columns]


def merge_columns(
    stored: Columns, aggregates: Columns, half_life_hours: float, now: datetime | None = None
) -> Columns:
    """New real-time rows: stored states and a batch's aggregates combined at the later time.

    The one implementation of the merge (:func:`merge_aggregates` wraps it in pandas).

    Args:
        stored: The stored rows of the aggregates' users, position by position: every feature
            of :func:`realtime_table` (NaN, or ``None`` for the last click's item, where a
            user has no row yet).
        aggregates: Output of :func:`aggregate_batch`, ``U`` users.
        half_life_hours: Half-life of the counters.
        now: The rows' created time (default: the clock).

    Returns:
        ``U`` rows ready to push: ``user_id``, every real-time feature, ``rt_row_ts`` newer
        than the stored row's, ``event_timestamp`` (``datetime64[ns]``, UTC, from
        ``rt_row_ts``) and ``created_timestamp``.
    """
    t0 = np.asarray(stored[UPDATED_TS], dtype=float)
    tb = np.asarray(aggregates[UPDATED_TS], dtype=float)
    known = np.isfinite(t0)
    t_new = np.where(known, np.fmax(t0, tb), tb)
    keep_old = np.where(known, decay_weight(np.where(known, t_new - t0, 0.0), half_life_hours), 0.0)
    bring_new = decay_weight(t_new - tb, half_life_hours)
    merged: Columns = {USER_ID: np.asarray(aggregates[USER_ID], dtype=object)}
    for name in decayed_counter_names():
        old = np.asarray(stored[name], dtype=float)
        old = np.where(np.isnan(old), 0.0, old)
        merged[name] = old * keep_old + np.asarray(aggregates[name], dtype=float) * bring_new
    old_click = np.asarray(stored[LAST_CLICK_TS], dtype=float)
    new_click = np.asarray(aggregates[LAST_CLICK_TS], dtype=float)
    take_new = np.isfinite(new_click) & ~(np.isfinite(old_click) & (old_click >= new_click))
    old_item = np.array([None if _missing(v) else v for v in stored[LAST_CLICK_ITEM]], object)
    merged[LAST_CLICK_ITEM] = np.where(take_new, aggregates[LAST_CLICK_ITEM], old_item)
    merged[LAST_CLICK_TS] = np.where(take_new, new_click, old_click)
    merged[UPDATED_TS] = t_new
    previous_row = np.asarray(stored[ROW_TS], dtype=float)
    row_ts = np.where(
        np.isfinite(previous_row), np.fmax(t_new, previous_row + ROW_TS_STEP_S), t_new
    )
    merged[ROW_TS] = row_ts
    merged[EVENT_TIMESTAMP] = epoch_nanos(row_ts).astype("datetime64[ns]")
    created = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    merged[CREATED_TIMESTAMP] = np.full(len(t_new), np.datetime64(created, "ns"))
    return merged


def epoch_nanos(seconds: np.ndarray) -> np.ndarray:
    """Epoch seconds (``float64``) to ``int64`` nanoseconds, rounding the fraction alone.

    ``seconds * 1e9`` would lose the last 8 bits (about 256 ns) at today's epoch values;
    whole seconds and the rounded fraction are added in integers, as pandas does.
    """
    whole = np.floor(seconds)
    return whole.astype("int64") * 1_000_000_000 + np.round((seconds - whole) * 1e9).astype("int64")


def rows_frame(rows: Columns) -> pd.DataFrame:
    """Rows of :func:`merge_columns` as the frame ``FeatureStore.push`` takes (UTC times)."""
    frame = pd.DataFrame(rows)
    for name in (EVENT_TIMESTAMP, CREATED_TIMESTAMP):
        frame[name] = frame[name].dt.tz_localize(UTC)
    return frame


def _columns_of_stored(stored: pd.DataFrame, users: np.ndarray) -> Columns:
    before = stored.reindex(pd.Index(users, name=USER_ID))
    return {name: before[name].to_numpy() for name in before.columns}


def merge_aggregates(
    stored: pd.DataFrame, aggregates: pd.DataFrame, half_life_hours: float
) -> pd.DataFrame:
    """:func:`merge_columns` on frames.

    Args:
        stored: Stored rows indexed by ``user_id`` (counters, last click, ``rt_updated_ts``,
            ``rt_row_ts``; NaN for users without a row). Must cover every aggregated user.
        aggregates: Output of :func:`aggregate_events` or :func:`spark_aggregate_events`.
        half_life_hours: Half-life of the counters.

    Returns:
        Rows ready for ``FeatureStore.push``: ``user_id``, ``event_timestamp`` (newer than the
        stored row's), ``created_timestamp`` and every real-time feature.
    """
    columns = {name: aggregates[name].to_numpy() for name in aggregates.columns}
    return rows_frame(
        merge_columns(_columns_of_stored(stored, columns[USER_ID]), columns, half_life_hours)
    )


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
        columns: The rows pushed, as :func:`merge_columns` returns them.
    """

    events: int
    late: int
    rows: int
    read_ms: float = 0.0
    fold_ms: float = 0.0
    push_ms: float = 0.0
    columns: Columns = field(default_factory=dict, repr=False)

    @property
    def pushed(self) -> pd.DataFrame:
        """The rows pushed, as the frame ``FeatureStore.push`` takes."""
        return rows_frame(self.columns) if self.columns else pd.DataFrame()


class RealtimeUpdater:
    """Folds events into the users' real-time rows and pushes them through Feast.

    Args:
        store: A Feast store whose registry holds the real-time view (``store.apply``).
        half_life_hours: Half-life of the counters (the view's, see ``FeastParams``).
        reader: Optional fast reader of the stored rows (``online.RedisFeatureReader``);
            without it the rows are read with ``get_online_features``.
        writer: Optional :class:`RedisRealtimeWriter`; without it rows go through
            ``FeatureStore.push`` (the only way for the SQLite store).

    With a reader and a writer, one event costs two Redis round trips and some numpy: no
    pandas on the way (a one-event push took 18-40 ms through pandas frames).
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
        columns = self.stored_columns(list(user_ids))
        frame = pd.DataFrame({name: columns[name] for name in self.features})
        frame.index = pd.Index(list(user_ids), name=USER_ID)
        return frame

    def stored_columns(self, user_ids: Sequence[str]) -> Columns:
        """The stored real-time features of ``user_ids``, in order (NaN/``None`` if no row)."""
        if self.reader is not None:
            got = self.reader.read({USER_ID: list(user_ids)})[USER_ID]
            columns: Columns = {
                name.split(":", 1)[1]: got.doubles[:, index]
                for index, name in enumerate(got.double_names)
            }
            for name, values in got.others.items():
                columns[name.split(":", 1)[1]] = np.array(values, dtype=object)
        else:
            response = self.store.get_online_features(
                features=[f"{REALTIME_TABLE}:{name}" for name in self.features],
                entity_rows=[{USER_ID: user} for user in user_ids],
            ).to_dict()
            columns = {}
            for name in self.features:
                values = response[name]
                if name == LAST_CLICK_ITEM:
                    columns[name] = np.array(values, dtype=object)
                else:
                    columns[name] = np.array(
                        [np.nan if value is None else value for value in values], dtype=float
                    )
        missing = [name for name in self.features if name not in columns]
        if missing:
            raise ValueError(f"the reader does not read the real-time features {missing}")
        return columns

    def push_events(self, events: Sequence[dict[str, Any]] | pd.DataFrame) -> PushResult:
        """Validate, aggregate, merge and push a batch of events; returns counts and timings.

        Raises:
            ValueError: Invalid events (see :func:`event_batch`); nothing is written.
        """
        start = time.perf_counter()
        batch = event_batch(events)
        if not len(batch):
            return PushResult(events=0, late=0, rows=0)
        aggregates = aggregate_batch(batch, self.half_life_hours)
        return self._push(aggregates, batch, start)

    def push_aggregates(self, aggregates: pd.DataFrame) -> PushResult:
        """Merge and push per-user aggregates (the streaming job's micro-batch output)."""
        if aggregates.empty:
            return PushResult(events=0, late=0, rows=0)
        start = time.perf_counter()
        columns = {name: aggregates[name].to_numpy() for name in aggregates.columns}
        columns[USER_ID] = np.array([str(user) for user in columns[USER_ID]], dtype=object)
        return self._push(columns, None, start)

    def _push(self, aggregates: Columns, batch: EventBatch | None, start: float) -> PushResult:
        from feast.data_source import PushMode

        fold_began = time.perf_counter()
        stored = self.stored_columns(list(aggregates[USER_ID]))
        read_done = time.perf_counter()
        stored_updated = np.asarray(stored[UPDATED_TS], dtype=float)
        if batch is not None:
            position = {user: index for index, user in enumerate(aggregates[USER_ID])}
            previous = stored_updated[[position[user] for user in batch.user_id]]
            late = int((np.isfinite(previous) & (batch.ts <= previous)).sum())
        else:
            # Per user, whole aggregates older than the stored row (a lower bound of events).
            older = np.asarray(aggregates[UPDATED_TS], dtype=float) <= stored_updated
            late = int(np.asarray(aggregates["events"])[older].sum())
        rows = merge_columns(stored, aggregates, self.half_life_hours)
        fold_done = time.perf_counter()
        if self.writer is not None:
            self.writer.write_columns(rows)
        else:
            self.store.push(self.push_source, rows_frame(rows), to=PushMode.ONLINE)
        done = time.perf_counter()
        return PushResult(
            events=int(np.asarray(aggregates["events"]).sum()),
            late=late,
            rows=len(rows[USER_ID]),
            read_ms=(read_done - fold_began) * 1e3,
            fold_ms=((fold_began - start) + (fold_done - read_done)) * 1e3,
            push_ms=(done - fold_done) * 1e3,
            columns=rows,
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


def encode_varint(value: int) -> bytes:
    """A non-negative integer as a protobuf varint."""
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
    return b"\x12" + encode_varint(len(raw)) + raw


def encode_timestamp(seconds: int, nanos: int) -> bytes:
    """``google.protobuf.Timestamp`` serialised (what Feast keeps in ``_ts:<view>``)."""
    out = b""
    if seconds:
        out += b"\x08" + encode_varint(seconds)
    if nanos:
        out += b"\x10" + encode_varint(nanos)
    return out


class RedisRealtimeWriter:
    """Writes real-time rows straight into Feast's Redis layout, guarded atomically.

    Same keys, hash fields and protobuf values as Feast's Redis store (see
    :mod:`feature_repo.online`), so ``get_online_features`` and the fast reader read the rows;
    plus one field, ``_muma_ts_ns:<view>``, that a Lua script compares so that an older row
    never replaces a newer one even with concurrent writers (Feast's own check reads and
    writes in two round trips). One pre-packed request per batch (``EVALSHA`` per row), sent
    with :class:`feature_repo.online.RawPipeline`; after a Redis restart the script is loaded
    again and the rows it refused are resent.

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
        import hashlib

        from .online import RawPipeline, entity_key_prefix, feature_field

        table = realtime_table(half_life_hours)
        self.client = client
        self.key_ttl_seconds = key_ttl_seconds
        self.prefix = entity_key_prefix(USER_ID)
        self.suffix = project.encode("utf-8")
        self.fields = {name: feature_field(REALTIME_TABLE, name) for name in table.feature_names}
        self.double_names = [name for name in table.feature_names if name != LAST_CLICK_ITEM]
        self.ts_field = f"_ts:{REALTIME_TABLE}".encode()
        self.guard_field = f"{GUARD_FIELD_PREFIX}{REALTIME_TABLE}".encode()
        self.script_sha = hashlib.sha1(_GUARDED_HSET.encode()).hexdigest().encode()
        self.pipeline = RawPipeline(client)
        # EVALSHA sha 1 key, then field-value pairs: the guard, _ts and every feature.
        self.argument_count = 4 + 2 * (2 + len(table.feature_names))

    def write(self, rows: pd.DataFrame) -> int:
        """Write rows of :func:`merge_aggregates`; returns how many were newer and written."""
        if rows.empty:
            return 0
        columns = {name: rows[name].to_numpy() for name in (USER_ID, *self.fields)}
        columns[EVENT_TIMESTAMP] = (
            pd.to_datetime(rows[EVENT_TIMESTAMP], utc=True)
            .dt.tz_convert(None)
            .astype("datetime64[ns]")
            .to_numpy()
        )
        return self.write_columns(columns)

    def write_columns(self, rows: Columns) -> int:
        """Write rows of :func:`merge_columns`; returns how many were newer and written.

        Raises:
            redis.exceptions.RedisError: Redis failed; rows already applied stay applied (a
                resend of the batch is refused for them by the guard, so it is safe).
        """
        from .online import resp_bulk

        users = rows[USER_ID]
        if not len(users):
            return 0
        nanos = np.asarray(rows[EVENT_TIMESTAMP]).astype("datetime64[ns]").astype("int64")
        doubles = np.column_stack(
            [np.asarray(rows[name], dtype=float) for name in self.double_names]
        )
        last_items = rows[LAST_CLICK_ITEM]
        field_bulks = [resp_bulk(self.fields[name]) for name in self.double_names]
        head = b"*%d\r\n$7\r\nEVALSHA\r\n" % self.argument_count + resp_bulk(self.script_sha)
        head += b"$1\r\n1\r\n"
        guard = resp_bulk(self.guard_field)
        ts_field = resp_bulk(self.ts_field)
        item_field = resp_bulk(self.fields[LAST_CLICK_ITEM])
        commands = []
        for index, user in enumerate(users):
            key = self._key(str(user))
            stamp = int(nanos[index])
            parts = [head, resp_bulk(key), guard, resp_bulk(b"%020d" % stamp), ts_field]
            parts.append(resp_bulk(encode_timestamp(stamp // 10**9, stamp % 10**9)))
            for field_bulk, value in zip(field_bulks, doubles[index].tolist(), strict=True):
                parts += [field_bulk, resp_bulk(encode_double(value))]
            item = last_items[index]
            parts += [item_field, resp_bulk(encode_string(None if _missing(item) else str(item)))]
            command = b"".join(parts)
            if self.key_ttl_seconds:
                command += b"*3\r\n$6\r\nEXPIRE\r\n" + resp_bulk(key)
                command += resp_bulk(b"%d" % self.key_ttl_seconds)
            commands.append(command)
        return self._send(commands)

    def _key(self, user: str) -> bytes:
        from .online import redis_key

        return redis_key(self.prefix, user, self.suffix)

    def _send(self, commands: list[bytes]) -> int:
        import redis

        from .online import resp_command

        per_row = 2 if self.key_ttl_seconds else 1
        replies = self.pipeline.execute(
            b"".join(commands), per_row * len(commands), raise_errors=False
        )
        written = replies[::per_row]
        unscripted = [i for i, reply in enumerate(written) if _is_noscript(reply)]
        if unscripted:  # Redis restarted or flushed its scripts: load and resend those rows
            self.pipeline.execute(resp_command(b"SCRIPT", b"LOAD", _GUARDED_HSET.encode()), 1)
            again = self.pipeline.execute(
                b"".join(commands[i] for i in unscripted), per_row * len(unscripted)
            )
            for index, reply in zip(unscripted, again[::per_row], strict=True):
                written[index] = reply
        errors = [reply for reply in replies if isinstance(reply, Exception)]
        errors = [error for error in errors if not _is_noscript(error)]
        if errors:
            raise redis.exceptions.ResponseError(str(errors[0]))
        return int(sum(written))


def _is_noscript(reply: Any) -> bool:
    return isinstance(reply, Exception) and str(reply).startswith("NOSCRIPT")


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
