"""Slate policies that turn ranker scores into slates with exact logged propensities.

- ``greedy``: top-K by score (propensity 1: nothing to learn from off-policy).
- ``epsilon_greedy``: each slot the best remaining candidate, or a uniform one with prob. epsilon.
- ``softmax``: Plackett-Luce over ``softmax(logit / temperature)``.
- ``bandit`` (MUMA's bandit-propensity policy): the ranker's logit, optionally corrected by
  the neural-linear posterior mean, plus a UCB bonus; a softmax at ``temperature`` over the
  ``top_m`` best, sampled slot by slot with an epsilon share of uniform exploration and a
  propensity floor in every slot, so every shown item has an exact propensity that IPS and DR
  can use, and none is smaller than the floor.

Exploration settings are per domain (``policy.domains`` in params.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .bandit import NeuralLinearUCB
from .slate import (
    epsilon_greedy_slates,
    greedy_slates,
    mixed_plackett_luce_slates,
    plackett_luce_slates,
    softmax_weights,
    top_m_mask,
)

PolicyName = Literal["greedy", "epsilon_greedy", "softmax", "bandit"]


class ExplorationParams(BaseModel):
    """Exploration of one domain.

    Attributes:
        temperature: Softmax temperature on logits (higher explores more).
        epsilon: Share of uniform exploration.
        propensity_floor: Smallest allowed propensity of a shown item (0: none).
        ucb_alpha: Width multiplier of the neural-linear bonus (bandit policy).
        top_m: The bandit's softmax covers only the ``top_m`` candidates by optimistic score
            (``None``: all); the others are reached only through ``epsilon`` and the floor.
        temperature_from_posterior: The bandit's softmax temperature of a row is
            ``temperature`` times the mean posterior width ``sqrt(h^T A^-1 h)`` of its
            candidates, so exploration shrinks as evidence accumulates.
        thompson_scale: Add ``h . theta`` with ``theta ~ N(0, scale^2 A^-1)`` drawn once per
            call (0: off); propensities are exact given the draw.
        posterior_mean_weight: Add this share of the posterior mean (a click-probability
            correction fitted on the ranker's residuals since its last retrain) to the
            ranker's probability before scoring (0: the ranker's logit as it is).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=0.5, gt=0)
    epsilon: float = Field(default=0.05, ge=0, le=1)
    propensity_floor: float = Field(default=0.001, ge=0, lt=1)
    ucb_alpha: float = Field(default=0.5, ge=0)
    top_m: int | None = Field(default=None, ge=1)
    temperature_from_posterior: bool = False
    thompson_scale: float = Field(default=0.0, ge=0)
    posterior_mean_weight: float = Field(default=0.0, ge=0)


@dataclass(frozen=True)
class Slates:
    """``R x K`` chosen candidate columns and their slot-conditional propensities."""

    chosen: np.ndarray
    propensity: np.ndarray
    policy: str

    @property
    def slate_probability(self) -> np.ndarray:
        """``R`` probabilities of each whole ordered slate."""
        return self.propensity.prod(axis=1)


def choose_slates(
    policy: PolicyName,
    logits: np.ndarray,
    slate_size: int,
    params: ExplorationParams,
    rng: np.random.Generator,
    valid: np.ndarray | None = None,
    *,
    bandit: NeuralLinearUCB | None = None,
    domain: str | None = None,
    hidden: np.ndarray | None = None,
    bonus: np.ndarray | None = None,
) -> Slates:
    """Choose a slate per row of ``R x C`` candidate logits of one domain.

    Args:
        policy: Policy name.
        logits: ``R x C`` ranker logits.
        slate_size: ``K``.
        params: The domain's exploration settings.
        rng: Random generator (the only source of randomness).
        valid: ``R x C`` mask of real candidates.
        bandit: Neural-linear posterior, for ``bandit``.
        domain: The candidates' domain, for ``bandit``.
        hidden: ``R x C x D`` ranker hidden features, for ``bandit``.
        bonus: ``R x C`` extra optimism in logit units the caller knows of (e.g. the loop's
            per-user category UCB), added to the bandit's scores; deterministic given the
            inputs, so propensities stay exact.
    """
    if policy == "greedy":
        chosen, propensity = greedy_slates(logits, slate_size, valid)
    elif policy == "epsilon_greedy":
        chosen, propensity = epsilon_greedy_slates(logits, slate_size, params.epsilon, rng, valid)
    elif policy == "softmax":
        weights = softmax_weights(logits, params.temperature, valid)
        chosen, propensity = plackett_luce_slates(weights, slate_size, rng)
    elif policy == "bandit":
        if bandit is None or domain is None or hidden is None:
            raise ValueError("the bandit policy needs bandit, domain and hidden features")
        preference = bandit_preference(
            logits, params, rng, bandit, domain, hidden, valid, bonus=bonus
        )
        chosen, propensity = mixed_plackett_luce_slates(
            preference, slate_size, params.epsilon, params.propensity_floor, rng, valid
        )
    else:
        raise ValueError(f"unknown policy {policy!r}")
    return Slates(chosen=chosen, propensity=propensity, policy=policy)


def bandit_preference(
    logits: np.ndarray,
    params: ExplorationParams,
    rng: np.random.Generator,
    bandit: NeuralLinearUCB,
    domain: str,
    hidden: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    bonus: np.ndarray | None = None,
) -> np.ndarray:
    """``R x C`` the bandit's preference weights, before the per-slot uniform share and floor.

    Score ``logit + alpha * width (+ h . theta)``; a softmax over the ``top_m`` best scores at
    a fixed or posterior-scaled temperature (zero outside the top ``m``). A deterministic
    function of the scores and the one posterior draw, so the propensities that
    :func:`policy.slate.mixed_plackett_luce_slates` computes from it are exact.

    Args:
        logits: ``R x C`` ranker logits.
        params: Exploration settings.
        rng: Random generator (the Thompson draw).
        bandit: Neural-linear posterior.
        domain: The candidates' domain.
        hidden: ``R x C x D`` ranker hidden features.
        valid: ``R x C`` mask of real candidates.
        bonus: ``R x C`` extra optimism in logit units, added to the scores.
    """
    width = bandit.width(domain, hidden)  # R x C
    scores = logits
    if params.posterior_mean_weight > 0:
        probability = 1.0 / (1.0 + np.exp(-logits))
        corrected = probability + params.posterior_mean_weight * bandit.mean_reward(domain, hidden)
        corrected = np.clip(corrected, 1e-4, 1 - 1e-4)
        scores = np.log(corrected / (1 - corrected))
    scores = scores + params.ucb_alpha * width
    if bonus is not None:
        if bonus.shape != scores.shape:
            raise ValueError(f"bonus has shape {bonus.shape}, scores have {scores.shape}")
        scores = scores + bonus
    if params.thompson_scale > 0:
        theta = bandit.sample_direction(domain, rng)  # D
        scores = scores + params.thompson_scale * (hidden @ theta)
    mask = valid if params.top_m is None else top_m_mask(scores, params.top_m, valid)
    if params.temperature_from_posterior:
        real = np.ones(scores.shape, dtype=bool) if valid is None else valid.astype(bool)
        row_width = np.where(real, width, 0.0).sum(axis=1) / real.sum(axis=1)  # R
        temperature = params.temperature * np.maximum(row_width, 1e-6)
        return softmax_weights(scores / temperature[:, None], 1.0, mask)
    return softmax_weights(scores, params.temperature, mask)
