"""Candidate items encoded once and kept for a few seconds: the request path's near cache.

A request scores a few hundred candidates. Reading their rows from the online store and
encoding them (vocabulary ids, log and standardisation of every item column) used to be half
of a request's time, although the same popular and fresh items are candidates of nearly every
request and their batch features change only when the online store is materialised (hourly
or daily). :class:`ItemCache` keeps each item's encoding -- its item, category and creator ids
and its standardised dense columns -- with the raw values it came from (so the served-features
log still records exactly what was scored), for ``serve.item_cache_seconds``:

* a hit costs an array gather; a miss or an entry older than the TTL is read from the store
  (only those items, in one pipelined round trip) and encoded with the bundle's featurizer;
* while the store is down, entries past their TTL are still served (stale beats the
  fallback's popularity rows); items never seen get the fallback rows, which are not cached;
* the whole catalogue -- every item of the model's vocabulary -- is stored whenever the
  candidate index is built (at load and every ``index_refresh_seconds`` in the background),
  from the rows that build reads anyway (those the store has a row for); with
  ``item_cache_seconds`` longer than that, a request finds every such item in date and reads
  the store only for the others (items outside the vocabulary, such as approved uploads, and
  items without a row) or after the store was down;
* ``item_cache_seconds: 0`` turns it off (every request reads every candidate);
* one cache per loaded model (it holds that model's encoding), so a reload starts with the new
  model's catalogue.

Thread-safe: requests run in a thread pool.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from training.featurize import Featurizer


@dataclass(frozen=True)
class ItemRows:
    """Encoded candidate rows, in the order asked for.

    Attributes:
        item: ``N`` int64 item ids.
        category: ``N`` int64 (the row's category where it has one, else the catalog's).
        creator: ``N`` int64.
        item_dense: ``N x F_i`` float32 standardised item columns.
        raw: ``N x C`` object: the raw value of every featurizer item column, as read.
    """

    item: np.ndarray
    category: np.ndarray
    creator: np.ndarray
    item_dense: np.ndarray
    raw: np.ndarray

    def __len__(self) -> int:
        return int(self.item.shape[0])

    def take(self, rows: np.ndarray) -> ItemRows:
        return ItemRows(*(values[rows] for values in _fields(self)))

    @staticmethod
    def assemble(parts: list[tuple[np.ndarray, ItemRows]], size: int) -> ItemRows:
        """``size`` rows put together from parts, each ``(positions, rows)``: row ``i`` of a
        part goes to ``positions[i]``; the positions of all parts cover ``0..size-1`` once.

        The same as concatenating the parts and reordering by position, in one copy.
        """
        if len(parts) == 1 and np.array_equal(parts[0][0], np.arange(size)):
            return parts[0][1]
        fields = []
        for arrays in zip(*(_fields(rows) for _, rows in parts), strict=True):
            dtype = np.result_type(*arrays)
            out = np.empty((size, *arrays[0].shape[1:]), dtype=dtype)
            for (positions, _), values in zip(parts, arrays, strict=True):
                out[positions] = values
            fields.append(out)
        return ItemRows(*fields)


def _fields(rows: ItemRows) -> tuple[np.ndarray, ...]:
    return rows.item, rows.category, rows.creator, rows.item_dense, rows.raw


def encode_items(featurizer: Featurizer, frame: pd.DataFrame) -> ItemRows:
    """Encode online-store item rows (``item_id`` plus attributes and item columns).

    :meth:`training.featurize.Featurizer.encode_items` gives the ids and dense columns (the
    item side of a request does not depend on the user, the request time or the candidate's
    domain); the raw values of the item columns are kept for the served-features log.
    """
    columns = featurizer.item_columns
    raw = np.empty((len(frame), len(columns)), dtype=object)
    for index, column in enumerate(columns):
        raw[:, index] = frame[column.name].to_numpy() if column.name in frame else None
    part = featurizer.encode_items(frame)
    return ItemRows(part.item, part.category, part.creator, part.item_dense, raw)


class ItemCache:
    """Encoded candidate items by item token, each entry kept ``ttl_seconds``.

    Args:
        ttl_seconds: Age after which an entry is read again (0: no caching).
        max_items: Bound on the entries; when reached, the cache starts over.
    """

    def __init__(self, ttl_seconds: float, max_items: int) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_items = max_items
        self._lock = threading.Lock()
        self._slot: dict[str, int] = {}
        self._rows: ItemRows | None = None
        self._fetched = np.zeros(0)
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0

    def __len__(self) -> int:
        return len(self._slot)

    def lookup(self, tokens: list[str], now_s: float) -> tuple[np.ndarray, np.ndarray]:
        """``(slots, fresh)``: each token's slot (-1 when absent) and whether it is in date."""
        if not self.enabled:
            return np.full(len(tokens), -1, np.int64), np.zeros(len(tokens), bool)
        with self._lock:
            slots = np.fromiter(map(self._slot.get, tokens, repeat(-1)), np.int64, len(tokens))
            fetched = self._fetched
        fresh = slots >= 0
        fresh[fresh] = now_s - fetched[slots[fresh]] <= self.ttl_seconds
        hits = int(fresh.sum())
        self.hits += hits
        self.misses += len(tokens) - hits
        return slots, fresh

    def rows(self, slots: np.ndarray) -> ItemRows:
        """The cached rows at ``slots`` (all ``>= 0``)."""
        with self._lock:
            assert self._rows is not None
            return self._rows.take(slots)

    def store(self, tokens: list[str], rows: ItemRows, now_s: float) -> None:
        """Keep ``rows`` (encoded from the online store) for ``tokens``, read at ``now_s``."""
        if not self.enabled or not tokens:
            return
        with self._lock:
            slots = np.fromiter(map(self._slot.get, tokens, repeat(-1)), np.int64, len(tokens))
            new = np.flatnonzero(slots < 0)
            if len(self._slot) + len(new) > self.max_items:
                self._slot, self._rows, self._fetched = {}, None, np.zeros(0)
                new = np.arange(len(tokens))
            for index in new.tolist():  # a token may repeat: the first occurrence takes a slot
                token = tokens[index]
                slot = self._slot.get(token)
                if slot is None:
                    slot = self._slot[token] = len(self._slot)
                slots[index] = slot
            self._reserve(len(self._slot), rows)
            assert self._rows is not None
            for target, values in zip(_fields(self._rows), _fields(rows), strict=True):
                target[slots] = values
            self._fetched[slots] = now_s

    def _reserve(self, size: int, like: ItemRows) -> None:
        """Grow the buffers (doubling) to hold ``size`` entries shaped like ``like``."""
        capacity = len(self._fetched)
        if size <= capacity and self._rows is not None:
            return
        capacity = max(size, 2 * capacity, 1024)
        grown = []
        for values in _fields(like):
            buffer = np.zeros((capacity, *values.shape[1:]), dtype=values.dtype)
            grown.append(buffer)
        if self._rows is not None:
            for buffer, old in zip(grown, _fields(self._rows), strict=True):
                buffer[: len(old)] = old
        fetched = np.full(capacity, -np.inf)
        fetched[: len(self._fetched)] = self._fetched
        self._rows, self._fetched = ItemRows(*grown), fetched
