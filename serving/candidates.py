"""Candidate generation per domain: graph neighbours, friends' recent items, popular, fresh.

Every source works on the model's item vocabulary (ids of :class:`training.featurize.
Vocabulary`), so candidates are items the model knows, and the bundle's metapath tables give
the graph sources without any other store:

- **graph**: the user's own item-ending metapaths (``user_news_video`` and friends: items of
  other domains clicked by people who clicked what this user clicked) and the item metapaths
  (same category, same creator, co-clicked) of the user's newest behaviours;
- **friends**: recent items of the user's circle (``user_friend_user`` neighbours), read from
  the online store;
- **popular** and **fresh**: per domain, from :class:`CandidateIndex`, rebuilt in the
  background from ``item_hourly_stats`` (decayed clicks and ``age_hours``).

Sources fill each domain in that order, each up to its share of the domain (the caps of
:class:`serving.config.CandidateParams` scaled to the size asked for); duplicates and items the
user already clicked are dropped, and more graph, popular then fresh items top the domain up. A
cold-start user (no sequence, unknown to the graph) gets popular and fresh items only.

Content uploaded through the operator console (:mod:`serving.console`) takes part only once
approved: approved uploads lead their domain (up to the fresh share) as cold-start items the
model scores from their category, creator and domain; ids of pending or rejected uploads are
``blocked`` and dropped from every source, even after they have entered the vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from muma.contract import Domain
from training.model.metapaths import METAPATHS

from .features import FeatureStoreDown

if TYPE_CHECKING:
    from training.featurize import Featurizer

    from .config import ServeParams

DOMAIN_NAMES: tuple[str, ...] = tuple(domain.value for domain in Domain)
"""Domain id ``d`` (1-based, as in the featurizer) is ``DOMAIN_NAMES[d - 1]``."""

FRIEND_PATH = "user_friend_user"
_FIRST_ID = 2  # 0 padding, 1 unknown (training.featurize)


def domain_names(featurizer: Featurizer, ids: np.ndarray) -> np.ndarray:
    """Domain name of each vocabulary item id (``""`` for ids without a domain)."""
    lookup = np.asarray(["", *DOMAIN_NAMES], dtype=object)
    return lookup[featurizer.item_domain[ids]]


@dataclass
class CandidateIndex:
    """Popular and fresh items per domain, and their features for degraded serving.

    Attributes:
        popular: Domain -> vocabulary item ids, most clicked first (decayed clicks).
        fresh: Domain -> item ids, newest first (smallest ``age_hours``).
        fallback: ``item_hourly_stats`` rows of the head of both lists, indexed by item id
            token: what degraded requests score with when the online store is down.
        built_at: Epoch seconds of the build.
        from_store: Whether the build read the online store (False: vocabulary order only,
            rebuilt as soon as the store answers).
    """

    popular: dict[str, np.ndarray]
    fresh: dict[str, np.ndarray]
    fallback: pd.DataFrame
    built_at: float = field(default_factory=time.time)
    from_store: bool = True

    @classmethod
    def build(
        cls,
        featurizer: Featurizer,
        read_items: Callable[[list[str]], pd.DataFrame] | None,
        params: ServeParams,
        chunk: int = 2000,
        on_read: Callable[[pd.DataFrame, float], None] | None = None,
    ) -> CandidateIndex:
        """Read every known item's stats (in chunks) and rank them per domain.

        Args:
            featurizer: The model's featurizer (its item vocabulary is the universe).
            read_items: Reads ``item_hourly_stats`` rows (a guarded online read), or None.
            params: Serving params (list lengths).
            chunk: Items per read (each read holds the GIL while it decodes: small chunks
                keep the requests running meanwhile from waiting long).
            on_read: Called with the rows read (every vocabulary item, in vocabulary order)
                and the epoch seconds the read began, when the store answered: the item
                cache encodes the whole catalogue from them.

        A store that is down gives an index in vocabulary order, flagged ``from_store=False``.
        """
        tokens = featurizer.items.tokens
        ids = np.arange(_FIRST_ID, len(tokens) + _FIRST_ID)
        domains = domain_names(featurizer, ids)
        stats = None
        read_at = time.time()
        if read_items is not None:
            try:
                parts = [
                    read_items(tokens[start : start + chunk].tolist())
                    for start in range(0, len(tokens), chunk)
                ]
                stats = pd.concat(parts, ignore_index=True) if parts else None
            except FeatureStoreDown:
                stats = None
        if stats is not None and on_read is not None:
            on_read(stats, read_at)
        keep = max(params.candidates.max_per_domain, params.fallback_items_per_domain)
        popular, fresh, heads = {}, {}, []
        clicks = _popularity(stats, len(ids))
        age = (
            stats["age_hours"].to_numpy(dtype=float, na_value=np.nan)
            if stats is not None and "age_hours" in stats
            else np.full(len(ids), np.nan)
        )
        for domain in DOMAIN_NAMES:
            rows = np.flatnonzero(domains == domain)
            order = rows[np.argsort(-clicks[rows], kind="stable")]
            popular[domain] = ids[order[:keep]]
            aged = rows[np.isfinite(age[rows])]
            fresh[domain] = ids[aged[np.argsort(age[aged], kind="stable")][:keep]]
            head = params.fallback_items_per_domain
            heads.append(order[:head])
            heads.append(aged[np.argsort(age[aged], kind="stable")][: head // 2])
        picked = np.unique(np.concatenate(heads)) if heads else np.zeros(0, np.int64)
        if stats is not None:
            fallback = stats.iloc[picked].set_index("item_id")
        else:
            fallback = pd.DataFrame(
                {"domain": domains[picked], "found": False}, index=pd.Index(tokens[picked])
            )
            fallback.index.name = "item_id"
        return cls(popular, fresh, fallback, time.time(), stats is not None)


def _popularity(stats: pd.DataFrame | None, size: int) -> np.ndarray:
    """Decayed clicks (24 h half-life when built, else the first clicks column); -1 if none."""
    if stats is None:
        return np.zeros(size)
    columns = [name for name in stats.columns if name.startswith("clicks_")]
    if not columns:
        return np.zeros(size)
    name = "clicks_24h" if "clicks_24h" in columns else columns[0]
    values = stats[name].to_numpy(dtype=float, na_value=np.nan)
    return np.where(np.isfinite(values), values, -1.0)


def friends_of(featurizer: Featurizer, user_id: str, limit: int) -> list[str]:
    """Up to ``limit`` distinct friends of the user from the ``user_friend_user`` metapath."""
    names = list(featurizer.graph.user_metapaths)
    if limit <= 0 or FRIEND_PATH not in names:
        return []
    uid = int(featurizer.users.ids([user_id])[0])
    if uid < _FIRST_ID or uid >= len(featurizer.user_neighbours):
        return []
    row = featurizer.user_neighbours[uid, names.index(FRIEND_PATH)]
    friends = list(dict.fromkeys(int(v) for v in row if v >= _FIRST_ID and v != uid))
    return [str(featurizer.users.token(v)) for v in friends[:limit]]


def graph_items(featurizer: Featurizer, user_id: str, recent: Sequence[str]) -> np.ndarray:
    """Item ids reached from the user's item-ending metapaths, then from the recent items."""
    parts = []
    uid = int(featurizer.users.ids([user_id])[0])
    if _FIRST_ID <= uid < len(featurizer.user_neighbours):
        paths = [
            index
            for index, name in enumerate(featurizer.graph.user_metapaths)
            if METAPATHS[name].target == "item"
        ]
        if paths:
            parts.append(featurizer.user_neighbours[uid, paths].ravel())
    if len(recent):
        seeds = featurizer.items.ids(list(recent))
        seeds = seeds[seeds >= _FIRST_ID]
        if len(seeds):
            # Newest behaviour first, then metapath, then walk: the nearest interests lead.
            parts.append(featurizer.item_neighbours[seeds].ravel())
    if not parts:
        return np.zeros(0, np.int64)
    ids = np.concatenate(parts).astype(np.int64)
    return ids[ids >= _FIRST_ID]


