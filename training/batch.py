"""The training batch contract: one frozen dataclass of tensors shared by MUMA and every baseline.

Conventions, the same for every field:

* ids are ``torch.int64``, 1-based per vocabulary, and **0 is padding**;
* masks are ``torch.bool`` and ``True`` marks a real entry;
* sequences are left-aligned, oldest behaviour first, padding at the end, so a causal encoder
  never reads padding before a real behaviour;
* ``*_gap_hours`` is the time from each behaviour to the request, in hours (``>= 0``);
* domain ids follow :class:`muma.contract.Domain` order: 1 news, 2 video, 3 ad.

Position is an input during training (the logged slot, 1-based) and is fixed at serving with
:meth:`Batch.at_serving_position`, so a score does not depend on where the logging policy put
the item.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from muma.contract import Domain
from training.model.config import FeatureSpace, GraphConfig
from training.model.metapaths import Metapath, resolve

DOMAIN_IDS: dict[Domain, int] = {domain: index + 1 for index, domain in enumerate(Domain)}
"""Domain -> embedding id (0 is padding)."""

SERVING_POSITION = 1
"""The slot every candidate is scored at when serving (the top of the slate)."""


class BatchError(ValueError):
    """A batch whose tensors disagree in shape or dtype; the message names the field."""


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch of B impressions with their user's behaviours and graph neighbours.

    Attributes:
        request_id: ``B`` int64, groups the rows of one slate (NDCG and HR per request).
        user_id: ``B`` int64.
        item_id: ``B`` int64, the candidate item.
        category_id: ``B`` int64, the candidate's category.
        creator_id: ``B`` int64, the candidate's creator.
        domain_id: ``B`` int64 in ``1..domains`` (never padding for a candidate).
        position: ``B`` int64, logged 1-based slot.
        user_dense: ``B x F_u`` float32 dense user features.
        item_dense: ``B x F_i`` float32 dense item features.
        long_item_id: ``B x L_long`` int64, long history (oldest first).
        long_category_id: ``B x L_long`` int64.
        long_domain_id: ``B x L_long`` int64.
        long_gap_hours: ``B x L_long`` float32, hours from each behaviour to the request.
        long_mask: ``B x L_long`` bool.
        recent_item_id: ``B x L_recent`` int64, the most recent behaviours (oldest first).
        recent_category_id: ``B x L_recent`` int64.
        recent_domain_id: ``B x L_recent`` int64.
        recent_gap_hours: ``B x L_recent`` float32.
        recent_mask: ``B x L_recent`` bool.
        user_paths: ``B x P_u x K`` int64, neighbours of the user per user metapath.
        user_paths_mask: ``B x P_u x K`` bool.
        item_paths: ``B x P_i x K`` int64, neighbours of the candidate per item metapath.
        item_paths_mask: ``B x P_i x K`` bool.
        clicked: ``B`` float32 in {0, 1}.
        dwell: ``B`` float32 dwell target (e.g. ``log1p`` seconds), meaningful where masked.
        dwell_mask: ``B`` bool, rows with an observed dwell.
        propensity: ``B`` float32 in ``(0, 1]``, the logging policy's probability of showing
            this item in this slot.
    """

    request_id: Tensor
    user_id: Tensor
    item_id: Tensor
    category_id: Tensor
    creator_id: Tensor
    domain_id: Tensor
    position: Tensor
    user_dense: Tensor
    item_dense: Tensor
    long_item_id: Tensor
    long_category_id: Tensor
    long_domain_id: Tensor
    long_gap_hours: Tensor
    long_mask: Tensor
    recent_item_id: Tensor
    recent_category_id: Tensor
    recent_domain_id: Tensor
    recent_gap_hours: Tensor
    recent_mask: Tensor
    user_paths: Tensor
    user_paths_mask: Tensor
    item_paths: Tensor
    item_paths_mask: Tensor
    clicked: Tensor
    dwell: Tensor
    dwell_mask: Tensor
    propensity: Tensor

    def __len__(self) -> int:
        return int(self.user_id.shape[0])

    def validate(self) -> Batch:
        """Check every field's rank, leading size and dtype; return ``self``.

        Raises:
            BatchError: The first field that breaks the contract, by name.
        """
        size = len(self)
        ranks = {"user_dense": 2, "item_dense": 2, "user_paths": 3, "item_paths": 3}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, Tensor):
                raise BatchError(f"{field.name} is a {type(value).__name__}, not a tensor")
            rank = ranks.get(field.name.removesuffix("_mask"), 1)
            if field.name.startswith(("long_", "recent_")):
                rank = 2
            if value.dim() != rank or value.shape[0] != size:
                raise BatchError(
                    f"{field.name} has shape {tuple(value.shape)}; expected rank {rank} "
                    f"with leading size {size}"
                )
            expected = _dtype(field.name)
            if value.dtype != expected:
                raise BatchError(f"{field.name} has dtype {value.dtype}, expected {expected}")
        for prefix in ("long", "recent"):
            shape = getattr(self, f"{prefix}_mask").shape
            for suffix in ("item_id", "category_id", "domain_id", "gap_hours"):
                if getattr(self, f"{prefix}_{suffix}").shape != shape:
                    raise BatchError(f"{prefix}_{suffix} does not match {prefix}_mask {shape}")
        for prefix in ("user_paths", "item_paths"):
            if getattr(self, prefix).shape != getattr(self, f"{prefix}_mask").shape:
                raise BatchError(f"{prefix} and {prefix}_mask differ in shape")
        if size and not bool(((self.propensity > 0) & (self.propensity <= 1)).all()):
            raise BatchError("propensity must lie in (0, 1]")
        return self

    def select(self, rows: Tensor) -> Batch:
        """The rows ``rows`` (an index or boolean tensor over B) of every field."""
        return Batch(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})

    def at_serving_position(self, position: int = SERVING_POSITION) -> Batch:
        """The same batch with every candidate at ``position`` (how serving scores)."""
        return dataclasses.replace(self, position=torch.full_like(self.position, position))


