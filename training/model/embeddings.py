"""Embedding tables for users, items, categories, creators, domains and positions.

Every table reserves row 0 for padding (``padding_idx=0``: a zero vector that gets no
gradient). The *item side* of a behaviour or candidate is one vector built from its item,
category, creator and domain embeddings (summed, or concatenated), and the same tables embed
candidates, history behaviours and graph neighbours, so what is learnt in one domain is
shared with the others.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import EmbeddingConfig, FeatureSpace, item_side_dim


class FeatureEmbeddings(nn.Module):
    """All id tables of the ranker.

    Args:
        features: Vocabulary sizes (each table has ``count + 1`` rows).
        config: Embedding width and how the item side is combined.
    """

    def __init__(self, features: FeatureSpace, config: EmbeddingConfig) -> None:
        super().__init__()
        dim = config.dim
        self.combine = config.item_combine
        self.dim = dim
        self.item_dim = item_side_dim(config)
        self.user = nn.Embedding(features.users + 1, dim, padding_idx=0)
        self.item = nn.Embedding(features.items + 1, dim, padding_idx=0)
        self.category = nn.Embedding(features.categories + 1, dim, padding_idx=0)
        self.creator = nn.Embedding(features.creators + 1, dim, padding_idx=0)
        self.domain = nn.Embedding(features.domains + 1, dim, padding_idx=0)
        self.position = nn.Embedding(features.max_position + 1, dim, padding_idx=0)
        for table in (
            self.user,
            self.item,
            self.category,
            self.creator,
            self.domain,
            self.position,
        ):
            nn.init.normal_(table.weight, std=0.05)
            with torch.no_grad():
                table.weight[0].zero_()

    def item_side(
        self,
        item_id: Tensor,
        category_id: Tensor,
        domain_id: Tensor,
        creator_id: Tensor | None = None,
    ) -> Tensor:
        """Item-side vectors.

        Args:
            item_id: ``*`` int64 (e.g. ``B`` for candidates, ``B x L`` for behaviours).
            category_id: ``*`` int64.
            domain_id: ``*`` int64.
            creator_id: ``*`` int64, or ``None`` where creators are not logged (histories):
                its part is then zero.

        Returns:
            ``* x D_item`` where ``D_item`` is ``dim`` (sum) or ``4 * dim`` (concat).
        """
        item = self.item(item_id)
        category, domain = self.category(category_id), self.domain(domain_id)
        if self.combine == "sum":
            vector = item + category + domain
            return vector if creator_id is None else vector + self.creator(creator_id)
        creator = self.creator(creator_id) if creator_id is not None else item.new_zeros(item.shape)
        return torch.cat([item, category, creator, domain], dim=-1)
