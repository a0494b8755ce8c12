"""Training frames for real logs (MIND, Ciao), built from imported landing records in pandas.

The simulated pipeline builds training sets through Spark feature snapshots and Feast
(:mod:`training.data`). That path does not fit the real datasets: Ciao spans ten years at day
resolution (tens of thousands of hourly snapshots) and MIND is small but slow to push through
Spark. Benchmarks and experiments on real data therefore build the frames here, directly from
the landing records that ``muma import mind|ciao`` wrote (read with
:mod:`monitoring.inputs`), with Polars/pandas and NumPy only: **no Spark, no Feast**.

Every row is one logged impression; its label is whether a click joined it on
``request_id`` + ``item_id``. Its features use **only events strictly before the impression's
``ts``** (a click counts at its own ``ts``, which the importers put one second after its
impression, so the row's own click and clicks of the same request never leak in):

==============================  =================================================================
column                          meaning
==============================  =================================================================
``user_impressions``            the user's impressions before ``ts``
``user_clicks``                 the user's clicks before ``ts``
``user_ctr``                    ``(user_clicks + m * prior) / (user_impressions + m)``, ``m = 10``
``user_hours_since_click``      hours since the user's last click (null: never clicked)
``item_impressions``            the item's impressions before ``ts`` (popularity)
``item_clicks``                 the item's clicks before ``ts``
``item_ctr``                    smoothed like ``user_ctr`` with ``m = 20``
``item_hours_since_first_seen`` hours since the item's first impression (null: new item)
``seq_item_ids``, ``seq_ts``    the user's last ``sequence_length`` clicked items, newest first,
                                with their click times (epoch seconds)
==============================  =================================================================

``prior`` is the global click rate of all impressions before ``ts`` (``(clicks + 1) /
(impressions + 2)``), so even the smoothing prior is point-in-time. For MIND the sequence is
followed by the user's pre-period click history from the importer's side table
(``imports/mind/histories.parquet``; the row's own request's list, newest first). MIND gives
those clicks no time: they are stamped one second before the log's first impression (they all
happened before the log), so their gap to the request is a lower bound.

Other columns: ``domain`` from the impression, ``category`` from the item records (MIND
articles missing from ``news.tsv``, about 97% of impressed ones, have none: null),
``creator_id`` null (the importers write a constant ``<dataset>-unknown``, which as a shared
token would make every item a graph neighbour of every other), ``position`` as
logged, ``dwell_ms`` null (no real dwell exists), and ``propensity`` 1.0: the importers'
propensities are documented placeholders and must not weight a loss. Ciao keeps its 28
category names as ``category`` and its trust edges (``social_edges``, no time, so the graph is
the crawl-time snapshot: a known leak the importer documents) as friendships. Ciao's
``request_id`` becomes user + day, so NDCG/HR rank a user's ratings of one day (each rating is
its own request in the import, which would make them trivial).

The split is by time, never at random: the impression-time quantiles ``1 - valid_share -
test_share`` and ``1 - test_share``, floored to whole days (Ciao) or hours (MIND), start the
validation and test windows. Features of validation and test rows still use every earlier event,
as an online feature store would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

USER_FEATURES = ("user_impressions", "user_clicks", "user_ctr", "user_hours_since_click")
ITEM_FEATURES = ("item_impressions", "item_clicks", "item_ctr", "item_hours_since_first_seen")
USER_PRIOR_STRENGTH, ITEM_PRIOR_STRENGTH = 10.0, 20.0
VECTOR_KINDS = ("category_interest", "friends_category_interest", "category_ctr")
"""Per-category user vectors of :func:`with_category_vectors`: ``<domain>_<kind>`` columns."""
CATEGORY_PRIOR_STRENGTH = 3.0
"""Pseudo-impressions of the user's overall CTR in a user's per-category CTR."""
FRAME_COLUMNS = (
    "event_id",
    "ts",
    "request_id",
    "user_id",
    "item_id",
    "domain",
    "category",
    "creator_id",
    "position",
    "propensity",
    "clicked",
    "dwell_ms",
    *USER_FEATURES,
    *ITEM_FEATURES,
    "seq_item_ids",
    "seq_ts",
)
Dataset = Literal["mind", "ciao"]


class RealDataError(ValueError):
    """The landing records cannot make a training set (no impressions, an empty window, ...)."""


@dataclass
class RealDataset:
    """A time-split real dataset, ready for :meth:`training.featurize.Featurizer.fit`.

    Attributes:
        name: ``mind`` or ``ciao``.
        train, valid, test: Frames with :data:`FRAME_COLUMNS`, in time order.
        catalog: ``item_id, domain, category, creator_id`` of items known by the end of training.
        friendships: ``user_id, friend_id`` pairs (empty for MIND).
        valid_start, test_start: Window boundaries (UTC).
        user_features, item_features: Dense feature columns per side.
        category_vectors: Domain -> its categories in the order of the per-category user
            vectors (``<domain>_category_interest``, ``<domain>_friends_category_interest``),
            for :meth:`training.featurize.Featurizer.fit`.
    """

    name: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    catalog: pd.DataFrame
    friendships: pd.DataFrame
    valid_start: datetime
    test_start: datetime
    user_features: tuple[str, ...] = USER_FEATURES
    item_features: tuple[str, ...] = ITEM_FEATURES
    category_vectors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)

    def rows(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def clicks(self) -> dict[str, int]:
        return {
            name: int(getattr(self, name)["clicked"].sum()) for name in ("train", "valid", "test")
        }


def read_landing(landing_root: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Interactions, item records and social edges of every partition of a landing zone.

    Uses :func:`monitoring.inputs.interactions_from_landing` (contract-checked records, clicks
    joined on ``request_id`` + ``item_id``) over the zone's whole hour range.

    Raises:
        RealDataError: The zone holds no impression partition.
    """
    import pandas as pd

    from monitoring.inputs import interactions_from_landing, items_from_landing, landing_records
    from muma.contract import Source
    from muma.landing import partition_hours

    version_root = Path(landing_root) / "v1"
    hours = partition_hours(version_root, Source.IMPRESSIONS)
    if not hours:
        raise RealDataError(f"no impressions under {version_root}: run `muma import` first")
    item_hours = partition_hours(version_root, Source.ITEMS) or hours
    edge_hours = partition_hours(version_root, Source.SOCIAL_EDGES)
    end = hours[-1] + timedelta(hours=1)
    interactions = interactions_from_landing(landing_root, hours[0], end)
    items = items_from_landing(
        landing_root, min(item_hours[0], hours[0]), max(item_hours[-1] + timedelta(hours=1), end)
    )
    if edge_hours:
        edges = landing_records(
            landing_root, Source.SOCIAL_EDGES, edge_hours[0], edge_hours[-1] + timedelta(hours=1)
        ).to_pandas()
    else:
        edges = pd.DataFrame(columns=["user_id", "friend_id"])
    return interactions, items, edges


