"""The closed loop: policies serve the simulator's users hour by hour, learn from their own logs
and are judged by the simulator's true click probabilities.

Every policy lives in its own copy of the online world: the same users arrive at the same
times with the same candidate sets and session interests (common random numbers), but each
policy's users click on what *that* policy showed, so their behaviour histories, and the
data each learning policy retrains on, differ. The world's interests drift on their own (a
random walk, social influence, and an optional shock), the same for every policy.

Policies:

* ``random``: a uniform slate of the candidates.
* ``popularity``: the candidates with the most clicks in this policy's world over the last
  24 hours.
* ``greedy``: the MUMA ranker's top-K (propensity 1: it never explores).
* ``bandit``: MUMA's bandit-propensity policy: the ranker's probability corrected hour by hour by
  a neural-linear posterior on its last hidden layer (fitted on the ranker's residuals), a UCB
  bonus, a softmax over the top ``top_m``, and per slot an epsilon share of uniform
  exploration and a propensity floor (:func:`policy.policies.choose_slates`).
* ``bandit_unweighted``: the same policy retrained *without* inverse-propensity weighting, to
  measure what debiased retraining is worth.
* ``oracle``: the top-K by the true relevance (it knows the world).

Learning policies serve the simulator's logging policy (a noisy softmax with exact
propensities) on the first day, then retrain the ranker on all their own logs every
``retrain_every_hours``. The ranker here sees behaviour sequences, ids, categories, creators,
domains and the social graph, maintained in the loop hour by hour, and five dense features
the loop computes the way the feature store would (:data:`LOOP_FEATURES`): the item's age, its
smoothed CTR in this policy's own logs so far, and from decayed user x category counters the
user's and the friends' click share of the item's category within its domain and the user's
CTR lift on it. Each impression is logged with the values it was scored with, so retraining
learns from exactly what was served. The Spark feature tables themselves would need the full
batch pipeline per policy and hour.

Outputs: online CTR (realised clicks and the expected CTR from the true probabilities) per
policy, domain and day, regret against the oracle, OPE estimates of the greedy ranker's
first-slot CTR from the bandit's own logs beside its simulated truth, and the oracle's
decomposition: the expected CTR of slates ranked by partial truths (:data:`PARTIAL_TRUTHS`)
and, per learning policy and day, its ranker's weights on the truth's terms
(:func:`ranker_fit_counts`) and the *attainable* share: slates ranked by the exact item terms
plus the user x category interest as estimated from that policy's own counters
(:func:`interest_estimates`, :data:`ESTIMATED_INTEREST_VIEWS`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from policy.bandit import NeuralLinearUCB
from policy.policies import ExplorationParams, choose_slates
from policy.slate import plackett_luce_slates
from simulator.config import InterestShock, SimulatorConfig
from simulator.logs import HourGenerator, hours_between, logging_policy_weights
from simulator.world import DOMAINS, MediaWorld, sigmoid, to_ms

LOOP_FEATURES = (
    "age_hours",
    "item_ctr",
    "category_affinity",
    "friends_category_affinity",
    "category_ctr_lift",
)
"""Dense features of a (user, candidate) row in the loop, in this order (see :func:`_features`).
``age_hours`` is log-transformed by the featurizer (its name says count-like)."""
CTR_PRIOR = (1.0, 20.0)
"""Beta prior (clicks, impressions) of an item's CTR in the loop: a new item starts at 5%."""
SHARE_PRIOR = 2.0
"""Pseudo-clicks pulling a category click share toward a wider circle's share: the user's
toward their circle's (friends and friends of friends), the friends' and the circle's toward
everyone's."""
CATEGORY_CTR_PRIOR = 5.0
"""Pseudo-impressions pulling a user's CTR on a category toward everyone's CTR on it."""

PARTIAL_TRUTHS: dict[str, tuple[str, ...]] = {
    "truth": ("base", "interest", "quality", "latent", "fatigue", "freshness", "focus"),
    "without_focus": ("base", "interest", "quality", "latent", "fatigue", "freshness"),
    "without_focus_latent": ("base", "interest", "quality", "fatigue", "freshness"),
    "without_focus_quality": ("base", "interest", "latent", "fatigue", "freshness"),
    "interest_freshness": ("base", "interest", "fatigue", "freshness"),
    "item_only": ("base", "quality", "fatigue", "freshness"),
    "freshness_only": ("base", "fatigue", "freshness"),
}
"""Slates ranked by sums of the simulator's truth terms (``MediaWorld.relevance_terms``),
judged by the full truth: how much of the oracle each kind of knowledge is worth. ``truth`` is
the oracle; ``without_focus`` drops the session's hidden focus, which nothing a policy sees
reveals. ``expected_focus`` (computed apart) ranks by the click probability averaged over the
focus, ``P_u[c] sigmoid(l + boost) + (1 - P_u[c]) sigmoid(l)``: the best any policy that
knows the user's interests but not the session can do."""
ESTIMATED_INTEREST_VIEWS: dict[str, tuple[str, ...]] = {
    "item_terms": ("base", "quality", "latent", "fatigue", "freshness"),
    "without_latent": ("base", "quality", "fatigue", "freshness"),
    "interest_freshness": ("base", "fatigue", "freshness"),
}
"""Exact truth terms that an *estimated* user x category interest is added to
(:func:`estimated_interest_counts`); with the exact interest they would be the partial truths
``without_focus``, ``without_focus_latent`` and ``interest_freshness``."""
INTEREST_FIT_FEATURES = (2, 3, 4)
"""Columns of :data:`LOOP_FEATURES` (own, friends' affinity, CTR lift) the ``fit`` estimate of
the interest term is a least-squares combination of."""
RANKER_TERMS = ("interest", "quality", "latent", "freshness", "focus")
"""Truth terms the learned rankers' logits are regressed on, within each request."""

