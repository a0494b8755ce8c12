"""Output heads: click logit with a position bias, auxiliary dwell, and CTR calibration.

Position bias is a shallow additive term (as in YouTube's "watch next" ranker): the click
logit is ``main(x) + bias(position)``. Training sees the logged position, so the main part
learns relevance without the slot's effect; serving fixes every candidate at the same slot
(:meth:`training.batch.Batch.at_serving_position`), which adds the same constant to all.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional


class RankerOutput(NamedTuple):
    """What every ranker (MUMA and baselines) returns.

    Attributes:
        click_logit: ``B`` click logits (apply ``sigmoid`` for CTR).
        dwell: ``B`` predicted dwell target, or ``None`` for single-task models.
    """

    click_logit: Tensor
    dwell: Tensor | None


class PositionBias(nn.Module):
    """Additive logit bias of the displayed slot.

    Args:
        dim: D, width of the shared position embedding it reads.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(dim, 1, bias=False)

    def forward(self, position_embedding: Tensor) -> Tensor:
        """``B x D`` position embeddings -> ``B`` logit bias."""
        return self.project(position_embedding).squeeze(-1)


class ClickDwellHead(nn.Module):
    """Click logit and optional dwell regression from the tower output.

    Args:
        dim: H, tower output width.
        dwell: Whether to build the auxiliary dwell head.
    """

    def __init__(self, dim: int, dwell: bool = True) -> None:
        super().__init__()
        self.click = nn.Linear(dim, 1)
        self.dwell = nn.Linear(dim, 1) if dwell else None

    def forward(self, hidden: Tensor, position_bias: Tensor) -> RankerOutput:
        """``B x H`` tower output and ``B`` position bias -> :class:`RankerOutput`."""
        click = self.click(hidden).squeeze(-1) + position_bias  # B
        dwell = self.dwell(hidden).squeeze(-1) if self.dwell is not None else None  # B
        return RankerOutput(click, dwell)


class Calibrator(nn.Module):
    """Temperature scaling: ``calibrated_logit = logit / T`` with one ``T > 0``.

    It keeps the ranking (so AUC and NDCG do not move) and fixes over- or under-confidence.
    Fit it on validation logits after training, never on the training set.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("log_temperature", torch.zeros(()))

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.exp())

    def fit(self, logits: Tensor, labels: Tensor, steps: int = 50) -> Calibrator:
        """Minimise validation log loss over ``T``; return ``self``.

        Args:
            logits: ``N`` validation click logits.
            labels: ``N`` clicks in {0, 1}.
            steps: L-BFGS iterations.

        Raises:
            ValueError: Empty input, mismatched lengths, or a single class only.
        """
        logits = logits.detach().float().reshape(-1)
        labels = labels.detach().float().reshape(-1)
        if logits.numel() == 0 or logits.shape != labels.shape:
            raise ValueError("calibration needs equally many logits and labels, at least one")
        if bool((labels == labels[0]).all()):
            raise ValueError("calibration needs both clicks and non-clicks")

        def loss_at(log_t: Tensor) -> Tensor:
            return functional.binary_cross_entropy_with_logits(logits / log_t.exp(), labels)

        # A coarse grid over T in [e^-3, e^3] first: L-BFGS alone can diverge to NaN when the
        # logits barely separate the classes; it then only refines the grid's best point.
        with torch.no_grad():
            grid = torch.linspace(-3.0, 3.0, 61)
            start = grid[torch.stack([loss_at(g) for g in grid]).argmin()]
        log_temperature = start.clone().requires_grad_(True)
        optimiser = torch.optim.LBFGS([log_temperature], lr=0.5, max_iter=steps)

        def closure() -> Tensor:
            optimiser.zero_grad()
            loss = loss_at(log_temperature)
            loss.backward()
            return loss

        optimiser.step(closure)
        with torch.no_grad():
            refined = log_temperature.detach()
            finite = bool(torch.isfinite(refined)) and bool(refined.abs() <= 5)
            better = finite and float(loss_at(refined)) <= float(loss_at(start))
            self.log_temperature.copy_(refined if better else start)
        return self

    def forward(self, logits: Tensor) -> Tensor:
        """Calibrated logits, same shape as ``logits``."""
        return logits / self.log_temperature.exp()
