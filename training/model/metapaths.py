"""Relations and metapaths of MUMA's heterogeneous information network (pure Python, no torch).

Node types are users, items, categories and creators; ids are 1-based per type and 0 is
padding, as everywhere in training. A *relation* is one typed edge direction (``item_user``
goes from an item to the users who clicked it); a *metapath* is a chain of relations whose
end nodes are the neighbours the graph module aggregates. Cross-domain metapaths follow
clicks in one domain to clicks in another (``user_news_video``: videos watched by people who
read what this user read), which is how interest transfers from news to video and ads.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

NodeType = Literal["user", "item", "category", "creator"]

RELATIONS: dict[str, tuple[NodeType, NodeType]] = {
    "user_item": ("user", "item"),
    "item_user": ("item", "user"),
    "user_item_news": ("user", "item"),
    "user_item_video": ("user", "item"),
    "user_item_ad": ("user", "item"),
    "item_category": ("item", "category"),
    "category_item": ("category", "item"),
    "item_creator": ("item", "creator"),
    "creator_item": ("creator", "item"),
    "user_friend": ("user", "user"),
}
"""Relation name -> (source node type, target node type)."""


@dataclass(frozen=True, slots=True)
class Metapath:
    """A chain of relations from an anchor node (the request's user or candidate item).

    Attributes:
        name: Stable name used in params.yaml and in the batch's path order.
        relations: Relation names, each starting where the previous one ends.
    """

    name: str
    relations: tuple[str, ...]

    @property
    def anchor(self) -> NodeType:
        """Node type the walk starts from."""
        return RELATIONS[self.relations[0]][0]

    @property
    def target(self) -> NodeType:
        """Node type of the sampled neighbours."""
        return RELATIONS[self.relations[-1]][1]


def _metapath(name: str, *relations: str) -> Metapath:
    for step, (left, right) in enumerate(itertools.pairwise(relations)):
        if RELATIONS[left][1] != RELATIONS[right][0]:
            raise ValueError(f"metapath {name}: relation {step + 1} {right} does not follow {left}")
    return Metapath(name, tuple(relations))


METAPATHS: dict[str, Metapath] = {
    path.name: path
    for path in (
        _metapath("user_item_user", "user_item", "item_user"),
        _metapath("user_friend_user", "user_friend"),
        _metapath("user_news_video", "user_item_news", "item_user", "user_item_video"),
        _metapath("user_news_ad", "user_item_news", "item_user", "user_item_ad"),
        _metapath("user_video_ad", "user_item_video", "item_user", "user_item_ad"),
        _metapath("item_category_item", "item_category", "category_item"),
        _metapath("item_creator_item", "item_creator", "creator_item"),
        _metapath("item_user_item", "item_user", "user_item"),
    )
}
"""Every metapath the graph module knows, by name."""

DEFAULT_USER_METAPATHS = (
    "user_item_user",
    "user_friend_user",
    "user_news_video",
    "user_news_ad",
    "user_video_ad",
)
DEFAULT_ITEM_METAPATHS = ("item_category_item", "item_creator_item", "item_user_item")


def resolve(names: tuple[str, ...] | list[str], anchor: NodeType) -> tuple[Metapath, ...]:
    """Look up metapaths by name and check they start at ``anchor`` and end at users or items.

    Raises:
        ValueError: An unknown name, a wrong anchor, or a target the model has no table for.
    """
    paths = []
    for name in names:
        if name not in METAPATHS:
            raise ValueError(f"unknown metapath {name!r}; known: {sorted(METAPATHS)}")
        path = METAPATHS[name]
        if path.anchor != anchor:
            raise ValueError(f"metapath {name!r} starts at a {path.anchor}, not a {anchor}")
        if path.target not in ("user", "item"):
            raise ValueError(f"metapath {name!r} ends at a {path.target}; use user or item")
        paths.append(path)
    return tuple(paths)


def domain_relations() -> dict[int, str]:
    """Domain id (1-based, :class:`muma.contract.Domain` order) -> its user-item relation."""
    from muma.contract import Domain

    return {index + 1: f"user_item_{domain.value}" for index, domain in enumerate(Domain)}