LoopPolicy = Literal["random", "popularity", "greedy", "bandit", "bandit_unweighted", "oracle"]
LEARNING = ("greedy", "bandit", "bandit_unweighted")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoopTrainParams(_Strict):
    """The ranker retrained inside the loop (small: it is retrained per policy per day)."""

    epochs: int = Field(default=2, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    long_length: int = Field(default=20, ge=1)
    recent_length: int = Field(default=10, ge=1)
    valid_hours: int = Field(default=3, ge=1)
    max_weight: float = Field(default=20.0, ge=1)
    threads: int = Field(default=2, ge=1)


class LoopParams(_Strict):
    """The ``policy.loop`` section of params.yaml (``muma policy simulate``)."""

    start: datetime = datetime(2026, 11, 1, tzinfo=UTC)
    days: int = Field(default=7, ge=1)
    users: int = Field(default=1000, ge=10)
    items: int = Field(default=1000, ge=20)
    shock_day: int | None = Field(default=3, ge=0, description="interest shock at this day")
    shock_strength: float = Field(default=3.0, gt=0)
    candidates: int = Field(default=50, ge=2)
    slate_size: int = Field(default=5, ge=1)
    policies: tuple[LoopPolicy, ...] = (
        "random",
        "popularity",
        "greedy",
        "bandit",
        "bandit_unweighted",
        "oracle",
    )
    retrain_every_hours: int = Field(default=24, ge=1)
    exploration: ExplorationParams = ExplorationParams()
    train: LoopTrainParams = LoopTrainParams()
    ope_max_weight: float = Field(default=50.0, ge=1)
    category_ucb_alpha: float = Field(
        default=0.0,
        ge=0,
        description="bandits: optimism on the user's CTR per category (0: none)",
    )
    interest_half_life_hours: float = Field(
        default=48.0,
        gt=0,
        description="half-life of the per-user category click and impression counters",
    )


@dataclass
class _Universe:
    """One policy's world: its users' click histories, popularity counts and logs."""

    name: str
    users: int
    length: int
    hist_items: np.ndarray = field(init=False)  # U x L world item index + 1 (0 pad), oldest first
    hist_ts: np.ndarray = field(init=False)  # U x L epoch seconds
    clicks_by_hour: list[np.ndarray] = field(default_factory=list)
    logs: list[dict[str, np.ndarray]] = field(default_factory=list)
    model: Any = None
    bandit: NeuralLinearUCB | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    items: int = 0
    shown: np.ndarray = field(init=False)  # I impressions per world item in this universe
    clicked: np.ndarray = field(init=False)  # I clicks per world item
    categories: int = 1
    friends: Any = None  # U x U sparse adjacency of the social graph
    circle: Any = None  # U x U sparse: friends and friends of friends (:func:`_circle_matrix`)
    category_shown: np.ndarray = field(init=False)  # U x G decayed impressions per category
    category_clicked: np.ndarray = field(init=False)  # U x G decayed clicks per category

    def __post_init__(self) -> None:
        self.hist_items = np.zeros((self.users, self.length), np.int64)
        self.hist_ts = np.zeros((self.users, self.length), np.float64)
        self.shown = np.zeros(self.items, np.int64)
        self.clicked = np.zeros(self.items, np.int64)
        self.category_shown = np.zeros((self.users, self.categories))
        self.category_clicked = np.zeros((self.users, self.categories))

    def count(self, world: MediaWorld, users: np.ndarray, shown: np.ndarray, clicked: np.ndarray):
        """Add a round's ``R x K`` impressions and clicks to the item and category counters."""
        np.add.at(self.shown, shown.ravel(), 1)
        np.add.at(self.clicked, shown[clicked], 1)
        rows = np.broadcast_to(users[:, None], shown.shape)
        category = world.item_category[shown]
        np.add.at(self.category_shown, (rows.ravel(), category.ravel()), 1.0)
        np.add.at(self.category_clicked, (rows[clicked], category[clicked]), 1.0)

    def decay(self, factor: float) -> None:
        """Age the category counters by one step of their half-life."""
        self.category_shown *= factor
        self.category_clicked *= factor

    def remember(self, users: np.ndarray, items: np.ndarray, ts_s: np.ndarray) -> None:
        """Append clicks (in time order) to the users' histories, keeping the newest L."""
        for user, item, ts in zip(users.tolist(), items.tolist(), ts_s.tolist(), strict=True):
            row_items, row_ts = self.hist_items[user], self.hist_ts[user]
            count = int((row_items > 0).sum())
            if count == self.length:
                row_items[:-1], row_ts[:-1] = row_items[1:].copy(), row_ts[1:].copy()
                count -= 1
            row_items[count], row_ts[count] = item + 1, ts


def _features(
    world: MediaWorld,
    universe: _Universe,
    users: np.ndarray,
    items: np.ndarray,
    ts_s: np.ndarray,
) -> np.ndarray:
    """``N x 5`` float64 :data:`LOOP_FEATURES` of rows, from what the policy could know then.

    - ``age_hours``: hours since the item was published.
    - ``item_ctr``: the item's CTR in this policy's logs (Beta prior :data:`CTR_PRIOR`).
    - ``category_affinity``: ``log(share * n)``, ``share`` the user's decayed click share of
      the item's category among the user's clicks *in the item's domain*, ``n`` the domain's
      categories (0: as interested as uniform); shrunk toward the share of the user's circle
      (friends and friends of friends pooled, mostly the user's community), itself smoothed
      toward everyone's.
    - ``friends_category_affinity``: the same for the user's friends' pooled clicks, smoothed
      toward everyone's share (the user-friend-category path of the graph).
    - ``category_ctr_lift``: ``log`` of the user's CTR on the item's category (smoothed toward
      everyone's) over everyone's: clicks per impression, so it does not grow just because the
      policy showed the category more.

    Counters decay with ``policy.loop.interest_half_life_hours``, so interests that changed
    (the shock) show within a few days.

    Args:
        world: The world (publish times and categories are catalog facts).
        universe: The policy's universe (its item and user x category counters so far, the
            social graph's adjacency and the circles).
        users: ``N`` world user indices.
        items: ``N`` world item indices.
        ts_s: ``N`` request times, epoch seconds.
    """
    age_hours = np.maximum(ts_s * 1000.0 - world.item_publish_ms[items], 0.0) / 3_600_000.0
    prior_clicks, prior_shown = CTR_PRIOR
    ctr = (universe.clicked[items] + prior_clicks) / (universe.shown[items] + prior_shown)
    category_domain = np.array([DOMAINS.index(d) for d in world.category_domain])  # G
    to_domain = np.eye(len(DOMAINS))[category_domain]  # G x 3
    n_cats = to_domain.sum(axis=0)[category_domain]  # G
    clicked, shown = universe.category_clicked, universe.category_shown  # U x G
    everyone_clicks = clicked.sum(axis=0)  # G
    everyone_share = (everyone_clicks + 1.0) / (everyone_clicks @ to_domain @ to_domain.T + n_cats)
    friend_clicks = np.asarray(universe.friends @ clicked)  # U x G
    cats, user_rows = world.item_category[items], users
    friend_c = friend_clicks[user_rows, cats]
    friend_d = (friend_clicks @ to_domain)[user_rows, category_domain[cats]]
    friends_share = (friend_c + SHARE_PRIOR * everyone_share[cats]) / (friend_d + SHARE_PRIOR)
    own_c = clicked[user_rows, cats]
    own_d = (clicked @ to_domain)[user_rows, category_domain[cats]]
    circle_clicks = np.asarray(universe.circle @ clicked)  # U x G
    circle_c = circle_clicks[user_rows, cats]
    circle_d = (circle_clicks @ to_domain)[user_rows, category_domain[cats]]
    circle_share = (circle_c + SHARE_PRIOR * everyone_share[cats]) / (circle_d + SHARE_PRIOR)
    own_share = (own_c + SHARE_PRIOR * circle_share) / (own_d + SHARE_PRIOR)
    everyone_ctr = (everyone_clicks + prior_clicks) / (shown.sum(axis=0) + prior_shown)  # G
    user_ctr = (own_c + CATEGORY_CTR_PRIOR * everyone_ctr[cats]) / (
        shown[user_rows, cats] + CATEGORY_CTR_PRIOR
    )
    return np.stack(
        [
            age_hours,
            ctr,
            np.log(own_share * n_cats[cats]),
            np.log(friends_share * n_cats[cats]),
            np.log(user_ctr / everyone_ctr[cats]),
        ],
        axis=1,
    )


def _friend_matrix(world: MediaWorld) -> Any:
    """``U x U`` symmetric sparse adjacency of the world's social graph (1 per friendship)."""
    from scipy import sparse

    pairs = np.asarray(list(world.edges), dtype=np.int64).reshape(-1, 2)
    n = len(world.user_ids)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
    cols = np.concatenate([pairs[:, 1], pairs[:, 0]])
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))


