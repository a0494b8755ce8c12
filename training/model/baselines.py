"""Baseline rankers in MUMA's harness: same :class:`~training.batch.Batch`, same output, same
position bias, so a comparison differs only in the model.

* :class:`FactorizationMachine` -- logistic regression on every field plus pairwise FM terms.
* :class:`DeepFM` -- FM plus an MLP over the same field embeddings.
* :class:`DinRanker` -- DIN: target attention over the long history (no time decay, no graph).
* :class:`Gru4RecRanker` -- a GRU over the long history; its last real state is the interest.
* :class:`BstRanker` -- Behaviour Sequence Transformer over the recent window plus the target.

:func:`build_baseline` builds one from a :class:`~.config.BaselineConfig`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from training.batch import Batch

from .attention import TargetAttention
from .config import BaselineConfig, item_side_dim
from .embeddings import FeatureEmbeddings
from .graph import CategoryAffinity
from .heads import PositionBias, RankerOutput
from .towers import feedforward


class _Harness(nn.Module):
    """Embeddings and position bias shared by every baseline."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = FeatureEmbeddings(config.features, config.embedding)
        self.position_bias = PositionBias(config.embedding.dim)
        self.dense_dim = config.features.user_dense + config.features.item_dense

    def candidate(self, batch: Batch) -> Tensor:
        """``B x D_item`` candidate item-side vectors."""
        return self.embeddings.item_side(
            batch.item_id, batch.category_id, batch.domain_id, batch.creator_id
        )

    def bias(self, batch: Batch) -> Tensor:
        """``B`` position bias of each row's logged slot."""
        return self.position_bias(self.embeddings.position(batch.position))

    def dense(self, batch: Batch) -> Tensor:
        """``B x (F_u + F_i)`` dense features."""
        return torch.cat([batch.user_dense, batch.item_dense], dim=-1)


class FactorizationMachine(_Harness):
    """FM over the user, item, category, creator and domain fields plus linear dense terms.

    ``logit = w0 + sum_i w_i + <w_dense, dense> + sum_{i<j} <v_i, v_j> + position bias``;
    without the pairwise terms it is logistic regression.
    """

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        features = config.features
        self.linear = nn.ModuleList(
            nn.Embedding(size + 1, 1, padding_idx=0)
            for size in (
                features.users,
                features.items,
                features.categories,
                features.creators,
                features.domains,
            )
        )
        for table in self.linear:
            nn.init.zeros_(table.weight)
        self.dense_linear = nn.Linear(self.dense_dim, 1)

    def fields(self, batch: Batch) -> Tensor:
        """``B x 5 x D`` field embeddings (user, item, category, creator, domain)."""
        tables = self.embeddings
        return torch.stack(
            [
                tables.user(batch.user_id),
                tables.item(batch.item_id),
                tables.category(batch.category_id),
                tables.creator(batch.creator_id),
                tables.domain(batch.domain_id),
            ],
            dim=1,
        )

    def fm_logit(self, batch: Batch, fields: Tensor) -> Tensor:
        """``B`` first-order plus pairwise logit of ``fields`` (``B x F x D``)."""
        ids = (batch.user_id, batch.item_id, batch.category_id, batch.creator_id, batch.domain_id)
        first = sum(table(index).squeeze(-1) for table, index in zip(self.linear, ids, strict=True))
        first = first + self.dense_linear(self.dense(batch)).squeeze(-1)  # B
        # 0.5 * ((sum v)^2 - sum v^2): all pairwise dot products in O(F x D).
        pairwise = 0.5 * (fields.sum(1).pow(2) - fields.pow(2).sum(1)).sum(-1)  # B
        return first + pairwise

    def forward(self, batch: Batch) -> RankerOutput:
        """Click logits ``B``."""
        return RankerOutput(self.fm_logit(batch, self.fields(batch)) + self.bias(batch), None)


