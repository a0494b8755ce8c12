"""Shared-bottom multi-domain towers: one MLP for all domains, one small tower per domain.

The shared bottom learns what news, video and ads have in common; each candidate then goes
through the tower of its own domain, so domain-specific patterns do not have to compete for
the same last layers.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn


def feedforward(widths: list[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear + ReLU (+ dropout) for every layer, including the last.

    Args:
        widths: Input width followed by each layer's output width.
    """
    layers: list[nn.Module] = []
    for width_in, width_out in itertools.pairwise(widths):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class DomainTowers(nn.Module):
    """Shared bottom plus one tower per domain, routed by the candidate's domain.

    Args:
        input_dim: Width of the concatenated input features.
        bottom: Widths of the shared bottom MLP.
        tower: Widths of each domain tower.
        domains: Number of domains (ids ``1..domains``).
        dropout: Dropout after every hidden layer.
    """

    def __init__(
        self,
        input_dim: int,
        bottom: tuple[int, ...],
        tower: tuple[int, ...],
        domains: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.bottom = feedforward([input_dim, *bottom], dropout)
        self.towers = nn.ModuleList(
            feedforward([bottom[-1], *tower], dropout) for _ in range(domains)
        )
        self.output_dim = tower[-1]

    def forward(self, features: Tensor, domain_id: Tensor) -> Tensor:
        """Tower output of each row's own domain.

        Args:
            features: ``B x input_dim``.
            domain_id: ``B`` int64 in ``1..domains``.

        Returns:
            ``B x H`` (H = last tower width).

        Raises:
            ValueError: A domain id outside ``1..domains``.
        """
        if domain_id.numel() and (
            int(domain_id.min()) < 1 or int(domain_id.max()) > len(self.towers)
        ):
            raise ValueError(f"candidate domain ids must lie in 1..{len(self.towers)}")
        shared = self.bottom(features)  # B x bottom[-1]
        # Each tower runs on its own rows only, so compute grows with B, not B x domains.
        output = shared.new_empty(shared.shape[0], self.output_dim)  # B x H
        for index, tower in enumerate(self.towers):
            rows = torch.nonzero(domain_id == index + 1).squeeze(1)
            output = output.index_copy(0, rows, tower(shared[rows]))
        return output