def _circle_matrix(friends: Any) -> Any:
    """``U x U`` sparse 0/1 matrix of each user's friends and friends of friends (not the user).

    In the simulator 85% of friendships stay within a community and interests are 70% the
    community's prototype, so the circle's pooled clicks (about 60 users at 8 friends each)
    estimate what a user's few clicks cannot: the share toward which their own is shrunk. On
    the 4-day loop this raised the attainable share of the link estimate by 1-3 points over
    shrinking toward the friends' share (docs/policy.md).
    """
    from scipy import sparse

    reach = ((friends + friends @ friends) > 0).astype(np.float64).tolil()
    reach.setdiag(0.0)
    return sparse.csr_matrix(reach)


def _world(params: LoopParams, seed: int) -> MediaWorld:
    end = params.start + timedelta(days=params.days)
    shock = None
    if params.shock_day is not None and params.shock_day < params.days:
        shock = InterestShock(
            at=params.start + timedelta(days=params.shock_day), strength=params.shock_strength
        )
    config = SimulatorConfig(users=params.users, items=params.items, shock=shock)
    return MediaWorld(config, seed, params.start, end)


def _encode(
    world: MediaWorld,
    maps: dict[str, np.ndarray],
    featurizer: Any,
    rows: dict[str, np.ndarray],
):
    """Model inputs from the loop's own arrays (ids, sequence, graph, :data:`LOOP_FEATURES`).

    Args:
        world: The world (item domains).
        maps: World user/item/category/creator index -> the featurizer's ids.
        featurizer: The ranker's featurizer (recent window, dense standardisation).
        rows: ``user``, ``item`` (world indices), ``ts`` (epoch s), ``hist_items`` (world item
            index + 1, 0 pad), ``hist_ts`` and ``dense`` (``N x 3``, :func:`_features`) per
            row; optional ``request``, ``position``, ``clicked``, ``propensity`` (defaults: one
            request per row, slot 1, 0, 1).
    """
    from training.featurize import Encoded, recent_tail

    recent_length = featurizer.recent_length
    users, items, n = rows["user"], rows["item"], len(rows["user"])
    hist = rows["hist_items"]
    long_item = np.where(hist > 0, maps["item"][np.maximum(hist - 1, 0)], 0)
    gaps = np.where(hist > 0, (rows["ts"][:, None] - rows["hist_ts"]) / 3600.0, 0.0)
    long_gap = np.maximum(gaps, 0.0).astype(np.float32)
    recent_item, recent_gap = recent_tail(long_item, long_gap, recent_length)
    return Encoded(
        request=rows.get("request", np.arange(1, n + 1, dtype=np.int64)),
        user=maps["user"][users],
        item=maps["item"][items],
        category=maps["category"][items],
        creator=maps["creator"][items],
        domain=world.item_domain_idx[items].astype(np.int64) + 1,
        position=rows.get("position", np.ones(n, np.int64)).astype(np.int64),
        user_dense=np.zeros((n, 0), np.float32),
        item_dense=featurizer.item_dense(dict(zip(LOOP_FEATURES, rows["dense"].T, strict=True))),
        long_item=long_item,
        long_gap=long_gap,
        recent_item=recent_item,
        recent_gap=recent_gap,
        clicked=rows.get("clicked", np.zeros(n)).astype(np.float32),
        dwell=np.zeros(n, np.float32),
        dwell_mask=np.zeros(n, bool),
        propensity=np.clip(rows.get("propensity", np.ones(n)), 1e-6, 1.0).astype(np.float32),
    )


def _retrain(world: MediaWorld, universe: _Universe, params: LoopParams, seed: int, now_s: float):
    """Refit the ranker on all of the universe's logs (time split: the last hours validate)."""
    import pandas as pd
    import torch

    from training.bundle import build_model
    from training.config import TrainParams
    from training.featurize import Encoded, Featurizer
    from training.losses import LossConfig
    from training.model.config import GraphConfig
    from training.pipeline import model_config
    from training.train import TrainingError, fit

    logs = {key: np.concatenate([log[key] for log in universe.logs]) for key in universe.logs[0]}
    users, items = logs["user"], logs["item"]
    names = np.asarray(world.category_names)
    catalog = pd.DataFrame(
        {
            "item_id": world.item_ids,
            "domain": [DOMAINS[d].value for d in world.item_domain_idx],
            "category": names[world.item_category],
            "creator_id": np.char.add("c", world.item_creator.astype(str)),
        }
    )
    pairs = np.asarray(list(world.edges), dtype=np.int64).reshape(-1, 2)
    friends = pd.DataFrame(
        {"user_id": world.user_ids[pairs[:, 0]], "friend_id": world.user_ids[pairs[:, 1]]}
    )
    frame = pd.DataFrame(
        {
            "user_id": world.user_ids[users],
            "item_id": world.item_ids[items],
            "clicked": logs["clicked"],
            "domain": [DOMAINS[d].value for d in world.item_domain_idx[items]],
            **dict(zip(LOOP_FEATURES, logs["dense"].T, strict=True)),
        }
    )
    train = params.train
    featurizer = Featurizer.fit(
        frame,
        catalog,
        friends,
        user_feature_names=[],
        item_feature_names=list(LOOP_FEATURES),
        graph=GraphConfig(),
        long_length=train.long_length,
        recent_length=min(train.recent_length, train.long_length),
        seed=seed,
    )
    maps = {
        "user": featurizer.users.ids(world.user_ids),
        "item": featurizer.items.ids(world.item_ids),
        "category": featurizer.categories.ids(catalog["category"]),
        "creator": featurizer.creators.ids(catalog["creator_id"]),
    }
    universe.stats["maps"] = maps
    encoded = _encode(world, maps, featurizer, logs)
    cut = now_s - train.valid_hours * 3600
    is_valid = logs["ts"] >= cut
    split = {
        name: Encoded(**{k: getattr(encoded, k)[rows] for k in Encoded.__dataclass_fields__})
        for name, rows in (("train", ~is_valid), ("valid", is_valid))
    }
    weighted = universe.name != "bandit_unweighted"
    train_params = TrainParams(
        epochs=train.epochs,
        batch_size=train.batch_size,
        lr=train.lr,
        threads=train.threads,
        long_length=train.long_length,
        early_stopping_patience=1,
        loss=LossConfig(propensity_weighting=weighted, max_weight=train.max_weight),
    )
    config = model_config(train_params, featurizer)
    torch.manual_seed(seed)
    model = build_model("muma", config)
    try:
        result = fit(
            model, featurizer, split["train"], split["valid"], train_params, seed, progress=False
        )
    except TrainingError:
        return  # keep the previous model (e.g. a validation window without clicks)
    universe.model = (model, featurizer, result.temperature)
    hidden_dim = config["towers"]["tower"][-1]
    universe.bandit = NeuralLinearUCB(
        hidden_dim, [d.value for d in DOMAINS], alpha=params.exploration.ucb_alpha
    )
    universe.stats["slot_logit_offset"] = _slot_logit_offsets(
        model, result.temperature, params.slate_size
    )
    if universe.name in ("bandit", "bandit_unweighted"):
        _refit_posterior(
            universe.bandit, model, result.temperature, featurizer, encoded, world, items, logs
        )
    universe.stats.setdefault("retrains", []).append(
        {
            "rows": len(encoded),
            "valid_auc": result.history[result.best_epoch - 1].valid_auc,
            "posterior_rows": sum(universe.bandit.observations.values()),
        }
    )