class DeepFM(FactorizationMachine):
    """FM plus an MLP over the flattened field embeddings and dense features."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        width = 5 * config.embedding.dim + self.dense_dim
        self.deep = nn.Sequential(
            feedforward([width, *config.hidden], config.dropout), nn.Linear(config.hidden[-1], 1)
        )

    def forward(self, batch: Batch) -> RankerOutput:
        """Click logits ``B``."""
        fields = self.fields(batch)  # B x 5 x D
        deep_input = torch.cat([fields.flatten(1), self.dense(batch)], dim=-1)
        deep = self.deep(deep_input).squeeze(-1)  # B
        return RankerOutput(self.fm_logit(batch, fields) + deep + self.bias(batch), None)


class _SequenceBaseline(_Harness):
    """Shared MLP on ``[user, candidate, interest, candidate * interest, dense]``."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        item_dim = item_side_dim(config.embedding)
        width = config.embedding.dim + 3 * item_dim + self.dense_dim
        table = config.features.category_affinity
        self.affinity = CategoryAffinity(table) if config.category_affinity and table else None
        width += 0 if self.affinity is None else self.affinity.width
        self.mlp = nn.Sequential(
            feedforward([width, *config.hidden], config.dropout), nn.Linear(config.hidden[-1], 1)
        )

    def interest(self, batch: Batch, candidate: Tensor) -> Tensor:
        """``B x D_item`` user interest; each baseline defines it."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> RankerOutput:
        """Click logits ``B``."""
        candidate = self.candidate(batch)  # B x D_item
        interest = self.interest(batch, candidate)  # B x D_item
        user = self.embeddings.user(batch.user_id)  # B x D
        features = [user, candidate, interest, candidate * interest, self.dense(batch)]
        if self.affinity is not None:
            features.append(self.affinity(batch.user_dense, batch.domain_id, batch.category_id))
        logit = self.mlp(torch.cat(features, dim=-1)).squeeze(-1)  # B
        return RankerOutput(logit + self.bias(batch), None)


class DinRanker(_SequenceBaseline):
    """DIN: target attention of the candidate over the raw long-history embeddings."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        self.attention = TargetAttention(
            item_side_dim(config.embedding), config.attention_hidden, config.attention_softmax
        )

    def interest(self, batch: Batch, candidate: Tensor) -> Tensor:
        history = self.embeddings.item_side(
            batch.long_item_id, batch.long_category_id, batch.long_domain_id
        )  # B x L_long x D_item
        return self.attention(candidate, history, batch.long_mask)  # B x D_item


class Gru4RecRanker(_SequenceBaseline):
    """GRU4Rec-style: a GRU over the long history; the state after the last real behaviour."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        dim = item_side_dim(config.embedding)
        self.gru = nn.GRU(dim, dim, batch_first=True)

    def interest(self, batch: Batch, candidate: Tensor) -> Tensor:
        history = self.embeddings.item_side(
            batch.long_item_id, batch.long_category_id, batch.long_domain_id
        ) * batch.long_mask.unsqueeze(-1)  # B x L_long x D_item
        states, _ = self.gru(history)  # B x L_long x D_item
        last = (batch.long_mask.sum(1) - 1).clamp_min(0)  # B, left-aligned histories
        final = states[torch.arange(states.shape[0]), last]  # B x D_item
        return final * batch.long_mask.any(1, keepdim=True)


class BstRanker(_SequenceBaseline):
    """BST: one Transformer layer over ``[recent behaviours..., candidate]``, mean-pooled."""

    def __init__(self, config: BaselineConfig) -> None:
        super().__init__(config)
        dim = item_side_dim(config.embedding)
        if dim % config.transformer_heads:
            raise ValueError("transformer_heads must divide the item-side width")
        layer = nn.TransformerEncoderLayer(
            dim,
            config.transformer_heads,
            dim_feedforward=config.transformer_ff,
            dropout=config.dropout,
            batch_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.recent_length = config.recent_length
        self.position = nn.Embedding(config.recent_length + 1, dim)
        nn.init.normal_(self.position.weight, std=0.05)

    def interest(self, batch: Batch, candidate: Tensor) -> Tensor:
        recent = self.embeddings.item_side(
            batch.recent_item_id, batch.recent_category_id, batch.recent_domain_id
        )  # B x L_recent x D_item
        length = recent.shape[1]
        if length > self.recent_length:
            raise ValueError(
                f"recent window of {length} exceeds recent_length {self.recent_length}"
            )
        sequence = torch.cat([recent, candidate.unsqueeze(1)], dim=1)  # B x (L+1) x D_item
        sequence = sequence + self.position.weight[: length + 1]
        mask = torch.cat([batch.recent_mask, batch.recent_mask.new_ones(len(batch), 1)], dim=1)
        encoded = self.transformer(sequence, src_key_padding_mask=~mask)  # B x (L+1) x D_item
        weights = mask.unsqueeze(-1).to(encoded.dtype)
        return (encoded * weights).sum(1) / weights.sum(1)  # B x D_item


BASELINES: dict[str, type[nn.Module]] = {
    "fm": FactorizationMachine,
    "deepfm": DeepFM,
    "din": DinRanker,
    "gru4rec": Gru4RecRanker,
    "bst": BstRanker,
}


def build_baseline(config: BaselineConfig) -> nn.Module:
    """The baseline named by ``config.kind``."""
    return BASELINES[config.kind](config)
