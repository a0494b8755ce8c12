"""Training losses: click BCE plus an auxiliary dwell loss, optionally inverse-propensity weighted.

Logged impressions are biased: the logging policy chose what to show and where, and users
click top slots more. Two corrections work together:

* **Exposure**: with ``propensity_weighting`` every row is weighted by ``1 / propensity``
  (the logging policy's probability of that item in that slot), clipped at ``max_weight`` to
  bound variance, then **self-normalised** within the batch (weights divided by their mean),
  so the loss is a weighted average whose scale does not depend on the propensities' level.
* **Position**: the model takes the logged position as an input during training (a shallow
  additive bias, :class:`training.model.heads.PositionBias`) and every candidate is scored at
  the same fixed slot at serving (:meth:`training.batch.Batch.at_serving_position`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.nn import functional

from training.batch import Batch
from training.model.heads import RankerOutput


class LossConfig(BaseModel):
    """Loss weights and the causal correction.

    Attributes:
        dwell_weight: Weight of the dwell loss relative to the click loss (0 turns it off).
        propensity_weighting: Weight rows by clipped, self-normalised inverse propensity.
        max_weight: Clip for ``1 / propensity`` before normalisation.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dwell_weight: float = Field(default=0.1, ge=0)
    propensity_weighting: bool = True
    max_weight: float = Field(default=20.0, ge=1)


@dataclass(frozen=True, slots=True)
class LossResult:
    """The loss to back-propagate and its parts (for logging).

    Attributes:
        total: Scalar ``click + dwell_weight * dwell``.
        click: Scalar weighted click BCE.
        dwell: Scalar weighted dwell MSE over rows with a dwell (0 when there are none).
        weights: ``B`` row weights used (all ones without propensity weighting).
    """

    total: Tensor
    click: Tensor
    dwell: Tensor
    weights: Tensor


def ips_weights(propensity: Tensor, max_weight: float) -> Tensor:
    """Clipped, self-normalised inverse-propensity weights.

    Args:
        propensity: ``B`` logged propensities in ``(0, 1]``.
        max_weight: Upper clip of ``1 / propensity`` (``>= 1``).

    Returns:
        ``B`` weights ``min(1 / p, max_weight) / mean(min(1 / p, max_weight))`` (mean 1).

    Raises:
        ValueError: An empty batch, a propensity outside ``(0, 1]``, or ``max_weight < 1``.
    """
    if propensity.numel() == 0:
        raise ValueError("cannot weight an empty batch")
    if max_weight < 1:
        raise ValueError(f"max_weight must be >= 1, got {max_weight}")
    if not bool(((propensity > 0) & (propensity <= 1)).all()):
        raise ValueError("propensities must lie in (0, 1]")
    clipped = propensity.reciprocal().clamp(max=max_weight)  # B
    return clipped / clipped.mean()


def ranker_loss(output: RankerOutput, batch: Batch, config: LossConfig) -> LossResult:
    """Multi-task loss of one batch.

    Args:
        output: The model's ``B`` click logits and ``B`` dwell predictions (or ``None``).
        batch: Labels (``clicked``, ``dwell``, ``dwell_mask``) and ``propensity``.
        config: Dwell weight and propensity weighting.

    Raises:
        ValueError: Logits and labels differ in shape, or see :func:`ips_weights`.
    """
    logits = output.click_logit
    if logits.shape != batch.clicked.shape:
        raise ValueError(f"logits {tuple(logits.shape)} vs labels {tuple(batch.clicked.shape)}")
    if config.propensity_weighting:
        weights = ips_weights(batch.propensity, config.max_weight)
    else:
        weights = torch.ones_like(batch.clicked)
    per_row = functional.binary_cross_entropy_with_logits(logits, batch.clicked, reduction="none")
    click = (weights * per_row).sum() / weights.sum()
    dwell = logits.new_zeros(())
    if output.dwell is not None and config.dwell_weight > 0:
        observed = weights * batch.dwell_mask  # B
        if bool(batch.dwell_mask.any()):
            squared = (output.dwell - batch.dwell).pow(2)
            dwell = (observed * squared).sum() / observed.sum()
    return LossResult(click + config.dwell_weight * dwell, click, dwell, weights)