def _slot_logit_offsets(model: Any, temperature: float, slate_size: int) -> np.ndarray:
    """``K`` calibrated logit offsets of slots ``1..K`` relative to slot 1 (the model's own
    position bias), so a slot-1 logit can predict a click in any slot."""
    import torch

    model.eval()
    with torch.inference_mode():
        positions = torch.arange(1, slate_size + 1)
        bias = model.position_bias(model.embeddings.position(positions)).numpy()
    return (bias - bias[0]) / temperature


def _refit_posterior(
    bandit: NeuralLinearUCB,
    model: Any,
    temperature: float,
    featurizer: Any,
    encoded: Any,
    world: MediaWorld,
    items: np.ndarray,
    logs: dict[str, np.ndarray],
    chunk: int = 8192,
) -> None:
    """Fit the new posterior on every logged impression, in the retrained hidden space.

    Neural-linear (Riquelme et al. 2018): after the representation is retrained, the linear
    posterior is recomputed on all past data. A posterior started empty would give every
    candidate a wide bonus after each retrain, and the policy would explore blindly for a day.
    The posterior regresses the *residual* ``clicked - p`` on the hidden features, ``p`` the
    calibrated ranker's click probability at the logged slot: its mean starts near zero and
    then tracks, hour by hour, what the frozen ranker gets wrong until the next retrain.
    """
    import torch

    model.eval()
    domains = world.item_domain_idx[items]
    with torch.inference_mode():
        for start in range(0, len(encoded), chunk):
            rows = np.arange(start, min(start + chunk, len(encoded)))
            batch = featurizer.batch(encoded, rows)
            hidden_t = model.hidden(batch)
            position = model.position_bias(model.embeddings.position(batch.position))
            logit = model.head(hidden_t, position).click_logit.numpy() / temperature
            residual = logs["clicked"][rows].astype(float) - sigmoid(logit.astype(np.float64))
            hidden = hidden_t.numpy().astype(np.float64)
            for d_idx, domain in enumerate(DOMAINS):
                mine = domains[rows] == d_idx
                if mine.any():
                    bandit.update(domain.value, hidden[mine], residual[mine])


def _score(world, universe, users, cand, ts_s, want_hidden: bool):
    """Calibrated logits ``R x C`` (and hidden ``R x C x H``) of the universe's ranker."""
    import torch

    model, featurizer, temperature = universe.model
    r, c = cand.shape
    hist_items = np.repeat(universe.hist_items[users], c, axis=0)
    encoded = _encode(
        world,
        universe.stats["maps"],
        featurizer,
        {
            "user": np.repeat(users, c),
            "item": cand.ravel(),
            "ts": np.repeat(ts_s, c),
            "hist_items": hist_items,
            "hist_ts": np.repeat(universe.hist_ts[users], c, axis=0),
            "dense": _features(
                world, universe, np.repeat(users, c), cand.ravel(), np.repeat(ts_s, c)
            ),
            "request": np.repeat(np.arange(1, r + 1, dtype=np.int64), c),
        },
    )
    batch = featurizer.batch(encoded)
    model.eval()
    with torch.inference_mode():
        hidden = model.hidden(batch)
        position = model.position_bias(model.embeddings.position(batch.position))
        logits = model.head(hidden, position).click_logit / temperature
    hidden_np = hidden.numpy().reshape(r, c, -1) if want_hidden else None
    return logits.numpy().reshape(r, c), hidden_np


