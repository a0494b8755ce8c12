"""``user_gaze_attention``: where on screen and on which categories a panel user looks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import FeaturesParams
from ..tables import DOMAINS, REGIONS, USER_ID
from .common import (
    SNAPSHOT,
    TS,
    Chunk,
    bucket_sums,
    decayed_at_rows,
    normalised_vector,
    row_snapshots,
)
from .user import category_vectors

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from .events import CuratedEvents


def build_user_gaze(events: CuratedEvents, chunk: Chunk, params: FeaturesParams) -> DataFrame:
    """The ``user_gaze_attention`` rows of one chunk (users with gaze events only).

    Fixation milliseconds are decayed with the interest half-life; shares are the decayed
    fixation per region (or per category of a domain) over its total.

    Returns:
        ``user_id``, ``snapshot`` and the table's feature columns.
    """
    from pyspark.sql import functions as F

    half_life = params.interest_half_life_hours
    gaze = events.gaze.withColumn("fixation", F.col("fixation_ms").cast("double"))
    rows = row_snapshots(gaze.select(USER_ID, TS), [USER_ID], chunk)
    sums = {"weight": ("fix__interest", half_life)}

    by_region = decayed_at_rows(
        bucket_sums(
            gaze, [USER_ID, "region"], {"fix": F.col("fixation")}, {"interest": half_life}, chunk
        ),
        rows,
        [USER_ID],
        ["region"],
        sums,
    )
    regions = by_region.groupBy(USER_ID, SNAPSHOT).agg(
        *[
            F.sum(F.when(F.col("region") == region, F.col("weight"))).alias(f"_{region}")
            for region in REGIONS
        ]
    )
    region_parts = [F.coalesce(F.col(f"_{region}"), F.lit(0.0)) for region in REGIONS]
    total = region_parts[0]
    for part in region_parts[1:]:
        total = total + part
    regions = regions.select(
        USER_ID,
        SNAPSHOT,
        total.alias("gaze_fixation_ms"),
        normalised_vector(region_parts).alias("gaze_region_share"),
    )

    by_category = decayed_at_rows(
        bucket_sums(
            gaze.where(F.col("category").isNotNull()),
            [USER_ID, "domain", "category"],
            {"fix": F.col("fixation")},
            {"interest": half_life},
            chunk,
        ),
        rows,
        [USER_ID],
        ["domain", "category"],
        sums,
    )
    categories = category_vectors(by_category, USER_ID, params, "_gaze_category_share")
    joined = rows.join(regions, [USER_ID, SNAPSHOT], "left").join(
        categories, [USER_ID, SNAPSHOT], "left"
    )
    for domain in DOMAINS:
        column = f"{domain}_gaze_category_share"
        zeros = F.array(*[F.lit(0.0).cast("float")] * len(params.vocabulary(domain)))
        joined = joined.withColumn(column, F.coalesce(F.col(column), zeros))
    return joined