def _take(values: np.ndarray, cap: int, chosen: dict[int, None], seen: set[int], size: int) -> int:
    """Add up to ``cap`` new ids of ``values`` to ``chosen`` (at most ``size`` in all)."""
    added = 0
    step = max(2 * cap, 64)  # lists run to a thousand ids; most requests need their head only
    for start in range(0, len(values), step):
        for value in values[start : start + step].tolist():
            if len(chosen) >= size or added >= cap:
                return added
            if value < _FIRST_ID or value in seen or value in chosen:
                continue
            chosen[value] = None
            added += 1
    return added


@dataclass
class Candidates:
    """Candidate item ids per domain, and how many each source gave (after dedup).

    Attributes:
        ids: Domain -> vocabulary item ids.
        sources: Source name -> candidates it gave.
        uploaded: Domain -> approved uploads outside the vocabulary (item id tokens), scored
            as cold-start items; they come before ``ids`` in the domain's candidate list.
    """

    ids: dict[str, np.ndarray]
    sources: dict[str, int]
    uploaded: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.count(domain) for domain in self.ids)

    def count(self, domain: str) -> int:
        """Candidates of ``domain`` (uploads and vocabulary items)."""
        return len(self.uploaded.get(domain, ())) + len(self.ids[domain])

    def tokens(self, featurizer: Featurizer, domain: str) -> list[str]:
        """Item id tokens of ``domain``'s candidates: cold-start uploads first."""
        ids = self.ids[domain]
        known = featurizer.items.tokens[ids - _FIRST_ID].tolist() if len(ids) else []
        return [*self.uploaded.get(domain, ()), *known]