def run_loop(params: LoopParams, seed: int, progress: bool = False) -> dict[str, Any]:
    """Run every policy of ``params`` for ``params.days`` simulated days; return the report."""
    import torch

    started = time.perf_counter()
    torch.set_num_threads(params.train.threads)
    world = _world(params, seed)
    generator = HourGenerator(world, seed)
    logging = world.config.logging_policy
    friends = _friend_matrix(world)
    circle = _circle_matrix(friends)
    decay = 0.5 ** (1.0 / params.interest_half_life_hours)
    universes = {
        name: _Universe(
            name,
            params.users,
            params.train.long_length,
            items=len(world.item_ids),
            categories=len(world.category_names),
            friends=friends,
            circle=circle,
        )
        for name in params.policies
    }
    end = params.start + timedelta(days=params.days)
    hours = list(hours_between(params.start, end))
    daily: dict[str, list[dict[str, float]]] = {name: [] for name in params.policies}
    totals = {
        name: {"impressions": 0, "clicks": 0, "expected": 0.0, "by_domain": {}}
        for name in params.policies
    }
    ope_rows: list[dict[str, np.ndarray]] = []
    day_acc = {name: [0, 0, 0.0] for name in params.policies}
    partial_day: dict[str, float] = {}
    partial_total: dict[str, float] = {}
    partial_daily: list[dict[str, float]] = []
    for hour_index, hour in enumerate(hours):
        world.advance_to(hour)
        h0 = to_ms(hour)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7, hour_index]))
        requests = generator.requests(hour, rng)
        for universe in universes.values():
            universe.decay(decay)
        if hour_index and hour_index % params.retrain_every_hours == 0:
            for name in LEARNING:
                if name in universes:
                    _retrain(world, universes[name], params, seed + hour_index, h0 / 1000)
        for d_idx, domain in enumerate(DOMAINS):
            req = requests[requests["domain"] == d_idx]
            available = world.available_items(domain, h0)
            if req.empty or len(available) < params.slate_size:
                continue
            c = min(params.candidates, len(available))
            pool = rng.permutation(available)
            offsets = rng.integers(0, len(pool), size=len(req))
            cand = pool[(offsets[:, None] + np.arange(c)) % len(pool)]  # R x C
            users = req["user"].to_numpy()
            ts_ms = req["ts"].to_numpy()
            ts_s = ts_ms / 1000.0
            focus = world.sample_focus(users, np.full(len(users), d_idx), rng)
            index = req["index"].to_numpy()
            terms = world.relevance_terms(
                users[:, None], cand, ts_ms[:, None], focus[:, None], index[:, None]
            )
            relevance = sigmoid(sum(terms.values()))  # R x C, true
            uniforms = rng.random((len(req), params.slate_size))
            noise = rng.normal(0, 1.5, size=cand.shape)
            policy_rng = np.random.default_rng(
                np.random.SeedSequence([seed, 11, hour_index, d_idx])
            )
            positions = np.arange(1, params.slate_size + 1)
            examination = world.examination(positions)
            partial = partial_truth_counts(
                terms,
                world.interest_probability(users[:, None], cand),
                world.config.session_boost,
                examination,
            )
            _add_exploration(partial_day, partial)
            _add_exploration(partial_total, partial)
            for name, universe in universes.items():
                if name in LEARNING:
                    _estimate_interest_round(world, universe, users, cand, ts_s, terms, examination)
                chosen, propensity = _choose(
                    name,
                    universe,
                    world,
                    params,
                    users,
                    cand,
                    ts_s,
                    relevance,
                    noise,
                    logging,
                    policy_rng,
                    domain.value,
                )
                shown = np.take_along_axis(cand, chosen, axis=1)
                p_click = examination[None, :] * np.take_along_axis(relevance, chosen, axis=1)
                clicked = uniforms < p_click
                _account(totals[name], day_acc[name], domain.value, clicked, p_click)
                hist_items = np.repeat(universe.hist_items[users], params.slate_size, axis=0)
                row_ts = np.repeat(ts_s, params.slate_size)
                # The values the ranker was served with: counters as they were before this round.
                dense = _features(
                    world, universe, np.repeat(users, params.slate_size), shown.ravel(), row_ts
                )
                universe.count(world, users, shown, clicked)
                universe.logs.append(
                    {
                        "user": np.repeat(users, params.slate_size),
                        "item": shown.ravel(),
                        "ts": row_ts,
                        "request": np.repeat(
                            hour_index * 10_000_000 + req.index.to_numpy(), params.slate_size
                        ),
                        "position": np.tile(positions, len(users)),
                        "propensity": propensity.ravel(),
                        "clicked": clicked.ravel(),
                        "hist_items": hist_items,
                        "hist_ts": np.repeat(universe.hist_ts[users], params.slate_size, axis=0),
                        "dense": dense,
                    }
                )
                ranker_logits = universe.stats.pop("ranker_logits", None)
                if ranker_logits is not None:
                    _add_exploration(
                        universe.stats.setdefault("fit_day", {}),
                        ranker_fit_counts(ranker_logits, terms),
                    )
                logits = universe.stats.pop("logits", None)
                if universe.bandit is not None and "hidden" in universe.stats:
                    hidden = universe.stats.pop("hidden")
                    rows = np.take_along_axis(hidden, chosen[:, :, None], axis=1)
                    universe.bandit.update(
                        domain.value,
                        rows.reshape(-1, rows.shape[-1]),
                        _residual(logits, chosen, clicked, universe.stats["slot_logit_offset"]),
                    )
                if logits is not None:
                    _add_exploration(
                        universe.stats.setdefault("explore_day", {}),
                        exploration_counts(logits, chosen, relevance, examination),
                    )
                if name == "bandit" and logits is not None:
                    ope_rows.append(
                        _ope_round(
                            logits,
                            chosen,
                            propensity,
                            clicked,
                            relevance,
                            examination,
                        )
                    )
                order = np.argsort(np.repeat(ts_s, params.slate_size), kind="stable")
                hit = clicked.ravel()[order]
                universe.remember(
                    np.repeat(users, params.slate_size)[order][hit],
                    shown.ravel()[order][hit],
                    np.repeat(ts_s, params.slate_size)[order][hit],
                )
                universe.clicks_by_hour.append(shown[clicked])
        if (hour_index + 1) % 24 == 0:
            day = (hour_index + 1) // 24
            for name in params.policies:
                shown_n, clicks, expected = day_acc[name]
                daily[name].append(
                    {
                        "day": day,
                        "ctr": clicks / shown_n if shown_n else 0.0,
                        "expected_ctr": expected / shown_n if shown_n else 0.0,
                    }
                )
                day_acc[name] = [0, 0, 0.0]
                explore = universes[name].stats.pop("explore_day", None)
                if explore:
                    daily[name][-1]["exploration"] = _exploration_summary(explore)
                fit = universes[name].stats.pop("fit_day", None)
                if fit:
                    daily[name][-1]["ranker_vs_truth"] = ranker_fit_summary(fit)
                interest = universes[name].stats.pop("interest_day", None)
                if interest:
                    daily[name][-1]["estimated_interest"] = _estimated_interest_shares(
                        interest, partial_day["truth"]
                    )
            partial_daily.append(
                {"day": day, **{n: v / partial_day["shown"] for n, v in partial_day.items()}}
            )
            partial_day = {}
            if progress:
                line = ", ".join(f"{n} {daily[n][-1]['expected_ctr']:.4f}" for n in params.policies)
                print(f"day {day}: expected CTR {line}", flush=True)
    report = _report(
        params, seed, totals, daily, universes, ope_rows, time.perf_counter() - started
    )
    report["partial_truths"] = _partial_truth_report(partial_total, partial_daily, report)
    if partial_total:
        report["partial_truths"]["estimated_interest"] = {
            name: {
                **_estimated_interest_shares(
                    universe.stats["interest_total"], partial_total["truth"]
                ),
                "fit_weights": dict(
                    zip(
                        [LOOP_FEATURES[i] for i in INTEREST_FIT_FEATURES],
                        interest_fit_weights(universe.stats.get("interest_fit")).round(4).tolist(),
                        strict=True,
                    )
                ),
            }
            for name, universe in universes.items()
            if "interest_total" in universe.stats
        }
    return report


