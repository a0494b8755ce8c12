"""Online features for a request: the user's batch and real-time rows, friends' recent items,
and the candidates' item rows, from Feast's online store.

Two readers, one interface (:class:`OnlineFeatures`):

- :class:`RedisOnlineFeatures` (``MUMA_REDIS_URL`` set): :class:`feature_repo.online.
  RedisFeatureReader` plans, with the user and the friends, then the items, each read in one
  pre-packed request (:class:`feature_repo.online.RawPipeline`) straight from Feast's Redis
  layout; a user is two keys there, the batch and real-time hash (``user_id``) and the
  behaviour sequence (``seq_user_id``), read in the same request;
- :class:`FeastOnlineFeatures` (no Redis): ``FeatureStore.get_online_features`` on the
  embedded SQLite store (slow, for development and small deployments).

Both raise :class:`FeatureStoreDown` when the store cannot answer; :class:`StoreGuard`
then keeps the service degraded for ``redis_retry_seconds`` before trying again, so a dead
server costs one failed call, not one per request, and recovery needs no restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import pandas as pd

from feature_repo.config import FeaturesParams
from feature_repo.online import EntityFeatures, RawPipeline, RedisFeatureReader, ViewSpec
from feature_repo.realtime import (
    LAST_CLICK_ITEM,
    LAST_CLICK_TS,
    REALTIME_TABLE,
    UPDATED_TS,
    realtime_table,
)
from feature_repo.tables import (
    ITEM_ID,
    ITEM_STATS,
    SEQUENCE_USER_ID,
    USER_ID,
    USER_SEQUENCE,
    feature_tables,
)

if TYPE_CHECKING:
    from feature_repo.store import FeastParams
    from muma.settings import Settings

T = TypeVar("T")

SEQUENCE_FEATURES = ("seq_item_ids", "seq_ts")
ITEM_ATTRIBUTES = ("domain", "category", "creator_id")


class FeatureStoreDown(RuntimeError):
    """The online store did not answer (connection refused, timeout, or backing off)."""


@dataclass
class UserRow:
    """One user's online features.

    Attributes:
        user_id: The user.
        values: Feature name -> value for every user-side feature read (dense columns and
            the behaviour sequence, newest first); NaN/None when the user has no row.
        found: Whether any batch user view had a row (False: a cold-start user).
        realtime_updated_s: ``rt_updated_ts`` of the real-time row (NaN without one).
    """

    user_id: str
    values: dict[str, Any]
    found: bool
    realtime_updated_s: float = float("nan")


@dataclass
class FriendsRecent:
    """Recent items of some friends, newest first per friend, interleaved across friends."""

    items: list[str] = field(default_factory=list)


class OnlineFeatures(Protocol):
    """What serving needs from an online store."""

    def read_user(self, user_id: str, friends: Sequence[str]) -> tuple[UserRow, FriendsRecent]:
        """The user's row and the friends' recent items, in one round trip where possible."""
        ...

    def read_items(self, item_ids: Sequence[str]) -> pd.DataFrame:
        """``item_hourly_stats`` rows of ``item_ids`` in order; column ``found`` marks hits."""
        ...

    def ping(self) -> None:
        """Raise :class:`FeatureStoreDown` unless the store answers."""
        ...


def user_views(
    features: FeaturesParams, needed: Sequence[str], half_life_hours: float
) -> dict[str, Sequence[ViewSpec]]:
    """The user views (and only the features) a model needs, plus sequence and real time.

    Returns:
        The views by join key: the batch and real-time views on ``user_id``, the behaviour
        sequence on ``seq_user_id`` (a Redis key of its own).

    Raises:
        ValueError: A needed feature is in no user view.
    """
    tables = [t for t in feature_tables(features).values() if t.entity_key == USER_ID]
    by_table: dict[str, list[str]] = {}
    missing = []
    for name in needed:
        if name in SEQUENCE_FEATURES:
            continue
        table = next((t for t in tables if name in t.feature_names), None)
        if table is None:
            missing.append(name)
        else:
            by_table.setdefault(table.name, []).append(name)
    if missing:
        raise ValueError(f"the model needs user features that no user view holds: {missing}")
    specs = [
        ViewSpec.from_table(table, by_table[table.name])
        for table in tables
        if table.name in by_table and table.name != USER_SEQUENCE
    ]
    realtime = realtime_table(half_life_hours)
    specs.append(ViewSpec.from_table(realtime, (LAST_CLICK_ITEM, LAST_CLICK_TS, UPDATED_TS)))
    sequence = next(t for t in tables if t.name == USER_SEQUENCE)
    return {USER_ID: specs, sequence.join_key: [ViewSpec.from_table(sequence, SEQUENCE_FEATURES)]}


def merge_recent(values: dict[str, Any], last_item: Any, last_ts: float) -> dict[str, Any]:
    """Put the real-time last click in front of the batch sequence when it is newer.

    The batch sequence is as of the last feature build; a click since then is exactly what
    the next build would put first, so the model sees it now.
    """
    items = list(values.get("seq_item_ids") or [])
    stamps = list(values.get("seq_ts") or [])
    if not isinstance(last_item, str) or not np.isfinite(last_ts):
        return values
    if stamps and last_ts <= float(stamps[0]):
        return values
    out = dict(values)
    out["seq_item_ids"] = [last_item, *items]
    out["seq_ts"] = [int(last_ts), *stamps]
    return out


def _first_row_values(parts: Sequence[EntityFeatures]) -> dict[str, Any]:
    """Feature name -> value of the first entity of each part (doubles as floats)."""
    values: dict[str, Any] = {}
    for part in parts:
        for index, name in enumerate(part.double_names):
            values[name.split(":", 1)[1]] = float(part.doubles[0, index])
        for name, column in part.others.items():
            values[name.split(":", 1)[1]] = column[0]
    return values


def _interleave(lists: Sequence[Sequence[str]], limit: int) -> list[str]:
    out: list[str] = []
    for depth in range(max((len(items) for items in lists), default=0)):
        for items in lists:
            if depth < len(items):
                out.append(items[depth])
                if len(out) >= limit:
                    return out
    return out


class RedisOnlineFeatures:
    """Direct pipelined reads of Feast's Redis layout (see :mod:`feature_repo.online`).

    Args:
        client: ``redis.Redis`` with binary replies and short socket timeouts.
        project: Feast project (key suffix).
        features: The ``features`` section the offline tables were built with.
        user_features: User-side feature names the model reads.
        half_life_hours: Real-time counters' half-life (selects the real-time view).
        item_features: Item features the model reads (default: every ``item_hourly_stats``
            feature); the domain, category, creator, clicks and age are always read.
        friend_items: Items taken from each friend's sequence.
    """

    def __init__(
        self,
        client: Any,
        project: str,
        features: FeaturesParams,
        user_features: Sequence[str],
        half_life_hours: float,
        item_features: Sequence[str] | None = None,
        friend_items: int = 3,
    ) -> None:
        self.client = client
        tables = feature_tables(features)
        realtime = realtime_table(half_life_hours)
        user = RedisFeatureReader(
            client, project, user_views(features, user_features, half_life_hours)
        )
        self.user_plan, self.sequence_plan = user.plans[USER_ID], user.plans[SEQUENCE_USER_ID]
        friend = RedisFeatureReader(
            client,
            project,
            {
                SEQUENCE_USER_ID: [ViewSpec.from_table(tables[USER_SEQUENCE], ("seq_item_ids",))],
                USER_ID: [ViewSpec.from_table(realtime, (LAST_CLICK_ITEM,))],
            },
        )
        self.friend_sequence_plan = friend.plans[SEQUENCE_USER_ID]
        self.friend_realtime_plan = friend.plans[USER_ID]
        item_table = tables[ITEM_STATS]
        wanted = None
        if item_features is not None:
            always = {*ITEM_ATTRIBUTES, "age_hours"} | {
                name for name in item_table.feature_names if name.startswith("clicks_")
            }
            chosen = always | set(item_features)
            wanted = [name for name in item_table.feature_names if name in chosen]
        self.item_plan = RedisFeatureReader(
            client, project, {ITEM_ID: [ViewSpec.from_table(item_table, wanted)]}
        ).plans[ITEM_ID]
        self.batch_user_views = [
            spec.view
            for plan in (self.user_plan, self.sequence_plan)
            for spec in plan.views
            if spec.view != realtime.name
        ]
        self.friend_items = friend_items
        self.raw = RawPipeline(client)

    def _execute(self, pipe: Any) -> list:
        import redis

        try:
            return pipe.execute()
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as error:
            raise FeatureStoreDown(f"Redis: {error}") from None

    def _send(self, commands: list[bytes]) -> list:
        """Pre-packed ``HMGET`` commands in one request (:class:`RawPipeline`); their replies.

        Any Redis failure counts as the store being down: besides connection errors, a
        restarted server answers ``LOADING`` (an error reply) until its snapshot is loaded.
        """
        import redis

        try:
            return self.raw.execute(b"".join(commands), len(commands))
        except (redis.exceptions.RedisError, OSError) as error:
            raise FeatureStoreDown(f"Redis: {error}") from None

    def read_user(self, user_id: str, friends: Sequence[str]) -> tuple[UserRow, FriendsRecent]:
        mates = list(friends)
        commands = (
            self.user_plan.packed([user_id])
            + self.sequence_plan.packed([user_id])
            + self.friend_sequence_plan.packed(mates)
            + self.friend_realtime_plan.packed(mates)
        )
        replies = self._send(commands)
        got = self.user_plan.decode([user_id], replies[:1])
        sequence = self.sequence_plan.decode([user_id], replies[1:2])
        values = _first_row_values([got, sequence])
        found = any(
            bool(part.found[view][0])
            for part in (got, sequence)
            for view in part.found
            if view in self.batch_user_views
        )
        last_ts = values.pop(LAST_CLICK_TS, float("nan"))
        updated = values.pop(UPDATED_TS, float("nan"))
        values = merge_recent(values, values.pop(LAST_CLICK_ITEM, None), last_ts)
        recent = FriendsRecent()
        if mates:
            count = len(mates)
            sequences = self.friend_sequence_plan.decode(mates, replies[2 : 2 + count])
            realtime = self.friend_realtime_plan.decode(mates, replies[2 + count :])
            lists = []
            for row in range(count):
                items = list(sequences.others[f"{USER_SEQUENCE}:seq_item_ids"][row] or [])
                last = realtime.others[f"{REALTIME_TABLE}:{LAST_CLICK_ITEM}"][row]
                if isinstance(last, str) and (not items or items[0] != last):
                    items.insert(0, last)
                lists.append(items[: self.friend_items])
            recent.items = _interleave(lists, len(friends) * self.friend_items)
        return UserRow(user_id, values, found, float(updated)), recent

    def read_items(self, item_ids: Sequence[str]) -> pd.DataFrame:
        ids = list(item_ids)
        replies = self._send(self.item_plan.packed(ids)) if ids else []
        got = self.item_plan.decode(ids, replies)
        # One constructor call: inserting the id and found columns afterwards cost as much.
        return pd.DataFrame({ITEM_ID: ids, **got.columns(), "found": got.found[ITEM_STATS]})

    def ping(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.ping()
        self._execute(pipe)


class FeastOnlineFeatures:
    """``FeatureStore.get_online_features`` on whatever online store Feast is configured with.

    Same answers as :class:`RedisOnlineFeatures`, through the Feast SDK (the SQLite store when
    ``MUMA_REDIS_URL`` is unset). Much slower: one SDK call per entity kind.
    """

    def __init__(
        self,
        store: Any,
        features: FeaturesParams,
        user_features: Sequence[str],
        half_life_hours: float,
        friend_items: int = 3,
    ) -> None:
        self.store = store
        tables = feature_tables(features)
        self.user_refs = [
            f"{spec.view}:{name}"
            for specs in user_views(features, user_features, half_life_hours).values()
            for spec in specs
            for name in spec.features
        ]
        self.realtime_view = realtime_table(half_life_hours).name
        self.batch_user_views = sorted(
            {ref.split(":")[0] for ref in self.user_refs} - {self.realtime_view}
        )
        self.item_refs = [f"{ITEM_STATS}:{name}" for name in tables[ITEM_STATS].feature_names]
        self.friend_items = friend_items

    def _online(self, refs: list[str], rows: list[dict[str, str]]) -> dict[str, list]:
        try:
            return self.store.get_online_features(
                features=refs, entity_rows=rows, full_feature_names=True
            ).to_dict()
        except Exception as error:  # the SDK wraps store errors in many types
            raise FeatureStoreDown(f"Feast online store: {error}") from None

    def read_user(self, user_id: str, friends: Sequence[str]) -> tuple[UserRow, FriendsRecent]:
        # Feature references name each view's own join key: the sequence's is seq_user_id.
        data = self._online(self.user_refs, [{USER_ID: user_id, SEQUENCE_USER_ID: user_id}])
        values: dict[str, Any] = {}
        found = False
        for ref in self.user_refs:
            view, name = ref.split(":", 1)
            value = data.get(f"{view}__{name}", [None])[0]
            if value is not None and view in self.batch_user_views:
                found = True
            values[name] = value
        for name in values:
            if values[name] is None and name not in (*SEQUENCE_FEATURES, LAST_CLICK_ITEM):
                values[name] = float("nan")
        last_ts = values.pop(LAST_CLICK_TS, float("nan"))
        updated = values.pop(UPDATED_TS, float("nan"))
        values = merge_recent(values, values.pop(LAST_CLICK_ITEM, None), float(last_ts))
        recent = FriendsRecent()
        if friends:
            refs = [f"{USER_SEQUENCE}:seq_item_ids"]
            mates = self._online(refs, [{SEQUENCE_USER_ID: f} for f in friends])
            lists = [
                list(v or [])[: self.friend_items] for v in mates[f"{USER_SEQUENCE}__seq_item_ids"]
            ]
            recent.items = _interleave(lists, len(friends) * self.friend_items)
        return UserRow(user_id, values, found, float(updated)), recent

    def read_items(self, item_ids: Sequence[str]) -> pd.DataFrame:
        ids = list(item_ids)
        data = self._online(self.item_refs, [{ITEM_ID: item} for item in ids])
        frame = pd.DataFrame({ITEM_ID: ids})
        for ref in self.item_refs:
            name = ref.split(":", 1)[1]
            frame[name] = data[f"{ITEM_STATS}__{name}"]
        frame["found"] = frame["domain"].notna().to_numpy()
        for name in frame.columns:
            if name not in (ITEM_ID, "found", *ITEM_ATTRIBUTES):
                frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
        return frame

    def ping(self) -> None:
        self._online(self.item_refs[:1], [{ITEM_ID: "__ping__"}])


class StoreGuard:
    """Backs off after an online-store failure and keeps health counters.

    Every read goes through :meth:`call`; after a :class:`FeatureStoreDown`, calls fail at
    once for ``retry_seconds`` (degraded answers), then the next call tries the store again.

    Args:
        retry_seconds: How long to stay degraded after a failure before trying again.
    """

    def __init__(self, retry_seconds: float) -> None:
        self.retry_seconds = retry_seconds
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self.failures = 0
        self.last_error: str | None = None
        self.last_success = 0.0

    @property
    def healthy(self) -> bool:
        """Whether the last call succeeded or the back-off is over."""
        return time.monotonic() >= self._retry_at

    def call(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)``, or :class:`FeatureStoreDown` while backing off.

        Raises:
            FeatureStoreDown: The store failed now or recently.
        """
        if time.monotonic() < self._retry_at:
            raise FeatureStoreDown(f"online store backing off after: {self.last_error}")
        try:
            result = function(*args)
        except FeatureStoreDown as error:
            self.failed(str(error))
            raise
        self.last_success = time.time()
        return result

    def failed(self, error: str) -> None:
        """Record a failure seen elsewhere (the event path) and start the back-off."""
        with self._lock:
            self.failures += 1
            self.last_error = error
            self._retry_at = time.monotonic() + self.retry_seconds


def redis_serving_client(url: str, timeout_ms: float) -> Any:
    """A ``redis.Redis`` for serving: binary replies and short timeouts, so a dead server
    fails a request fast instead of hanging it."""
    import redis

    seconds = timeout_ms / 1000.0
    return redis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=seconds,
        socket_connect_timeout=seconds,
        health_check_interval=0,
        retry_on_timeout=False,
    )


def online_features(
    settings: Settings,
    features: FeaturesParams,
    feast: FeastParams,
    user_features: Sequence[str],
    timeout_ms: float,
) -> tuple[OnlineFeatures, Any]:
    """The reader for the settings and its Redis client (``None`` for the Feast SDK path)."""
    if settings.redis_url:
        client = redis_serving_client(settings.redis_url, timeout_ms)
        reader = RedisOnlineFeatures(
            client, feast.project, features, user_features, feast.realtime_half_life_hours
        )
        return reader, client
    from feature_repo.store import get_store

    store = get_store(settings, feast)
    return FeastOnlineFeatures(store, features, user_features, feast.realtime_half_life_hours), None
