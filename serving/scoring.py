"""Scoring every candidate of a request, all domains at once, with the champion model.

The bundle's own featurizer encodes the rows, exactly as in training. The user's part (dense
user columns, behaviour sequence) is the same on every candidate row, so it is encoded once
on a one-row frame and broadcast; :class:`RequestEncoder` is tested to give the same tensors
as encoding the full frame. One :meth:`training.bundle.ModelBundle.logits` call (under
``torch.inference_mode``) scores all candidates of all domains together.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .features import ITEM_ATTRIBUTES, SEQUENCE_FEATURES

if TYPE_CHECKING:
    from training.bundle import ModelBundle
    from training.featurize import Encoded, Featurizer


def _is_vector(value: Any) -> bool:
    return isinstance(value, list | tuple | np.ndarray)


class RequestEncoder:
    """Encodes a request's rows with the bundle's featurizer, the user's part only once.

    Two shallow copies of the featurizer share every fitted array: one without item columns
    encodes the user row (dense user columns, sequence), one without user columns encodes
    the candidate rows; the user's part is then broadcast to every candidate. So the
    featurizer's transformations stay the only implementation, and a request does not
    standardise ~70 empty user columns for each candidate.

    Args:
        featurizer: The bundle's featurizer.
    """

    def __init__(self, featurizer: Featurizer) -> None:
        self.featurizer = featurizer
        self.user_side = copy.copy(featurizer)
        self.user_side.item_columns = []
        self.item_side = copy.copy(featurizer)
        self.item_side.user_columns = []

    def user_frame(self, user_id: str, values: Mapping[str, Any], ts: pd.Timestamp) -> pd.DataFrame:
        """One feature row of the user (no candidate), with every user column the model reads."""
        row: dict[str, Any] = {"user_id": [user_id], "item_id": [None], "ts": [ts]}
        for column in self.featurizer.user_columns:
            value = values.get(column.name)
            if column.width and not _is_vector(value):
                value = None
            elif not column.width and (value is None or _is_vector(value)):
                value = np.nan
            row[column.name] = [value]
        for name in SEQUENCE_FEATURES:
            value = values.get(name)
            row[name] = [list(value) if _is_vector(value) else []]
        row["domain"] = ["news"]
        return pd.DataFrame(row)

    def item_frame(
        self, user_id: str, items: pd.DataFrame, domains: np.ndarray, ts: pd.Timestamp
    ) -> pd.DataFrame:
        """Candidate rows: ids, the candidate's domain/category/creator and item columns."""
        rows = len(items)
        frame: dict[str, Any] = {
            "user_id": np.full(rows, user_id, dtype=object),
            "item_id": items["item_id"].to_numpy(dtype=object),
            "ts": np.full(rows, ts, dtype=object),
            "domain": domains,
        }
        for name in ITEM_ATTRIBUTES[1:]:
            frame[name] = items[name].to_numpy(dtype=object) if name in items else None
        for column in self.featurizer.item_columns:
            if column.name in items:
                frame[column.name] = items[column.name].to_numpy()
            else:
                frame[column.name] = None if column.width else np.nan
        for name in SEQUENCE_FEATURES:
            frame[name] = None
        return pd.DataFrame(frame)

    def encode(self, user: pd.DataFrame, items: pd.DataFrame, position: int) -> Encoded:
        """The model inputs of every candidate row.

        Args:
            user: :meth:`user_frame` (one row).
            items: :meth:`item_frame` (N rows).
            position: The serving slot every candidate is scored at.
        """
        one = self.user_side.transform(user, position=position)
        many = self.item_side.transform(items, position=position)
        rows = len(items)

        def spread(values: np.ndarray) -> np.ndarray:
            return np.broadcast_to(values[:1], (rows, *values.shape[1:]))

        return dataclasses.replace(
            many,
            user=spread(one.user),
            user_dense=spread(one.user_dense),
            long_item=spread(one.long_item),
            long_gap=spread(one.long_gap),
            recent_item=spread(one.recent_item),
            recent_gap=spread(one.recent_gap),
        )

    def request(
        self,
        user_id: str,
        values: Mapping[str, Any],
        items: pd.DataFrame,
        domains: np.ndarray,
        ts: pd.Timestamp,
        position: int,
    ) -> Encoded:
        """:meth:`encode` of the user's row and the candidates' rows."""
        return self.encode(
            self.user_frame(user_id, values, ts),
            self.item_frame(user_id, items, domains, ts),
            position,
        )


@dataclass
class Scores:
    """Calibrated logits ``N`` and, for the bandit, hidden features ``N x H``."""

    logits: np.ndarray
    hidden: np.ndarray | None = None

    @property
    def probabilities(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits))


def score(bundle: ModelBundle, encoded: Encoded, with_hidden: bool = False) -> Scores:
    """One batched inference call over every row (all domains together)."""
    batch = bundle.featurizer.batch(encoded)
    logits = bundle.logits(batch, chunk=max(len(encoded), 1)).numpy().astype(np.float64)
    hidden = bundle.hidden(batch).numpy().astype(np.float64) if with_hidden else None
    return Scores(logits, hidden)


class FastVocabulary:
    """Drop-in for :class:`training.featurize.Vocabulary` with a dict lookup.

    ``Vocabulary.ids`` goes through pandas (about 1.5 ms a call whatever the size), and a
    request encodes ids a dozen times; this gives the same ids (0 padding for None/NaN, 1
    unknown, ``2..n+1`` tokens; values compared as strings) in microseconds. Serving swaps it
    into the loaded featurizer (:func:`speed_up`); ``tests/serving`` checks the parity.
    """

    def __init__(self, vocabulary: Any) -> None:
        self._inner = vocabulary
        self.tokens = vocabulary.tokens
        self._lookup = {token: index for index, token in enumerate(self.tokens.tolist(), start=2)}

    def __len__(self) -> int:
        return len(self._inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def ids(self, values: Any) -> np.ndarray:
        lookup = self._lookup
        if isinstance(values, pd.Series | pd.Index):
            values = values.to_numpy(dtype=object)
        out = np.empty(len(values), dtype=np.int64)
        for position, value in enumerate(values):
            if value is None or value is pd.NA or (isinstance(value, float) and value != value):
                out[position] = 0
            else:
                out[position] = lookup.get(value if isinstance(value, str) else str(value), 1)
        return out

    def token(self, index: int) -> str | None:
        return self._inner.token(index)


def speed_up(featurizer: Featurizer) -> Featurizer:
    """Swap :class:`FastVocabulary` into a featurizer's four vocabularies (in place)."""
    for name in ("users", "items", "categories", "creators"):
        vocabulary = getattr(featurizer, name)
        if not isinstance(vocabulary, FastVocabulary):
            setattr(featurizer, name, FastVocabulary(vocabulary))
    return featurizer
