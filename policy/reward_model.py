"""Reward models for the direct method and doubly robust estimation.

A reward model predicts ``q_hat[i, a]``, the expected reward of action ``a`` in round ``i``.
The tabular model smooths each (action, slot) click rate toward its slot's mean with a Beta
prior; it is cross-fitted (each fold's rounds are predicted by a model fitted on the other
folds), so DR's correction term is not fitted on the rewards it corrects.
"""

from __future__ import annotations

import numpy as np


def tabular_ctr(
    action: np.ndarray,
    position: np.ndarray,
    reward: np.ndarray,
    n_actions: int,
    n_positions: int,
    prior_strength: float = 20.0,
) -> np.ndarray:
    """``n_positions x n_actions`` click rates, each smoothed toward its slot's mean.

    ``(clicks + prior_strength * slot_ctr) / (shows + prior_strength)``: an action never shown
    in a slot gets the slot's mean click rate.
    """
    shows = np.zeros((n_positions, n_actions))
    clicks = np.zeros((n_positions, n_actions))
    np.add.at(shows, (position, action), 1.0)
    np.add.at(clicks, (position, action), reward)
    slot_ctr = clicks.sum(axis=1, keepdims=True) / np.maximum(shows.sum(axis=1, keepdims=True), 1)
    return (clicks + prior_strength * slot_ctr) / (shows + prior_strength)


def cross_fitted_q_hat(
    action: np.ndarray,
    position: np.ndarray,
    reward: np.ndarray,
    n_actions: int,
    n_positions: int,
    folds: int = 2,
    prior_strength: float = 20.0,
    seed: int = 0,
) -> np.ndarray:
    """``n x n_actions`` predictions for every round, each from the model of the other folds."""
    n = len(action)
    fold = np.random.default_rng(seed).integers(0, folds, size=n)
    q_hat = np.empty((n, n_actions))
    for k in range(folds):
        held_out = fold == k
        table = tabular_ctr(
            action[~held_out],
            position[~held_out],
            reward[~held_out],
            n_actions,
            n_positions,
            prior_strength,
        )
        q_hat[held_out] = table[position[held_out]]
    return q_hat
