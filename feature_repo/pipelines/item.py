"""``item_hourly_stats``: popularity, smoothed CTR, freshness and creator CTR per item."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import FeaturesParams
from ..tables import ITEM_ID
from .common import SNAPSHOT, TS, Chunk, bucket_sums, decayed_at_rows, row_snapshots, smoothed_ctr
from .ctr import half_life_labels, impression_click_events

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from .events import CuratedEvents

CREATOR_ID = "creator_id"


def _decayed_counts(
    counters: DataFrame, rows: DataFrame, key: str, chunk: Chunk, params: FeaturesParams
) -> DataFrame:
    """Decayed ``imp_<h>h`` and ``clk_<h>h`` of ``key`` at ``rows`` (zero when absent)."""
    from pyspark.sql import functions as F

    labels = half_life_labels(params)
    buckets = bucket_sums(
        counters, [key], {"imp": F.col("imp"), "clk": F.col("clk")}, labels, chunk
    )
    sums = {
        f"{name}_{label}": (f"{name}__{label}", h)
        for name in ("imp", "clk")
        for label, h in labels.items()
    }
    decayed = decayed_at_rows(buckets, rows, [key], [], sums)
    filled = rows.join(decayed, [key, SNAPSHOT], "left")
    return filled.select(
        key, SNAPSHOT, *[F.coalesce(F.col(name), F.lit(0.0)).alias(name) for name in sums]
    )


def build_item_stats(
    spark: SparkSession,
    events: CuratedEvents,
    chunk: Chunk,
    params: FeaturesParams,
    prior: DataFrame,
) -> DataFrame:
    """The ``item_hourly_stats`` rows of one chunk.

    The item's domain is the one its impressions carry; category, creator and publication
    time come from the catalog (null for an item missing from it).

    Returns:
        ``item_id``, ``snapshot`` and the table's feature columns.
    """
    from pyspark.sql import functions as F

    labels = half_life_labels(params)
    counters = impression_click_events(events, [ITEM_ID, "domain", CREATOR_ID])
    rows = row_snapshots(counters.select(ITEM_ID, TS), [ITEM_ID], chunk)
    item_counts = _decayed_counts(counters, rows, ITEM_ID, chunk, params)

    item_domain = counters.groupBy(ITEM_ID).agg(F.min("domain").alias("domain"))
    catalog = events.catalog.select(ITEM_ID, "category", CREATOR_ID, "publish_s")
    items = item_counts.join(item_domain, ITEM_ID, "left").join(catalog, ITEM_ID, "left")

    creator_rows = (
        items.where(F.col(CREATOR_ID).isNotNull()).select(CREATOR_ID, SNAPSHOT).distinct()
    )
    creator_counts = _decayed_counts(
        counters.where(F.col(CREATOR_ID).isNotNull()), creator_rows, CREATOR_ID, chunk, params
    ).select(
        CREATOR_ID,
        SNAPSHOT,
        *[
            F.col(f"{n}_{label}").alias(f"creator_{n}_{label}")
            for n in ("imp", "clk")
            for label in labels
        ],
    )
    joined = items.join(creator_counts, [CREATOR_ID, SNAPSHOT], "left").join(
        prior, ["domain", SNAPSHOT], "left"
    )
    m = params.ctr_prior_strength
    columns = [
        F.col("domain"),
        F.col("category"),
        F.col(CREATOR_ID),
        ((F.col(SNAPSHOT) - F.col("publish_s")) / F.lit(3600.0)).alias("age_hours"),
    ]
    for label in labels:
        prior_ctr = F.col(f"domain_ctr_{label}")
        columns += [
            F.col(f"imp_{label}").alias(f"impressions_{label}"),
            F.col(f"clk_{label}").alias(f"clicks_{label}"),
            smoothed_ctr(F.col(f"clk_{label}"), F.col(f"imp_{label}"), prior_ctr, m).alias(
                f"ctr_{label}"
            ),
            prior_ctr.alias(f"domain_ctr_{label}"),
            smoothed_ctr(
                F.col(f"creator_clk_{label}"), F.col(f"creator_imp_{label}"), prior_ctr, m
            ).alias(f"creator_ctr_{label}"),
        ]
    return joined.select(ITEM_ID, SNAPSHOT, *columns)
