"""Interest drift: how far users' category-interest distributions moved, per domain.

A user's interest in a domain is the category mix of their clicks there (optionally
weighted by dwell), smoothed towards the domain's pooled mix so a user with four clicks
does not get a distribution of zeros. Reference and current mixes of the same user are
compared with the Jensen-Shannon distance (base 2, so in ``[0, 1]``), then averaged over
the users with enough clicks in both windows.

Even without drift, a user's handful of clicks gives a noisy mix, so a fixed threshold on
the mean distance depends on how many clicks users have. The default threshold is
therefore a permutation test: each user's pooled clicks are split at random into windows
of the observed sizes, which gives the mean distance expected from noise alone; drift is
called when the observed mean exceeds that null's ``1 - alpha`` quantile plus a margin
(so a large window does not turn a negligible change into an alarm).

The population-level distance is exposure-normalised: a category's share is its CTR (clicks
over impressions) normalised over the domain's categories. Raw click shares move with what
the catalog and the policy happened to show that day; CTR per category moves with interest.
Its threshold is the params value, raised to a parametric bootstrap's noise quantile (clicks
drawn at the pooled per-category CTR) plus the margin when clicks are few.

Representation drift compares learned user embeddings of the same users in both windows
(cosine distance); it needs embeddings from the same model in both windows, since two
trainings give unrelated (rotated) spaces.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .config import InterestParams

_EPS = 1e-12


@dataclass(frozen=True)
class DomainInterestDrift:
    """Interest drift of one domain.

    Attributes:
        domain: Content domain.
        status: ``ok``, or why nothing was measured (``no_clicks``, ``too_few_users``).
        users_compared: Users with at least ``min_user_events`` clicks in both windows.
        mean_js: Mean per-user Jensen-Shannon distance.
        median_js: Median per-user distance.
        population_js: Distance between the domain's exposure-normalised interest shares.
        null_mean_js: Mean of the permutation null of ``mean_js`` (``None`` without test).
        threshold: What ``mean_js`` is compared with.
        threshold_source: ``permutation`` or ``params``.
        population_threshold: What ``population_js`` is compared with: the params threshold,
            raised to the bootstrap noise quantile plus the margin when clicks are few.
        drifted: ``mean_js > threshold`` or ``population_js > population_threshold``.
        top_gain: Category whose interest share grew most, with reference and current share.
    """

    domain: str
    status: str
    users_compared: int = 0
    mean_js: float | None = None
    median_js: float | None = None
    population_js: float | None = None
    null_mean_js: float | None = None
    threshold: float | None = None
    threshold_source: str | None = None
    population_threshold: float | None = None
    drifted: bool = False
    top_gain: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RepresentationDrift:
    """Shift of learned user representations between windows.

    Attributes:
        status: ``ok``, ``not available`` (no embeddings given) or ``too_few_users``.
        users_compared: Users with an embedding in both windows.
        mean_cosine_distance: Mean of ``1 - cos(ref_u, cur_u)`` over those users.
        centroid_cosine_distance: Cosine distance between the mean embeddings.
        threshold: Params threshold on ``mean_cosine_distance``.
        drifted: ``mean_cosine_distance > threshold``.
    """

    status: str
    users_compared: int = 0
    mean_cosine_distance: float | None = None
    centroid_cosine_distance: float | None = None
    threshold: float | None = None
    drifted: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise Jensen-Shannon distance (base 2) of ``... x K`` probability arrays.

    Args:
        p: ``... x K`` rows summing to 1.
        q: Same shape as ``p``.

    Returns:
        ``...`` distances in ``[0, 1]``.
    """
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * np.log2(np.maximum(a, _EPS) / np.maximum(m, _EPS)), 0.0)
        return terms.sum(axis=-1)

    return np.sqrt(np.clip(0.5 * kl(p) + 0.5 * kl(q), 0.0, 1.0))


def click_weights(clicks: pd.DataFrame, dwell_weighted: bool) -> np.ndarray:
    """Weight of each click: 1, or ``1 + log1p(dwell seconds)`` (a click without a view: 1)."""
    if not dwell_weighted or "dwell_ms" not in clicks:
        return np.ones(len(clicks))
    dwell_s = pd.to_numeric(clicks["dwell_ms"], errors="coerce").fillna(0).clip(lower=0) / 1000
    return 1.0 + np.log1p(dwell_s.to_numpy(dtype=float))


