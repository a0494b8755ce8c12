"""Feast feature views: one per offline table, the real-time view, and the request-time decay.

Views are named like their tables (entity + grain + noun, e.g. ``user_hourly_stats``), and
their schemas come from :mod:`feature_repo.tables`, so a column is declared exactly once.
Because the half-lives (and so the column names) come from the ``features`` section of
params.yaml, the views are built by functions from that section instead of at import time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from .data_sources import file_source, realtime_push_source
from .realtime import (
    REALTIME_DECAYED,
    REQUEST_SOURCE,
    REQUEST_TIME,
    decayed_counter_names,
    realtime_table,
)
from .tables import ITEM_ID, SEQUENCE_USER_ID, USER_ID, Dtype, FeatureTable, feature_tables

if TYPE_CHECKING:
    from feast import Entity, FeatureView, OnDemandFeatureView
    from feast.types import FeastType

    from .config import FeaturesParams


def feast_type(dtype: Dtype) -> FeastType:
    """The Feast type of a column type of :mod:`feature_repo.tables`."""
    from feast.types import Array, Float32, Float64, Int64, String

    mapping = {
        Dtype.DOUBLE: Float64,
        Dtype.FLOAT: Float32,
        Dtype.BIGINT: Int64,
        Dtype.STRING: String,
        Dtype.FLOAT_ARRAY: Array(Float32),
        Dtype.STRING_ARRAY: Array(String),
        Dtype.BIGINT_ARRAY: Array(Int64),
    }
    return mapping[dtype]


def table_view(table: FeatureTable, entity: Entity, source, ttl: timedelta) -> FeatureView:
    """A feature view serving the view columns of ``table`` from ``source``."""
    from feast import FeatureView, Field

    return FeatureView(
        name=table.name,
        entities=[entity],
        ttl=ttl,
        schema=[Field(name=c.name, dtype=feast_type(c.dtype)) for c in table.view_features],
        source=source,
        online=True,
        description=table.doc,
    )


def batch_views(
    params: FeaturesParams,
    users: Entity,
    items: Entity,
    sequence_owners: Entity,
    ttl: timedelta,
) -> dict[str, FeatureView]:
    """One view per offline table of :func:`feature_repo.tables.feature_tables`, by name.

    Each view's entity is the one of its table's join key (``seq_user_id``: the sequence
    owner, so the sequence is stored apart from the user's other views).
    """
    entities = {USER_ID: users, ITEM_ID: items, SEQUENCE_USER_ID: sequence_owners}
    views = {}
    for table in feature_tables(params).values():
        entity = entities[table.join_key]
        views[table.name] = table_view(table, entity, file_source(table, params.features_dir), ttl)
    return views


def realtime_view(
    params: FeaturesParams, users: Entity, ttl: timedelta, half_life_hours: float
) -> FeatureView:
    """The user's real-time counters, written through the push source."""
    table = realtime_table(half_life_hours)
    return table_view(table, users, realtime_push_source(table, params.features_dir), ttl)


_DECAY_UDF = """def {name}(inputs):
    from feature_repo.realtime import decay_to_request

    return decay_to_request(inputs, inputs[{request!r}], {half_life!r})
"""
"""Source of the request-time decay UDF. Feast stores a UDF's source text in the registry and
rebuilds the function from it alone (``feast.transformation.udf_rehydrate``), so the function
must not close over anything: the half-life is written into the text."""


def request_decay_view(realtime: FeatureView, half_life_hours: float) -> OnDemandFeatureView:
    """Decays the real-time counters from their update time to the request time.

    The counters are stored as of ``rt_updated_ts`` (the newest folded event); a request at
    ``request_time_s`` sees them multiplied by ``decay_weight(request - updated)`` with the
    same function the Spark build and the real-time path use. Users without a real-time row
    get zeros (see :func:`feature_repo.realtime.decay_to_request`, which serving's fast
    path calls too).
    """
    from feast import Field, OnDemandFeatureView, RequestSource
    from feast.types import Float64

    request = RequestSource(
        name=REQUEST_SOURCE,
        schema=[Field(name=REQUEST_TIME, dtype=Float64)],
        description="request time, epoch seconds",
    )
    source = _DECAY_UDF.format(
        name=REALTIME_DECAYED, request=REQUEST_TIME, half_life=float(half_life_hours)
    )
    namespace: dict[str, object] = {}
    exec(compile(source, f"<{REALTIME_DECAYED}>", "exec"), namespace)
    return OnDemandFeatureView(
        name=REALTIME_DECAYED,
        sources=[realtime, request],
        schema=[Field(name=f"{name}_now", dtype=Float64) for name in decayed_counter_names()],
        udf=namespace[REALTIME_DECAYED],  # type: ignore[arg-type]
        udf_string=source,
        mode="pandas",
        description=f"real-time counters decayed to the request time (half-life "
        f"{half_life_hours} h)",
    )
