"""The multi-task loss and its inverse-propensity correction, against hand-computed values."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.nn import functional

from training.batch import Batch
from training.losses import LossConfig, ips_weights, ranker_loss
from training.model.heads import RankerOutput


def test_ips_weights_are_clipped_then_self_normalised() -> None:
    propensity = torch.tensor([0.5, 0.25, 0.01, 1.0])
    weights = ips_weights(propensity, max_weight=10.0)
    raw = torch.tensor([2.0, 4.0, 10.0, 1.0])  # 1/p with 1/0.01 = 100 clipped to 10
    assert torch.allclose(weights, raw / raw.mean())
    assert torch.isclose(weights.mean(), torch.tensor(1.0))
    assert torch.isclose(weights[2] / weights[3], torch.tensor(10.0)), "the clip binds"


def test_ips_weights_reject_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ips_weights(torch.tensor([0.5, 0.0]), 10.0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ips_weights(torch.tensor([1.5]), 10.0)
    with pytest.raises(ValueError, match="max_weight"):
        ips_weights(torch.tensor([0.5]), 0.5)
    with pytest.raises(ValueError, match="empty"):
        ips_weights(torch.tensor([]), 10.0)


def _labelled(batch: Batch) -> Batch:
    return dataclasses.replace(
        batch,
        clicked=torch.tensor([1.0, 0.0]),
        dwell=torch.tensor([2.0, 0.0]),
        dwell_mask=torch.tensor([True, False]),
        propensity=torch.tensor([0.5, 0.1]),
    )


def test_unweighted_loss_matches_hand_computation(batch2: Batch) -> None:
    batch = _labelled(batch2)
    output = RankerOutput(torch.tensor([0.0, math.log(3)]), torch.tensor([1.5, 9.0]))
    loss = ranker_loss(output, batch, LossConfig(propensity_weighting=False, dwell_weight=0.5))
    click = (math.log(2) + math.log(4)) / 2  # -log sigmoid(0), -log(1 - sigmoid(log 3))
    dwell = (1.5 - 2.0) ** 2  # only the first row has a dwell
    assert loss.click.item() == pytest.approx(click, rel=1e-6)
    assert loss.dwell.item() == pytest.approx(dwell, rel=1e-6)
    assert loss.total.item() == pytest.approx(click + 0.5 * dwell, rel=1e-6)
    assert torch.equal(loss.weights, torch.ones(2))


def test_weighted_loss_is_the_weighted_average(batch2: Batch) -> None:
    batch = _labelled(batch2)
    logits = torch.tensor([0.3, -0.2])
    loss = ranker_loss(RankerOutput(logits, None), batch, LossConfig(max_weight=5.0))
    per_row = functional.binary_cross_entropy_with_logits(logits, batch.clicked, reduction="none")
    raw = torch.tensor([2.0, 5.0])  # 1/0.5 and 1/0.1 clipped at 5
    expected = (raw * per_row).sum() / raw.sum()
    assert loss.click.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.dwell.item() == 0.0, "single-task output: no dwell loss"


def test_shape_mismatch_is_an_error(batch2: Batch) -> None:
    with pytest.raises(ValueError, match="logits"):
        ranker_loss(RankerOutput(torch.zeros(3), None), batch2, LossConfig())


def _fit_constant_ctr(batch: Batch, config: LossConfig) -> float:
    """The CTR a single logit converges to under ``config`` on ``batch``."""
    logit = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([logit], max_iter=100)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        output = RankerOutput(logit.expand(len(batch)), None)
        loss = ranker_loss(output, batch, config).total
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(torch.sigmoid(logit.detach()))


def test_propensity_weighting_removes_exposure_bias(batch_factory, features) -> None:
    # The logging policy shows group A (click rate 0.1) with propensity 0.9 and group B
    # (click rate 0.5) with propensity 0.1: 90 logged rows of A, 10 of B. Under uniform
    # exposure the click rate is 0.3; the naive logged rate is 0.14.
    batch = batch_factory(features, 100, seed=0)
    clicked = torch.zeros(100)
    clicked[:9] = 1  # 9 of A's 90
    clicked[90:95] = 1  # 5 of B's 10
    propensity = torch.cat([torch.full((90,), 0.9), torch.full((10,), 0.1)])
    logged = dataclasses.replace(batch, clicked=clicked, propensity=propensity)
    naive = _fit_constant_ctr(logged, LossConfig(propensity_weighting=False, dwell_weight=0))
    corrected = _fit_constant_ctr(logged, LossConfig(max_weight=20.0, dwell_weight=0))
    clipped = _fit_constant_ctr(logged, LossConfig(max_weight=2.0, dwell_weight=0))
    assert naive == pytest.approx(0.14, abs=1e-3)
    assert corrected == pytest.approx(0.30, abs=1e-3)
    # Clipping trades bias for variance: the estimate moves back towards the naive one.
    assert naive < clipped < corrected
