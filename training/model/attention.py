"""DIN target attention of a candidate over encoded behaviours (FuxiCTR's arithmetic).

Each behaviour key is scored against the candidate query by an MLP over
``[query, key, query - key, query * key]``; padding gets weight exactly zero; the pooled
interest is the weighted sum of the keys. An optional additive bias (the log of a time-decay
factor) enters before normalisation, so ``softmax(score + log decay)`` equals
``decay * exp(score)`` renormalised: an older copy of the same behaviour weighs less.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.nn import functional

_NEGATIVE = -1e9
"""Finite fill for masked scores: a row with no behaviour stays finite and then zeroes."""


def mlp(
    widths: list[int] | tuple[int, ...], activation: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """Linear layers of the given widths, ``activation`` between them (not after the last).

    Args:
        widths: Input width followed by each layer's output width.
    """
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class TargetAttention(nn.Module):
    """DIN target attention pooling.

    Args:
        dim: D, width of query and keys.
        hidden: Widths of the scoring MLP's hidden layers.
        softmax: Normalise weights over the sequence (MUMA); ``False`` keeps DIN's raw
            scores times the mask, which preserves interest intensity.
    """

    def __init__(self, dim: int, hidden: tuple[int, ...] = (32,), softmax: bool = True) -> None:
        super().__init__()
        self.softmax = softmax
        self.score = mlp([4 * dim, *hidden, 1])

    def reference_scores(self, query: Tensor, keys: Tensor) -> Tensor:
        """Scores ``B x L`` computed literally as FuxiCTR does (for tests and reading)."""
        expanded = query.unsqueeze(1).expand_as(keys)  # B x L x D
        pairs = [expanded, keys, expanded - keys, expanded * keys]
        return self.score(torch.cat(pairs, dim=-1)).squeeze(-1)  # B x L

    def scores(self, query: Tensor, keys: Tensor, inverse: Tensor | None = None) -> Tensor:
        """Unnormalised scores ``B x L``, equal to :meth:`reference_scores` but faster.

        The first layer is linear, so ``W [q, k, q - k, q * k] = (W_q + W_d) q +
        (W_k - W_d) k + W_p (q * k)``: the query part is computed once per row instead of once
        per behaviour, and the ``B x L x 4D`` concatenation is never built. With ``inverse``,
        ``keys`` are the ``U`` distinct histories of the rows (``B`` indices into them), and
        their part is computed once per history.
        """
        first, rest = self.score[0], self.score[1:]
        w_query, w_key, w_diff, w_product = first.weight.split(query.shape[-1], dim=1)
        key_part = functional.linear(keys, w_key - w_diff)  # B (or U) x L x H
        if inverse is not None:
            keys, key_part = keys[inverse], key_part[inverse]
        hidden = (
            functional.linear(query, w_query + w_diff, first.bias).unsqueeze(1)  # B x 1 x H
            + key_part  # B x L x H
            + functional.linear(query.unsqueeze(1) * keys, w_product)  # B x L x H
        )
        return rest(hidden).squeeze(-1)  # B x L

    def weights(
        self,
        query: Tensor,
        keys: Tensor,
        mask: Tensor,
        bias: Tensor | None = None,
        inverse: Tensor | None = None,
    ) -> Tensor:
        """Attention weights.

        Args:
            query: ``B x D`` candidate vectors.
            keys: ``B x L x D`` encoded behaviours, or ``U x L x D`` distinct histories with
                ``inverse``.
            mask: ``B x L`` bool, ``True`` for real behaviours.
            bias: ``B x L`` additive score bias (log time decay), or ``None``.
            inverse: ``B`` indices into the rows of ``keys``, or ``None``.

        Returns:
            ``B x L``; zero at padding; rows sum to 1 (softmax) unless the row is all padding.
        """
        scores = self.scores(query, keys, inverse)  # B x L
        if bias is not None:
            scores = scores + bias
        if not self.softmax:
            return scores * mask
        scores = scores.masked_fill(~mask, _NEGATIVE)
        return scores.softmax(dim=-1) * mask  # B x L

    def forward(
        self, query: Tensor, keys: Tensor, mask: Tensor, bias: Tensor | None = None
    ) -> Tensor:
        """Pooled interest ``B x D``: the ``weights``-weighted sum of ``keys``."""
        weights = self.weights(query, keys, mask, bias)  # B x L
        return (weights.unsqueeze(-1) * keys).sum(dim=1)  # B x D
