"""The behaviour encoder: long-term and short-term interests, fused by a gate, with time decay.

* Long-term: an LSTM over the long history (``B x L_long``), keys are its hidden states.
* Short-term: a Transformer encoder over the recent window (``B x L_recent``) with learnt
  position embeddings and a key-padding mask.
* Each branch is pooled by DIN target attention of the candidate (:mod:`.attention`), with a
  learnt per-domain time decay ``weight = exp(-softplus(theta_domain) * gap_hours)`` entering
  as the additive attention bias ``-softplus(theta_domain) * gap_hours``.
* A sigmoid gate on ``[long, recent, candidate]`` mixes the two pooled interests per
  dimension.

Ablations remove a component outright: ``use_lstm=False`` attends over the raw long-history
embeddings, ``use_transformer=False`` over the raw recent ones, ``use_time_decay=False``
drops the decay parameters and ignores the gaps.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional

from .attention import TargetAttention
from .config import EncoderConfig


class TimeDecay(nn.Module):
    """Learnt exponential decay of a behaviour's weight with its age, one rate per domain.

    Args:
        domains: Number of domains (ids ``1..domains``; id 0 is padding).
        init_per_hour: Initial rate ``softplus(theta)`` in 1/hours for every domain.
    """

    def __init__(self, domains: int, init_per_hour: float) -> None:
        super().__init__()
        # softplus^-1(rate) so the first step starts at the configured rate.
        theta = math.log(math.expm1(init_per_hour))
        self.theta = nn.Parameter(torch.full((domains + 1,), theta))

    def rate(self) -> Tensor:
        """Decay rate per domain id, ``(domains + 1,)`` in 1/hours (all positive)."""
        return functional.softplus(self.theta)

    def forward(self, domain_id: Tensor, gap_hours: Tensor) -> Tensor:
        """Log decay factors, to add to attention scores.

        Args:
            domain_id: ``B x L`` int64 domain of each behaviour.
            gap_hours: ``B x L`` float32 hours from each behaviour to the request.

        Returns:
            ``B x L`` ``-rate[domain] * gap`` (``<= 0``; ``exp`` of it is the decay weight).
        """
        return -self.rate()[domain_id] * gap_hours.clamp_min(0)


class EncodedInterest(NamedTuple):
    """What the encoder returns.

    Attributes:
        interest: ``B x D`` fused user interest towards the candidate.
        long_weights: ``B x L_long`` attention over the long history (zero at padding).
        recent_weights: ``B x L_recent`` attention over the recent window.
        gate: ``B x D`` share of the long-term interest in ``interest``.
    """

    interest: Tensor
    long_weights: Tensor
    recent_weights: Tensor
    gate: Tensor


class BehaviourEncoder(nn.Module):
    """Hybrid LSTM-Transformer encoder with DIN target attention and learnt time decay.

    Args:
        dim: D, width of the item-side behaviour and candidate vectors.
        domains: Number of domains (for the per-domain decay rates).
        config: Layers, heads, recent window length, attention MLP, initial decay rate.
        use_lstm: Encode the long history with an LSTM (else raw embeddings are the keys).
        use_transformer: Encode the recent window with a Transformer (else raw embeddings).
        use_time_decay: Bias attention by the learnt time decay (else gaps are ignored).
    """

    def __init__(
        self,
        dim: int,
        domains: int,
        config: EncoderConfig,
        *,
        use_lstm: bool = True,
        use_transformer: bool = True,
        use_time_decay: bool = True,
    ) -> None:
        super().__init__()
        self.recent_length = config.recent_length
        self.lstm = (
            nn.LSTM(dim, dim, num_layers=config.lstm_layers, batch_first=True) if use_lstm else None
        )
        if use_transformer:
            layer = nn.TransformerEncoderLayer(
                dim,
                config.transformer_heads,
                dim_feedforward=config.transformer_ff,
                dropout=config.dropout,
                batch_first=True,
            )
            self.transformer: nn.TransformerEncoder | None = nn.TransformerEncoder(
                layer, config.transformer_layers, enable_nested_tensor=False
            )
            self.recent_position: nn.Embedding | None = nn.Embedding(config.recent_length, dim)
            nn.init.normal_(self.recent_position.weight, std=0.05)
        else:
            self.transformer = None
            self.recent_position = None
        self.decay = TimeDecay(domains, config.decay_init_per_hour) if use_time_decay else None
        self.long_attention = TargetAttention(dim, config.attention_hidden)
        self.recent_attention = TargetAttention(dim, config.attention_hidden)
        self.gate = nn.Linear(3 * dim, dim)

    def encode_long(self, behaviours: Tensor, mask: Tensor) -> Tensor:
        """Keys of the long history.

        Args:
            behaviours: ``B x L_long x D`` item-side vectors, oldest first.
            mask: ``B x L_long`` bool.

        Returns:
            ``B x L_long x D``. Left-aligned histories and a causal LSTM mean a real position
            never reads padding, so the LSTM stops at the batch's longest history (columns
            after it are padding in every row and stay zero).
        """
        behaviours = behaviours * mask.unsqueeze(-1)
        if self.lstm is None:
            return behaviours
        longest = int(mask.sum(dim=1).max()) if mask.numel() else 0
        if longest == 0:
            return torch.zeros_like(behaviours)
        states, _ = self.lstm(behaviours[:, :longest])  # B x longest x D
        if longest == behaviours.shape[1]:
            return states
        return functional.pad(states, (0, 0, 0, behaviours.shape[1] - longest))  # B x L_long x D

    def encode_recent(self, behaviours: Tensor, mask: Tensor) -> Tensor:
        """Keys of the recent window.

        Args:
            behaviours: ``B x L_recent x D`` item-side vectors, oldest first.
            mask: ``B x L_recent`` bool.

        Returns:
            ``B x L_recent x D``.

        Raises:
            ValueError: The window is longer than the configured ``recent_length``.
        """
        behaviours = behaviours * mask.unsqueeze(-1)
        if self.transformer is None or self.recent_position is None:
            return behaviours
        length = behaviours.shape[1]
        if length > self.recent_length:
            raise ValueError(
                f"recent window of {length} exceeds recent_length {self.recent_length}"
            )
        inputs = behaviours + self.recent_position.weight[:length]  # B x L_recent x D
        # A row with no behaviour would make every key padding and the softmax NaN: let it
        # attend to slot 0, whose output target attention masks anyway.
        padding = ~mask
        padding[:, 0] = padding[:, 0] & mask.any(dim=1)
        return self.transformer(inputs, src_key_padding_mask=padding)

    def forward(
        self,
        candidate: Tensor,
        long_behaviours: Tensor,
        long_domain_id: Tensor,
        long_gap_hours: Tensor,
        long_mask: Tensor,
        recent_behaviours: Tensor,
        recent_domain_id: Tensor,
        recent_gap_hours: Tensor,
        recent_mask: Tensor,
        shared: tuple[Tensor, Tensor] | None = None,
    ) -> EncodedInterest:
        """Fused interest of each user towards its candidate.

        The LSTM and Transformer keys depend on the history only, not on the candidate, so rows
        with identical histories (the candidates of one request) can share them: with
        ``shared = (first, inverse)`` the behaviours are given for the rows ``first`` only (one
        per distinct history, ``U`` rows), encoded once and gathered back with ``inverse``
        (``B`` indices into ``first``).

        Args:
            candidate: ``B x D`` candidate item-side vectors (the attention query).
            long_behaviours: ``B x L_long x D`` (``U x L_long x D`` with ``shared``).
            long_domain_id: ``B x L_long`` int64.
            long_gap_hours: ``B x L_long`` float32.
            long_mask: ``B x L_long`` bool.
            recent_behaviours: ``B x L_recent x D`` (``U x L_recent x D`` with ``shared``).
            recent_domain_id: ``B x L_recent`` int64.
            recent_gap_hours: ``B x L_recent`` float32.
            recent_mask: ``B x L_recent`` bool.
            shared: Optional ``(first, inverse)`` from :func:`distinct_histories`.
        """
        inverse = None
        if shared is None:
            long_keys = self.encode_long(long_behaviours, long_mask)  # B x L_long x D
            recent_keys = self.encode_recent(recent_behaviours, recent_mask)  # B x L_recent x D
        else:
            first, inverse = shared
            long_keys = self.encode_long(long_behaviours, long_mask[first])  # U x L_long x D
            recent_keys = self.encode_recent(recent_behaviours, recent_mask[first])
        long_bias = recent_bias = None
        if self.decay is not None:
            long_bias = self.decay(long_domain_id, long_gap_hours)  # B x L_long
            recent_bias = self.decay(recent_domain_id, recent_gap_hours)  # B x L_recent
        long_weights = self.long_attention.weights(
            candidate, long_keys, long_mask, long_bias, inverse
        )
        recent_weights = self.recent_attention.weights(
            candidate, recent_keys, recent_mask, recent_bias, inverse
        )
        long_interest = pool(long_weights, long_keys, inverse)  # B x D
        recent_interest = pool(recent_weights, recent_keys, inverse)  # B x D
        gate = torch.sigmoid(
            self.gate(torch.cat([long_interest, recent_interest, candidate], dim=-1))
        )  # B x D
        interest = gate * long_interest + (1 - gate) * recent_interest
        return EncodedInterest(interest, long_weights, recent_weights, gate)


def pool(weights: Tensor, keys: Tensor, inverse: Tensor | None = None) -> Tensor:
    """``B x D``: the ``weights``-weighted sum of each row's keys.

    Args:
        weights: ``B x L``.
        keys: ``B x L x D``, or ``U x L x D`` distinct rows gathered by ``inverse`` (``B``).
    """
    if inverse is None:
        return torch.bmm(weights.unsqueeze(1), keys).squeeze(1)
    if keys.shape[0] == 1:  # one history for every row: a single matrix product
        return weights @ keys[0]
    return torch.bmm(weights.unsqueeze(1), keys[inverse]).squeeze(1)


def distinct_histories(*columns: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(first, inverse)`` over rows whose history columns are all equal, or None if all differ.

    Args:
        columns: ``B x L_i`` tensors (ids and masks) that together define a history.

    Returns:
        ``first``: ``U`` row indices, one per distinct history; ``inverse``: ``B`` indices into
        ``first``. None when every row is distinct (nothing to share).
    """
    rows = torch.cat([column.long() for column in columns], dim=1)
    if rows.shape[0] < 2:
        return None
    if bool((rows == rows[:1]).all()):  # one request's candidates: a single history
        return torch.zeros(1, dtype=torch.long), torch.zeros(rows.shape[0], dtype=torch.long)
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    if unique.shape[0] == rows.shape[0]:
        return None
    first = torch.empty(unique.shape[0], dtype=torch.long)
    first.scatter_(0, inverse, torch.arange(rows.shape[0]))
    return first, inverse
