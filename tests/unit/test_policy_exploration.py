"""The bandit's exploration controls: top-M, posterior-scaled temperature, Thompson draws.

Each must keep the logged propensities exact: the per-slot distribution sums to 1, and the
probability logged for a slate is how often that slate occurs.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from policy.bandit import NeuralLinearUCB
from policy.loop import exploration_counts
from policy.policies import ExplorationParams, bandit_preference, choose_slates
from policy.slate import (
    SlateError,
    mix_uniform,
    mixed_plackett_luce_slates,
    plackett_luce_slates,
    softmax_weights,
    top_m_mask,
)

DRAWS = 40_000
LOGITS = np.array([1.0, 0.8, 0.5, 0.4, -0.5, -1.0])


def _posterior(observed: int) -> tuple[NeuralLinearUCB, np.ndarray]:
    """A 2-d posterior after ``observed`` rows, and ``1 x 6 x 2`` hidden features."""
    bandit = NeuralLinearUCB(dim=2, domains=["news"], ridge=1.0, alpha=1.0)
    rng = np.random.default_rng(5)
    if observed:
        bandit.update("news", rng.normal(size=(observed, 2)), rng.random(observed))
    hidden = np.stack([np.cos(np.arange(6)), np.sin(np.arange(6))], axis=1)[None]  # 1 x 6 x 2
    return bandit, hidden


def test_top_m_mask_keeps_each_rows_best_valid_scores() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [3.0, 2.0, 1.0, 0.0]])
    valid = np.array([[True, True, True, True], [False, True, True, True]])
    mask = top_m_mask(scores, 2, valid)
    assert mask.tolist() == [[False, True, False, True], [False, True, True, False]]
    assert top_m_mask(scores, 9, valid).tolist() == valid.tolist()
    with pytest.raises(SlateError, match="top_m"):
        top_m_mask(scores, 0)


@pytest.mark.parametrize(
    "params",
    [
        ExplorationParams(temperature=0.2, top_m=3),
        ExplorationParams(temperature=2.0, temperature_from_posterior=True),
        ExplorationParams(temperature=0.3, top_m=4, thompson_scale=1.0),
    ],
    ids=["top_m", "posterior_temperature", "thompson"],
)
def test_bandit_preference_is_a_softmax_over_its_top_m(params: ExplorationParams) -> None:
    bandit, hidden = _posterior(observed=30)
    valid = np.ones((1, 6), dtype=bool)
    valid[0, 5] = False
    preference = bandit_preference(
        LOGITS[None], params, np.random.default_rng(0), bandit, "news", hidden, valid
    )
    assert preference.sum() == pytest.approx(1.0)
    assert preference[0, 5] == 0.0, "a padded candidate must never be preferred"
    assert (preference > 0).sum() == min(params.top_m or 5, 5)


def test_every_slot_is_a_distribution_with_the_floor() -> None:
    preference = np.array([[0.7, 0.3, 0.0, 0.0, 0.0, 0.0]])
    valid = np.array([[True] * 5 + [False]])
    epsilon, floor = 0.1, 0.03
    for seed in range(20):
        chosen, propensity = mixed_plackett_luce_slates(
            preference, 4, epsilon, floor, np.random.default_rng(seed), valid
        )
        assert 5 not in chosen[0] and len(set(chosen[0].tolist())) == 4
        assert propensity.min() >= floor - 1e-12
        remaining = valid[0].copy()
        for slot, column in enumerate(chosen[0]):
            # Rebuild the slot's distribution by hand: it must sum to 1 and hold the logged value.
            liked = np.where(remaining, preference[0], 0.0)
            n_left = remaining.sum()
            liked = liked / liked.sum() if liked.sum() > 0 else remaining / n_left
            slot_weights = (1 - epsilon) * liked + epsilon * remaining / n_left
            lowest = slot_weights[remaining].min()
            share = np.clip((floor - lowest) / max(1 / n_left - lowest, 1e-12), 0.0, 1.0)
            slot_weights = slot_weights * (1 - share) + share * remaining / n_left
            assert slot_weights.sum() == pytest.approx(1.0)
            assert propensity[0, slot] == pytest.approx(slot_weights[column])
            remaining[column] = False
    with pytest.raises(SlateError, match="fewer than 6"):
        mixed_plackett_luce_slates(preference, 6, epsilon, floor, np.random.default_rng(0), valid)


def test_the_uniform_share_stays_epsilon_in_the_lower_slots() -> None:
    # A peaked softmax with first-slot mixing turns the lower slots nearly uniform (the
    # closed loop's bandit showed 45-55% of its items outside its ranker's top-K); per-slot
    # mixing keeps every slot's uniform share at epsilon.
    logits = np.tile(np.linspace(3.0, -3.0, 20), (DRAWS // 4, 1))
    preference = softmax_weights(logits, 0.05)
    epsilon = 0.05
    rng = np.random.default_rng(4)
    first_slot_only, _ = plackett_luce_slates(mix_uniform(preference, epsilon), 5, rng)
    per_slot, _ = mixed_plackett_luce_slates(preference, 5, epsilon, 0.0, rng)
    outside_first_slot_only = np.mean(first_slot_only[:, 1:] >= 5)
    outside_per_slot = np.mean(per_slot[:, 1:] >= 5)
    assert outside_first_slot_only > 0.5
    assert outside_per_slot < epsilon


@pytest.mark.parametrize("thompson_scale", [0.0, 1.0])
def test_logged_slate_probabilities_match_how_often_slates_occur(thompson_scale: float) -> None:
    # One call draws one Thompson direction for all rows: the logged probability is exact
    # given that draw, so identical rows in one call must reproduce it empirically.
    bandit, hidden = _posterior(observed=30)
    params = ExplorationParams(
        temperature=0.5,
        epsilon=0.05,
        propensity_floor=0.005,
        top_m=4,
        temperature_from_posterior=thompson_scale == 0,
        thompson_scale=thompson_scale,
    )
    slates = choose_slates(
        "bandit",
        np.tile(LOGITS, (DRAWS, 1)),
        2,
        params,
        np.random.default_rng(11),
        bandit=bandit,
        domain="news",
        hidden=np.repeat(hidden, DRAWS, axis=0),
    )
    counts = Counter(map(tuple, slates.chosen))
    logged: dict[tuple[int, ...], set[float]] = {}
    for slate, probability in zip(map(tuple, slates.chosen), slates.slate_probability, strict=True):
        logged.setdefault(slate, set()).add(round(float(probability), 12))
    total = 0.0
    for slate, n in counts.items():
        assert len(logged[slate]) == 1, "the same slate must always get the same probability"
        probability = next(iter(logged[slate]))
        total += probability
        share = n / DRAWS
        assert share == pytest.approx(probability, abs=4 * np.sqrt(probability / DRAWS) + 1e-3)
    assert total <= 1.0 + 1e-9
    assert slates.propensity.min() >= params.propensity_floor - 1e-12


def test_posterior_temperature_explores_less_as_evidence_accumulates() -> None:
    params = ExplorationParams(
        temperature=2.0, epsilon=0.0, propensity_floor=0.0, temperature_from_posterior=True
    )
    best = []
    for observed in (0, 30, 3000):
        bandit, hidden = _posterior(observed)
        weights = bandit_preference(
            LOGITS[None],
            params.model_copy(update={"ucb_alpha": 0.0}),
            np.random.default_rng(0),
            bandit,
            "news",
            hidden,
        )
        best.append(weights[0, 0])
    assert best[0] < best[1] < best[2]
    assert best[2] > 0.99, "with ample evidence the policy should be nearly greedy"


def test_thompson_draws_follow_the_posterior_covariance() -> None:
    bandit, _ = _posterior(observed=40)
    rng = np.random.default_rng(2)
    draws = np.stack([bandit.sample_direction("news", rng) for _ in range(20_000)])
    np.testing.assert_allclose(np.cov(draws.T), np.linalg.inv(bandit.precision["news"]), atol=2e-3)
    with pytest.raises(KeyError, match="unknown domain"):
        bandit.sample_direction("video", rng)


def test_exploration_counts_compare_with_the_rankers_and_the_true_top_k() -> None:
    logits = np.array([[3.0, 2.0, 1.0, 0.0]])
    relevance = np.array([[0.1, 0.5, 0.4, 0.2]])
    chosen = np.array([[0, 3]])  # the ranker's top-2 is {0, 1}; the true top-2 is {1, 2}
    examination = np.array([1.0, 0.5])
    counts = exploration_counts(logits, chosen, relevance, examination)
    assert counts["shown"] == 2 and counts["explored"] == 1
    assert counts["explored_in_oracle"] == 0 and counts["exploited_in_oracle"] == 0
    assert counts["expected"] == pytest.approx(0.1 + 0.5 * 0.2)
    assert counts["greedy_expected"] == pytest.approx(0.1 + 0.5 * 0.5)


def test_the_posterior_mean_corrects_the_ranker_where_it_was_wrong() -> None:
    # Candidates 0 and 1 have the same logit; the ranker under-predicted clicks on items like
    # candidate 1 since its last retrain (positive residuals along its direction).
    bandit = NeuralLinearUCB(dim=2, domains=["news"], ridge=1.0, alpha=0.0)
    first, second = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    bandit.update("news", np.tile(first, (200, 1)), np.zeros(200))
    bandit.update("news", np.tile(second, (200, 1)), np.full(200, 0.2))
    hidden = np.stack([first, second])[None]  # 1 x 2 x 2
    logits = np.array([[-2.0, -2.0]])
    params = ExplorationParams(temperature=0.1, ucb_alpha=0.0, posterior_mean_weight=1.0)
    rng = np.random.default_rng(0)
    preference = bandit_preference(logits, params, rng, bandit, "news", hidden)
    assert preference[0, 1] > 0.9
    plain = bandit_preference(
        logits,
        params.model_copy(update={"posterior_mean_weight": 0.0}),
        rng,
        bandit,
        "news",
        hidden,
    )
    np.testing.assert_allclose(plain, [[0.5, 0.5]])


def test_residuals_use_the_rankers_probability_in_the_shown_slot() -> None:
    from policy.loop import _residual

    logits = np.array([[0.0, 1.0, -1.0]])
    chosen = np.array([[1, 2]])
    clicked = np.array([[True, False]])
    offset = np.array([0.0, -0.5])
    residual = _residual(logits, chosen, clicked, offset)
    np.testing.assert_allclose(residual, [1 - 1 / (1 + np.exp(-1.0)), -1 / (1 + np.exp(1.5))])


def test_a_callers_bonus_moves_the_bandits_preference_and_must_fit_the_scores() -> None:
    bandit, hidden = _posterior(observed=30)
    logits = LOGITS[None]
    params = ExplorationParams(temperature=0.5, ucb_alpha=0.0)
    rng = np.random.default_rng(0)
    plain = bandit_preference(logits, params, rng, bandit, "news", hidden)
    bonus = np.zeros_like(logits)
    bonus[0, 5] = 2.5  # the worst candidate becomes the best
    lifted = bandit_preference(logits, params, rng, bandit, "news", hidden, bonus=bonus)
    np.testing.assert_allclose(lifted, softmax_weights(logits + bonus, 0.5))
    assert lifted[0].argmax() == 5 and plain[0].argmax() == 0
    with pytest.raises(ValueError, match="bonus"):
        bandit_preference(logits, params, rng, bandit, "news", hidden, bonus=np.zeros((1, 2)))


def test_the_category_bonus_is_largest_where_the_user_has_seen_least() -> None:
    from policy.loop import LoopParams, _Universe, _world, category_ucb_bonus

    world = _world(LoopParams(days=1, users=20, items=300, shock_day=None), seed=0)
    universe = _Universe(
        "bandit", 20, 4, items=len(world.item_ids), categories=len(world.category_names)
    )
    cats = [np.flatnonzero(world.item_category == c)[0] for c in (0, 1, 2)]
    cand = np.array([cats])  # one request, three candidates in categories 0, 1, 2
    universe.category_shown[3, 0], universe.category_clicked[3, 0] = 100, 10
    universe.category_shown[3, 1], universe.category_clicked[3, 1] = 4, 2
    bonus = category_ucb_bonus(world, universe, np.array([3]), cand, alpha=1.0)
    assert bonus.shape == (1, 3) and (bonus > 0).all()
    assert bonus[0, 0] < bonus[0, 1] < bonus[0, 2]  # 100 impressions, 4, none
    np.testing.assert_allclose(category_ucb_bonus(world, universe, np.array([3]), cand, 0.0), 0)
