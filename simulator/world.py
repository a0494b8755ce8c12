"""The simulated media world: users, items, a social graph, and the ground-truth click model.

One implementation of the truth serves two callers: the log generator (``simulator.logs``)
calls the vectorised methods for a whole hour of requests, and later issues call
:meth:`MediaWorld.respond` as an online environment to measure any policy's CTR against the
oracle's. All randomness flows from explicit ``numpy.random.Generator`` objects.

Ground truth of a click for user ``u``, item ``i`` shown at 1-based ``position`` in request
``r`` (the ``request_index``-th request of its session)::

    p_click = position ** -position_bias                      # examination (position bias)
            * sigmoid(base[domain(i)]
                      + interest_weight * clip(log(P_u[cat(i)] * n_cats), -3, 3)
                      + quality_weight * quality_i + latent_weight * <z_u, z_i>
                      + session_boost * [cat(i) == session focus]
                      - fatigue_per_request * request_index
                      - ln 2 * age_hours(i) / half_life[domain(i)])

where ``P_u`` is the user's long-term interest distribution over the domain's categories.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from muma.contract import Domain, Relation

from .config import SimulatorConfig

DOMAINS: tuple[Domain, ...] = (Domain.NEWS, Domain.VIDEO, Domain.AD)
_ITEM_PREFIX = {Domain.NEWS: "n", Domain.VIDEO: "v", Domain.AD: "a"}
LATENT_DIM = 8
_MS_PER_HOUR = 3_600_000


def to_ms(moment: datetime) -> int:
    """Milliseconds since the Unix epoch of an aware datetime."""
    return int(moment.astimezone(UTC).timestamp() * 1000)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class SlateOutcome:
    """What a user did with one slate (online environment).

    Attributes:
        clicked: ``K`` booleans, one per slot.
        dwell_ms: ``K`` dwell/watch times in ms (0 where not clicked).
        completion_ratio: ``K`` shares read/watched (0 where not clicked).
        fixation_ms: ``K`` gaze fixation times in ms.
        p_click: ``K`` true click probabilities (the oracle's knowledge).
    """

    clicked: np.ndarray
    dwell_ms: np.ndarray
    completion_ratio: np.ndarray
    fixation_ms: np.ndarray
    p_click: np.ndarray


class MediaWorld:
    """Users, items, creators, categories, a social graph, and their evolution in time.

    Args:
        config: World parameters.
        seed: Seed of the world's structure (users, items, graph).
        start: Time the world starts; items published up to ``backlog_days`` before it exist.
        end: End of the simulated range; items keep being published until then.
    """

    def __init__(self, config: SimulatorConfig, seed: int, start: datetime, end: datetime):
        self.config = config
        self.seed = seed
        self.start = start.astimezone(UTC)
        self.end = end.astimezone(UTC)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))

        # Categories: global index; each belongs to one domain.
        self.category_names: list[str] = []
        self.category_domain: list[Domain] = []
        self.domain_categories: dict[Domain, np.ndarray] = {}
        for domain in DOMAINS:
            first = len(self.category_names)
            self.category_names += list(config.categories[domain])
            self.category_domain += [domain] * len(config.categories[domain])
            self.domain_categories[domain] = np.arange(first, len(self.category_names))
        n_cat = len(self.category_names)
        self._category_domain_idx = np.array([DOMAINS.index(d) for d in self.category_domain])

        self._build_users(rng, n_cat)
        self._build_items(rng)
        self._build_graph(rng)
        self.day_applied = 0
        self.shock_applied = False
        self._log_norm: np.ndarray | None = None

    # ----------------------------------------------------------------- construction
    def _build_users(self, rng: np.random.Generator, n_cat: int) -> None:
        cfg = self.config
        n = cfg.users
        self.user_ids = np.array([f"u{idx:07d}" for idx in range(n)])
        self.community = rng.integers(0, cfg.communities, size=n)
        alpha = cfg.interest_concentration
        prototypes = np.log(rng.dirichlet([alpha] * n_cat, size=cfg.communities) + 1e-4)
        own = np.log(rng.dirichlet([alpha] * n_cat, size=n) + 1e-4)
        # Long-term interest logits; a softmax over a domain's columns gives P_u for it.
        self.interest_logits = (
            cfg.community_weight * prototypes[self.community] + (1 - cfg.community_weight) * own
        )
        self.user_latent = rng.normal(0, 1 / np.sqrt(LATENT_DIM), size=(n, LATENT_DIM))
        # Activity is heavy-tailed: a few users make most requests.
        self.activity = rng.lognormal(mean=0.0, sigma=0.8, size=n)
        self.activity /= self.activity.mean()
        self.domain_preference = rng.dirichlet([2.0, 1.5, 0.5], size=n)
        self.gaze_panel = rng.random(n) < cfg.gaze_panel_share

    def _build_items(self, rng: np.random.Generator) -> None:
        cfg = self.config
        shares = np.array([cfg.domain_shares[d] for d in DOMAINS], dtype=float)
        counts = np.floor(shares / shares.sum() * cfg.items).astype(int)
        counts[0] += cfg.items - counts.sum()
        self.item_domain_idx = np.repeat(np.arange(len(DOMAINS)), counts)
        n = cfg.items
        self.item_category = np.empty(n, dtype=np.int64)
        self.item_creator = np.empty(n, dtype=np.int64)
        self.creator_ids: list[str] = []
        creator_quality: list[np.ndarray] = []
        offset = 0
        for d_idx, domain in enumerate(DOMAINS):
            mask = self.item_domain_idx == d_idx
            cats = self.domain_categories[domain]
            n_creators = cfg.creators_per_domain[domain]
            # Creators specialise: each has a home category their items mostly belong to.
            home = rng.choice(cats, size=n_creators)
            creator = rng.integers(0, n_creators, size=mask.sum())
            own_cat = rng.random(mask.sum()) < 0.8
            self.item_category[mask] = np.where(
                own_cat, home[creator], rng.choice(cats, mask.sum())
            )
            self.item_creator[mask] = creator + offset
            self.creator_ids += [f"c{domain.value[0]}{k:05d}" for k in range(n_creators)]
            creator_quality.append(rng.normal(0, 0.5, size=n_creators))
            offset += n_creators
        self.creator_quality = np.concatenate(creator_quality)
        self.item_quality = rng.normal(0, 0.7, size=n) + self.creator_quality[self.item_creator]
        self.item_latent = rng.normal(0, 1 / np.sqrt(LATENT_DIM), size=(n, LATENT_DIM))
        prefixes = np.array([_ITEM_PREFIX[d] for d in DOMAINS])[self.item_domain_idx]
        self.item_ids = np.char.add(
            prefixes.astype(str), np.char.zfill(np.arange(n).astype(str), 7)
        )
        start_ms, end_ms = to_ms(self.start), to_ms(self.end)
        backlog_ms = int(cfg.backlog_days * 24 * _MS_PER_HOUR)
        # Items are published at a constant rate from ``backlog_days`` before the start to the
        # end, so the catalog of fresh items is stationary however long the range is: a front-
        # loaded catalog would make CTR fall day after day with no drift injected.
        first_ms = start_ms - backlog_ms if backlog_ms else start_ms
        self.item_publish_ms = rng.integers(first_ms, max(end_ms, first_ms + 1), size=n).astype(
            np.int64
        )
        if not backlog_ms:
            self.item_publish_ms[: max(1, n // 2)] = start_ms
        self.item_duration_s = np.where(
            self.item_domain_idx == DOMAINS.index(Domain.VIDEO),
            np.round(rng.lognormal(np.log(300), 0.7, size=n), 1),
            np.nan,
        )

    def _build_graph(self, rng: np.random.Generator) -> None:
        cfg = self.config
        n = cfg.users
        n_edges = round(cfg.mean_friends * n / 2)
        src = rng.integers(0, n, size=n_edges)
        same = rng.random(n_edges) < cfg.homophily
        # Homophily: most ties stay inside the community.
        by_community = np.argsort(self.community, kind="stable")
        sizes = np.bincount(self.community, minlength=cfg.communities)
        starts = np.cumsum(sizes) - sizes
        self.community_members = np.split(by_community, starts[1:])
        home = self.community[src]
        within = by_community[starts[home] + (rng.random(n_edges) * sizes[home]).astype(np.int64)]
        dst = np.where(same, within, rng.integers(0, n, size=n_edges))
        keep = src != dst
        a, b = np.minimum(src[keep], dst[keep]), np.maximum(src[keep], dst[keep])
        pairs = np.unique(np.stack([a, b], axis=1), axis=0)
        self.edges: dict[tuple[int, int], str] = {}
        relations = rng.choice([r.value for r in Relation], size=len(pairs), p=[0.7, 0.1, 0.2])
        self.edges = dict(zip(map(tuple, pairs.tolist()), relations.tolist(), strict=True))

    # ----------------------------------------------------------------- evolution
    def interest_distribution(self, domain: Domain, users: np.ndarray | None = None) -> np.ndarray:
        """``U x C_d`` long-term interest distribution of ``users`` over ``domain``'s categories."""
        cols = self.domain_categories[domain]
        logits = (
            self.interest_logits[:, cols]
            if users is None
            else self.interest_logits[np.ix_(users, cols)]
        )
        logits = logits - logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def _friend_mean_logits(self) -> np.ndarray:
        n = self.config.users
        if not self.edges:
            return self.interest_logits
        pairs = np.array(list(self.edges.keys()))
        sums = np.zeros_like(self.interest_logits)
        degree = np.zeros(n)
        np.add.at(sums, pairs[:, 0], self.interest_logits[pairs[:, 1]])
        np.add.at(sums, pairs[:, 1], self.interest_logits[pairs[:, 0]])
        np.add.at(degree, pairs[:, 0], 1)
        np.add.at(degree, pairs[:, 1], 1)
        has = degree > 0
        means = self.interest_logits.copy()
        means[has] = sums[has] / degree[has, None]
        return means

    def advance_to(self, moment: datetime) -> None:
        """Evolve interests up to ``moment``: daily drift and social influence, then the shock.

        Evolution is a deterministic function of the seed and the day index, so any run that
        reaches the same time has the same interests. Time only moves forward.
        """
        cfg = self.config
        day = int((moment - self.start) // timedelta(days=1))
        while self.day_applied < day:
            self.day_applied += 1
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, self.day_applied]))
            if cfg.drift_per_day > 0:
                self.interest_logits += rng.normal(0, cfg.drift_per_day, self.interest_logits.shape)
            if cfg.social_influence > 0:
                target = self._friend_mean_logits()
                self.interest_logits += cfg.social_influence * (target - self.interest_logits)
            self._log_norm = None
        if cfg.shock is not None and not self.shock_applied and moment >= cfg.shock.at:
            self.apply_shock()

    def apply_shock(self) -> None:
        """Turn a share of users towards one category of the shock's domain."""
        shock = self.config.shock
        assert shock is not None
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 2]))
        cols = self.domain_categories[shock.domain]
        if shock.category is None:
            popularity = self.interest_distribution(shock.domain).mean(axis=0)
            target = cols[int(np.argmin(popularity))]
        else:
            target = self.category_names.index(shock.category)
        affected = rng.random(self.config.users) < shock.share
        # Lift the target above each affected user's current favourite.
        favourite = self.interest_logits[:, cols].max(axis=1)
        self.interest_logits[affected, target] = favourite[affected] + shock.strength
        self.shock_applied = True
        self._log_norm = None

    # ----------------------------------------------------------------- ground truth
    def available_items(self, domain: Domain, at_ms: int) -> np.ndarray:
        """Indices of ``domain``'s items published at or before ``at_ms``."""
        d_idx = DOMAINS.index(domain)
        return np.flatnonzero((self.item_domain_idx == d_idx) & (self.item_publish_ms <= at_ms))

    def relevance_logit(
        self,
        users: np.ndarray,
        items: np.ndarray,
        at_ms: np.ndarray | int,
        focus_category: np.ndarray | None = None,
        request_index: np.ndarray | int = 0,
    ) -> np.ndarray:
        """True relevance logit of ``items`` for ``users`` (broadcastable index arrays)."""
        terms = self.relevance_terms(users, items, at_ms, focus_category, request_index)
        return sum(terms.values())

    def relevance_terms(
        self,
        users: np.ndarray,
        items: np.ndarray,
        at_ms: np.ndarray | int,
        focus_category: np.ndarray | None = None,
        request_index: np.ndarray | int = 0,
    ) -> dict[str, np.ndarray]:
        """The additive terms of :meth:`relevance_logit`, by name (see the module docstring).

        ``base`` (the domain's), ``interest`` (user x category), ``quality`` (the item's),
        ``latent`` (user x item match), ``fatigue`` (the request's index in its session),
        ``freshness`` (age decay) and, with ``focus_category``, ``focus`` (the session's
        hidden interest). Their sum is the logit; leaving terms out gives partial truths.
        """
        cfg = self.config
        users, items = np.broadcast_arrays(users, items)
        cats = self.item_category[items]
        dom_idx = self.item_domain_idx[items]
        n_cats = np.array([len(self.domain_categories[d]) for d in DOMAINS])[dom_idx]
        # P_u[cat] = softmax over the item's domain columns of the user's logits.
        log_p = self.interest_logits[users, cats] - self._log_normaliser()[users, dom_idx]
        affinity = np.clip(log_p + np.log(n_cats), -3.0, 3.0)
        half_life = np.array([cfg.freshness_half_life_hours[d] for d in DOMAINS])[dom_idx]
        age_h = np.maximum(np.asarray(at_ms) - self.item_publish_ms[items], 0) / _MS_PER_HOUR
        latent = np.einsum("...k,...k->...", self.user_latent[users], self.item_latent[items])
        terms = {
            "base": np.array([cfg.base_logit[d] for d in DOMAINS])[dom_idx],
            "interest": cfg.interest_weight * affinity,
            "quality": cfg.quality_weight * self.item_quality[items],
            "latent": cfg.latent_weight * latent * np.sqrt(LATENT_DIM),
            "fatigue": np.broadcast_to(
                -cfg.fatigue_per_request * np.asarray(request_index, dtype=float), users.shape
            ),
            "freshness": -np.log(2.0) * age_h / half_life,
        }
        if focus_category is not None:
            terms["focus"] = cfg.session_boost * (cats == focus_category)
        return terms

    def interest_probability(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``P_u[cat(i)]``: the user's long-term interest in each item's category within its
        domain, which is also the probability that a session's focus is that category."""
        users, items = np.broadcast_arrays(users, items)
        log_p = (
            self.interest_logits[users, self.item_category[items]]
            - self._log_normaliser()[users, self.item_domain_idx[items]]
        )
        return np.exp(log_p)

    def _log_normaliser(self) -> np.ndarray:
        """``U x 3`` log-sum-exp of each user's logits per domain, cached until interests change."""
        if self._log_norm is None:
            logits = self.interest_logits
            self._log_norm = np.empty((len(logits), len(DOMAINS)))
            for d_idx, domain in enumerate(DOMAINS):
                block = logits[:, self.domain_categories[domain]]
                peak = block.max(axis=1)
                self._log_norm[:, d_idx] = peak + np.log(np.exp(block - peak[:, None]).sum(axis=1))
        return self._log_norm

    def examination(self, positions: np.ndarray) -> np.ndarray:
        """Probability that a slot at 1-based ``positions`` is looked at."""
        return np.asarray(positions, dtype=float) ** -self.config.position_bias

    def click_probability(
        self,
        users: np.ndarray,
        items: np.ndarray,
        at_ms: np.ndarray | int,
        positions: np.ndarray,
        focus_category: np.ndarray | None = None,
        request_index: np.ndarray | int = 0,
    ) -> np.ndarray:
        """True click probability: examination at the position times relevance."""
        relevance = sigmoid(
            self.relevance_logit(users, items, at_ms, focus_category, request_index)
        )
        return self.examination(positions) * relevance

    def sample_focus(
        self, users: np.ndarray, domains: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """A session-interest category per request, drawn from the user's long-term interests."""
        focus = np.empty(len(users), dtype=np.int64)
        for d_idx, domain in enumerate(DOMAINS):
            rows = np.flatnonzero(domains == d_idx)
            if rows.size == 0:
                continue
            probs = self.interest_distribution(domain, users[rows])
            draws = rng.random(rows.size)[:, None]
            pick = (probs.cumsum(axis=1) < draws).sum(axis=1)
            focus[rows] = self.domain_categories[domain][np.minimum(pick, probs.shape[1] - 1)]
        return focus

    def consumption(
        self, items: np.ndarray, relevance: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dwell time (ms) and completion ratio of clicked ``items``; rising with relevance."""
        dom = self.item_domain_idx[items]
        completion = rng.beta(1.0 + 4.0 * relevance, 1.0 + 4.0 * (1 - relevance))
        read_ms = rng.lognormal(np.log(60_000), 0.4, size=len(items))  # a full news read
        video_ms = np.nan_to_num(self.item_duration_s[items], nan=0.0) * 1000
        ad_ms = rng.lognormal(np.log(8_000), 0.6, size=len(items))
        full = np.select([dom == 0, dom == 1], [read_ms, video_ms], ad_ms)
        dwell = np.round(completion * full).astype(np.int64)
        return dwell, np.round(completion, 4)

    def fixation(
        self, positions: np.ndarray, relevance: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Gaze fixation ms on each shown item: looked-at slots, longer when relevant."""
        mean_ms = 180 + 1500 * relevance
        looked = rng.random(len(positions)) < self.examination(positions)
        return np.where(looked, rng.gamma(2.0, mean_ms / 2.0), 0.0).round().astype(np.int64)

    # ----------------------------------------------------------------- online environment
    def user_index(self, user_id: str) -> int:
        return int(user_id[1:])

    def item_index(self, item_id: str) -> int:
        return int(item_id[1:])

    def respond(
        self,
        user_id: str,
        at: datetime,
        slate: list[str],
        rng: np.random.Generator,
        request_index: int = 0,
    ) -> SlateOutcome:
        """Show ``slate`` (item ids, top first) to ``user_id`` at ``at``; sample the response.

        The world first evolves to ``at``; the session focus is drawn from the user's
        interests in the domain of the first item.
        """
        self.advance_to(at)
        user = np.array([self.user_index(user_id)])
        items = np.array([self.item_index(item) for item in slate])
        positions = np.arange(1, len(items) + 1)
        focus = self.sample_focus(user, self.item_domain_idx[items[:1]], rng)
        at_ms = to_ms(at)
        relevance = sigmoid(self.relevance_logit(user, items, at_ms, focus, request_index))
        p_click = self.examination(positions) * relevance
        clicked = rng.random(len(items)) < p_click
        dwell, completion = self.consumption(items, relevance, rng)
        return SlateOutcome(
            clicked=clicked,
            dwell_ms=np.where(clicked, dwell, 0),
            completion_ratio=np.where(clicked, completion, 0.0),
            fixation_ms=self.fixation(positions, relevance, rng),
            p_click=p_click,
        )

    def oracle_slate(self, user_id: str, at: datetime, domain: Domain, k: int) -> list[str]:
        """The ``k`` available items of ``domain`` with the highest true relevance (no focus)."""
        self.advance_to(at)
        items = self.available_items(domain, to_ms(at))
        user = np.full(len(items), self.user_index(user_id))
        logit = self.relevance_logit(user, items, to_ms(at))
        best = items[np.argsort(-logit, kind="stable")[:k]]
        return [str(self.item_ids[i]) for i in best]
