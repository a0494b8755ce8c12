"""The ``interactions`` table: one row per curated impression, labelled with its click and view.

Clicks join impressions on ``request_id`` + ``item_id``, views on ``user_id`` + ``item_id``
(and ``request_id`` when the client sent one), each within ``attribution_window_minutes``
after the impression. A click of hour H's partition that matches no impression of hours
``H - ceil(window)`` .. H is quarantined as ``click_without_impression``.

Layout under ``curated_root`` (``date``/``hour`` are the impressions' landing partition)::

    interactions/date=YYYY-MM-DD/hour=HH/domain=<domain>/part-NNNNN.snappy.parquet
    quarantine/source=interactions/date=YYYY-MM-DD/hour=HH/part-NNNNN.snappy.parquet
    _reconciliation/source=interactions/date=YYYY-MM-DD/hour=HH.json

Build hour H after the clicks and views of hours H .. H + ceil(window) are ingested: later
clicks of H's impressions land in those partitions.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from muma.contract import Reason, Source

from .config import IngestParams
from .job import (
    ReconciliationError,
    curated_partition_dir,
    quarantine_partition_dir,
    reconciliation_path,
)
from .publish import row_count, staging_dir, swap, write_json, write_parquet
from .schemas import DETAIL, FIELD, QUARANTINE_SCHEMA, RAW_LINE, REASON

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

INTERACTIONS = "interactions"


@dataclass
class InteractionsResult:
    """Counts of one hour's interactions build; written as its reconciliation JSON.

    Attributes:
        hour_start: The impressions' landing hour (UTC, ISO-8601).
        impressions: Curated impressions of the hour.
        interactions: Rows written (must equal ``impressions``).
        clicked: Interactions with an attributed click.
        clicks: Curated clicks of the hour's clicks partition.
        clicks_attributed: Those that matched an impression.
        clicks_without_impression: Those quarantined (``clicks`` = attributed + these).
        holds: Both equalities hold.
        seconds: Wall time.
    """

    hour_start: str
    impressions: int
    interactions: int
    clicked: int
    clicks: int
    clicks_attributed: int
    clicks_without_impression: int
    holds: bool = False
    seconds: float = 0.0


def _read_hours(
    spark: SparkSession, curated_root: Path, source: Source, hours: list[datetime]
) -> DataFrame | None:
    dirs = [
        str(directory)
        for hour in hours
        if (directory := curated_partition_dir(curated_root, source, hour)).is_dir()
        and any(directory.rglob("*.parquet"))
    ]
    base = str(Path(curated_root) / str(source))
    return spark.read.option("basePath", base).parquet(*dirs) if dirs else None


def _attributed(later, earlier, window: timedelta, *keys: str):
    """Join condition: same keys, ``later.ts`` within ``window`` after ``earlier.ts``."""
    from pyspark.sql import functions as F

    condition = (later["ts"] >= earlier["ts"]) & (
        later["ts"] <= earlier["ts"] + F.expr(f"INTERVAL {int(window.total_seconds())} SECONDS")
    )
    for key in keys:
        condition &= later[key] == earlier[key]
    return condition


def build_interactions(
    spark: SparkSession, curated_root: Path, hour_start: datetime, params: IngestParams
) -> InteractionsResult:
    """Build, reconcile and publish the interactions and unattributed clicks of one hour.

    Raises:
        FileNotFoundError: The hour's impressions are not curated yet.
        ReconciliationError: Rows were lost or duplicated; nothing is published.
    """
    from pyspark.sql import functions as F

    began = time.perf_counter()
    hour_start = hour_start.astimezone(UTC)
    curated_root = Path(curated_root)
    window = params.attribution_window
    span = math.ceil(window / timedelta(hours=1))
    impressions = _read_hours(spark, curated_root, Source.IMPRESSIONS, [hour_start])
    if impressions is None:
        raise FileNotFoundError(f"no curated impressions for {hour_start:%Y-%m-%dT%H}")
    following = [hour_start + timedelta(hours=n) for n in range(span + 1)]
    clicks = _read_hours(spark, curated_root, Source.CLICKS, following)
    views = _read_hours(spark, curated_root, Source.VIEWS, following)

    imp = impressions.alias("i")
    labelled = imp
    if clicks is not None:
        click = clicks.alias("c")
        first_click = (
            imp.join(click, _attributed(click, imp, window, "request_id", "item_id"))
            .groupBy(F.col("i.event_id").alias("event_id"))
            .agg(F.min("c.ts").alias("click_ts"))
        )
        labelled = labelled.join(first_click, "event_id", "left")
    else:
        labelled = labelled.withColumn("click_ts", F.lit(None).cast("timestamp"))
    if views is not None:
        view = views.alias("v")
        same_request = F.col("v.request_id").isNull() | (
            F.col("v.request_id") == F.col("i.request_id")
        )
        first_view = (
            imp.join(view, _attributed(view, imp, window, "user_id", "item_id") & same_request)
            .groupBy(F.col("i.event_id").alias("event_id"))
            .agg(
                F.min_by("v.dwell_ms", "v.ts").alias("dwell_ms"),
                F.min_by("v.completion_ratio", "v.ts").alias("completion_ratio"),
            )
        )
        labelled = labelled.join(first_view, "event_id", "left")
    else:
        labelled = labelled.withColumn("dwell_ms", F.lit(None).cast("bigint")).withColumn(
            "completion_ratio", F.lit(None).cast("double")
        )
    interactions = (
        labelled.withColumn("clicked", F.col("click_ts").isNotNull())
        .select(
            "event_id",
            "ts",
            "request_id",
            "user_id",
            "item_id",
            "position",
            "propensity",
            "policy",
            "model_version",
            "clicked",
            "click_ts",
            "dwell_ms",
            "completion_ratio",
            "domain",
        )
        .repartition(1)
        .sortWithinPartitions("domain", "event_id")
    )

    earlier_impressions = _read_hours(
        spark,
        curated_root,
        Source.IMPRESSIONS,
        [hour_start - timedelta(hours=n) for n in range(span + 1)],
    )
    hour_clicks = _read_hours(spark, curated_root, Source.CLICKS, [hour_start])
    unattributed = attributed = None
    if hour_clicks is not None:
        click, earlier = hour_clicks.alias("c"), earlier_impressions.alias("i")
        match = _attributed(click, earlier, window, "request_id", "item_id")
        attributed = click.join(earlier, match, "left_semi")
        unattributed = (
            click.join(earlier, match, "left_anti")
            .select(
                F.to_json(F.struct(*[F.col(name) for name in hour_clicks.columns])).alias(RAW_LINE),
                F.lit(Reason.CLICK_WITHOUT_IMPRESSION.value).alias(REASON),
                F.lit("request_id").alias(FIELD),
                F.lit(
                    "no impression with this request_id and item_id within "
                    f"{params.attribution_window_minutes} minutes before the click "
                    "(raw_line is the curated click as JSON)"
                ).alias(DETAIL),
            )
            .select(*QUARANTINE_SCHEMA.names)
            .repartition(1)
            .sortWithinPartitions(RAW_LINE)
        )

    staging = staging_dir(curated_root)
    try:
        write_parquet(interactions, staging / INTERACTIONS, ["domain"], ["event_id"])
        if unattributed is not None:
            write_parquet(unattributed, staging / "quarantine", [])
        else:
            (staging / "quarantine").mkdir(parents=True)
        written = row_count(staging / INTERACTIONS)
        n_unattributed = row_count(staging / "quarantine")
        n_clicks = hour_clicks.count() if hour_clicks is not None else 0
        result = InteractionsResult(
            hour_start=hour_start.isoformat(),
            impressions=impressions.count(),
            interactions=written,
            clicked=interactions.where("clicked").count(),
            clicks=n_clicks,
            clicks_attributed=attributed.count() if attributed is not None else 0,
            clicks_without_impression=n_unattributed,
        )
        distinct = (
            spark.read.parquet(str(staging / INTERACTIONS)).select("event_id").distinct().count()
        )
        result.holds = (
            result.interactions == result.impressions == distinct
            and result.clicks == result.clicks_attributed + result.clicks_without_impression
        )
        if not result.holds:
            raise ReconciliationError(
                f"interactions {hour_start:%Y-%m-%dT%H}: {result.interactions} rows "
                f"({distinct} distinct) for {result.impressions} impressions, {result.clicks} "
                f"clicks != {result.clicks_attributed} attributed + "
                f"{result.clicks_without_impression} unattributed; nothing published"
            )
        swap(staging / INTERACTIONS, curated_partition_dir(curated_root, INTERACTIONS, hour_start))
        swap(
            staging / "quarantine",
            quarantine_partition_dir(curated_root, INTERACTIONS, hour_start),
        )
        result.seconds = round(time.perf_counter() - began, 3)
        write_json(reconciliation_path(curated_root, INTERACTIONS, hour_start), asdict(result))
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)