def _interest_shares(clicks: np.ndarray, impressions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exposure-normalised interest shares of two windows.

    Args:
        clicks: ``2 x ... x K`` clicks per category (reference, current).
        impressions: ``2 x ... x K`` impressions per category.

    Returns:
        Reference and current ``... x K`` shares: each category's CTR, shrunk towards the
        window's overall CTR by half a pseudo-click, normalised to sum to 1.
    """
    overall = clicks.sum(-1, keepdims=True) / np.maximum(impressions.sum(-1, keepdims=True), 1)
    prior = np.maximum(overall, _EPS)
    ctr = (clicks + 0.5) / (impressions + 0.5 / prior)
    shares = ctr / ctr.sum(-1, keepdims=True)
    return shares[0], shares[1]


def _mixes(counts: np.ndarray, totals: np.ndarray, prior: np.ndarray, smoothing: float):
    """Smoothed mixes ``(counts + s * prior) / (total + s)``; counts ``... x U x K``."""
    return (counts + smoothing * prior) / (totals[..., None] + smoothing)


def _user_counts(
    user: np.ndarray, category: np.ndarray, weight: np.ndarray, users: int, k: int
) -> np.ndarray:
    flat = np.bincount(user * k + category, weights=weight, minlength=users * k)
    return flat.reshape(users, k)


def _permutation_null(
    user: np.ndarray,
    category: np.ndarray,
    weight: np.ndarray,
    n_ref: np.ndarray,
    k: int,
    prior: np.ndarray,
    params: InterestParams,
    rng: np.random.Generator,
) -> np.ndarray:
    """Mean per-user JS under random re-splits of each user's pooled clicks.

    Args:
        user: ``N`` eligible-user index of each pooled click, in ``[0, U)``.
        category: ``N`` category index.
        weight: ``N`` click weights.
        n_ref: ``U`` clicks each user had in the reference window (kept per split).

    Returns:
        ``P`` null means, one per permutation.
    """
    users = len(n_ref)
    n_events = len(user)
    means = np.empty(params.permutations)
    # Chunks keep the P x N key matrix small for large windows.
    chunk = max(1, min(params.permutations, 2_000_000 // max(n_events, 1)))
    starts = np.searchsorted(np.sort(user), np.arange(users))
    for first in range(0, params.permutations, chunk):
        p = min(chunk, params.permutations - first)
        keys = user[None, :] + rng.random((p, n_events))  # P x N: grouped by user, shuffled
        order = np.argsort(keys, axis=1)
        sorted_user = user[order]  # P x N
        rank = np.arange(n_events)[None, :] - starts[sorted_user]
        in_ref = rank < n_ref[sorted_user]
        w = weight[order]
        cell = (np.arange(p)[:, None] * users + sorted_user) * k + category[order]
        size = p * users * k
        ref = np.bincount(cell.ravel(), weights=(w * in_ref).ravel(), minlength=size)
        cur = np.bincount(cell.ravel(), weights=(w * ~in_ref).ravel(), minlength=size)
        ref, cur = ref.reshape(p, users, k), cur.reshape(p, users, k)
        js = js_distance(
            _mixes(ref, ref.sum(-1), prior, params.smoothing),
            _mixes(cur, cur.sum(-1), prior, params.smoothing),
        )
        means[first : first + p] = js.mean(axis=1)
    return means


def domain_interest_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    domain: str,
    params: InterestParams,
    rng: np.random.Generator,
) -> DomainInterestDrift:
    """Interest drift of one domain from clicked rows with ``user_id`` and ``category``.

    Args:
        reference: Interactions of the reference window (any domains; clicked rows are used).
        current: Interactions of the current window.
        domain: Domain to measure.
        params: Smoothing, eligibility and threshold settings.
        rng: Randomness of the permutation test.
    """
    shown = []
    for frame in (reference, current):
        rows = frame[(frame["domain"] == domain) & frame["category"].notna()]
        shown.append(rows)
    ref_rows, cur_rows = (rows[rows["clicked"].astype(bool)] for rows in shown)
    if ref_rows.empty or cur_rows.empty:
        return DomainInterestDrift(domain, status="no_clicks")
    categories = pd.Index(sorted(set(shown[0]["category"]) | set(shown[1]["category"])))
    k = len(categories)

    def per_category(rows: pd.DataFrame) -> np.ndarray:
        return np.bincount(categories.get_indexer(rows["category"]), minlength=k).astype(float)

    impressions = np.stack([per_category(rows) for rows in shown])  # 2 x K
    clicks = np.stack([per_category(ref_rows), per_category(cur_rows)])  # 2 x K
    ref_pop, cur_pop = _interest_shares(clicks, impressions)
    population_js = float(js_distance(ref_pop, cur_pop))
    gain = int(np.argmax(cur_pop - ref_pop))
    top_gain = {
        "category": str(categories[gain]),
        "reference_share": round(float(ref_pop[gain]), 4),
        "current_share": round(float(cur_pop[gain]), 4),
    }
    population_threshold = params.population_js_threshold
    if params.permutations > 0:
        # Parametric bootstrap: both windows' clicks drawn at the pooled per-category CTR.
        pooled_ctr = clicks.sum(0) / np.maximum(impressions.sum(0), 1)
        draws = rng.binomial(
            impressions[:, None, :].astype(np.int64),
            pooled_ctr[None, None, :],
            size=(2, params.permutations, k),
        ).astype(float)
        null_ref, null_cur = _interest_shares(draws, impressions[:, None, :])
        noise = float(np.quantile(js_distance(null_ref, null_cur), 1 - params.alpha))
        population_threshold = max(population_threshold, noise + params.margin)
    population_drift = population_js > population_threshold

    ref_n = ref_rows.groupby("user_id").size()
    cur_n = cur_rows.groupby("user_id").size()
    both = ref_n.index.intersection(cur_n.index)
    eligible = both[
        (ref_n[both] >= params.min_user_events) & (cur_n[both] >= params.min_user_events)
    ]
    base = DomainInterestDrift(
        domain,
        status="too_few_users",
        users_compared=len(eligible),
        population_js=round(population_js, 4),
        population_threshold=round(population_threshold, 4),
        drifted=population_drift,
        top_gain=top_gain,
    )
    if len(eligible) < params.min_users:
        return base

    user_index = pd.Index(eligible)
    ref_e = ref_rows[ref_rows["user_id"].isin(user_index)]
    cur_e = cur_rows[cur_rows["user_id"].isin(user_index)]
    users = len(user_index)
    ref_u = user_index.get_indexer(ref_e["user_id"])
    cur_u = user_index.get_indexer(cur_e["user_id"])
    ref_c = categories.get_indexer(ref_e["category"])
    cur_c = categories.get_indexer(cur_e["category"])
    ref_w = click_weights(ref_e, params.dwell_weighted)
    cur_w = click_weights(cur_e, params.dwell_weighted)
    ref_counts = _user_counts(ref_u, ref_c, ref_w, users, k)
    cur_counts = _user_counts(cur_u, cur_c, cur_w, users, k)
    pooled = ref_counts.sum(0) + cur_counts.sum(0)
    prior = pooled / pooled.sum()
    per_user = js_distance(
        _mixes(ref_counts, ref_counts.sum(-1), prior, params.smoothing),
        _mixes(cur_counts, cur_counts.sum(-1), prior, params.smoothing),
    )
    mean_js = float(per_user.mean())

    null_mean = None
    if params.permutations > 0:
        null = _permutation_null(
            np.concatenate([ref_u, cur_u]),
            np.concatenate([ref_c, cur_c]),
            np.concatenate([ref_w, cur_w]),
            np.bincount(ref_u, minlength=users),
            k,
            prior,
            params,
            rng,
        )
        threshold = float(np.quantile(null, 1 - params.alpha)) + params.margin
        null_mean = round(float(null.mean()), 4)
        source = "permutation"
    else:
        threshold, source = params.user_js_threshold, "params"
    return DomainInterestDrift(
        domain,
        status="ok",
        users_compared=users,
        mean_js=round(mean_js, 4),
        median_js=round(float(np.median(per_user)), 4),
        population_js=round(population_js, 4),
        null_mean_js=null_mean,
        threshold=round(threshold, 4),
        threshold_source=source,
        population_threshold=round(population_threshold, 4),
        drifted=mean_js > threshold or population_drift,
        top_gain=top_gain,
    )


def interest_drift(
    reference: pd.DataFrame, current: pd.DataFrame, params: InterestParams, seed: int = 0
) -> list[DomainInterestDrift]:
    """Interest drift of every domain present in either window.

    Args:
        reference: Rows with ``user_id``, ``domain``, ``category``, ``clicked`` (and
            ``dwell_ms`` when ``params.dwell_weighted``).
        current: Same columns, current window.
        params: Interest settings.
        seed: Seed of the permutation test (a run is reproducible).

    Raises:
        ValueError: A required column is missing.
    """
    required = {"user_id", "domain", "category", "clicked"}
    for name, frame in (("reference", reference), ("current", current)):
        missing = required - set(frame.columns)
        if missing:
            raise ValueError(f"interest drift: {name} lacks columns {sorted(missing)}")
    domains = sorted(set(reference["domain"].dropna()) | set(current["domain"].dropna()))
    rng = np.random.default_rng(seed)
    return [domain_interest_drift(reference, current, d, params, rng) for d in domains]


def representation_drift(
    reference: pd.DataFrame | None, current: pd.DataFrame | None, params: InterestParams
) -> RepresentationDrift:
    """Cosine shift of user embeddings between windows.

    Args:
        reference: ``U x D`` embeddings indexed by ``user_id`` (``None``: not available).
        current: ``U' x D`` embeddings of the same model, indexed by ``user_id``.
        params: Holds ``representation_shift_threshold``.

    Raises:
        ValueError: The two windows have different embedding widths.
    """
    if reference is None or current is None:
        return RepresentationDrift(status="not available")
    if reference.shape[1] != current.shape[1]:
        raise ValueError(
            f"embedding widths differ: reference {reference.shape[1]}, current {current.shape[1]}"
        )
    common = reference.index.intersection(current.index)
    if len(common) < 2:
        return RepresentationDrift(status="too_few_users", users_compared=len(common))
    ref = reference.loc[common].to_numpy(dtype=float)  # U x D
    cur = current.loc[common].to_numpy(dtype=float)  # U x D

    def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
        return 1.0 - (a * b).sum(-1) / np.maximum(norms, _EPS)

    mean_distance = float(cosine_distance(ref, cur).mean())
    threshold = params.representation_shift_threshold
    return RepresentationDrift(
        status="ok",
        users_compared=len(common),
        mean_cosine_distance=round(mean_distance, 4),
        centroid_cosine_distance=round(float(cosine_distance(ref.mean(0), cur.mean(0))), 4),
        threshold=threshold,
        drifted=mean_distance > threshold,
    )