def load_dataset(
    name: Dataset,
    landing_root: Path,
    *,
    histories_path: Path | None = None,
    sequence_length: int = 50,
    valid_share: float = 0.1,
    test_share: float = 0.1,
) -> RealDataset:
    """Read an imported landing zone and build its time-split frames.

    Args:
        name: ``mind`` (split by hour, pre-period histories) or ``ciao`` (split by day,
            user-day requests, trust edges).
        landing_root: Where ``muma import`` wrote (``<root>/v1/...``).
        histories_path: MIND's ``histories.parquet`` (default ``<root>/../imports/mind/``).
        sequence_length: Behaviours kept per row.
        valid_share, test_share: Shares of impressions (by time) in the later windows.
    """
    import pandas as pd

    interactions, items, edges = read_landing(landing_root)
    histories = None
    if name == "mind":
        path = (
            histories_path or Path(landing_root).parent / "imports" / "mind" / "histories.parquet"
        )
        if Path(path).is_file():
            histories = pd.read_parquet(path, columns=["request_id", "history"])
    return build_dataset(
        name,
        interactions,
        items,
        edges,
        histories=histories,
        sequence_length=sequence_length,
        valid_share=valid_share,
        test_share=test_share,
        split_unit="day" if name == "ciao" else "hour",
        group_requests_by_day=name == "ciao",
    )


