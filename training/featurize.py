"""From feature-store rows to model tensors, identically in training and serving.

:class:`Featurizer` is fitted once on the training window and saved with the model
(:mod:`training.bundle`); serving loads the same object, so a request's features go through
exactly the transformations the model was trained on:

* **vocabularies**: string ids -> 1-based ints; 0 is padding and 1 is "unknown" (an id first
  seen after training: a new user or a cold-start item), so unseen ids never crash;
* **item attributes**: category, creator and domain per item id, from the catalog;
* **dense features**: every numeric column of the feature service's user and item views (vector
  columns expanded), count-like columns ``log1p``-transformed, then standardised with the
  training window's mean and deviation; missing values (no snapshot yet) become 0, the mean;
* **behaviour sequences**: the user's last clicks (newest first in the feature store) become a
  left-aligned, oldest-first history with the gap in hours to the request, plus its recent tail;
* **graph neighbours**: metapath neighbours of every known user and item, sampled once from the
  heterogeneous graph of the training window (clicks, categories, creators, friendships);
* **cold ids**: a user or item that has a vocabulary id (from the catalog or the friendships)
  but no training row (as candidate or behaviour) has an embedding no gradient ever reached, i.e.
  random noise; batches embed it as "unknown" (id 1, trained through ``train.id_dropout``)
  while its graph neighbours are still looked up by its own id.

Everything is stored as plain arrays and JSON (:meth:`Featurizer.state`), never pickled.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from muma.contract import Domain
from training.batch import DOMAIN_IDS, Batch
from training.model.config import FeatureSpace, GraphConfig
from training.model.graph import HeteroGraph
from training.model.metapaths import resolve

if TYPE_CHECKING:
    import pandas as pd

PAD, UNKNOWN = 0, 1
_FIRST = 2
_LOG_LIKE = re.compile(
    r"impressions|clicks|views|dwell_ms|hours_since|age_hours|friend_count|fixation_ms"
)
_NEVER_HOURS = 24.0 * 60
"""``*_hours_since_click`` of a user who never clicked in the domain (60 days)."""
SEQUENCE_COLUMNS = ("seq_item_ids", "seq_ts")
_DOMAIN_ORDER = [domain.value for domain in Domain]
AFFINITY_KINDS = (
    "category_interest",
    "friends_category_interest",
    "gaze_category_share",
    "category_ctr",
)
"""Per-category user vectors (``<domain>_<kind>``, one entry per category of the domain): the
user's own decayed interest, the friends' mean interest, the gaze fixation share and (real data,
:func:`training.realdata.with_category_vectors`) the user's click rate per category. Their
entry for a candidate's category is a user-category (and user-friend-category) metapath weight
that MUMA's graph module reads (:class:`training.model.graph.CategoryAffinity`)."""


class FeatureError(ValueError):
    """Rows that do not fit the featurizer (a missing column, an unknown domain, ...)."""


class Vocabulary:
    """String tokens -> ids ``2..n+1``; ``None``/NaN -> 0 (padding), unseen -> 1 (unknown)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        import pandas as pd

        self.tokens = np.asarray(list(tokens), dtype=str)
        if len(set(self.tokens.tolist())) != len(self.tokens):
            raise FeatureError("vocabulary tokens must be distinct")
        self._index = pd.Index(self.tokens)

    @classmethod
    def build(cls, *columns: Any) -> Vocabulary:
        """Distinct non-null values of ``columns`` in sorted order (deterministic ids)."""
        import pandas as pd

        values = pd.concat([pd.Series(np.asarray(c, dtype=object)) for c in columns]).dropna()
        return cls(sorted(set(values.astype(str).tolist())))

    def __len__(self) -> int:
        """Size of the id space, excluding padding (tokens plus "unknown")."""
        return len(self.tokens) + 1

    def ids(self, values: Any) -> np.ndarray:
        """int64 ids of ``values`` (any 1-D array-like)."""
        import pandas as pd

        series = pd.Series(np.asarray(values, dtype=object))
        missing = series.isna().to_numpy()
        found = self._index.get_indexer(series.where(~missing, "").astype(str))
        ids = np.where(found >= 0, found + _FIRST, UNKNOWN).astype(np.int64)
        ids[missing] = PAD
        return ids

    def token(self, index: int) -> str | None:
        """The token of id ``index`` (None for padding and unknown)."""
        return None if index < _FIRST else str(self.tokens[index - _FIRST])


@dataclass(frozen=True, slots=True)
class DenseColumn:
    """One dense input: a scalar (``width`` 0) or a vector column, and its transform."""

    name: str
    width: int
    log: bool

    @property
    def size(self) -> int:
        return max(self.width, 1)


@dataclass(frozen=True, slots=True)
class Encoded:
    """Model inputs of N rows as compact arrays; :meth:`batch` gathers any subset as a Batch."""

    request: np.ndarray  # N int64
    user: np.ndarray  # N int64
    item: np.ndarray  # N int64
    category: np.ndarray  # N int64, the candidate's category
    creator: np.ndarray  # N int64
    domain: np.ndarray  # N int64 (1 news, 2 video, 3 ad)
    position: np.ndarray  # N int64
    user_dense: np.ndarray  # N x F_u float32
    item_dense: np.ndarray  # N x F_i float32
    long_item: np.ndarray  # N x L int64 (oldest first, left-aligned)
    long_gap: np.ndarray  # N x L float32 hours
    recent_item: np.ndarray  # N x R int64
    recent_gap: np.ndarray  # N x R float32
    clicked: np.ndarray  # N float32
    dwell: np.ndarray  # N float32 (log1p seconds)
    dwell_mask: np.ndarray  # N bool
    propensity: np.ndarray  # N float32

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclass(frozen=True, slots=True)
class UserPart:
    """The user's side of a request (one row): the same on every candidate row."""

    user: np.ndarray  # 1 int64
    user_dense: np.ndarray  # 1 x F_u float32
    long_item: np.ndarray  # 1 x L int64
    long_gap: np.ndarray  # 1 x L float32 hours
    recent_item: np.ndarray  # 1 x R int64
    recent_gap: np.ndarray  # 1 x R float32


