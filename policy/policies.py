"""Slate policies that turn ranker scores into slates with exact logged propensities.

- ``greedy``: top-K by score (propensity 1: nothing to learn from off-policy).
- ``epsilon_greedy``: each slot the best remaining candidate, or a uniform one with prob. epsilon.
- ``softmax``: Plackett-Luce over ``softmax(logit / temperature)``.
- ``bandit`` (MUMA's bandit-propensity policy): the ranker's logit plus a neural-linear UCB
  bonus, sampled by Plackett-Luce at ``temperature`` with an epsilon share of uniform
  exploration and a propensity floor, so every shown item has an exact propensity that IPS
  and DR can use, and none is smaller than the floor.

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
    floor_weights,
    greedy_slates,
    mix_uniform,
    plackett_luce_slates,
    softmax_weights,
)

PolicyName = Literal["greedy", "epsilon_greedy", "softmax", "bandit"]


class ExplorationParams(BaseModel):
    """Exploration of one domain.

    Attributes:
        temperature: Softmax temperature on logits (higher explores more).
        epsilon: Share of uniform exploration.
        propensity_floor: Smallest allowed propensity of a shown item (0: none).
        ucb_alpha: Width multiplier of the neural-linear bonus (bandit policy).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=0.5, gt=0)
    epsilon: float = Field(default=0.05, ge=0, le=1)
    propensity_floor: float = Field(default=0.001, ge=0, lt=1)
    ucb_alpha: float = Field(default=0.5, ge=0)


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
    """
    if policy == "greedy":
        chosen, propensity = greedy_slates(logits, slate_size, valid)
    elif policy == "epsilon_greedy":
        chosen, propensity = epsilon_greedy_slates(logits, slate_size, params.epsilon, rng, valid)
    elif policy in ("softmax", "bandit"):
        scores = logits
        if policy == "bandit":
            if bandit is None or domain is None or hidden is None:
                raise ValueError("the bandit policy needs bandit, domain and hidden features")
            scores = logits + bandit.bonus(domain, hidden)
        weights = softmax_weights(scores, params.temperature, valid)
        if policy == "bandit":
            weights = floor_weights(
                mix_uniform(weights, params.epsilon, valid), params.propensity_floor, valid
            )
        chosen, propensity = plackett_luce_slates(weights, slate_size, rng)
    else:
        raise ValueError(f"unknown policy {policy!r}")
    return Slates(chosen=chosen, propensity=propensity, policy=policy)
