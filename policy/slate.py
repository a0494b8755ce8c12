"""Slates with exact propensities: Plackett-Luce sampling, softmax, uniform mixing, floors.

A *slate* fills ``K`` slots from ``C`` candidates without replacement. Every shown item is
logged with its **slot-conditional propensity**: the probability that the policy put this
item in this slot given the items in the slots above it (``muma.contract``'s ``propensity``).
The product of a slate's slot propensities is the probability of the whole ordered slate.

Candidates are rows of ``R x C`` arrays; a boolean ``valid`` mask marks real candidates (rows
may have fewer than ``C``, padded). Masked candidates get weight 0 and are never shown.
"""

from __future__ import annotations

import numpy as np


class SlateError(ValueError):
    """A slate cannot be filled as asked (too few candidates, floor too high, bad weights)."""


def _valid_mask(shape: tuple[int, ...], valid: np.ndarray | None) -> np.ndarray:
    if valid is None:
        return np.ones(shape, dtype=bool)
    if valid.shape != shape:
        raise SlateError(f"valid mask has shape {valid.shape}, scores have {shape}")
    return valid.astype(bool)


def softmax_weights(
    scores: np.ndarray, temperature: float, valid: np.ndarray | None = None
) -> np.ndarray:
    """``R x C`` ``softmax(scores / temperature)`` over each row's valid candidates."""
    if temperature <= 0:
        raise SlateError("temperature must be positive")
    mask = _valid_mask(scores.shape, valid)
    z = np.where(mask, scores / temperature, -np.inf)
    z = z - z.max(axis=1, keepdims=True)
    weights = np.where(mask, np.exp(z), 0.0)
    return weights / weights.sum(axis=1, keepdims=True)


def top_m_mask(scores: np.ndarray, m: int, valid: np.ndarray | None = None) -> np.ndarray:
    """``R x C`` mask of each row's ``m`` highest-scoring valid candidates (all if fewer).

    Ties at the cut are broken by column order, so the mask is a deterministic function of the
    scores (the propensities computed from it stay exact).
    """
    if m < 1:
        raise SlateError("top_m must be at least 1")
    mask = _valid_mask(scores.shape, valid)
    order = np.argsort(-np.where(mask, scores, -np.inf), axis=1, kind="stable")[:, :m]  # R x m
    top = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(top, order, True, axis=1)
    return top & mask


def mix_uniform(weights: np.ndarray, epsilon: float, valid: np.ndarray | None = None) -> np.ndarray:
    """``(1 - epsilon) * weights + epsilon / n_valid`` per row: explore with share epsilon."""
    if not 0 <= epsilon <= 1:
        raise SlateError("epsilon must be in [0, 1]")
    mask = _valid_mask(weights.shape, valid)
    uniform = mask / mask.sum(axis=1, keepdims=True)
    return (1 - epsilon) * weights + epsilon * uniform


def floor_weights(weights: np.ndarray, floor: float, valid: np.ndarray | None = None) -> np.ndarray:
    """Mix each row with the uniform distribution just enough that every valid weight >= floor.

    A Plackett-Luce slot-conditional propensity is never below the item's first-slot weight
    (the remaining mass only shrinks), so this floors every logged propensity.

    Raises:
        SlateError: ``floor`` exceeds ``1 / n_valid`` for some row (no distribution reaches it).
    """
    mask = _valid_mask(weights.shape, valid)
    n_valid = mask.sum(axis=1, keepdims=True)
    if floor <= 0:
        return weights
    if np.any(floor > 1 / n_valid + 1e-12):
        raise SlateError(
            f"propensity floor {floor} is above 1/candidates for a row with {int(n_valid.max())} "
            "candidates; lower the floor or send fewer candidates"
        )
    lowest = np.where(mask, weights, np.inf).min(axis=1, keepdims=True)
    share = np.clip((floor - lowest) / np.maximum(1 / n_valid - lowest, 1e-12), 0.0, 1.0)
    return weights * (1 - share) + share * mask / n_valid