@dataclass(frozen=True, slots=True)
class ItemPart:
    """The candidates' side of a request's rows (independent of the user and the time)."""

    item: np.ndarray  # N int64
    category: np.ndarray  # N int64
    creator: np.ndarray  # N int64
    item_dense: np.ndarray  # N x F_i float32


class Featurizer:
    """Fitted transformations from feature-store rows to :class:`~training.batch.Batch`.

    Build with :meth:`fit`; persist with :meth:`state` / :meth:`from_state`.
    """

    def __init__(
        self,
        *,
        users: Vocabulary,
        items: Vocabulary,
        categories: Vocabulary,
        creators: Vocabulary,
        item_category: np.ndarray,
        item_creator: np.ndarray,
        item_domain: np.ndarray,
        user_columns: list[DenseColumn],
        item_columns: list[DenseColumn],
        mean: dict[str, np.ndarray],
        scale: dict[str, np.ndarray],
        user_neighbours: np.ndarray,
        item_neighbours: np.ndarray,
        graph: GraphConfig,
        long_length: int,
        recent_length: int,
        user_trained: np.ndarray | None = None,
        item_trained: np.ndarray | None = None,
        category_vectors: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.users, self.items = users, items
        # Domain -> category names in the order of its per-category user vectors.
        self.category_vectors = {d: tuple(names) for d, names in (category_vectors or {}).items()}
        # ``(len(vocabulary) + 1,)`` bool: the id had a training row; None keeps every id.
        self.user_trained, self.item_trained = user_trained, item_trained
        self.categories, self.creators = categories, creators
        self.item_category = item_category
        self.item_creator = item_creator
        self.item_domain = item_domain
        self.user_columns, self.item_columns = user_columns, item_columns
        self.mean, self.scale = mean, scale
        self.user_neighbours, self.item_neighbours = user_neighbours, item_neighbours
        self.graph = graph
        self.long_length, self.recent_length = long_length, recent_length

    # ----------------------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls,
        train: pd.DataFrame,
        catalog: pd.DataFrame,
        friendships: pd.DataFrame,
        *,
        user_feature_names: Sequence[str],
        item_feature_names: Sequence[str],
        graph: GraphConfig,
        long_length: int,
        recent_length: int,
        seed: int,
        category_vectors: Mapping[str, Sequence[str]] | None = None,
    ) -> Featurizer:
        """Fit vocabularies, dense statistics and graph neighbours on the training window.

        Args:
            train: Training rows: ``user_id``, ``item_id``, ``clicked``, ``domain`` and the
                feature columns.
            catalog: ``item_id, domain, category, creator_id`` of every known item.
            friendships: Undirected ``user_id, friend_id`` pairs.
            user_feature_names, item_feature_names: Candidate feature columns per side; the
                numeric ones present in ``train`` become dense inputs.
            graph: Metapaths and K.
            long_length, recent_length: History lengths.
            seed: Seed of the neighbour sampling.
            category_vectors: Domain -> its category names in the order of the user's
                per-category vectors (``features.categories``: ``<domain>_category_interest``
                and the others of :data:`AFFINITY_KINDS`); lets MUMA read the candidate's entry
                (:meth:`affinity_index`). None: no such vectors.
        """
        _require(train, ["user_id", "item_id", "clicked", "domain"], "training rows")
        _require(catalog, ["item_id", "domain", "category", "creator_id"], "item catalog")
        users = Vocabulary.build(train["user_id"], friendships["user_id"], friendships["friend_id"])
        items = Vocabulary.build(catalog["item_id"], train["item_id"])
        categories = Vocabulary.build(catalog["category"])
        creators = Vocabulary.build(catalog["creator_id"])
        size = len(items) + 1
        item_category = np.zeros(size, dtype=np.int64)
        item_creator = np.zeros(size, dtype=np.int64)
        item_domain = np.zeros(size, dtype=np.int64)
        ids = items.ids(catalog["item_id"])
        item_category[ids] = categories.ids(catalog["category"])
        item_creator[ids] = creators.ids(catalog["creator_id"])
        item_domain[ids] = _domain_ids(catalog["domain"])
        # Items seen in impressions but not in the catalog keep the impression's domain.
        seen = items.ids(train["item_id"])
        unset = item_domain[seen] == 0
        item_domain[seen[unset]] = _domain_ids(train["domain"].to_numpy()[unset])

        user_columns = _dense_columns(train, user_feature_names)
        item_columns = _dense_columns(train, item_feature_names)
        mean, scale = {}, {}
        for column in [*user_columns, *item_columns]:
            values = _raw_values(_cells(train, column), column)
            finite = np.where(np.isfinite(values), values, np.nan)
            mu = np.nanmean(finite, axis=0) if np.isfinite(finite).any() else np.zeros(column.size)
            sd = np.nanstd(finite, axis=0) if np.isfinite(finite).any() else np.ones(column.size)
            mean[column.name] = np.nan_to_num(np.atleast_1d(mu)).astype(np.float32)
            scale[column.name] = np.where(np.nan_to_num(np.atleast_1d(sd)) > 1e-6, sd, 1.0).astype(
                np.float32
            )

        clicks = train[train["clicked"].astype(bool)]
        hetero = HeteroGraph.from_edges(
            users=len(users),
            items=len(items),
            categories=len(categories),
            creators=len(creators),
            interactions=(
                torch.as_tensor(users.ids(clicks["user_id"])),
                torch.as_tensor(items.ids(clicks["item_id"])),
                torch.as_tensor(_domain_ids(clicks["domain"])),
            ),
            item_category=_nonzero_pairs(item_category),
            item_creator=_nonzero_pairs(item_creator),
            friendships=(
                torch.as_tensor(users.ids(friendships["user_id"])),
                torch.as_tensor(users.ids(friendships["friend_id"])),
            ),
        )
        user_trained = np.zeros(len(users) + 1, dtype=bool)
        user_trained[users.ids(train["user_id"])] = True
        item_trained = np.zeros(len(items) + 1, dtype=bool)
        item_trained[items.ids(train["item_id"])] = True
        if "seq_item_ids" in train:
            item_trained[items.ids(_flatten(train["seq_item_ids"])[0])] = True
        user_trained[PAD] = item_trained[PAD] = True
        generator = torch.Generator().manual_seed(seed)
        user_neighbours, _ = hetero.sample(
            resolve(graph.user_metapaths, "user"),
            torch.arange(len(users) + 1),
            graph.neighbours,
            generator,
        )
        item_neighbours, _ = hetero.sample(
            resolve(graph.item_metapaths, "item"),
            torch.arange(len(items) + 1),
            graph.neighbours,
            generator,
        )
        return cls(
            users=users,
            items=items,
            categories=categories,
            creators=creators,
            item_category=item_category,
            item_creator=item_creator,
            item_domain=item_domain,
            user_columns=user_columns,
            item_columns=item_columns,
            mean=mean,
            scale=scale,
            user_neighbours=user_neighbours.numpy().astype(np.int32),
            item_neighbours=item_neighbours.numpy().astype(np.int32),
            graph=graph,
            long_length=long_length,
            recent_length=recent_length,
            user_trained=user_trained,
            item_trained=item_trained,
            category_vectors=category_vectors,
        )

    def affinity_index(self) -> tuple[tuple[tuple[int, ...], ...], ...]:
        """Where the user's weight on a candidate's category sits in the user's dense row.

        Entry ``[domain_id][category_id][k]`` is the column of ``user_dense`` that holds the
        user's :data:`AFFINITY_KINDS` ``[k]`` vector's entry for that category of that domain,
        -1 where there is none (id 0, an unknown category, a kind without a column). Empty
        when no category vectors were given or none is a dense user column.

        Returns:
            ``(domains + 1) x (categories + 1) x A`` nested tuples of ints.
        """
        offsets, start = {}, 0
        for column in self.user_columns:
            offsets[column.name] = (start, column.width)
            start += column.size
        kinds = [
            kind
            for kind in AFFINITY_KINDS
            if any(f"{domain}_{kind}" in offsets for domain in self.category_vectors)
        ]
        if not kinds:
            return ()
        table = np.full((len(DOMAIN_IDS) + 1, len(self.categories) + 1, len(kinds)), -1, np.int64)
        for domain, names in self.category_vectors.items():
            domain_id = DOMAIN_IDS[Domain(domain)]
            ids = self.categories.ids(list(names))
            for k, kind in enumerate(kinds):
                start_width = offsets.get(f"{domain}_{kind}")
                if start_width is None or start_width[1] != len(names):
                    continue
                for position, category_id in enumerate(ids):
                    if category_id >= _FIRST:  # not padding, not unknown
                        table[domain_id, category_id, k] = start_width[0] + position
        return tuple(tuple(tuple(int(v) for v in row) for row in plane) for plane in table)

    def feature_space(self, max_position: int | None = None) -> FeatureSpace:
        """Vocabulary sizes and dense widths for the model config."""
        extra = {} if max_position is None else {"max_position": max_position}
        return FeatureSpace(
            users=len(self.users),
            items=len(self.items),
            categories=len(self.categories),
            creators=len(self.creators),
            user_dense=sum(c.size for c in self.user_columns),
            item_dense=sum(c.size for c in self.item_columns),
            category_affinity=self.affinity_index(),
            **extra,
        )

    # --------------------------------------------------------------------------- transform
    def transform(self, frame: pd.DataFrame, position: int | None = None) -> Encoded:
        """Encode rows with ``request_id, user_id, item_id, ts`` and the feature columns.

        Label columns (``clicked``, ``dwell_ms``, ``propensity``, ``position``) are optional:
        serving rows have none (clicked 0, propensity 1, position ``position`` or 1).

        Args:
            frame: The rows.
            position: Score every row at this slot instead of its logged ``position``.

        Raises:
            FeatureError: A required column is missing.
        """
        needed = ["user_id", "item_id", "ts", *SEQUENCE_COLUMNS]
        needed += [c.name for c in [*self.user_columns, *self.item_columns]]
        _require(frame, needed, "feature rows")
        rows = len(frame)
        requests = frame["request_id"] if "request_id" in frame else frame["user_id"]
        request = _factorize(requests)
        if position is not None or "position" not in frame:
            positions = np.full(rows, position or 1, dtype=np.int64)
        else:
            positions = frame["position"].to_numpy(dtype=np.int64)
        long_item, long_gap = self._sequences(frame)
        recent_item, recent_gap = recent_tail(long_item, long_gap, self.recent_length)
        clicked = (
            frame["clicked"].to_numpy(dtype=np.float32)
            if "clicked" in frame
            else np.zeros(rows, np.float32)
        )
        dwell_ms = (
            frame["dwell_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
            if "dwell_ms" in frame
            else np.full(rows, np.nan)
        )
        dwell_mask = np.isfinite(dwell_ms) & (clicked > 0)
        dwell = np.where(dwell_mask, np.log1p(np.nan_to_num(dwell_ms) / 1000.0), 0.0)
        propensity = (
            frame["propensity"].to_numpy(dtype=np.float32)
            if "propensity" in frame
            else np.ones(rows, np.float32)
        )
        item, category, creator = self._item_ids(frame)
        domain = self.item_domain[item]
        if "domain" in frame:
            domain = _domain_ids(frame["domain"])
        return Encoded(
            request=request,
            user=self.users.ids(frame["user_id"]),
            item=item,
            category=category,
            creator=creator,
            domain=domain,
            position=positions,
            user_dense=self._dense(frame, self.user_columns),
            item_dense=self._dense(frame, self.item_columns),
            long_item=long_item,
            long_gap=long_gap,
            recent_item=recent_item,
            recent_gap=recent_gap,
            clicked=clicked,
            dwell=dwell.astype(np.float32),
            dwell_mask=dwell_mask,
            propensity=propensity,
        )

    def batch(self, encoded: Encoded, rows: np.ndarray | slice | None = None) -> Batch:
        """A :class:`Batch` of ``rows`` of ``encoded`` (all rows when None)."""
        pick = slice(None) if rows is None else rows

        def t(values: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(values[pick]))

        item = t(encoded.item)
        long_item = t(encoded.long_item)
        recent_item = t(encoded.recent_item)
        user = t(encoded.user)
        category = torch.from_numpy(self.item_category)
        domain = torch.from_numpy(self.item_domain)
        user_paths = torch.from_numpy(self.user_neighbours)[user].long()
        item_paths = torch.from_numpy(self.item_neighbours)[item].long()
        long_category, long_domain = category[long_item], domain[long_item]
        recent_category, recent_domain = category[recent_item], domain[recent_item]
        if self.user_trained is not None:
            user = _cold_to_unknown(user, self.user_trained)
        if self.item_trained is not None:
            item = _cold_to_unknown(item, self.item_trained)
            long_item = _cold_to_unknown(long_item, self.item_trained)
            recent_item = _cold_to_unknown(recent_item, self.item_trained)
        return Batch(
            request_id=t(encoded.request),
            user_id=user,
            item_id=item,
            category_id=t(encoded.category),
            creator_id=t(encoded.creator),
            domain_id=t(encoded.domain).clamp_min(1),
            position=t(encoded.position),
            user_dense=t(encoded.user_dense),
            item_dense=t(encoded.item_dense),
            long_item_id=long_item,
            long_category_id=long_category,
            long_domain_id=long_domain,
            long_gap_hours=t(encoded.long_gap),
            long_mask=long_item > 0,
            recent_item_id=recent_item,
            recent_category_id=recent_category,
            recent_domain_id=recent_domain,
            recent_gap_hours=t(encoded.recent_gap),
            recent_mask=recent_item > 0,
            user_paths=user_paths,
            user_paths_mask=user_paths > 0,
            item_paths=item_paths,
            item_paths_mask=item_paths > 0,
            clicked=t(encoded.clicked),
            dwell=t(encoded.dwell),
            dwell_mask=t(encoded.dwell_mask),
            propensity=t(encoded.propensity),
        )

    def _dense(self, frame: pd.DataFrame, columns: list[DenseColumn]) -> np.ndarray:
        rows = len(frame)
        return self._standardise([(c, _cells(frame, c)) for c in columns], rows)

    def _standardise(self, cells: list[tuple[DenseColumn, np.ndarray]], rows: int) -> np.ndarray:
        """``rows x F`` float32: each column's :func:`_raw_values`, standardised, NaN -> 0."""
        if not cells:
            return np.zeros((rows, 0), np.float32)
        parts = []
        for column, values in cells:
            values = (_raw_values(values, column) - self.mean[column.name]) / self.scale[
                column.name
            ]
            parts.append(
                np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).reshape(rows, column.size)
            )
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _item_ids(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``N`` int64 item, category and creator ids of rows with ``item_id``."""
        item = self.items.ids(frame["item_id"])
        # A candidate's attributes come from its row when present (feature rows and serving
        # candidates carry them), so a cold-start item still gets its category and creator.
        category = self.item_category[item]
        creator = self.item_creator[item]
        if "category" in frame:
            from_row = self.categories.ids(frame["category"])
            category = np.where(from_row > PAD, from_row, category)
        if "creator_id" in frame:
            from_row = self.creators.ids(frame["creator_id"])
            creator = np.where(from_row > PAD, from_row, creator)
        return item, category, creator

    def item_dense(self, values: Any) -> np.ndarray:
        """``N x F_i`` float32 standardised item columns from arrays of raw values.

        Args:
            values: Column name -> ``N`` values (numbers for scalar columns, vectors for
                vector columns); a column it lacks is missing (NaN) on every row.
        """
        rows = len(next(iter(values.values()))) if values else 0
        cells = []
        for column in self.item_columns:
            if column.name in values:
                cell = np.asarray(values[column.name])
                cells.append((column, cell.astype(np.float64) if not column.width else cell))
            elif column.width:
                cells.append((column, np.full(rows, None, dtype=object)))
            else:
                cells.append((column, np.full(rows, np.nan)))
        return self._standardise(cells, rows)

    def encode_items(self, frame: pd.DataFrame) -> ItemPart:
        """The candidates' side of a request's rows, straight from online item rows.

        Serving's fast path: the same transformations as :meth:`transform` (tested equal) on
        rows with ``item_id``, optionally ``category``/``creator_id``, and the item columns; a
        column the rows lack counts as missing.
        """
        rows = len(frame)
        cells = []
        for column in self.item_columns:
            if column.name in frame:
                cells.append((column, _cells(frame, column)))
            elif column.width:
                cells.append((column, np.full(rows, None, dtype=object)))
            else:
                cells.append((column, np.full(rows, np.nan)))
        item, category, creator = self._item_ids(frame)
        return ItemPart(item, category, creator, self._standardise(cells, rows))

    def encode_user(self, user_id: str, values: Any, ts_s: float) -> UserPart:
        """The user's side of a request's rows (one row), straight from feature values.

        Serving's fast path: the same transformations as :meth:`transform` on a one-row frame
        holding ``values`` (tested equal), without building the frame.

        Args:
            user_id: The user.
            values: Feature name -> value (scalars, vectors, ``seq_item_ids`` newest first,
                ``seq_ts`` epoch seconds); a missing or wrongly shaped value counts as missing.
            ts_s: Request time, epoch seconds (gaps are measured to it).
        """
        sequence = []
        for name in SEQUENCE_COLUMNS:
            value = values.get(name)
            sequence.append(
                np.asarray(value, dtype=object)
                if isinstance(value, list | tuple | np.ndarray)
                else np.asarray([], dtype=object)
            )
        items, stamps = sequence
        if len(items) != len(stamps):
            raise FeatureError("seq_item_ids and seq_ts differ in length on some rows")
        offsets = np.asarray([0, len(items)], np.int64)
        long_item, long_gap = self._sequence_rows(items, stamps, offsets, np.asarray([float(ts_s)]))
        recent_item, recent_gap = recent_tail(long_item, long_gap, self.recent_length)
        return UserPart(
            user=self.users.ids([user_id]),
            user_dense=self._user_row.encode(values),
            long_item=long_item,
            long_gap=long_gap,
            recent_item=recent_item,
            recent_gap=recent_gap,
        )

    @cached_property
    def _user_row(self) -> _DenseRow:
        return _DenseRow.of(self.user_columns, self.mean, self.scale)

    def _sequences(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``N x L`` item ids (oldest first, left-aligned) and gaps in hours to ``ts``."""
        items, offsets = _flatten(frame["seq_item_ids"])
        stamps, stamp_offsets = _flatten(frame["seq_ts"])
        if not np.array_equal(offsets, stamp_offsets):
            raise FeatureError("seq_item_ids and seq_ts differ in length on some rows")
        request_s = _epoch_seconds(frame["ts"]) if len(items) else np.zeros(len(frame))
        return self._sequence_rows(items, stamps, offsets, request_s)

    def _sequence_rows(
        self, items: np.ndarray, stamps: np.ndarray, offsets: np.ndarray, request_s: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_sequences` of flattened lists: values, ``N + 1`` offsets, ``N`` times (s)."""
        rows, width = len(offsets) - 1, self.long_length
        lengths = np.minimum(np.diff(offsets), width)
        row = np.repeat(np.arange(rows), lengths)
        slot = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        source = offsets[row] + lengths[row] - 1 - slot  # newest-first -> oldest first
        long_item = np.zeros((rows, width), np.int64)
        long_gap = np.zeros((rows, width), np.float32)
        if len(row):
            long_item[row, slot] = self.items.ids(items[source])
            gap = (request_s[row] - stamps[source].astype(np.float64)) / 3600.0
            long_gap[row, slot] = np.maximum(gap, 0.0)
        return long_item, long_gap

    # ------------------------------------------------------------------------- persistence
    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(meta, arrays)``: JSON-ready metadata and plain arrays (no objects)."""
        meta = {
            "user_columns": [[c.name, c.width, c.log] for c in self.user_columns],
            "item_columns": [[c.name, c.width, c.log] for c in self.item_columns],
            "graph": self.graph.model_dump(mode="json"),
            "category_vectors": {d: list(names) for d, names in self.category_vectors.items()},
            "long_length": self.long_length,
            "recent_length": self.recent_length,
        }
        arrays = {
            "users": self.users.tokens,
            "items": self.items.tokens,
            "categories": self.categories.tokens,
            "creators": self.creators.tokens,
            "item_category": self.item_category,
            "item_creator": self.item_creator,
            "item_domain": self.item_domain,
            "user_neighbours": self.user_neighbours,
            "item_neighbours": self.item_neighbours,
        }
        if self.user_trained is not None:
            arrays["user_trained"] = self.user_trained
        if self.item_trained is not None:
            arrays["item_trained"] = self.item_trained
        for name in self.mean:
            arrays[f"mean/{name}"] = self.mean[name]
            arrays[f"scale/{name}"] = self.scale[name]
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Featurizer:
        user_columns = [DenseColumn(n, int(w), bool(g)) for n, w, g in meta["user_columns"]]
        item_columns = [DenseColumn(n, int(w), bool(g)) for n, w, g in meta["item_columns"]]
        names = [c.name for c in [*user_columns, *item_columns]]
        return cls(
            users=Vocabulary(arrays["users"].tolist()),
            items=Vocabulary(arrays["items"].tolist()),
            categories=Vocabulary(arrays["categories"].tolist()),
            creators=Vocabulary(arrays["creators"].tolist()),
            item_category=arrays["item_category"],
            item_creator=arrays["item_creator"],
            item_domain=arrays["item_domain"],
            user_columns=user_columns,
            item_columns=item_columns,
            mean={n: arrays[f"mean/{n}"] for n in names},
            scale={n: arrays[f"scale/{n}"] for n in names},
            user_neighbours=arrays["user_neighbours"],
            item_neighbours=arrays["item_neighbours"],
            graph=GraphConfig.model_validate(meta["graph"]),
            long_length=int(meta["long_length"]),
            recent_length=int(meta["recent_length"]),
            user_trained=arrays.get("user_trained"),
            item_trained=arrays.get("item_trained"),
            category_vectors=meta.get("category_vectors"),
        )

    @property
    def feature_names(self) -> list[str]:
        """Every feature column a row must carry (dense columns and the sequence)."""
        return [c.name for c in [*self.user_columns, *self.item_columns]] + list(SEQUENCE_COLUMNS)


# ------------------------------------------------------------------------------- helpers
@dataclass(frozen=True, slots=True)
class _DenseRow:
    """Dense columns of one row as flat arrays: :meth:`Featurizer.encode_user`'s plan.

    The same arithmetic as :func:`_raw_values` and :meth:`Featurizer._standardise` column by
    column (the same float64 operations on the same values, so the same bits), done on one
    ``F``-wide row: a request encodes 69 user columns, and a dozen numpy calls per column
    cost more than the values.
    """

    width: int
    scalar_names: tuple[str, ...]
    scalar_slots: np.ndarray  # positions of the scalar columns in the row
    never_slots: np.ndarray  # positions of ``*hours_since*`` columns (missing: 60 days)
    vectors: tuple[tuple[str, int, int], ...]  # (name, first position, width)
    log: np.ndarray  # F bool: log1p(max(x, 0)) first
    mean: np.ndarray  # F
    scale: np.ndarray  # F

    @classmethod
    def of(
        cls, columns: Sequence[DenseColumn], mean: Mapping[str, np.ndarray], scale: Mapping
    ) -> _DenseRow:
        starts = np.cumsum([0, *(column.size for column in columns)])
        scalars = [(c, int(s)) for c, s in zip(columns, starts, strict=False) if not c.width]
        width = int(starts[-1])
        log = np.zeros(width, bool)
        for column, start in zip(columns, starts, strict=False):
            log[start : start + column.size] = column.log

        def flat(stats: Mapping[str, np.ndarray]) -> np.ndarray:
            if not columns:
                return np.zeros(0, np.float32)
            return np.concatenate([np.reshape(stats[c.name], c.size) for c in columns])

        return cls(
            width=width,
            scalar_names=tuple(column.name for column, _ in scalars),
            scalar_slots=np.asarray([start for _, start in scalars], np.int64),
            never_slots=np.asarray(
                [start for column, start in scalars if "hours_since" in column.name], np.int64
            ),
            vectors=tuple(
                (c.name, int(s), c.width) for c, s in zip(columns, starts, strict=False) if c.width
            ),
            log=log,
            mean=flat(mean),
            scale=flat(scale),
        )

    def encode(self, values: Mapping[str, Any]) -> np.ndarray:
        """``1 x F`` float32: the standardised row of ``values`` (missing or misshapen: 0)."""
        raw = np.full(self.width, np.nan)
        raw[self.scalar_slots] = [_number(values.get(name)) for name in self.scalar_names]
        never = raw[self.never_slots]
        raw[self.never_slots] = np.where(np.isnan(never), _NEVER_HOURS, never)
        for name, start, width in self.vectors:
            value = values.get(name)
            if isinstance(value, list | tuple | np.ndarray):
                vector = np.asarray(value, dtype=np.float64)[:width]
                raw[start : start + len(vector)] = vector
        raw[self.log] = np.log1p(np.maximum(raw[self.log], 0.0))
        row = np.nan_to_num((raw - self.mean) / self.scale, nan=0.0, posinf=0.0, neginf=0.0)
        return row.astype(np.float32).reshape(1, self.width)


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise FeatureError(f"{what} lack columns {missing}")


def _domain_ids(values: Any) -> np.ndarray:
    import pandas as pd

    series = pd.Series(np.asarray(values, dtype=object))
    found = pd.Index(_DOMAIN_ORDER).get_indexer(series.astype(str))
    if (found < 0).any():
        bad = sorted(set(series[found < 0].astype(str)))[:5]
        raise FeatureError(f"unknown domains {bad}; expected one of {_DOMAIN_ORDER}")
    return np.asarray([DOMAIN_IDS[Domain(_DOMAIN_ORDER[i])] for i in found], dtype=np.int64)


def _nonzero_pairs(mapping: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    index = np.nonzero(mapping)[0]
    return torch.as_tensor(index, dtype=torch.int64), torch.as_tensor(mapping[index])


def _dense_columns(frame: pd.DataFrame, names: Sequence[str]) -> list[DenseColumn]:
    import pandas as pd

    columns = []
    for name in names:
        if name not in frame.columns:
            continue
        series = frame[name]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            columns.append(DenseColumn(name, 0, bool(_LOG_LIKE.search(name))))
            continue
        sample = series.dropna()
        if len(sample) and isinstance(sample.iloc[0], (list, tuple, np.ndarray)):
            width = int(max(len(v) for v in sample))
            columns.append(DenseColumn(name, width, bool(_LOG_LIKE.search(name))))
    return columns


def _number(value: Any) -> float:
    """A scalar feature value as float; None, NA, vectors and non-numbers are missing (NaN)."""
    if value is None or isinstance(value, list | tuple | np.ndarray | str):
        return np.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _cells(frame: pd.DataFrame, column: DenseColumn) -> np.ndarray:
    """A column's cells as :func:`_raw_values` takes them."""
    series = frame[column.name]
    if column.width == 0:
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy()


def _raw_values(cells: np.ndarray, column: DenseColumn) -> np.ndarray:
    """The column's transformed values: ``N`` (scalar) or ``N x width`` float64, NaN missing.

    Args:
        cells: ``N`` float64 with NaN missing (scalar columns), or ``N`` vectors, None or NaN
            (vector columns).
        column: The column.
    """
    if column.width == 0:
        values = np.asarray(cells, dtype=np.float64)
        if "hours_since" in column.name:
            values = np.where(np.isnan(values), _NEVER_HOURS, values)
    else:
        values = np.full((len(cells), column.width), np.nan)
        for index, cell in enumerate(cells):
            if cell is not None and not (isinstance(cell, float) and np.isnan(cell)):
                vector = np.asarray(cell, dtype=np.float64)[: column.width]
                values[index, : len(vector)] = vector
    return np.log1p(np.maximum(values, 0.0)) if column.log else values


def _flatten(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Values and offsets of a column of lists (null -> empty)."""
    import pyarrow as pa

    array = pa.array(series.to_numpy(dtype=object), from_pandas=True)
    if pa.types.is_null(array.type):
        return np.asarray([], dtype=object), np.zeros(len(series) + 1, np.int64)
    array = array.cast(pa.large_list(array.type.value_type)).fill_null([])
    offsets = array.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    values = array.flatten().to_numpy(zero_copy_only=False)
    return values, offsets


def recent_tail(items: np.ndarray, gaps: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The last ``width`` real entries of left-aligned rows, left-aligned."""
    lengths = (items > 0).sum(axis=1)
    start = np.maximum(lengths - width, 0)
    index = np.minimum(start[:, None] + np.arange(width)[None, :], items.shape[1] - 1)
    mask = np.arange(width)[None, :] < np.minimum(lengths, width)[:, None]
    recent = np.where(mask, np.take_along_axis(items, index, axis=1), 0)
    recent_gap = np.where(mask, np.take_along_axis(gaps, index, axis=1), 0.0).astype(np.float32)
    return recent, recent_gap


def _cold_to_unknown(ids: torch.Tensor, trained: np.ndarray) -> torch.Tensor:
    """``ids`` with every id that had no training row replaced by the unknown id."""
    known = torch.from_numpy(trained)[ids]
    return torch.where(known, ids, torch.full_like(ids, UNKNOWN))


def _factorize(values: Any) -> np.ndarray:
    import pandas as pd

    codes, _ = pd.factorize(pd.Series(np.asarray(values, dtype=object)), use_na_sentinel=False)
    return codes.astype(np.int64) + 1


def _epoch_seconds(series: pd.Series) -> np.ndarray:
    import pandas as pd

    stamps = pd.to_datetime(series, utc=True)
    return stamps.dt.as_unit("ns").astype("int64").to_numpy() / 1e9
