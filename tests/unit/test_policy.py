"""Slate policies: logged propensities are exact, floors hold, masks are respected."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from policy.bandit import NeuralLinearUCB
from policy.policies import ExplorationParams, choose_slates
from policy.slate import (
    SlateError,
    epsilon_greedy_slates,
    floor_weights,
    greedy_slates,
    plackett_luce_slates,
    softmax_weights,
)

DRAWS = 40_000
LOGITS = np.array([2.0, 1.0, 0.5, -1.0])


def _slate_frequencies(chosen: np.ndarray, propensity: np.ndarray):
    """Empirical frequency of each ordered slate, and the probability the policy logged for it."""
    counts = Counter(map(tuple, chosen))
    logged = {}
    for slate, probability in zip(map(tuple, chosen), propensity.prod(axis=1), strict=True):
        logged.setdefault(slate, set()).add(round(float(probability), 12))
    return {slate: n / len(chosen) for slate, n in counts.items()}, logged


@pytest.mark.parametrize("policy", ["softmax", "epsilon_greedy"])
def test_logged_slate_probabilities_match_how_often_slates_occur(policy):
    rng = np.random.default_rng(3)
    logits = np.tile(LOGITS, (DRAWS, 1))
    params = ExplorationParams(temperature=1.0, epsilon=0.3)
    slates = choose_slates(policy, logits, 2, params, rng)
    frequency, logged = _slate_frequencies(slates.chosen, slates.propensity)
    assert sum(frequency.values()) == pytest.approx(1)
    for slate, share in frequency.items():
        assert len(logged[slate]) == 1, "the same slate must always get the same probability"
        probability = next(iter(logged[slate]))
        assert share == pytest.approx(probability, abs=4 * np.sqrt(probability / DRAWS) + 1e-3)


def test_plackett_luce_propensities_are_slot_conditional():
    weights = softmax_weights(LOGITS[None, :], 1.0)
    chosen, propensity = plackett_luce_slates(
        np.repeat(weights, 5, axis=0), 3, np.random.default_rng(0)
    )
    w = weights[0]
    for row in range(5):
        a, b, c = chosen[row]
        assert propensity[row, 0] == pytest.approx(w[a])
        assert propensity[row, 1] == pytest.approx(w[b] / (1 - w[a]))
        assert propensity[row, 2] == pytest.approx(w[c] / (1 - w[a] - w[b]))


def test_masked_candidates_are_never_shown():
    rng = np.random.default_rng(1)
    logits = np.tile(np.array([5.0, 1.0, 0.0, 0.0, 0.0]), (2_000, 1))
    valid = np.ones_like(logits, dtype=bool)
    valid[:, 0] = False
    for policy in ("greedy", "epsilon_greedy", "softmax"):
        slates = choose_slates(policy, logits, 3, ExplorationParams(epsilon=0.5), rng, valid)
        assert not np.any(slates.chosen == 0), policy
    with pytest.raises(SlateError, match="fewer than 5"):
        greedy_slates(logits, 5, valid)


def test_greedy_takes_the_top_scores_with_propensity_one():
    chosen, propensity = greedy_slates(np.array([[0.1, 0.9, 0.5, 0.7]]), 3)
    assert chosen.tolist() == [[1, 3, 2]]
    assert propensity.tolist() == [[1.0, 1.0, 1.0]]


def test_epsilon_greedy_propensity_formula():
    chosen, propensity = epsilon_greedy_slates(
        np.array([[3.0, 2.0, 1.0, 0.0]]), 2, 0.0, np.random.default_rng(0)
    )
    assert chosen.tolist() == [[0, 1]] and propensity.tolist() == [[1.0, 1.0]]
    _, uniform = epsilon_greedy_slates(
        np.array([[3.0, 2.0, 1.0, 0.0]]), 2, 1.0, np.random.default_rng(0)
    )
    assert uniform.tolist() == [[0.25, 1 / 3]]


def test_floor_lifts_every_weight_and_refuses_the_impossible():
    weights = softmax_weights(np.array([[10.0, 0.0, 0.0, 0.0]]), 1.0)
    floored = floor_weights(weights, 0.05)
    assert floored.min() == pytest.approx(0.05)
    assert floored.sum() == pytest.approx(1)
    assert floored.argmax() == 0
    assert floor_weights(weights, 0.0) is weights
    with pytest.raises(SlateError, match="above 1/candidates"):
        floor_weights(weights, 0.3)


def test_bandit_policy_explores_unseen_directions_and_keeps_the_floor():
    bandit = NeuralLinearUCB(dim=2, domains=["news"], ridge=1.0, alpha=1.0)
    seen, unseen = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    before = bandit.bonus("news", np.stack([seen, unseen]))
    assert before[0] == pytest.approx(before[1])
    bandit.update("news", np.tile(seen, (50, 1)), np.zeros(50))
    after = bandit.bonus("news", np.stack([seen, unseen]))
    assert after[0] < 0.2 * after[1]
    assert bandit.mean_reward("news", seen[None, :])[0] == pytest.approx(0.0)

    hidden = np.tile(np.stack([seen, unseen, seen, seen]), (500, 1, 1))
    logits = np.zeros((500, 4))
    params = ExplorationParams(temperature=0.5, epsilon=0.0, propensity_floor=0.01, ucb_alpha=1.0)
    slates = choose_slates(
        "bandit",
        logits,
        1,
        params,
        np.random.default_rng(0),
        bandit=bandit,
        domain="news",
        hidden=hidden,
    )
    assert np.mean(slates.chosen[:, 0] == 1) > 0.5, "the unseen candidate should be favoured"
    assert slates.propensity.min() >= 0.01
    with pytest.raises(KeyError, match="unknown domain"):
        bandit.bonus("video", hidden)
    with pytest.raises(ValueError, match="needs bandit"):
        choose_slates("bandit", logits, 1, params, np.random.default_rng(0))