def _choose(
    name, universe, world, params, users, cand, ts_s, relevance, noise, logging, rng, domain
):
    """Chosen columns ``R x K`` and their propensities for one policy."""
    k = params.slate_size
    r, c = cand.shape
    if name == "oracle":
        chosen = np.argsort(-relevance, axis=1, kind="stable")[:, :k]
        return chosen, np.ones((r, k))
    if name == "random":
        return plackett_luce_slates(np.full((r, c), 1.0 / c), k, rng)
    if name == "popularity":
        recent = universe.clicks_by_hour[-24 * len(DOMAINS) :]  # one entry per hour and domain
        counts = (
            np.bincount(np.concatenate(recent), minlength=len(world.item_ids)) if recent else None
        )
        score = counts[cand] if counts is not None else np.zeros((r, c))
        score = score + rng.random((r, c)) * 1e-3  # ties broken at random
        return np.argsort(-score, axis=1, kind="stable")[:, :k], np.ones((r, k))
    if universe.model is None:  # the first day: the simulator's logging policy
        truth = np.log(relevance / (1 - relevance))
        scores = logging.knowledge * truth + (1 - logging.knowledge) * noise
        weights = logging_policy_weights(scores, logging.temperature, logging.epsilon)
        return plackett_luce_slates(weights, k, rng)
    bandit = name in ("bandit", "bandit_unweighted")
    logits, hidden = _score(world, universe, users, cand, ts_s, bandit)
    universe.stats["ranker_logits"] = logits
    if not bandit:
        slates = choose_slates("greedy", logits, k, params.exploration, rng)
    else:
        universe.stats["hidden"], universe.stats["logits"] = hidden, logits
        day = universe.stats.setdefault("explore_day", {})
        _add_exploration(
            day,
            {
                "width": float(universe.bandit.width(domain, hidden).sum()),
                "logit_std": float(logits.std(axis=1).sum() * c),
                "candidates": float(r * c),
            },
        )
        bonus = None
        if params.category_ucb_alpha > 0:
            bonus = category_ucb_bonus(world, universe, users, cand, params.category_ucb_alpha)
        slates = choose_slates(
            "bandit",
            logits,
            k,
            params.exploration,
            rng,
            bandit=universe.bandit,
            domain=domain,
            hidden=hidden,
            bonus=bonus,
        )
    return slates.chosen, slates.propensity


def category_ucb_bonus(
    world: MediaWorld, universe: _Universe, users: np.ndarray, cand: np.ndarray, alpha: float
) -> np.ndarray:
    """``R x C`` optimism on each user's CTR in each candidate's category, in logit units.

    A Beta posterior per user and category from the universe's decayed counters, with
    :data:`CATEGORY_CTR_PRIOR` pseudo-impressions at everyone's CTR on the category: the bonus
    is ``logit(mean + alpha * sd) - logit(mean)``. Categories a user has seen little of (or
    not since interests moved: the counters decay) get the largest bonus, so after a shock the
    bandit tries the user's neglected categories instead of waiting for the next retrain.
    """
    cats = world.item_category[cand]  # R x C
    shown = universe.category_shown[users[:, None], cats]
    clicked = universe.category_clicked[users[:, None], cats]
    prior_clicks, prior_shown = CTR_PRIOR
    everyone = (universe.category_clicked.sum(axis=0) + prior_clicks) / (
        universe.category_shown.sum(axis=0) + prior_shown
    )  # G
    strength = shown + CATEGORY_CTR_PRIOR
    mean = np.clip((clicked + CATEGORY_CTR_PRIOR * everyone[cats]) / strength, 1e-4, 1 - 1e-4)
    upper = np.clip(mean + alpha * np.sqrt(mean * (1 - mean) / (strength + 1)), 1e-4, 1 - 1e-4)
    return np.log(upper / (1 - upper)) - np.log(mean / (1 - mean))


def _residual(
    logits: np.ndarray, chosen: np.ndarray, clicked: np.ndarray, slot_offset: np.ndarray
) -> np.ndarray:
    """``R*K`` ``clicked - p`` of shown items, ``p`` the ranker's click probability in their
    slot (``R x C`` slot-1 logits plus the ``K`` slot offsets)."""
    shown = np.take_along_axis(logits, chosen, axis=1) + slot_offset[None, : chosen.shape[1]]
    return (clicked.astype(float) - sigmoid(shown.astype(np.float64))).ravel()


def exploration_counts(
    logits: np.ndarray, chosen: np.ndarray, relevance: np.ndarray, examination: np.ndarray
) -> dict[str, float]:
    """What a round of exploration cost and found, against the ranker's own top-K.

    A shown item is *explored* when it is not in the ranker's top-K by logit (greedy's slate
    from the same model). Counts are sums so rounds and days add up.

    Args:
        logits: ``R x C`` the ranker's logits (before any bonus).
        chosen: ``R x K`` the shown columns, slot order.
        relevance: ``R x C`` true click probabilities given examination.
        examination: ``K`` examination probability per slot.

    Returns:
        ``shown``, ``explored`` (shown items outside the ranker's top-K), ``explored_in_oracle``
        (of those, in the true top-K), ``exploited_in_oracle`` (shown top-K items in the true
        top-K), ``expected`` (expected clicks of what was shown) and ``greedy_expected`` (of
        the ranker's top-K in greedy order).
    """
    k = chosen.shape[1]
    rank_top = np.argsort(-logits, axis=1, kind="stable")[:, :k]  # R x K
    true_top = np.argsort(-relevance, axis=1, kind="stable")[:, :k]  # R x K
    in_rank_top = (chosen[:, :, None] == rank_top[:, None, :]).any(axis=2)  # R x K
    in_true_top = (chosen[:, :, None] == true_top[:, None, :]).any(axis=2)  # R x K
    shown_relevance = np.take_along_axis(relevance, chosen, axis=1)
    greedy_relevance = np.take_along_axis(relevance, rank_top, axis=1)
    return {
        "shown": float(chosen.size),
        "explored": float((~in_rank_top).sum()),
        "explored_in_oracle": float((~in_rank_top & in_true_top).sum()),
        "exploited_in_oracle": float((in_rank_top & in_true_top).sum()),
        "expected": float((shown_relevance * examination).sum()),
        "greedy_expected": float((greedy_relevance * examination).sum()),
    }


def partial_truth_counts(
    terms: dict[str, np.ndarray],
    focus_probability: np.ndarray,
    session_boost: float,
    examination: np.ndarray,
) -> dict[str, float]:
    """Expected clicks of the top-K slates that partial truths choose (:data:`PARTIAL_TRUTHS`).

    Every slate is judged by the full truth (all terms, the session focus included), so the
    ``truth`` entry is the oracle's expected clicks.

    Args:
        terms: ``R x C`` arrays of the truth's terms (:meth:`MediaWorld.relevance_terms`, with
            ``focus``).
        focus_probability: ``R x C`` ``P_u[cat]``, the chance the session focus is the
            candidate's category.
        session_boost: The focus term's logit boost.
        examination: ``K`` examination probability per slot.

    Returns:
        Expected clicks per view, plus ``expected_focus`` and ``shown`` (slots filled).
    """
    k = len(examination)
    relevance = sigmoid(sum(terms.values()))  # R x C
    scores = {name: sum(terms[term] for term in names) for name, names in PARTIAL_TRUTHS.items()}
    blind = scores["without_focus"]
    scores["expected_focus"] = focus_probability * sigmoid(blind + session_boost) + (
        1 - focus_probability
    ) * sigmoid(blind)
    counts = {"shown": float(relevance.shape[0] * k)}
    for name, score in scores.items():
        counts[name] = _slate_clicks(score, relevance, examination)
    return counts


