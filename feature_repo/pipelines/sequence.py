"""``user_click_sequence``: each user's last ``N`` clicked items, newest first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import FeaturesParams
from ..tables import USER_ID
from .common import SNAPSHOT, TS, Chunk, in_chunk, row_snapshots

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from .events import CuratedEvents

SEQUENCE_ORDER = ("ts_s", "item_id", "domain", "category")
"""Sort key of a sequence, descending: click time, then item id (ties are deterministic)."""


def build_user_sequence(events: CuratedEvents, chunk: Chunk, params: FeaturesParams) -> DataFrame:
    """The ``user_click_sequence`` rows of one chunk.

    Only the last ``N`` clicks before the chunk can still appear in it, so older history is
    cut per user before the join with the snapshots.

    Returns:
        ``user_id``, ``snapshot`` and the table's feature columns.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    n = params.sequence_length
    clicks = in_chunk(events.clicks, chunk).select(USER_ID, *SEQUENCE_ORDER)
    rows = row_snapshots(clicks.select(USER_ID, TS), [USER_ID], chunk)
    newest = Window.partitionBy(USER_ID).orderBy(*[F.col(c).desc() for c in SEQUENCE_ORDER])
    before = (
        clicks.where(F.col(TS) < F.lit(float(chunk.start_s)))
        .withColumn("_rank", F.row_number().over(newest))
        .where(F.col("_rank") <= n)
        .drop("_rank")
    )
    during = clicks.where(F.col(TS) >= F.lit(float(chunk.start_s)))
    history = before.unionByName(during)
    joined = rows.join(history, USER_ID).where(F.col(TS) < F.col(SNAPSHOT))
    sequence = joined.groupBy(USER_ID, SNAPSHOT).agg(
        F.slice(F.sort_array(F.collect_list(F.struct(*SEQUENCE_ORDER)), asc=False), 1, n).alias(
            "_seq"
        )
    )
    return sequence.select(
        USER_ID,
        SNAPSHOT,
        F.col("_seq.item_id").alias("seq_item_ids"),
        F.transform(F.col("_seq.ts_s"), lambda ts: F.floor(ts).cast("bigint")).alias("seq_ts"),
        F.col("_seq.domain").alias("seq_domains"),
        F.col("_seq.category").alias("seq_categories"),
        F.size("_seq").cast("bigint").alias("seq_length"),
    )
