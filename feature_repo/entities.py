"""Feast entities: the user and the item, keyed by the contract's string ids, and the user again
as the owner of a behaviour sequence, under a join key of its own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .tables import ITEM_ID, SEQUENCE_USER_ID, USER_ID

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


def sequence_owner_entity() -> Entity:
    """The ``sequence_owner`` entity: a user id under the join key ``seq_user_id``.

    Feast's Redis store keeps every view of one entity key in one hash. The behaviour
    sequence's arrays are longer than Redis' listpack value limit, which would turn the
    user's whole hash into a hashtable; joined on a key of its own, the sequence has a hash
    of its own. Feature services map it back to ``user_id`` (``with_join_key_map``).
    """
    from feast import Entity, ValueType

    return Entity(
        name="sequence_owner",
        join_keys=[SEQUENCE_USER_ID],
        value_type=ValueType.STRING,
        description="a user, as the owner of a behaviour sequence (the same ids as user)",
    )