def _slate_clicks(score: np.ndarray, relevance: np.ndarray, examination: np.ndarray) -> float:
    """Expected clicks of each request's top-K by ``score`` (``R x C``), judged by the true
    ``relevance`` (``R x C``) and the ``K`` slots' examination probabilities."""
    top = np.argsort(-score, axis=1, kind="stable")[:, : len(examination)]  # R x K
    return float((np.take_along_axis(relevance, top, axis=1) * examination).sum())


def interest_fit_counts(features: np.ndarray, interest: np.ndarray) -> dict[str, np.ndarray]:
    """Sufficient statistics of the least-squares fit of the true interest term on the
    :data:`INTEREST_FIT_FEATURES`, both centred within each request.

    Args:
        features: ``R x C x 5`` :data:`LOOP_FEATURES` of a round's candidates.
        interest: ``R x C`` the truth's ``interest`` term.

    Returns:
        ``xtx`` (``3 x 3``) and ``xty`` (``3``).
    """
    x = features[..., list(INTEREST_FIT_FEATURES)].astype(np.float64)  # R x C x 3
    x = (x - x.mean(axis=1, keepdims=True)).reshape(-1, len(INTEREST_FIT_FEATURES))
    y = interest - interest.mean(axis=1, keepdims=True)
    return {"xtx": x.T @ x, "xty": x.T @ y.ravel()}


def interest_fit_weights(fit: dict[str, np.ndarray] | None) -> np.ndarray:
    """``3`` least-squares weights of :func:`interest_fit_counts` (zeros before any round)."""
    if fit is None:
        return np.zeros(len(INTEREST_FIT_FEATURES))
    return np.linalg.lstsq(fit["xtx"], fit["xty"], rcond=None)[0]


