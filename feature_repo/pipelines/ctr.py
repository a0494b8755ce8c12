"""Decayed impression and click counters shared by the user and item builders."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..config import FeaturesParams
from .common import TS, Chunk, bucket_sums, decayed_at_rows, snapshots_frame

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from .events import CuratedEvents


def half_life_labels(params: FeaturesParams) -> dict[str, float]:
    """Column suffix (``24h``) -> half-life hours, in params order."""
    return {f"{h}h": float(h) for h in params.half_lives_hours}


def impression_click_events(events: CuratedEvents, keys: Sequence[str]) -> DataFrame:
    """Impressions (``imp`` = 1) and clicks at click time (``clk`` = 1), with ``keys``."""
    from pyspark.sql import functions as F

    impressions = events.impressions.select(
        *keys, TS, F.lit(1.0).alias("imp"), F.lit(0.0).alias("clk")
    )
    clicks = events.clicks.select(*keys, TS, F.lit(0.0).alias("imp"), F.lit(1.0).alias("clk"))
    return impressions.unionByName(clicks)


def domain_ctr(
    spark: SparkSession, events: CuratedEvents, chunk: Chunk, params: FeaturesParams
) -> DataFrame:
    """CTR of each domain at every snapshot and half-life: the smoothing prior.

    Returns:
        ``domain``, ``snapshot`` and ``domain_ctr_<h>h`` (null for a domain without
        impressions yet).
    """
    from pyspark.sql import functions as F

    labels = half_life_labels(params)
    counters = impression_click_events(events, ["domain"])
    buckets = bucket_sums(
        counters, ["domain"], {"imp": F.col("imp"), "clk": F.col("clk")}, labels, chunk
    )
    sums = {
        f"{name}_{label}": (f"{name}__{label}", h)
        for name in ("imp", "clk")
        for label, h in labels.items()
    }
    decayed = decayed_at_rows(buckets, snapshots_frame(spark, chunk), [], ["domain"], sums)
    return decayed.select(
        "domain",
        "snapshot",
        *[
            F.when(F.col(f"imp_{label}") > 0, F.col(f"clk_{label}") / F.col(f"imp_{label}")).alias(
                f"domain_ctr_{label}"
            )
            for label in labels
        ],
    )
