"""``user_social_interest``: the user's circle at ``T`` and its pooled category interest."""

from __future__ import annotations

from typing import TYPE_CHECKING

from muma.contract import EdgeAction, Relation

from ..config import FeaturesParams
from ..tables import DOMAINS, USER_ID
from .common import (
    SNAPSHOT,
    TS,
    Chunk,
    active_snapshots,
    in_chunk,
    row_snapshots,
    snapshots_frame,
)
from .user import category_clicks, category_vectors

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from .events import CuratedEvents

MEMBER_ID = "member_id"
SYMMETRIC = (Relation.FRIEND.value, Relation.FAMILY.value)
"""Relations that put each user in the other's circle; ``follow`` only in the follower's."""


def circle_at_snapshots(spark: SparkSession, events: CuratedEvents, chunk: Chunk) -> DataFrame:
    """``user_id``, ``member_id``, ``snapshot`` for every circle membership at each snapshot.

    The state of an edge (``user_id``, ``friend_id``) at ``T`` is its latest action before
    ``T``; an ``added`` state lasts until the edge's next event.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    edges = in_chunk(events.edges, chunk)
    by_edge = Window.partitionBy(USER_ID, "friend_id").orderBy(TS, "action", "relation")
    intervals = edges.withColumn("_next", F.lead(TS).over(by_edge)).where(
        F.col("action") == EdgeAction.ADDED.value
    )
    directed = intervals.select(
        USER_ID, F.col("friend_id").alias(MEMBER_ID), TS, "_next"
    ).unionByName(
        intervals.where(F.col("relation").isin(*SYMMETRIC)).select(
            F.col("friend_id").alias(USER_ID), F.col(USER_ID).alias(MEMBER_ID), TS, "_next"
        )
    )
    snapshots = snapshots_frame(spark, chunk)
    alive = (F.col(TS) < F.col(SNAPSHOT)) & (
        F.col("_next").isNull() | (F.col("_next") >= F.col(SNAPSHOT))
    )
    return (
        directed.join(snapshots, alive)
        .where(F.col(USER_ID) != F.col(MEMBER_ID))
        .select(USER_ID, MEMBER_ID, SNAPSHOT)
        .distinct()
    )


def build_user_social(
    spark: SparkSession, events: CuratedEvents, chunk: Chunk, params: FeaturesParams
) -> DataFrame:
    """The ``user_social_interest`` rows of one chunk.

    Rows: the chunk's first snapshot for every user with an edge event before it, every
    snapshot after a grain in which one of the user's edges changed, and every snapshot
    after a grain in which a member of the user's circle clicked.

    Returns:
        ``user_id``, ``snapshot`` and the table's feature columns.
    """
    from pyspark.sql import functions as F

    circle = circle_at_snapshots(spark, events, chunk)
    edges = in_chunk(events.edges, chunk)
    edge_activity = edges.select(USER_ID, TS).unionByName(
        edges.select(F.col("friend_id").alias(USER_ID), TS)
    )
    own_rows = row_snapshots(edge_activity, [USER_ID], chunk)
    clickers = active_snapshots(events.clicks.select(USER_ID, TS), [USER_ID], chunk)
    friend_rows = circle.join(
        clickers.withColumnRenamed(USER_ID, MEMBER_ID), [MEMBER_ID, SNAPSHOT]
    ).select(USER_ID, SNAPSHOT)
    rows = own_rows.unionByName(friend_rows).distinct()

    members = circle.join(rows, [USER_ID, SNAPSHOT])
    counts = members.groupBy(USER_ID, SNAPSHOT).agg(F.count(MEMBER_ID).alias("friend_count"))
    member_rows = members.select(F.col(MEMBER_ID).alias(USER_ID), SNAPSHOT).distinct()
    member_interest = category_clicks(events.clicks, member_rows, chunk, params)
    pooled = (
        members.join(member_interest.withColumnRenamed(USER_ID, MEMBER_ID), [MEMBER_ID, SNAPSHOT])
        .groupBy(USER_ID, SNAPSHOT, "domain", "category")
        .agg(F.sum("weight").alias("weight"))
    )
    vectors = category_vectors(pooled, USER_ID, params, "_friends_category_interest")
    joined = (
        rows.join(counts, [USER_ID, SNAPSHOT], "left")
        .join(vectors, [USER_ID, SNAPSHOT], "left")
        .withColumn("friend_count", F.coalesce(F.col("friend_count"), F.lit(0)).cast("bigint"))
    )
    for domain in DOMAINS:
        column = f"{domain}_friends_category_interest"
        zeros = F.array(*[F.lit(0.0).cast("float")] * len(params.vocabulary(domain)))
        joined = joined.withColumn(column, F.coalesce(F.col(column), zeros))
    return joined