def build_dataset(
    name: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    social_edges: pd.DataFrame,
    *,
    histories: pd.DataFrame | None = None,
    sequence_length: int = 50,
    valid_share: float = 0.1,
    test_share: float = 0.1,
    split_unit: Literal["day", "hour"] = "day",
    group_requests_by_day: bool = False,
) -> RealDataset:
    """Point-in-time frames from interactions-shaped rows, split by time.

    Args:
        name: Dataset name (recorded only).
        interactions: Rows like :func:`monitoring.inputs.interactions_from_landing` returns:
            ``event_id, ts, request_id, user_id, item_id, domain, position, clicked, click_ts``.
        items: Item records: ``item_id, domain, category, creator_id, ts`` (latest wins).
        social_edges: ``user_id, friend_id`` (may be empty).
        histories: Optional ``request_id, history`` (pre-period clicks, oldest first).
        sequence_length: Behaviours kept per row.
        valid_share, test_share: Shares of impressions in the validation and test windows.
        split_unit: Window boundaries are floored to this unit.
        group_requests_by_day: Replace ``request_id`` by user + UTC day (ranking groups).

    Raises:
        RealDataError: No impressions, or a window without rows.
    """
    if len(interactions) == 0:
        raise RealDataError("no impressions to build a training set from")
    frame = point_in_time_features(interactions, histories, sequence_length)
    click_ms = _epoch_ms(frame["click_ts"], missing=0) if "click_ts" in frame else None
    frame = _with_items(frame, items)
    vectors: dict[str, tuple[str, ...]] = {}
    if click_ms is not None:
        frame, vectors = with_category_vectors(frame, click_ms, social_edges)
    if group_requests_by_day:
        frame["request_id"] = frame["user_id"] + "@" + frame["ts"].dt.strftime("%Y-%m-%d")
    valid_start, test_start = split_boundaries(frame["ts"], valid_share, test_share, split_unit)
    train = frame[frame["ts"] < valid_start].reset_index(drop=True)
    valid = frame[(frame["ts"] >= valid_start) & (frame["ts"] < test_start)].reset_index(drop=True)
    test = frame[frame["ts"] >= test_start].reset_index(drop=True)
    for window, rows in (("train", train), ("valid", valid), ("test", test)):
        if rows.empty:
            raise RealDataError(f"the {window} window of {name} holds no impressions")
    catalog = _catalog(items, train, histories)
    friendships = (
        social_edges[["user_id", "friend_id"]].dropna().drop_duplicates().reset_index(drop=True)
    )
    vector_columns = tuple(f"{domain}_{kind}" for domain in vectors for kind in VECTOR_KINDS)
    return RealDataset(
        name=name,
        train=train,
        valid=valid,
        test=test,
        catalog=catalog,
        friendships=friendships,
        valid_start=valid_start,
        test_start=test_start,
        user_features=(*USER_FEATURES, *vector_columns),
        category_vectors=vectors,
        notes={"built_with": "pandas/numpy from landing records (no Spark, no Feast)"},
    )


def split_boundaries(
    ts: pd.Series, valid_share: float, test_share: float, unit: Literal["day", "hour"]
) -> tuple[datetime, datetime]:
    """Starts of the validation and test windows: time quantiles floored to ``unit``.

    Raises:
        RealDataError: Shares out of range, or the two boundaries coincide after flooring.
    """
    import pandas as pd

    if not (0 < valid_share < 1 and 0 < test_share < 1 and valid_share + test_share < 1):
        raise RealDataError("valid_share and test_share must be in (0, 1) and sum below 1")
    stamps = pd.to_datetime(ts, utc=True)
    freq = "D" if unit == "day" else "h"
    valid_start = stamps.quantile(1 - valid_share - test_share).floor(freq)
    test_start = stamps.quantile(1 - test_share).floor(freq)
    if not stamps.min() < valid_start < test_start <= stamps.max():
        raise RealDataError(
            f"cannot split by {unit}: boundaries {valid_start} and {test_start} leave an empty "
            "window (too few distinct times)"
        )
    return valid_start.to_pydatetime(), test_start.to_pydatetime()