def plackett_luce_slates(
    weights: np.ndarray, slate_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sample slates without replacement and return each slot's exact propensity.

    Args:
        weights: ``R x C`` non-negative weights, each row summing to 1, with at least
            ``slate_size`` positive entries per row.
        slate_size: ``K`` slots to fill.
        rng: Random generator.

    Returns:
        ``R x K`` chosen column indices (slot order) and ``R x K`` propensities: the
        probability of choosing that column for that slot given the slots above it,
        ``w_j / (1 - sum of weights already chosen)``.
    """
    if np.any((weights > 0).sum(axis=1) < slate_size):
        raise SlateError(f"a row has fewer than {slate_size} candidates with positive weight")
    with np.errstate(divide="ignore"):
        gumbel = np.log(weights) - np.log(-np.log(rng.random(weights.shape)))
    top = np.argpartition(-gumbel, slate_size - 1, axis=1)[:, :slate_size]
    order = np.take_along_axis(gumbel, top, axis=1).argsort(axis=1)[:, ::-1]
    chosen = np.take_along_axis(top, order, axis=1)  # R x K
    w = np.take_along_axis(weights, chosen, axis=1)  # R x K
    taken_before = np.concatenate([np.zeros((len(w), 1)), np.cumsum(w, axis=1)[:, :-1]], axis=1)
    remaining = np.maximum(1.0 - taken_before, w)  # guards rounding when little weight is left
    return chosen, np.minimum(w / remaining, 1.0)


def mixed_plackett_luce_slates(
    preference: np.ndarray,
    slate_size: int,
    epsilon: float,
    floor: float,
    rng: np.random.Generator,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Plackett-Luce over ``preference`` with the uniform share and the floor applied per slot.

    Mixing uniform mass into the first-slot weights only (:func:`mix_uniform` then
    :func:`plackett_luce_slates`) explores far more than ``epsilon`` in the lower slots: once
    a peaked softmax's favourites are taken, what is left of it is smaller than the uniform
    share, so the lower slots become nearly uniform. Here every slot draws from
    ``(1 - epsilon) * preference renormalised over the remaining candidates
    + epsilon * uniform over them``, lifted to ``floor`` by :func:`floor_weights`.

    Args:
        preference: ``R x C`` non-negative weights (rows need not be normalised; zero
            entries are reached only through the uniform share and the floor).
        slate_size: ``K`` slots to fill.
        epsilon: Uniform share of every slot.
        floor: Smallest slot-conditional propensity of a valid candidate (0: none).
        rng: Random generator.
        valid: ``R x C`` mask of real candidates.

    Returns:
        ``R x K`` chosen columns (slot order) and their slot-conditional propensities: the
        probability of that column in that slot given the slots above it.
    """
    if not 0 <= epsilon <= 1:
        raise SlateError("epsilon must be in [0, 1]")
    remaining = _valid_mask(preference.shape, valid).copy()
    if np.any(remaining.sum(axis=1) < slate_size):
        raise SlateError(f"a row has fewer than {slate_size} valid candidates")
    rows = np.arange(len(preference))
    chosen = np.empty((len(preference), slate_size), dtype=np.int64)
    propensity = np.empty((len(preference), slate_size))
    for slot in range(slate_size):
        n_left = remaining.sum(axis=1, keepdims=True)
        uniform = remaining / n_left
        liked = np.where(remaining, preference, 0.0)
        total = liked.sum(axis=1, keepdims=True)
        # A row whose preferred candidates are all taken falls back to uniform for this slot.
        liked = np.where(total > 0, liked / np.where(total > 0, total, 1.0), uniform)
        slot_weights = floor_weights((1 - epsilon) * liked + epsilon * uniform, floor, remaining)
        cumulative = np.cumsum(slot_weights, axis=1)  # R x C
        draw = rng.random((len(preference), 1)) * cumulative[:, -1:]
        pick = np.minimum((cumulative <= draw).sum(axis=1), preference.shape[1] - 1)
        # A zero-weight column can only be hit through rounding at the top end: step back.
        while np.any(bad := slot_weights[rows, pick] <= 0):
            pick = np.where(bad, pick - 1, pick)
        chosen[:, slot] = pick
        propensity[:, slot] = slot_weights[rows, pick]
        remaining[rows, pick] = False
    return chosen, propensity


def epsilon_greedy_slates(
    scores: np.ndarray,
    slate_size: int,
    epsilon: float,
    rng: np.random.Generator,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fill each slot with the best remaining candidate, or with prob. epsilon a uniform one.

    Returns:
        ``R x K`` chosen columns and their slot-conditional propensities
        ``(1 - epsilon) * [best remaining] + epsilon / remaining``.
    """
    if not 0 <= epsilon <= 1:
        raise SlateError("epsilon must be in [0, 1]")
    mask = _valid_mask(scores.shape, valid).copy()
    rows = np.arange(len(scores))
    if np.any(mask.sum(axis=1) < slate_size):
        raise SlateError(f"a row has fewer than {slate_size} valid candidates")
    chosen = np.empty((len(scores), slate_size), dtype=np.int64)
    propensity = np.empty((len(scores), slate_size))
    for slot in range(slate_size):
        remaining = mask.sum(axis=1)
        best = np.where(mask, scores, -np.inf).argmax(axis=1)
        explore = rng.random(len(scores)) < epsilon
        # A uniform pick among the remaining valid candidates: rank of a random draw.
        draw = (rng.random(len(scores)) * remaining).astype(np.int64)
        uniform_pick = np.argmax(np.cumsum(mask, axis=1) > draw[:, None], axis=1)
        pick = np.where(explore, uniform_pick, best)
        propensity[:, slot] = (1 - epsilon) * (pick == best) + epsilon / remaining
        chosen[:, slot] = pick
        mask[rows, pick] = False
    return chosen, propensity


def greedy_slates(
    scores: np.ndarray, slate_size: int, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``K`` by score; propensity 1 in every slot (no exploration, unusable for IPS)."""
    mask = _valid_mask(scores.shape, valid)
    if np.any(mask.sum(axis=1) < slate_size):
        raise SlateError(f"a row has fewer than {slate_size} valid candidates")
    order = np.argsort(-np.where(mask, scores, -np.inf), axis=1, kind="stable")[:, :slate_size]
    return order, np.ones(order.shape)