def generate(
    featurizer: Featurizer,
    index: CandidateIndex,
    user_id: str,
    sequence: Sequence[str],
    friends_items: Sequence[str],
    domains: Sequence[str],
    per_domain: int,
    params: ServeParams,
    uploaded: Mapping[str, Sequence[str]] | None = None,
    blocked: Collection[int] = (),
) -> Candidates:
    """Candidates per domain for one request (see the module docstring for the order).

    Args:
        featurizer: The serving model's featurizer (vocabulary, item domains, metapaths).
        index: Popular and fresh items.
        user_id: The user (unknown users get no graph candidates).
        sequence: The user's behaviour sequence, newest first.
        friends_items: Friends' recent items, most relevant first.
        domains: Domains to fill.
        per_domain: Candidates per domain.
        params: Source caps.
        uploaded: Domain -> approved uploads, newest first (they lead, up to the fresh share).
        blocked: Vocabulary ids never to return (pending or rejected uploads).
    """
    caps = params.candidates
    seen = set(featurizer.items.ids(list(sequence)).tolist()) if caps.exclude_seen else set()
    seen.update(blocked)
    recent = list(sequence)[: caps.recent_items]
    graph = graph_items(featurizer, user_id, recent)
    friends = featurizer.items.ids(list(friends_items)) if friends_items else np.zeros(0, np.int64)
    graph_domains = domain_names(featurizer, graph)
    friend_domains = domain_names(featurizer, friends)
    out: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(("uploads", "graph", "friends", "popular", "fresh"), 0)
    cold: dict[str, list[str]] = {}
    shares = {
        "graph": caps.graph,
        "friends": caps.friends,
        "popular": caps.popular,
        "fresh": caps.fresh,
    }
    whole = max(sum(shares.values()), 1)
    # Each source's share of the domain, scaled to the size asked for.
    quotas = {name: -(-per_domain * share // whole) for name, share in shares.items()}
    for domain in domains:
        chosen: dict[int, None] = {}
        cold[domain] = []
        for token in list((uploaded or {}).get(domain, ()))[: min(quotas["fresh"], per_domain)]:
            known = int(featurizer.items.ids([token])[0])
            if known >= _FIRST_ID:  # already in the model's vocabulary: a regular candidate
                counts["uploads"] += _take(np.asarray([known]), 1, chosen, seen, per_domain)
            else:
                cold[domain].append(token)
                counts["uploads"] += 1
        room = per_domain - len(cold[domain])
        in_domain = graph[graph_domains == domain]
        popular = index.popular.get(domain, np.zeros(0, np.int64))
        fresh = index.fresh.get(domain, np.zeros(0, np.int64))
        plan = [
            ("graph", in_domain, quotas["graph"]),
            ("friends", friends[friend_domains == domain], quotas["friends"]),
            ("popular", popular, quotas["popular"]),
            ("fresh", fresh, quotas["fresh"]),
            ("graph", in_domain, per_domain),
            ("popular", popular, per_domain),
            ("fresh", fresh, per_domain),
        ]
        for source, values, cap in plan:
            counts[source] += _take(values, cap, chosen, seen, room)
        out[domain] = np.fromiter(chosen, dtype=np.int64, count=len(chosen))
    return Candidates(out, counts, cold)
