"""Feast entities: the user and the item, keyed by the contract's string ids."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .tables import ITEM_ID, USER_ID

if TYPE_CHECKING:
    from feast import Entity


def user_entity() -> Entity:
    """The ``user`` entity, joined on ``user_id``."""
    from feast import Entity, ValueType

    return Entity(
        name="user",
        join_keys=[USER_ID],
        value_type=ValueType.STRING,
        description="a person who is shown, clicks and views items",
    )


def item_entity() -> Entity:
    """The ``item`` entity, joined on ``item_id``."""
    from feast import Entity, ValueType

    return Entity(
        name="item",
        join_keys=[ITEM_ID],
        value_type=ValueType.STRING,
        description="a news article, video or ad",
    )
