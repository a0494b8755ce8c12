"""Scoring every candidate of a request, all domains at once, with the champion model.

The bundle's own featurizer encodes the rows, exactly as in training. The user's part (dense
user columns, behaviour sequence) is the same on every candidate row, so it is encoded once
and broadcast; the candidates' part comes from the item cache (:mod:`serving.item_cache`);
:class:`RequestEncoder` is tested to give the same tensors as encoding the full frame. One
:meth:`training.bundle.ModelBundle.logits` call (under ``torch.inference_mode``) scores all
candidates of all domains together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from training.batch import DOMAIN_IDS
from training.featurize import Encoded, FeatureError

from .item_cache import ItemRows, encode_items

if TYPE_CHECKING:
    from training.bundle import ModelBundle
    from training.featurize import Featurizer


class RequestEncoder:
    """Encodes a request's rows with the bundle's featurizer, the user's part only once.

    The user's part (id, dense user columns, behaviour sequence) is encoded once, straight
    from the feature values (:meth:`~training.featurize.Featurizer.encode_user`), and broadcast
    to every candidate; the candidates' part comes from :func:`serving.item_cache.encode_items`,
    usually through the :class:`serving.item_cache.ItemCache`. ``tests/serving`` checks that the
    result equals the featurizer's :meth:`~training.featurize.Featurizer.transform` of the full
    frame.

    Args:
        featurizer: The bundle's featurizer.
    """

    def __init__(self, featurizer: Featurizer) -> None:
        self.featurizer = featurizer

    def items(self, frame: pd.DataFrame) -> ItemRows:
        """Encode online-store item rows (see :func:`serving.item_cache.encode_items`)."""
        return encode_items(self.featurizer, frame)

    def request(
        self,
        user_id: str,
        values: Mapping[str, Any],
        items: ItemRows,
        domains: np.ndarray,
        ts_s: float,
        position: int,
    ) -> Encoded:
        """The model inputs of every candidate row.

        Args:
            user_id: The user.
            values: The user's online feature values (the sequence newest first).
            items: The candidates' encoded rows.
            domains: ``N`` domain names, the domain each candidate is scored in.
            ts_s: Request time, epoch seconds.
            position: The serving slot every candidate is scored at.
        """
        one = self.featurizer.encode_user(user_id, values, ts_s)
        rows = len(items)

        def spread(values: np.ndarray) -> np.ndarray:
            return np.broadcast_to(values[:1], (rows, *values.shape[1:]))

        return Encoded(
            request=np.ones(rows, np.int64),
            user=spread(one.user),
            item=items.item,
            category=items.category,
            creator=items.creator,
            domain=domain_ids(domains),
            position=np.full(rows, position or 1, np.int64),
            user_dense=spread(one.user_dense),
            item_dense=items.item_dense,
            long_item=spread(one.long_item),
            long_gap=spread(one.long_gap),
            recent_item=spread(one.recent_item),
            recent_gap=spread(one.recent_gap),
            clicked=np.zeros(rows, np.float32),
            dwell=np.zeros(rows, np.float32),
            dwell_mask=np.zeros(rows, bool),
            propensity=np.ones(rows, np.float32),
        )


_DOMAIN_IDS = {domain.value: index for domain, index in DOMAIN_IDS.items()}


def domain_ids(domains: np.ndarray) -> np.ndarray:
    """``N`` int64 domain ids of domain names (as :class:`training.batch.DOMAIN_IDS`).

    Raises:
        FeatureError: An unknown domain name.
    """
    try:
        return np.fromiter((_DOMAIN_IDS[d] for d in domains), np.int64, len(domains))
    except KeyError as error:
        raise FeatureError(f"unknown domain {error.args[0]!r}") from None


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