def point_in_time_features(
    interactions: pd.DataFrame, histories: pd.DataFrame | None, sequence_length: int
) -> pd.DataFrame:
    """Every impression with the features of :data:`USER_FEATURES`, :data:`ITEM_FEATURES` and
    its behaviour sequence, each computed from events strictly before the impression's ``ts``.

    Counts come from binary searches over events sorted by ``(entity, time)``: for an impression
    at ``t`` of user ``u``, the position of ``(u, t)`` among the sorted ``(user, time)`` keys,
    minus the user's first position, is the number of the user's events with time ``< t``.
    """
    import pandas as pd

    frame = interactions.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)
    ts_ms = _epoch_ms(frame["ts"])
    clicked = frame["clicked"].astype(bool).to_numpy()
    click_ms = np.where(clicked, _epoch_ms(frame["click_ts"], missing=0), 0)
    user_code, _ = pd.factorize(frame["user_id"])
    item_code, _ = pd.factorize(frame["item_id"])

    # Clicks as events of their own, at the click's time.
    click_rows = np.flatnonzero(clicked)
    click_user, click_item, click_time = (
        user_code[click_rows],
        item_code[click_rows],
        click_ms[click_rows],
    )

    user_impressions = _count_before(user_code, ts_ms, user_code, ts_ms)
    user_clicks, user_last = _count_before(click_user, click_time, user_code, ts_ms, last=True)
    item_impressions, item_first = _count_before(item_code, ts_ms, item_code, ts_ms, first=True)
    item_clicks = _count_before(click_item, click_time, item_code, ts_ms)

    impressions_before = np.searchsorted(np.sort(ts_ms), ts_ms, side="left")
    clicks_before = np.searchsorted(np.sort(click_time), ts_ms, side="left")
    prior = (clicks_before + 1.0) / (impressions_before + 2.0)

    hour_ms = 3_600_000.0
    out = frame.assign(
        user_impressions=user_impressions.astype(np.float64),
        user_clicks=user_clicks.astype(np.float64),
        user_ctr=(user_clicks + USER_PRIOR_STRENGTH * prior)
        / (user_impressions + USER_PRIOR_STRENGTH),
        user_hours_since_click=np.where(user_clicks > 0, (ts_ms - user_last) / hour_ms, np.nan),
        item_impressions=item_impressions.astype(np.float64),
        item_clicks=item_clicks.astype(np.float64),
        item_ctr=(item_clicks + ITEM_PRIOR_STRENGTH * prior)
        / (item_impressions + ITEM_PRIOR_STRENGTH),
        item_hours_since_first_seen=np.where(
            item_impressions > 0, (ts_ms - item_first) / hour_ms, np.nan
        ),
    )
    seq_items, seq_ts = _sequences(
        frame, user_code, ts_ms, click_rows, click_time, histories, sequence_length
    )
    out["seq_item_ids"] = seq_items
    out["seq_ts"] = seq_ts
    out["propensity"] = 1.0  # the importers' values are placeholders, never weights
    out["dwell_ms"] = pd.Series(np.nan, index=out.index, dtype="float64")
    out["clicked"] = clicked
    return out


