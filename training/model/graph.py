"""Cross-domain transfer over a heterogeneous information network (HIN).

:class:`HeteroGraph` holds CSR adjacency per relation (user-item clicks, also split by domain;
item-category; item-creator; user-friend) and samples ``K`` neighbours per metapath by
vectorised random walks driven by a ``torch.Generator``, so the same seed gives the same
neighbours. :func:`path_summaries` and :class:`MetapathAggregator` turn those pre-sampled
neighbours into one vector per anchor: a masked mean over each metapath's neighbours, then
attention over metapaths (as in HAN's semantic attention), so the model learns which paths
(friends, co-readers, the videos of the user's fellow news readers, ...) matter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional

from .attention import _NEGATIVE
from .metapaths import RELATIONS, Metapath, NodeType, domain_relations


@dataclass(frozen=True, slots=True)
class Csr:
    """Compressed sparse rows of one relation.

    Attributes:
        indptr: ``(sources + 1,)`` int64; the neighbours of node ``n`` are
            ``indices[indptr[n]:indptr[n + 1]]``.
        indices: ``(edges,)`` int64 target node ids.
    """

    indptr: Tensor
    indices: Tensor

    @classmethod
    def from_edges(cls, sources: Tensor, targets: Tensor, source_count: int) -> Csr:
        """Build from parallel id tensors; ids ``1..source_count`` (row 0 stays empty).

        Repeated edges are kept, so a user who clicked an item twice is twice as likely to
        walk through it.
        """
        width = int(targets.max()) + 1 if targets.numel() else 1
        order = torch.argsort(sources * width + targets, stable=True)
        counts = torch.bincount(sources, minlength=source_count + 1)
        indptr = torch.zeros(source_count + 2, dtype=torch.int64)
        indptr[1:] = counts.cumsum(0)
        return cls(indptr, targets[order])

    def neighbours(self, node: int) -> Tensor:
        """Targets of ``node`` (1-D int64)."""
        return self.indices[self.indptr[node] : self.indptr[node + 1]]


def _as_ids(values: Sequence[int] | Tensor, name: str, high: int) -> Tensor:
    ids = torch.as_tensor(values, dtype=torch.int64).reshape(-1)
    if ids.numel() and (int(ids.min()) < 1 or int(ids.max()) > high):
        raise ValueError(f"{name} ids must lie in 1..{high}")
    return ids


class HeteroGraph:
    """Users, items, categories and creators with typed, directed relations as CSR.

    Args:
        counts: Number of nodes per type (ids ``1..count``).
        relations: Relation name (a key of :data:`~.metapaths.RELATIONS`) -> CSR.
    """

    def __init__(self, counts: dict[NodeType, int], relations: dict[str, Csr]) -> None:
        unknown = set(relations) - set(RELATIONS)
        if unknown:
            raise ValueError(f"unknown relations {sorted(unknown)}")
        self.counts = counts
        self.relations = relations

    @classmethod
    def from_edges(
        cls,
        *,
        users: int,
        items: int,
        categories: int,
        creators: int,
        interactions: tuple[Tensor, Tensor, Tensor],
        item_category: tuple[Tensor, Tensor],
        item_creator: tuple[Tensor, Tensor],
        friendships: tuple[Tensor, Tensor],
    ) -> HeteroGraph:
        """Build every relation from edge lists.

        Args:
            users, items, categories, creators: Node counts per type.
            interactions: ``(user_id, item_id, domain_id)`` of clicks (E,) each; domain ids in
                :class:`muma.contract.Domain` order (1 news, 2 video, 3 ad).
            item_category: ``(item_id, category_id)``.
            item_creator: ``(item_id, creator_id)``.
            friendships: ``(user_id, user_id)`` undirected: stored in both directions.

        Raises:
            ValueError: An id outside its type's range, or edge lists of unequal length.
        """
        for name, edges in {
            "interactions": interactions,
            "item_category": item_category,
            "item_creator": item_creator,
            "friendships": friendships,
        }.items():
            if len({len(part) for part in edges}) != 1:
                raise ValueError(f"{name} edge lists differ in length")
        user = _as_ids(interactions[0], "interaction user", users)
        item = _as_ids(interactions[1], "interaction item", items)
        domain = _as_ids(interactions[2], "interaction domain", len(domain_relations()))
        cat_item = _as_ids(item_category[0], "item_category item", items)
        category = _as_ids(item_category[1], "item_category category", categories)
        creator_item = _as_ids(item_creator[0], "item_creator item", items)
        creator = _as_ids(item_creator[1], "item_creator creator", creators)
        left = _as_ids(friendships[0], "friendship user", users)
        right = _as_ids(friendships[1], "friendship user", users)
        relations = {
            "user_item": Csr.from_edges(user, item, users),
            "item_user": Csr.from_edges(item, user, items),
            "item_category": Csr.from_edges(cat_item, category, items),
            "category_item": Csr.from_edges(category, cat_item, categories),
            "item_creator": Csr.from_edges(creator_item, creator, items),
            "creator_item": Csr.from_edges(creator, creator_item, creators),
            "user_friend": Csr.from_edges(
                torch.cat([left, right]), torch.cat([right, left]), users
            ),
        }
        for domain_id, relation in domain_relations().items():
            in_domain = domain == domain_id
            relations[relation] = Csr.from_edges(user[in_domain], item[in_domain], users)
        counts: dict[NodeType, int] = {
            "user": users,
            "item": items,
            "category": categories,
            "creator": creators,
        }
        return cls(counts, relations)

    def walk(self, metapath: Metapath, anchors: Tensor, generator: torch.Generator) -> Tensor:
        """One random walk along ``metapath`` from each anchor.

        Args:
            anchors: ``(N,)`` int64 anchor ids (0 is padding and walks nowhere).

        Returns:
            ``(N,)`` int64 end nodes; 0 where the walk hit a node without the next relation.
        """
        nodes = anchors.clone()
        for relation in metapath.relations:
            csr = self.relations[relation]
            if csr.indices.numel() == 0:
                return torch.zeros_like(nodes)
            sources = csr.indptr.numel() - 2
            alive = (nodes > 0) & (nodes <= sources)
            safe = torch.where(alive, nodes, 0)
            start = csr.indptr[safe]
            degree = csr.indptr[safe + 1] - start
            alive &= degree > 0
            offset = (torch.rand(nodes.shape, generator=generator) * degree).long()
            offset = torch.minimum(offset, (degree - 1).clamp_min(0))
            picked = csr.indices[(start + offset).clamp(max=csr.indices.numel() - 1)]
            nodes = torch.where(alive, picked, 0)
        return nodes

    def sample(
        self,
        metapaths: Sequence[Metapath],
        anchors: Tensor,
        neighbours: int,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor]:
        """``neighbours`` walks (with replacement) per anchor and metapath.

        Args:
            metapaths: P metapaths, all starting at the anchors' node type.
            anchors: ``B`` int64 user or item ids.
            neighbours: K.
            generator: Source of randomness; a fresh one with the same seed repeats the sample.

        Returns:
            ``(ids, mask)``, ``B x P x K`` int64 and bool; dead-end walks are padding.

        Raises:
            ValueError: Metapaths with different anchors, or an anchor id out of range.
        """
        anchor_types = {path.anchor for path in metapaths}
        if len(anchor_types) != 1:
            raise ValueError(f"metapaths must share one anchor type, got {sorted(anchor_types)}")
        (anchor_type,) = anchor_types
        if anchors.numel() and int(anchors.max()) > self.counts[anchor_type]:
            raise ValueError(f"{anchor_type} ids must lie in 0..{self.counts[anchor_type]}")
        repeated = anchors.repeat_interleave(neighbours)  # B*K
        ends = [self.walk(path, repeated, generator) for path in metapaths]
        ids = torch.stack(ends, dim=1).reshape(anchors.numel(), neighbours, len(metapaths))
        ids = ids.transpose(1, 2).contiguous()  # B x P x K
        return ids, ids > 0


def path_summaries(
    ids: Tensor,
    mask: Tensor,
    metapaths: Sequence[Metapath],
    user_table: nn.Embedding,
    item_table: nn.Embedding,
) -> Tensor:
    """Mean embedding of each metapath's real neighbours, from the table of its target type.

    One fused ``embedding_bag`` per node type does the lookup and the masked mean, so the
    ``B x P x K x D`` neighbour tensor is never materialised (forward or backward).

    Args:
        ids: ``B x P x K`` int64 neighbour ids.
        mask: ``B x P x K`` bool; masked ids are ignored whatever their value.
        metapaths: P metapaths, in the order of the second axis.

    Returns:
        ``B x P x D``; zero for a metapath without neighbours.
    """
    batch, _, neighbours = ids.shape
    weights = mask.to(user_table.weight.dtype)
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1.0)  # B x P x K
    groups = []
    order: list[int] = []
    for target, table in (("user", user_table), ("item", item_table)):
        chosen = [index for index, path in enumerate(metapaths) if path.target == target]
        if not chosen:
            continue
        selected = slice(chosen[0], chosen[-1] + 1) if _contiguous(chosen) else chosen
        bags = functional.embedding_bag(
            ids[:, selected].reshape(-1, neighbours),
            table.weight,
            mode="sum",
            per_sample_weights=weights[:, selected].reshape(-1, neighbours),
        )  # (B * P_target) x D
        groups.append(bags.view(batch, len(chosen), -1))
        order += chosen
    summaries = torch.cat(groups, dim=1) if len(groups) > 1 else groups[0]  # B x P x D
    if order != sorted(order):
        summaries = summaries[:, torch.argsort(torch.tensor(order))]
    return summaries


def _contiguous(indices: list[int]) -> bool:
    return indices == list(range(indices[0], indices[-1] + 1))


class MetapathAggregator(nn.Module):
    """Attention over metapaths (HAN's semantic attention) of per-metapath summaries.

    Args:
        dim: D, width of the summaries and of the output.
        hidden: Width of the semantic attention's projection.
    """

    def __init__(self, dim: int, hidden: int = 16) -> None:
        super().__init__()
        self.project = nn.Linear(dim, hidden)
        self.query = nn.Linear(hidden, 1, bias=False)

    def path_weights(self, summaries: Tensor, has_neighbours: Tensor) -> Tensor:
        """Attention weights over metapaths.

        Args:
            summaries: ``B x P x D`` (see :func:`path_summaries`).
            has_neighbours: ``B x P`` bool, metapaths with at least one real neighbour.

        Returns:
            ``B x P``; 0 for a metapath without neighbours, all zeros for an anchor without any.
        """
        scores = self.query(torch.tanh(self.project(summaries))).squeeze(-1)  # B x P
        scores = scores.masked_fill(~has_neighbours, _NEGATIVE)
        return scores.softmax(dim=-1) * has_neighbours

    def forward(self, summaries: Tensor, has_neighbours: Tensor) -> Tensor:
        """Graph representation ``B x D`` of each anchor (see :meth:`path_weights`)."""
        weights = self.path_weights(summaries, has_neighbours)  # B x P
        return (weights.unsqueeze(-1) * summaries).sum(dim=1)  # B x D


class CategoryAffinity(nn.Module):
    """Weights of the user-category metapaths that end at the candidate's category.

    The feature store keeps per-category user vectors (own decayed interest, friends' mean
    interest, gaze share; ``training.featurize.AFFINITY_KINDS``): the weights of the user ->
    category and user -> friend -> category paths of the HIN. The entry of the candidate's
    category is a target-aware feature an MLP over the whole vectors would have to learn as a
    lookup; this module reads it directly with an index table built from the featurizer's
    column layout (:meth:`training.featurize.Featurizer.affinity_index`).

    Args:
        index: ``(domains + 1) x (categories + 1) x A`` column of ``user_dense`` per domain,
            category and kind, -1 where none.
    """

    def __init__(self, index: Sequence[Sequence[Sequence[int]]]) -> None:
        super().__init__()
        table = torch.as_tensor(index, dtype=torch.int64)
        if table.dim() != 3 or table.shape[-1] == 0:
            raise ValueError(
                f"affinity index must be D x C x A with A >= 1, got {tuple(table.shape)}"
            )
        self.register_buffer("index", table, persistent=False)
        self.kinds = int(table.shape[-1])

    @property
    def width(self) -> int:
        """Output width: A values and A presence flags."""
        return 2 * self.kinds

    def forward(self, user_dense: Tensor, domain_id: Tensor, category_id: Tensor) -> Tensor:
        """``B x 2A``: the user's (standardised) weights on the candidate's category, then 1.0
        where the weight exists and 0.0 where it does not (its value is then 0).

        Args:
            user_dense: ``B x F_u`` standardised dense user features.
            domain_id: ``B`` candidate domains.
            category_id: ``B`` candidate categories.
        """
        columns = self.index[domain_id, category_id]  # B x A
        present = columns >= 0
        values = user_dense.gather(1, columns.clamp_min(0)) * present  # B x A
        return torch.cat([values, present.to(values.dtype)], dim=-1)
