"""``user_hourly_stats``: per-domain decayed counters, smoothed CTR, dwell, recency, interest."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import FeaturesParams
from ..tables import DOMAINS, USER_ID
from .common import (
    SNAPSHOT,
    TS,
    Chunk,
    bucket_sums,
    decayed_at_rows,
    normalised_vector,
    row_snapshots,
    smoothed_ctr,
)
from .ctr import half_life_labels

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from .events import CuratedEvents

_COUNTERS = ("imp", "clk", "view", "dwell", "completion")


def user_rows(events: CuratedEvents, chunk: Chunk) -> DataFrame:
    """Snapshots at which a user gets a stats row: anchors plus grains with own activity."""
    activity = (
        events.impressions.select(USER_ID, TS)
        .unionByName(events.clicks.select(USER_ID, TS))
        .unionByName(events.views.select(USER_ID, TS))
    )
    return row_snapshots(activity, [USER_ID], chunk)


def category_clicks(
    clicks: DataFrame, rows: DataFrame, chunk: Chunk, params: FeaturesParams
) -> DataFrame:
    """Each user's clicks per (domain, category), decayed with the interest half-life.

    Args:
        clicks: Click events (``user_id``, ``domain``, ``category``, ``ts_s``).
        rows: ``user_id`` + ``snapshot`` where the values are wanted.
        chunk: The chunk.
        params: Feature parameters.

    Returns:
        ``user_id``, ``snapshot``, ``domain``, ``category``, ``weight``.
    """
    from pyspark.sql import functions as F

    half_life = params.interest_half_life_hours
    buckets = bucket_sums(
        clicks.where(F.col("category").isNotNull()),
        [USER_ID, "domain", "category"],
        {"clk": F.lit(1.0)},
        {"interest": half_life},
        chunk,
    )
    return decayed_at_rows(
        buckets, rows, [USER_ID], ["domain", "category"], {"weight": ("clk__interest", half_life)}
    )


def category_vectors(
    weights: DataFrame, key: str, params: FeaturesParams, suffix: str, weight: str = "weight"
) -> DataFrame:
    """Pivot (key, snapshot, domain, category, weight) into one normalised vector per domain.

    Returns:
        ``key``, ``snapshot`` and ``<domain><suffix>`` (``array<float>``, vocabulary order).
    """
    from pyspark.sql import functions as F

    parts = {
        (domain, category): F.sum(
            F.when(
                (F.col("domain") == domain.value) & (F.col("category") == category), F.col(weight)
            )
        ).alias(f"_{domain}__{category}")
        for domain in DOMAINS
        for category in params.vocabulary(domain)
    }
    pivoted = weights.groupBy(key, SNAPSHOT).agg(*parts.values())
    return pivoted.select(
        key,
        SNAPSHOT,
        *[
            normalised_vector(
                [F.col(f"_{domain}__{category}") for category in params.vocabulary(domain)]
            ).alias(f"{domain}{suffix}")
            for domain in DOMAINS
        ],
    )


def build_user_stats(
    spark: SparkSession,
    events: CuratedEvents,
    chunk: Chunk,
    params: FeaturesParams,
    prior: DataFrame,
) -> DataFrame:
    """The ``user_hourly_stats`` rows of one chunk.

    Args:
        spark: Session.
        events: Curated events.
        chunk: Snapshots to build.
        params: Feature parameters.
        prior: :func:`feature_repo.pipelines.ctr.domain_ctr` of the chunk.

    Returns:
        ``user_id``, ``snapshot`` and the table's feature columns.
    """
    from pyspark.sql import functions as F

    labels = half_life_labels(params)
    rows = user_rows(events, chunk)
    zero = F.lit(0.0)
    activity = (
        events.impressions.select(
            USER_ID, "domain", TS, F.lit(1.0).alias("imp"), *[zero.alias(c) for c in _COUNTERS[1:]]
        )
        .unionByName(
            events.clicks.select(
                USER_ID,
                "domain",
                TS,
                zero.alias("imp"),
                F.lit(1.0).alias("clk"),
                *[zero.alias(c) for c in _COUNTERS[2:]],
            )
        )
        .unionByName(
            events.views.select(
                USER_ID,
                "domain",
                TS,
                zero.alias("imp"),
                zero.alias("clk"),
                F.lit(1.0).alias("view"),
                F.col("dwell_ms").cast("double").alias("dwell"),
                F.col("completion_ratio").cast("double").alias("completion"),
            )
        )
    )
    buckets = bucket_sums(
        activity,
        [USER_ID, "domain"],
        {name: F.col(name) for name in _COUNTERS},
        labels,
        chunk,
        maxima={"last_click_s": F.when(F.col("clk") > 0, F.col(TS))},
    )
    sums = {
        f"{name}_{label}": (f"{name}__{label}", h)
        for name in _COUNTERS
        for label, h in labels.items()
    }
    decayed = decayed_at_rows(buckets, rows, [USER_ID], ["domain"], sums, ["last_click_s"])

    domains = spark.createDataFrame([(d.value,) for d in DOMAINS], "domain string")
    grid = (
        rows.crossJoin(domains)
        .join(decayed, [USER_ID, SNAPSHOT, "domain"], "left")
        .join(prior, ["domain", SNAPSHOT], "left")
    )
    long_columns = []
    for label in labels:
        imp = F.coalesce(F.col(f"imp_{label}"), zero)
        clk = F.coalesce(F.col(f"clk_{label}"), zero)
        view = F.coalesce(F.col(f"view_{label}"), zero)
        long_columns += [
            imp.alias(f"impressions_{label}"),
            clk.alias(f"clicks_{label}"),
            smoothed_ctr(clk, imp, F.col(f"domain_ctr_{label}"), params.ctr_prior_strength).alias(
                f"ctr_{label}"
            ),
            view.alias(f"views_{label}"),
            F.when(view > 0, F.col(f"dwell_{label}") / view).alias(f"dwell_ms_{label}"),
            F.when(view > 0, F.col(f"completion_{label}") / view).alias(f"completion_{label}"),
        ]
    long_columns.append(
        ((F.col(SNAPSHOT) - F.col("last_click_s")) / F.lit(3600.0)).alias("hours_since_click")
    )
    per_domain = grid.select(USER_ID, SNAPSHOT, "domain", *long_columns)
    names = [c for c in per_domain.columns if c not in (USER_ID, SNAPSHOT, "domain")]
    wide = per_domain.groupBy(USER_ID, SNAPSHOT).agg(
        *[
            F.max(F.when(F.col("domain") == domain.value, F.col(name))).alias(f"{domain}_{name}")
            for domain in DOMAINS
            for name in names
        ]
    )
    interest = category_vectors(
        category_clicks(events.clicks, rows, chunk, params),
        USER_ID,
        params,
        "_category_interest",
    )
    joined = wide.join(interest, [USER_ID, SNAPSHOT], "left")
    for domain in DOMAINS:
        column = f"{domain}_category_interest"
        zeros = F.array(*[F.lit(0.0).cast("float")] * len(params.vocabulary(domain)))
        joined = joined.withColumn(column, F.coalesce(F.col(column), zeros))
    return joined