def with_category_vectors(
    frame: pd.DataFrame, click_ms: np.ndarray, social_edges: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, tuple[str, ...]]]:
    """Add, per domain, the user's and the friends' click shares over the domain's categories,
    and the user's click rate in each of them.

    The real-data twin of the feature store's ``<domain>_category_interest`` and
    ``<domain>_friends_category_interest`` (there decayed; here plain counts, as the other
    real-data features): for a row at ``t``, the user's clicks with click time ``< t`` on items
    of each category of the domain, divided by their sum (null when the user has none in the
    domain), and the same over the clicks of the users the row's user links to in
    ``social_edges`` (``user_id -> friend_id``: who the user trusts). ``<domain>_category_ctr``
    is the user's clicks over impressions (impression time ``< t``) per category, smoothed
    towards the row's ``user_ctr`` with :data:`CATEGORY_PRIOR_STRENGTH` pseudo-impressions
    (null when the user has no impression in the domain): where every impression is a rating,
    as in Ciao, what the user thinks of a category, not only how often it picks one. MUMA's
    graph module reads the entry of the candidate's category
    (:class:`training.model.graph.CategoryAffinity`).

    Args:
        frame: Rows after :func:`_with_items` and :func:`point_in_time_features` (``ts``,
            ``user_id``, ``domain``, ``category``, ``clicked``, ``user_ctr``), in the order of
            ``click_ms``.
        click_ms: ``N`` click times in epoch ms (anything for unclicked rows).
        social_edges: ``user_id, friend_id`` (may be empty).

    Returns:
        The frame with two list columns per domain that has categories, and domain -> its
        categories in vector order (sorted names); ``{}`` and the frame unchanged when no row
        has a category.
    """
    import pandas as pd

    known = frame["category"].notna().to_numpy()
    if not known.any():
        return frame, {}
    pairs = frame.loc[known, ["domain", "category"]].astype(str).drop_duplicates()
    vectors = {
        domain: tuple(sorted(group["category"]))
        for domain, group in pairs.groupby("domain", sort=True)
    }
    slots = {(d, c): k for k, (d, c) in enumerate((d, c) for d in vectors for c in vectors[d])}
    category_slot = np.array(
        [
            slots.get((str(d), str(c)), -1) if c is not None else -1
            for d, c in zip(frame["domain"], frame["category"], strict=True)
        ],
        dtype=np.int64,
    )
    users, user_code = np.unique(frame["user_id"].astype(str).to_numpy(), return_inverse=True)
    ts_ms = _epoch_ms(frame["ts"])
    clicks = np.flatnonzero(frame["clicked"].to_numpy(bool) & (category_slot >= 0))
    click_user, click_time, click_slot = user_code[clicks], click_ms[clicks], category_slot[clicks]

    # A friend's click reaches every user who links to the friend, at the click's time.
    edges = social_edges[["user_id", "friend_id"]].dropna().astype(str).drop_duplicates()
    follower = np.searchsorted(users, edges["user_id"].to_numpy())
    friend = np.searchsorted(users, edges["friend_id"].to_numpy())
    present = (follower < len(users)) & (friend < len(users))
    present[present] &= (users[follower[present]] == edges["user_id"].to_numpy()[present]) & (
        users[friend[present]] == edges["friend_id"].to_numpy()[present]
    )
    follower, friend = follower[present], friend[present]
    order = np.argsort(click_user, kind="stable")
    by_user = click_user[order]
    first = np.searchsorted(by_user, friend, side="left")
    count = np.searchsorted(by_user, friend, side="right") - first
    reach = np.repeat(np.arange(len(friend)), count)
    offset = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    reached = order[first[reach] + offset]  # index into the clicks
    shared_user = follower[reach]
    shared_time, shared_slot = click_time[reached], click_slot[reached]

    shown = np.flatnonzero(category_slot >= 0)
    shown_user, shown_time, shown_slot = user_code[shown], ts_ms[shown], category_slot[shown]

    own = np.zeros((len(frame), len(slots)), np.float32)
    friends = np.zeros((len(frame), len(slots)), np.float32)
    impressions = np.zeros((len(frame), len(slots)), np.float32)
    for slot in range(len(slots)):
        mine = click_slot == slot
        own[:, slot] = _count_before(click_user[mine], click_time[mine], user_code, ts_ms)
        theirs = shared_slot == slot
        friends[:, slot] = _count_before(shared_user[theirs], shared_time[theirs], user_code, ts_ms)
        seen = shown_slot == slot
        impressions[:, slot] = _count_before(shown_user[seen], shown_time[seen], user_code, ts_ms)
    prior = frame["user_ctr"].to_numpy(np.float32)[:, None]  # N x 1, point in time
    out = frame.copy()
    start = 0
    for domain, names in vectors.items():
        stop = start + len(names)
        for kind, counts in zip(VECTOR_KINDS[:2], (own, friends), strict=True):
            block = counts[:, start:stop]
            total = block.sum(axis=1, keepdims=True)
            shares = np.divide(block, total, out=np.zeros_like(block), where=total > 0)
            column = pd.Series(list(shares), index=out.index, dtype=object)
            out[f"{domain}_{kind}"] = column.where(total[:, 0] > 0, None)
        shown_block = impressions[:, start:stop]
        rates = (own[:, start:stop] + CATEGORY_PRIOR_STRENGTH * prior) / (
            shown_block + CATEGORY_PRIOR_STRENGTH
        )
        column = pd.Series(list(rates.astype(np.float32)), index=out.index, dtype=object)
        out[f"{domain}_category_ctr"] = column.where(shown_block.sum(axis=1) > 0, None)
        start = stop
    return out, vectors


