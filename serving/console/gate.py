"""What the recommendation path knows of console uploads: approved ones and blocked ones.

:class:`ContentGate` keeps a snapshot of the upload table, re-read when this process writes
to it (an approval is served on the next request) and at least every ``refresh_seconds``
(so a review made by another process, e.g. a second worker, is seen within seconds):

- ``approved``: per domain, uploads approved less than ``cold_start_hours`` ago, newest
  first: :func:`serving.candidates.generate` puts them first in their domain;
- ``blocked``: every pending or rejected upload: never returned, whatever the source.

:meth:`ContentGate.fill_item_rows` gives a cold-start upload the attributes the ranker scores
it with (domain, category, creator, age since approval) where the online store has no row
for it yet.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .store import ConsoleStore, Status, Upload

if TYPE_CHECKING:
    from training.featurize import Featurizer


@dataclass(frozen=True)
class GateSnapshot:
    """The upload table as the recommendation path uses it.

    Attributes:
        approved: Domain -> approved uploads (recent enough), newest approval first.
        blocked: Item ids of pending and rejected uploads.
        read_at: Epoch seconds of the read.
        generation: The store's write generation at the read.
    """

    approved: dict[str, list[Upload]]
    blocked: frozenset[str]
    read_at: float
    generation: int
    _ids: dict[int, tuple[dict[str, list[str]], frozenset[int]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def for_featurizer(self, featurizer: Featurizer) -> GateView:
        """Approved tokens and blocked vocabulary ids for one model (cached per model)."""
        key = id(featurizer)
        if key not in self._ids:
            tokens = sorted(self.blocked)
            ids = featurizer.items.ids(tokens) if tokens else np.zeros(0, np.int64)
            blocked = frozenset(int(v) for v in ids if v >= 2)
            approved = {d: [u.item_id for u in items] for d, items in self.approved.items()}
            self._ids.clear()  # one model at a time; a reload replaces it
            self._ids[key] = (approved, blocked)
        approved, blocked = self._ids[key]
        by_id = {u.item_id: u for items in self.approved.values() for u in items}
        return GateView(approved, blocked, by_id)


@dataclass(frozen=True)
class GateView:
    """:class:`GateSnapshot` for one featurizer (what ``Service.recommend`` passes on)."""

    approved_ids: dict[str, list[str]]
    blocked_ids: frozenset[int]
    uploads: dict[str, Upload]

    def fill_item_rows(self, rows: pd.DataFrame, now_s: float) -> pd.DataFrame:
        """Domain, category, creator and ``age_hours`` of approved uploads where missing."""
        if not self.uploads or rows.empty:
            return rows
        mask = rows["item_id"].isin(self.uploads.keys()).to_numpy()
        if not mask.any():
            return rows
        rows = rows.copy()
        for column in ("domain", "category", "creator_id", "age_hours"):
            if column not in rows:
                rows[column] = np.nan if column == "age_hours" else None
            if column != "age_hours":
                rows[column] = rows[column].astype(object)
        for index in np.flatnonzero(mask):
            upload = self.uploads[rows.at[index, "item_id"]]
            published = upload.reviewed_at or upload.uploaded_at
            values = {
                "domain": upload.domain,
                "category": upload.category,
                "creator_id": upload.creator_id,
                "age_hours": max(now_s - published, 0.0) / 3600.0,
            }
            for column, value in values.items():
                current = rows.at[index, column]
                if current is None or (isinstance(current, float) and np.isnan(current)):
                    rows.at[index, column] = value
        return rows


class ContentGate:
    """Cached view of the console's uploads for the recommendation path.

    Args:
        store: The console store.
        refresh_seconds: Longest age of a snapshot.
        cold_start_hours: How long an approved upload is pushed as a cold-start candidate
            (after that the regular pipeline, which ingested its landing record, takes over).
    """

    def __init__(
        self, store: ConsoleStore, refresh_seconds: float = 2.0, cold_start_hours: float = 72.0
    ) -> None:
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.cold_start_hours = cold_start_hours
        self._snapshot: GateSnapshot | None = None
        self._lock = threading.Lock()

    def current(self) -> GateSnapshot:
        """The snapshot, re-read after a write of this process or ``refresh_seconds``."""
        snapshot = self._snapshot
        now = time.time()
        if (
            snapshot is None
            or snapshot.generation != self.store.generation
            or now - snapshot.read_at > self.refresh_seconds
        ):
            with self._lock:
                snapshot = self._read(now)
                self._snapshot = snapshot
        return snapshot

    def snapshot(self, featurizer: Featurizer) -> GateView:
        return self.current().for_featurizer(featurizer)

    def _read(self, now: float) -> GateSnapshot:
        generation = self.store.generation
        uploads = self.store.uploads(limit=100_000)
        approved: dict[str, list[Upload]] = {}
        blocked = set()
        horizon = now - self.cold_start_hours * 3600
        for upload in sorted(uploads, key=lambda u: -(u.reviewed_at or 0.0)):
            if upload.status is Status.APPROVED:
                if (upload.reviewed_at or 0.0) >= horizon:
                    approved.setdefault(upload.domain, []).append(upload)
            else:
                blocked.add(upload.item_id)
        return GateSnapshot(approved, frozenset(blocked), now, generation)