def _dtype(name: str) -> torch.dtype:
    if name.endswith("_mask"):
        return torch.bool
    if name in {"user_dense", "item_dense", "clicked", "dwell", "propensity"} or name.endswith(
        "_gap_hours"
    ):
        return torch.float32
    return torch.int64


def item_attributes(item_id: Tensor, features: FeatureSpace) -> tuple[Tensor, Tensor, Tensor]:
    """Category, creator and domain ids of synthetic items (a fixed function of the item id).

    Args:
        item_id: Any shape, int64; padding 0 maps to padding 0.

    Returns:
        ``(category_id, creator_id, domain_id)``, each shaped like ``item_id``.
    """
    base = (item_id - 1).clamp_min(0)
    real = item_id > 0
    category = torch.where(real, base % features.categories + 1, 0)
    creator = torch.where(real, (base // features.categories) % features.creators + 1, 0)
    domain = torch.where(real, (base * 7 + base // 3) % features.domains + 1, 0)
    return category, creator, domain


def synthetic_batch(
    features: FeatureSpace,
    batch_size: int,
    *,
    long_length: int = 50,
    recent_length: int = 20,
    graph: GraphConfig | None = None,
    slate_size: int = 5,
    label_noise: float = 0.0,
    seed: int = 0,
) -> Batch:
    """A reproducible batch for tests and benchmarks, with a planted, learnable click rule.

    Rows come in slates of ``slate_size`` sharing a request, a user and that user's history.
    Half the candidates take the category of one of the user's recent behaviours; a candidate
    is clicked exactly when its category appears in the recent window, then a share
    ``label_noise`` of labels is flipped. History lengths vary per request (1 to
    ``long_length``), so every batch exercises padding.

    Args:
        features: Vocabulary sizes and dense widths; needs ``items >= categories``.
        batch_size: B.
        long_length: L_long.
        recent_length: L_recent, the tail of the long history.
        graph: Metapaths and K for the neighbour tensors (default :class:`GraphConfig`).
        slate_size: Rows per request.
        label_noise: Share of labels flipped, in ``[0, 0.5]``.
        seed: Seed of a private ``torch.Generator`` (global RNG state is untouched).

    Raises:
        ValueError: A size below 1, too few items, or noise outside ``[0, 0.5]``.
    """
    if min(batch_size, long_length, recent_length, slate_size) < 1:
        raise ValueError("batch_size, long_length, recent_length and slate_size must be >= 1")
    if features.items < features.categories:
        raise ValueError("synthetic_batch needs at least as many items as categories")
    if not 0 <= label_noise <= 0.5:
        raise ValueError(f"label_noise must lie in [0, 0.5], got {label_noise}")
    graph = graph or GraphConfig()
    rng = torch.Generator().manual_seed(seed)
    requests = -(-batch_size // slate_size)

    def ints(low: int, high: int, *shape: int) -> Tensor:
        return torch.randint(low, high + 1, shape, generator=rng)

    # Per request: a user and a left-aligned history, oldest first.
    user = ints(1, features.users, requests)
    lengths = ints(1, long_length, requests)
    slots = torch.arange(long_length)
    long_mask = slots[None, :] < lengths[:, None]
    long_item = torch.where(long_mask, ints(1, features.items, requests, long_length), 0)
    inter_arrival = torch.empty(requests, long_length).exponential_(1 / 6.0, generator=rng)
    inter_arrival = inter_arrival * long_mask
    long_gap = inter_arrival.flip(1).cumsum(1).flip(1) * long_mask

    recent_count = lengths.clamp(max=recent_length)
    recent_slots = torch.arange(recent_length)
    start = (lengths - recent_length).clamp_min(0)
    index = (start[:, None] + recent_slots[None, :]).clamp(max=long_length - 1)
    recent_mask = recent_slots[None, :] < recent_count[:, None]
    recent_item = torch.where(recent_mask, long_item.gather(1, index), 0)
    recent_gap = torch.where(recent_mask, long_gap.gather(1, index), 0.0)

    # Per row: the request's context repeated, then a candidate.
    row_request = torch.arange(requests).repeat_interleave(slate_size)[:batch_size]

    def rows(tensor: Tensor) -> Tensor:
        return tensor[row_request]

    recent_item_rows, recent_mask_rows = rows(recent_item), rows(recent_mask)
    recent_category = item_attributes(recent_item_rows, features)[0]
    candidate = ints(1, features.items, batch_size)
    pick = ints(0, recent_length - 1, batch_size) % rows(recent_count)
    wanted = recent_category.gather(1, pick[:, None]).squeeze(1)
    take_recent = torch.rand(batch_size, generator=rng) < 0.5
    aligned = (candidate - 1) // features.categories * features.categories + wanted
    aligned = torch.where(aligned > features.items, aligned - features.categories, aligned)
    candidate = torch.where(take_recent, aligned, candidate)
    category, creator, domain = item_attributes(candidate, features)
    seen = ((recent_category == category[:, None]) & recent_mask_rows).any(1)
    flip = torch.rand(batch_size, generator=rng) < label_noise
    clicked = (seen ^ flip).float()

    long_item_rows, long_mask_rows = rows(long_item), rows(long_mask)
    _, _, long_domain = item_attributes(long_item_rows, features)
    _, _, recent_domain = item_attributes(recent_item_rows, features)
    user_paths = _paths(features, resolve(graph.user_metapaths, "user"), graph, batch_size, rng)
    item_paths = _paths(features, resolve(graph.item_metapaths, "item"), graph, batch_size, rng)
    dwell_seconds = torch.empty(batch_size).exponential_(1 / 30.0, generator=rng)
    return Batch(
        request_id=row_request + 1,
        user_id=rows(user),
        item_id=candidate,
        category_id=category,
        creator_id=creator,
        domain_id=domain,
        position=ints(1, min(10, features.max_position), batch_size),
        user_dense=torch.randn(batch_size, features.user_dense, generator=rng),
        item_dense=torch.randn(batch_size, features.item_dense, generator=rng),
        long_item_id=long_item_rows,
        long_category_id=item_attributes(long_item_rows, features)[0],
        long_domain_id=long_domain,
        long_gap_hours=rows(long_gap),
        long_mask=long_mask_rows,
        recent_item_id=recent_item_rows,
        recent_category_id=recent_category,
        recent_domain_id=recent_domain,
        recent_gap_hours=rows(recent_gap),
        recent_mask=recent_mask_rows,
        user_paths=user_paths[0],
        user_paths_mask=user_paths[1],
        item_paths=item_paths[0],
        item_paths_mask=item_paths[1],
        clicked=clicked,
        dwell=torch.log1p(dwell_seconds) * clicked,
        dwell_mask=clicked > 0,
        propensity=0.02 + 0.98 * torch.rand(batch_size, generator=rng),
    )


def _paths(
    features: FeatureSpace,
    metapaths: tuple[Metapath, ...],
    graph: GraphConfig,
    batch_size: int,
    rng: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Random neighbour ids ``B x P x K`` (with 0 to K real ones per path) and their mask."""
    count = len(metapaths)
    sizes = torch.tensor(
        [features.users if path.target == "user" else features.items for path in metapaths],
        dtype=torch.float32,
    )
    ids = torch.rand(batch_size, count, graph.neighbours, generator=rng) * sizes[None, :, None]
    real = torch.randint(0, graph.neighbours + 1, (batch_size, count, 1), generator=rng)
    mask = torch.arange(graph.neighbours)[None, None, :] < real
    return torch.where(mask, ids.long() + 1, 0), mask