def _count_before(
    event_entity: np.ndarray,
    event_ms: np.ndarray,
    entity: np.ndarray,
    at_ms: np.ndarray,
    *,
    last: bool = False,
    first: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Per query, the entity's events with time ``< at_ms`` (and the last or first such time)."""
    order = np.lexsort((event_ms, event_entity))
    sorted_entity, sorted_ms = event_entity[order], event_ms[order]
    start = np.searchsorted(sorted_entity, entity, side="left")
    key_events = sorted_entity.astype(np.int64) * (1 << 42) + sorted_ms
    key_query = entity.astype(np.int64) * (1 << 42) + at_ms
    end = np.searchsorted(key_events, key_query, side="left")
    count = end - start
    if last:
        previous = np.where(count > 0, sorted_ms[np.maximum(end - 1, 0)], 0)
        return count, previous
    if first:
        earliest = np.where(count > 0, sorted_ms[np.minimum(start, len(sorted_ms) - 1)], 0)
        return count, earliest
    return count


def _sequences(
    frame: pd.DataFrame,
    user_code: np.ndarray,
    ts_ms: np.ndarray,
    click_rows: np.ndarray,
    click_ms: np.ndarray,
    histories: pd.DataFrame | None,
    length: int,
) -> tuple[list[list[str]], list[list[int]]]:
    """Per row: the user's last ``length`` clicks before ``ts`` newest first, then history."""
    click_user = user_code[click_rows]
    order = np.lexsort((click_ms, click_user))
    sorted_user, sorted_ms = click_user[order], click_ms[order]
    sorted_items = frame["item_id"].to_numpy(dtype=object)[click_rows][order]
    sorted_seconds = (sorted_ms // 1000).astype(np.int64)
    start = np.searchsorted(sorted_user, user_code, side="left")
    end = np.searchsorted(
        sorted_user.astype(np.int64) * (1 << 42) + sorted_ms,
        user_code.astype(np.int64) * (1 << 42) + ts_ms,
        side="left",
    )
    begin = np.maximum(start, end - length)
    items = [sorted_items[b:e][::-1].tolist() for b, e in zip(begin, end, strict=True)]
    stamps = [sorted_seconds[b:e][::-1].tolist() for b, e in zip(begin, end, strict=True)]
    if histories is not None and len(histories):
        by_request = dict(zip(histories["request_id"], histories["history"], strict=True))
        before_log = int(ts_ms.min() // 1000) - 1
        for row, request in enumerate(frame["request_id"].to_numpy()):
            room = length - len(items[row])
            history = by_request.get(request)
            if room <= 0 or history is None or len(history) == 0:
                continue
            past = [str(item) for item in list(history)[::-1][:room]]
            items[row].extend(past)
            stamps[row].extend([before_log] * len(past))
    return items, stamps


def _with_items(frame: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Attach the latest item record's ``category`` and ``creator_id``."""
    import pandas as pd

    if len(items):
        latest = (
            items.sort_values("ts", kind="stable")
            .drop_duplicates("item_id", keep="last")[["item_id", "category", "creator_id"]]
            .rename(columns={"category": "_category", "creator_id": "_creator"})
        )
        frame = frame.merge(latest, on="item_id", how="left")
    else:
        frame = frame.assign(_category=None, _creator=None)
    frame["category"] = frame["_category"].astype(object).where(frame["_category"].notna(), None)
    # The importers write a constant "<dataset>-unknown" creator; a shared token would link
    # every item to every other in the graph, so it becomes null (no creator, no edge).
    creator = frame["_creator"].astype(object)
    frame["creator_id"] = creator.where(
        creator.notna() & ~creator.str.endswith("-unknown", na=False), None
    )
    frame["position"] = pd.to_numeric(frame["position"]).astype(np.int64)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame[list(FRAME_COLUMNS)]


def _catalog(
    items: pd.DataFrame, train: pd.DataFrame, histories: pd.DataFrame | None
) -> pd.DataFrame:
    """Items known by the end of training: item records, training items, training histories."""
    import pandas as pd

    end = train["ts"].max()
    columns = ["item_id", "domain", "category", "creator_id"]
    parts = []
    if len(items):
        known = items[pd.to_datetime(items["ts"], utc=True) <= end]
        known = known.sort_values("ts").drop_duplicates("item_id", keep="last")[columns]
        creator = known["creator_id"].astype(object)
        parts.append(
            known.assign(creator_id=creator.where(~creator.str.endswith("-unknown", na=True), None))
        )
    parts.append(train[columns])
    if histories is not None and len(histories):
        requests = set(train["request_id"])
        past = histories[histories["request_id"].isin(requests)].explode("history")["history"]
        past = past.dropna().astype(str).unique()
        parts.append(
            pd.DataFrame({"item_id": past, "domain": "news", "category": None, "creator_id": None})
        )
    catalog = pd.concat(parts, ignore_index=True).drop_duplicates("item_id", keep="first")
    return catalog.reset_index(drop=True)


def _epoch_ms(series: pd.Series, missing: int | None = None) -> np.ndarray:
    import pandas as pd

    stamps = pd.to_datetime(series, utc=True)
    absent = stamps.isna().to_numpy()
    if absent.any() and missing is None:
        raise RealDataError(f"{series.name} has missing times")
    filled = stamps.fillna(pd.Timestamp(0, tz="UTC"))
    values = filled.dt.as_unit("ms").astype("int64").to_numpy()
    return np.where(absent, missing or 0, values).astype(np.int64)
