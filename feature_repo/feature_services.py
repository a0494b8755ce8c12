"""Feast feature services, versioned per model: bump the suffix when a model's inputs change.

- ``ranker_v1``: the ranker's batch inputs (training sets and serving read the same list).
- ``ranker_v1_online``: ``ranker_v1`` plus the real-time counters decayed to the request
  time; serving only, since real-time rows are not kept offline.
- ``sequence_v1``: behaviour sequences and item features for the sequence model.
- ``muma_v1``: the MUMA ranker's inputs: ``ranker_v1`` plus the behaviour sequences; training
  sets (``muma train``) and serving read this same list, so both see the same features.

The sequence view is joined on ``seq_user_id`` (its own Redis key, see
:func:`feature_repo.entities.sequence_owner_entity`); the services map that key to
``user_id``, so their callers pass ``user_id`` only, online and in entity dataframes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .tables import (
    ITEM_STATS,
    SEQUENCE_USER_ID,
    USER_GAZE,
    USER_ID,
    USER_SEQUENCE,
    USER_SOCIAL,
    USER_STATS,
)

if TYPE_CHECKING:
    from feast import FeatureService, FeatureView, OnDemandFeatureView

RANKER_V1 = "ranker_v1"
RANKER_V1_ONLINE = "ranker_v1_online"
SEQUENCE_V1 = "sequence_v1"
MUMA_V1 = "muma_v1"


def feature_services(
    views: dict[str, FeatureView], realtime: FeatureView, decayed: OnDemandFeatureView
) -> list[FeatureService]:
    """Every feature service, built from the views of :mod:`feature_repo.features`."""
    from feast import FeatureService

    ranker = [views[name] for name in (USER_STATS, USER_SOCIAL, USER_GAZE, ITEM_STATS)]
    sequence = views[USER_SEQUENCE].with_join_key_map({SEQUENCE_USER_ID: USER_ID})
    return [
        FeatureService(name=RANKER_V1, features=ranker, description="ranker, batch inputs"),
        FeatureService(
            name=RANKER_V1_ONLINE,
            features=[*ranker, realtime, decayed],
            description="ranker at serving time: batch inputs plus request-time real-time",
        ),
        FeatureService(
            name=SEQUENCE_V1,
            features=[sequence, views[ITEM_STATS]],
            description="sequence model: behaviour sequences and item features",
        ),
        FeatureService(
            name=MUMA_V1,
            features=[*ranker, sequence],
            description="MUMA ranker: batch inputs plus behaviour sequences (training and serving)",
        ),
    ]
