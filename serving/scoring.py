"""Scoring every candidate of a request, all domains at once, with the champion model.

The bundle's own featurizer encodes the rows, exactly as in training. The user's part (dense
user columns, behaviour sequence) is the same on every candidate row, so it is encoded once
and broadcast; the candidates' part comes from the item cache (:mod:`serving.item_cache`);
:class:`RequestEncoder` is tested to give the same tensors as encoding the full frame. One
:meth:`training.bundle.ModelBundle.logits` call (under ``torch.inference_mode``) scores all
candidates of all domains together.

A MUMA bundle is scored through :class:`RequestScorer`'s fast path instead: the user's part is
not broadcast at all, and :class:`training.model.request.RequestRanker` computes the model's
logits with every part done once where it changes (per model, per request, per candidate);
``tests/serving/test_fast_scoring.py`` checks it against the ordinary forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from training.batch import DOMAIN_IDS
from training.featurize import UNKNOWN, Encoded, FeatureError

from .item_cache import ItemRows, encode_items

if TYPE_CHECKING:
    from training.bundle import ModelBundle
    from training.featurize import Featurizer, UserPart
    from training.model.request import RequestInputs, RequestRanker


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
    domains = np.asarray(domains, dtype=object)
    if len(domains) == 0:
        return np.zeros(0, np.int64)
    # A request's candidates come in runs of one domain: look each run up once.
    starts = np.concatenate([[0], np.flatnonzero(domains[1:] != domains[:-1]) + 1])
    try:
        ids = [_DOMAIN_IDS[d] for d in domains[starts].tolist()]
    except (KeyError, TypeError) as error:
        raise FeatureError(f"unknown domain {error.args[0]!r}") from None
    return np.repeat(np.asarray(ids, np.int64), np.diff(np.append(starts, len(domains))))


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


class RequestScorer:
    """Scores a request's candidates with one loaded bundle.

    A MUMA model goes through :class:`training.model.request.RequestRanker` (its item graph
    table is built here, once per loaded model); any other model through
    :meth:`RequestEncoder.request` and :func:`score`, the ordinary forward pass over the
    broadcast rows. Both give the same scores (``tests/serving/test_fast_scoring.py``).

    Args:
        bundle: The loaded bundle (its featurizer already :func:`speed_up`-ed, if wanted).
        encoder: The bundle's request encoder.
        fast: Use the fast path when the model allows it (False: always the ordinary one).
    """

    def __init__(self, bundle: ModelBundle, encoder: RequestEncoder, fast: bool = True) -> None:
        import torch

        from training.model.muma import MumaRanker
        from training.model.request import RequestRanker

        self.bundle, self.encoder = bundle, encoder
        self.ranker: RequestRanker | None = None
        if fast and isinstance(bundle.model, MumaRanker):
            bundle.model.eval()
            neighbours = torch.from_numpy(bundle.featurizer.item_neighbours)
            self.ranker = RequestRanker(bundle.model, neighbours, bundle.temperature)

    def score(
        self,
        user_id: str,
        values: Mapping[str, Any],
        items: ItemRows,
        domains: np.ndarray,
        ts_s: float,
        position: int,
        with_hidden: bool = False,
    ) -> Scores:
        """Calibrated logits of every candidate (and hidden features for the bandit).

        Args:
            user_id: The user.
            values: The user's online feature values (the sequence newest first).
            items: The candidates' encoded rows.
            domains: ``N`` domain names, the domain each candidate is scored in.
            ts_s: Request time, epoch seconds.
            position: The serving slot every candidate is scored at.
            with_hidden: Also return the towers' last hidden layer.
        """
        if self.ranker is None:
            encoded = self.encoder.request(user_id, values, items, domains, ts_s, position)
            return score(self.bundle, encoded, with_hidden)
        one = self.encoder.featurizer.encode_user(user_id, values, ts_s)
        inputs = request_inputs(self.encoder.featurizer, one, items, domain_ids(domains), position)
        logits, hidden = self.ranker.scores(inputs)
        return Scores(
            logits.numpy().astype(np.float64),
            hidden.numpy().astype(np.float64) if with_hidden else None,
        )


def request_inputs(
    featurizer: Featurizer, one: UserPart, items: ItemRows, domain: np.ndarray, position: int
) -> RequestInputs:
    """The fast path's tensors of a request: what :meth:`training.featurize.Featurizer.batch`
    makes of the broadcast rows (cold ids to unknown, behaviours' categories and domains from
    the catalog, the user's graph neighbours by its own id), with the user's part kept once.

    Args:
        featurizer: The bundle's featurizer.
        one: The user's encoded part (one row).
        items: The candidates' encoded rows (``N``).
        domain: ``N`` int64 domain ids.
        position: The serving slot (0 counts as 1, as in :meth:`RequestEncoder.request`).
    """
    import torch

    from training.model.request import RequestInputs

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(values))

    def known(ids: np.ndarray, trained: np.ndarray | None) -> torch.Tensor:
        return tensor(ids if trained is None else np.where(trained[ids], ids, UNKNOWN))

    item_trained = featurizer.item_trained
    return RequestInputs(
        user_id=known(one.user, featurizer.user_trained),
        user_dense=tensor(one.user_dense),
        user_paths=tensor(featurizer.user_neighbours[one.user].astype(np.int64)),
        long_item_id=known(one.long_item, item_trained),
        long_category_id=tensor(featurizer.item_category[one.long_item]),
        long_domain_id=tensor(featurizer.item_domain[one.long_item]),
        long_gap_hours=tensor(one.long_gap),
        recent_item_id=known(one.recent_item, item_trained),
        recent_category_id=tensor(featurizer.item_category[one.recent_item]),
        recent_domain_id=tensor(featurizer.item_domain[one.recent_item]),
        recent_gap_hours=tensor(one.recent_gap),
        item_id=known(items.item, item_trained),
        graph_item_id=tensor(items.item),
        category_id=tensor(items.category),
        creator_id=tensor(items.creator),
        domain_id=tensor(np.maximum(domain, 1)),
        item_dense=tensor(items.item_dense),
        position=position or 1,
    )


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
        if isinstance(values, pd.Series | pd.Index | np.ndarray):
            values = values.tolist()
        # Known string tokens in one pass; the rest (padding, unknown, non-strings) one by one.
        try:
            out = np.fromiter(map(lookup.get, values, repeat(-1)), np.int64, len(values))
        except TypeError:  # an unhashable value: every one the slow way
            out = np.full(len(values), -1, np.int64)
        for position in np.flatnonzero(out < 0).tolist():
            value = values[position]
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