def interest_estimates(
    interest_weight: float, features: np.ndarray, fit: dict[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """``R x C`` estimates of the truth's interest term from what a policy's counters know.

    - ``link``: the simulator's own link from interest share to logit,
      ``interest_weight * clip(log(share * n), -3, 3)``, applied to the estimated share
      ``category_affinity`` (the user's decayed click share of the category within its domain,
      shrunk toward their circle's share): the interest term if click shares were interest
      shares. It uses the truth's functional form, nothing of the truth's values.
    - ``fit``: the least-squares combination of the three user x category features
      (:data:`INTEREST_FIT_FEATURES`) that best predicted the true interest term within the
      requests of every *earlier* round of the same policy (:func:`interest_fit_counts`). It
      reads the truth to choose three weights, so it bounds what a ranker could make of these
      features linearly; zero (no user signal) before the first round's fit.

    Args:
        interest_weight: The simulator's ``interest_weight`` (logit per log interest share).
        features: ``R x C x 5`` :data:`LOOP_FEATURES` of the candidates, from the counters as
            they were before the round.
        fit: Summed :func:`interest_fit_counts` of earlier rounds (None: none yet).
    """
    link = interest_weight * np.clip(features[..., 2], -3.0, 3.0)
    x = features[..., list(INTEREST_FIT_FEATURES)].astype(np.float64)  # R x C x 3
    fitted = (x - x.mean(axis=1, keepdims=True)) @ interest_fit_weights(fit)
    return {"link": link, "fit": fitted}


def estimated_interest_counts(
    terms: dict[str, np.ndarray], estimates: dict[str, np.ndarray], examination: np.ndarray
) -> dict[str, float]:
    """Expected clicks of top-K slates ranked by exact truth terms plus an estimated interest.

    For every estimate and :data:`ESTIMATED_INTEREST_VIEWS` entry, the candidates are ranked
    by the view's exact terms plus the estimate, and the slate is judged by the full truth
    (session focus included), as :func:`partial_truth_counts` judges its views. With the exact
    interest as estimate, the views are ``without_focus``, ``without_focus_latent`` and
    ``interest_freshness``.

    Args:
        terms: ``R x C`` arrays of the truth's terms (with ``focus``).
        estimates: Estimator name -> ``R x C`` estimated interest term.
        examination: ``K`` examination probability per slot.

    Returns:
        Expected clicks per ``"<estimator>.<view>"``.
    """
    relevance = sigmoid(sum(terms.values()))  # R x C
    counts = {}
    for estimator, estimate in estimates.items():
        for view, names in ESTIMATED_INTEREST_VIEWS.items():
            score = sum(terms[term] for term in names) + estimate
            counts[f"{estimator}.{view}"] = _slate_clicks(score, relevance, examination)
    return counts


def _estimate_interest_round(
    world: MediaWorld,
    universe: _Universe,
    users: np.ndarray,
    cand: np.ndarray,
    ts_s: np.ndarray,
    terms: dict[str, np.ndarray],
    examination: np.ndarray,
) -> None:
    """Add a round's :func:`estimated_interest_counts` from the universe's own counters (as
    they were before the round) to its day and run totals, then the round to its ``fit``."""
    r, c = cand.shape
    features = _features(
        world, universe, np.repeat(users, c), cand.ravel(), np.repeat(ts_s, c)
    ).reshape(r, c, -1)
    fit = universe.stats.get("interest_fit")
    estimates = interest_estimates(world.config.interest_weight, features, fit)
    counts = estimated_interest_counts(terms, estimates, examination)
    _add_exploration(universe.stats.setdefault("interest_day", {}), counts)
    _add_exploration(universe.stats.setdefault("interest_total", {}), counts)
    new = interest_fit_counts(features, terms["interest"])
    universe.stats["interest_fit"] = new if fit is None else {k: fit[k] + new[k] for k in new}


def _estimated_interest_shares(counts: dict[str, float], truth: float) -> dict[str, Any]:
    """``{estimator: {view: share of the oracle}}`` of summed :func:`estimated_interest_counts`
    (``truth``: the oracle's expected clicks over the same requests)."""
    shares: dict[str, Any] = {}
    for key, value in counts.items():
        estimator, view = key.split(".")
        shares.setdefault(estimator, {})[view] = value / truth
    return shares


def ranker_fit_counts(logits: np.ndarray, terms: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sufficient statistics of a least-squares fit of a ranker's logits on the truth's terms.

    Both sides are centred within each request (only differences between a request's
    candidates change its slate). A ranker that had learned the truth would weigh every
    observable term by 1; ``focus`` cannot be observed, so its weight shows what the ranker
    picks up by chance.

    Args:
        logits: ``R x C`` the ranker's calibrated slot-1 logits.
        terms: ``R x C`` arrays of the truth's terms (:data:`RANKER_TERMS` at least).

    Returns:
        ``xtx`` (``T x T``), ``xty`` (``T``), ``yy`` and ``n`` (candidate rows).
    """
    x = np.stack([terms[name] for name in RANKER_TERMS], axis=-1).astype(np.float64)  # R x C x T
    x = (x - x.mean(axis=1, keepdims=True)).reshape(-1, len(RANKER_TERMS))
    y = logits.astype(np.float64)
    y = (y - y.mean(axis=1, keepdims=True)).ravel()
    return {"xtx": x.T @ x, "xty": x.T @ y, "yy": np.asarray(y @ y), "n": np.asarray(len(y))}


def ranker_fit_summary(counts: dict[str, np.ndarray]) -> dict[str, Any]:
    """The ranker's weight per truth term (:func:`ranker_fit_counts`), the share of its
    within-request variance the terms explain, and each term's correlation with it."""
    xtx, xty, yy = counts["xtx"], counts["xty"], float(counts["yy"])
    weights = np.linalg.lstsq(xtx, xty, rcond=None)[0]
    explained = float(weights @ xty) / yy if yy > 0 else 0.0
    diag = np.sqrt(np.maximum(np.diag(xtx), 1e-12))
    correlation = xty / (diag * np.sqrt(max(yy, 1e-12)))
    return {
        "weights": dict(zip(RANKER_TERMS, weights.round(4).tolist(), strict=True)),
        "correlation": dict(zip(RANKER_TERMS, correlation.round(4).tolist(), strict=True)),
        "r2": round(explained, 4),
        "rows": int(counts["n"]),
    }


def _add_exploration(into: dict[str, float], counts: dict[str, float]) -> None:
    for key, value in counts.items():
        into[key] = into.get(key, 0.0) + value


def _exploration_summary(counts: dict[str, float]) -> dict[str, float]:
    """Shares of a day's :func:`exploration_counts`."""
    shown, explored = counts["shown"], counts["explored"]
    exploited = shown - explored
    return {
        "explored_share": explored / shown,
        "explored_in_oracle_top_k": counts["explored_in_oracle"] / explored if explored else 0.0,
        "exploited_in_oracle_top_k": (
            counts["exploited_in_oracle"] / exploited if exploited else 0.0
        ),
        "expected_ctr_vs_own_greedy": counts["expected"] / counts["greedy_expected"] - 1.0,
        "mean_posterior_width": counts.get("width", 0.0) / counts.get("candidates", 1.0),
        "mean_logit_std": counts.get("logit_std", 0.0) / counts.get("candidates", 1.0),
    }


def _account(total, day, domain, clicked, p_click) -> None:
    n, hits, expected = clicked.size, int(clicked.sum()), float(p_click.sum())
    total["impressions"] += n
    total["clicks"] += hits
    total["expected"] += expected
    by = total["by_domain"].setdefault(domain, [0, 0, 0.0])
    by[0] += n
    by[1] += hits
    by[2] += expected
    day[0] += n
    day[1] += hits
    day[2] += expected


def _ope_round(logits, chosen, propensity, clicked, relevance, examination):
    """First-slot feedback of the bandit and the greedy ranker's choice on the same rounds."""
    greedy = np.argmax(logits, axis=1)
    q_hat = sigmoid(logits) * examination[0]
    return {
        "action": chosen[:, 0],
        "pscore": propensity[:, 0],
        "reward": clicked[:, 0].astype(float),
        "target": greedy,
        "q_hat": q_hat,
        "truth": examination[0] * relevance[np.arange(len(greedy)), greedy],
    }


def _partial_truth_report(
    total: dict[str, float], daily: list[dict[str, float]], report: dict[str, Any]
) -> dict[str, Any]:
    """Expected CTR and share of the oracle of each partial truth's slates (and, beside them,
    of the policies'), over the run and per day."""
    shown = total.get("shown", 0.0)
    if not shown:
        return {}
    truth = total["truth"]
    views = {
        name: {"expected_ctr": value / shown, "share_of_oracle": value / truth}
        for name, value in total.items()
        if name != "shown"
    }
    learnable = total["expected_focus"]
    policies = {
        name: {
            "share_of_oracle": entry["expected_ctr"] * entry["impressions"] / truth,
            "share_of_expected_focus": entry["expected_ctr"] * entry["impressions"] / learnable,
        }
        for name, entry in report["policies"].items()
    }
    return {"views": views, "policies": policies, "daily": daily}


def _report(params, seed, totals, daily, universes, ope_rows, seconds) -> dict[str, Any]:
    from policy.ope import LoggedFeedback, evaluate_policy, relative_error

    policies = {}
    oracle = totals.get("oracle")
    for name, total in totals.items():
        n = total["impressions"]
        entry = {
            "impressions": n,
            "clicks": total["clicks"],
            "ctr": total["clicks"] / n if n else 0.0,
            "expected_ctr": total["expected"] / n if n else 0.0,
            "per_domain": {
                domain: {"impressions": v[0], "ctr": v[1] / v[0], "expected_ctr": v[2] / v[0]}
                for domain, v in total["by_domain"].items()
            },
            "daily": daily[name],
            "retrains": universes[name].stats.get("retrains", []),
        }
        if oracle is not None:
            entry["regret_clicks"] = oracle["expected"] - total["expected"]
            entry["share_of_oracle"] = (
                total["expected"] / oracle["expected"] if oracle["expected"] else None
            )
        policies[name] = entry
    report: dict[str, Any] = {
        "params": params.model_dump(mode="json"),
        "seed": seed,
        "seconds": round(seconds, 1),
        "policies": policies,
        "logging_policy_note": "learning policies serve the simulator's logging policy on day 1",
    }
    if "greedy" in policies and "bandit" in policies:
        g, b = policies["greedy"]["expected_ctr"], policies["bandit"]["expected_ctr"]
        report["bandit_vs_greedy_relative"] = (b - g) / g if g else None
    if "bandit" in policies and "bandit_unweighted" in policies:
        w, u = policies["bandit"]["expected_ctr"], policies["bandit_unweighted"]["expected_ctr"]
        report["debiased_vs_unweighted_relative"] = (w - u) / u if u else None
    if ope_rows:
        # Rounds may have fewer candidates than policy.loop.candidates (a domain with few
        # live items): pad the reward model with zeros for columns that were never offered.
        c = max(r["q_hat"].shape[1] for r in ope_rows)
        padded = [
            {**r, "q_hat": np.pad(r["q_hat"], ((0, 0), (0, c - r["q_hat"].shape[1])))}
            for r in ope_rows
        ]
        rows = {k: np.concatenate([r[k] for r in padded]) for k in padded[0]}
        n = len(rows["q_hat"])
        feedback = LoggedFeedback(
            reward=rows["reward"], action=rows["action"], pscore=rows["pscore"], n_actions=c
        )
        target = np.zeros((n, c))
        target[np.arange(n), rows["target"]] = 1.0
        estimates = evaluate_policy(
            feedback,
            target,
            q_hat=rows["q_hat"],
            max_weight=params.ope_max_weight,
            n_bootstrap=200,
            seed=seed,
        )
        truth = float(rows["truth"].mean())
        report["ope"] = {
            "target": "greedy ranker, first slot",
            "logging": "bandit (its own logs after day 1)",
            "rounds": int(n),
            "truth": truth,
            "estimates": {
                name: {
                    "value": e.value,
                    "ci_low": e.ci_low,
                    "ci_high": e.ci_high,
                    "relative_error": relative_error(e.value, truth),
                }
                for name, e in estimates.items()
            },
        }
    return report
