"""The curated tables a feature build reads, as typed event frames with epoch-second times."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from muma.contract import Source

from ..config import FeaturesParams
from .common import TS, epoch_seconds

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

INTERACTIONS = "interactions"


class CatalogError(ValueError):
    """The catalog holds a category outside the declared vocabulary."""


@dataclass
class CuratedEvents:
    """Events with ``ts_s < end`` (epoch seconds), item attributes attached from the catalog.

    Attributes:
        impressions: user_id, item_id, domain, category, creator_id, ts_s (impression time).
        clicks: user_id, item_id, domain, category, creator_id, ts_s (click time): the
            attributed clicks of the interactions table, counted when they happened.
        views: user_id, item_id, domain, category, dwell_ms, completion_ratio, ts_s.
        gaze: user_id, item_id, domain, category, region, fixation_ms, ts_s.
        edges: user_id, friend_id, relation, action, ts_s.
        catalog: item_id, domain, category, creator_id, publish_s: each item's latest
            catalog row before ``end`` (item attributes are treated as immutable).
    """

    impressions: DataFrame
    clicks: DataFrame
    views: DataFrame
    gaze: DataFrame
    edges: DataFrame
    catalog: DataFrame

    def frames(self) -> list[DataFrame]:
        return [getattr(self, f.name) for f in fields(self)]

    def unpersist(self) -> None:
        for frame in self.frames():
            frame.unpersist()


def _read(spark: SparkSession, curated_root: Path, table: str) -> DataFrame | None:
    from ingest.schemas import curated_schema

    directory = Path(curated_root) / table
    if not (directory.is_dir() and any(directory.rglob("*.parquet"))):
        if table == INTERACTIONS:
            return None
        return spark.createDataFrame([], curated_schema(Source(table)))
    return spark.read.option("basePath", str(directory)).parquet(str(directory))


def load_events(
    spark: SparkSession, curated_root: Path, end: datetime, params: FeaturesParams
) -> CuratedEvents:
    """Read the curated tables, keep events before ``end`` and cache them.

    All history before ``end`` is read: a decayed counter with a long half-life still
    depends on old events, and landing partitions of late events lie after their event time.

    Raises:
        FileNotFoundError: No curated interactions or items under ``curated_root``.
        CatalogError: A catalog category is not in ``params.categories`` for its domain.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    end_s = F.lit(float(end.timestamp()))
    interactions = _read(spark, curated_root, INTERACTIONS)
    if interactions is None:
        raise FileNotFoundError(f"no curated interactions under {curated_root}")
    items = _read(spark, curated_root, Source.ITEMS)
    latest = Window.partitionBy("item_id").orderBy(F.col("ts").desc(), F.col("event_id").desc())
    catalog = (
        items.withColumn(TS, epoch_seconds("ts"))
        .where(F.col(TS) < end_s)
        .withColumn("_n", F.row_number().over(latest))
        .where("_n = 1")
        .select(
            "item_id",
            "domain",
            "category",
            "creator_id",
            epoch_seconds("publish_ts").alias("publish_s"),
        )
        .cache()
    )
    _check_vocabulary(
        catalog, params, f"no curated catalog (items) before {end} under {curated_root}"
    )
    attributes = catalog.select("item_id", "category", "creator_id")

    labelled = interactions.select(
        "user_id", "item_id", "domain", "ts", "clicked", "click_ts"
    ).join(attributes, "item_id", "left")
    impressions = labelled.select(
        "user_id", "item_id", "domain", "category", "creator_id", epoch_seconds("ts").alias(TS)
    ).where(F.col(TS) < end_s)
    clicks = (
        labelled.where(F.col("clicked") & F.col("click_ts").isNotNull())
        .select(
            "user_id",
            "item_id",
            "domain",
            "category",
            "creator_id",
            epoch_seconds("click_ts").alias(TS),
        )
        .where(F.col(TS) < end_s)
    )
    with_item = catalog.select("item_id", "domain", "category")
    views = (
        _read(spark, curated_root, Source.VIEWS)
        .select("user_id", "item_id", "dwell_ms", "completion_ratio", epoch_seconds("ts").alias(TS))
        .where(F.col(TS) < end_s)
        .join(with_item, "item_id")
    )
    gaze = (
        _read(spark, curated_root, Source.GAZE)
        .select("user_id", "item_id", "region", "fixation_ms", epoch_seconds("ts").alias(TS))
        .where(F.col(TS) < end_s)
        .join(with_item, "item_id")
    )
    edges = (
        _read(spark, curated_root, Source.SOCIAL_EDGES)
        .select("user_id", "friend_id", "relation", "action", epoch_seconds("ts").alias(TS))
        .where(F.col(TS) < end_s)
    )
    return CuratedEvents(
        impressions=impressions.cache(),
        clicks=clicks.cache(),
        views=views.cache(),
        gaze=gaze.cache(),
        edges=edges.cache(),
        catalog=catalog,
    )


def _check_vocabulary(catalog: DataFrame, params: FeaturesParams, when_empty: str) -> None:
    pairs = catalog.select("domain", "category").distinct().collect()
    if not pairs:
        raise FileNotFoundError(when_empty)
    unknown = sorted(
        (row["domain"], row["category"])
        for row in pairs
        if row["category"] not in params.vocabulary(row["domain"])
    )
    if unknown:
        shown = ", ".join(f"{domain}/{category}" for domain, category in unknown[:10])
        raise CatalogError(
            f"{len(unknown)} catalog categories are not in features.categories: {shown}; "
            "add them to the vocabulary (the vector order is a model contract)"
        )
