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

Several hours are built together by one set of Spark jobs
(:func:`build_interactions_hours`): each impression sees exactly the clicks and views of its
own hour's span, so the rows, and the files, are those an hour-by-hour build writes.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from muma.contract import Reason, Source

from .config import IngestParams
from .curate import QUARANTINE_ARROW_SCHEMA, write_quarantine
from .job import (
    ReconciliationError,
    curated_partition_dir,
    quarantine_partition_dir,
    reconciliation_path,
)
from .publish import row_count, staging_dir, swap, write_json, write_parquet
from .schemas import (
    DETAIL,
    FIELD,
    QUARANTINE_SCHEMA,
    RAW_LINE,
    REASON,
    curated_schema,
    has_domain,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession
    from pyspark.sql.types import StructType

INTERACTIONS = "interactions"
HOUR_NO = "_hour_no"
"""Hours since the epoch of a row's landing partition (from its ``date=``/``hour=`` path)."""
HOUR = timedelta(hours=1)
MATCHED = "_matched"
"""Whether a click of the batch found its impression (a working column, never written)."""


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
        seconds: Wall time of the build that wrote this hour.
        hours_built: Hours that build wrote together (``seconds`` covers them all).
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
    hours_built: int = 1


def _hour_no(hour: datetime) -> int:
    return int(hour.timestamp()) // 3600


def _with_rows(curated_root: Path, source: Source, hour: datetime) -> Path | None:
    directory = curated_partition_dir(curated_root, source, hour)
    return directory if directory.is_dir() and any(directory.rglob("*.parquet")) else None


def _read_schema(source: Source) -> StructType:
    """The curated files' columns, then the partition columns as Spark would infer them.

    Given up front, Spark reads no footer to infer it (one job fewer per read).
    """
    from pyspark.sql.types import DateType, IntegerType, StringType, StructField, StructType

    partition = [StructField("date", DateType()), StructField("hour", IntegerType())]
    if has_domain(source):
        partition.append(StructField("domain", StringType()))
    data = [field for field in curated_schema(source) if field.name != "domain"]
    return StructType([*data, *partition])


def _read_hours(
    spark: SparkSession, curated_root: Path, source: Source, hours: Iterable[datetime]
) -> DataFrame | None:
    """The curated rows of ``hours`` with their partition columns and :data:`HOUR_NO`."""
    from pyspark.sql import functions as F

    dirs = [
        str(directory)
        for hour in sorted(set(hours))
        if (directory := _with_rows(curated_root, source, hour)) is not None
    ]
    if not dirs:
        return None
    base = str(Path(curated_root) / str(source))
    frame = spark.read.schema(_read_schema(source)).option("basePath", base).parquet(*dirs)
    hour_no = F.unix_date(F.to_date(F.col("date").cast("string"))).cast("bigint") * 24 + F.col(
        "hour"
    ).cast("bigint")
    return frame.withColumn(HOUR_NO, hour_no)


def _attributed(later, earlier, window: timedelta, span: int, *keys: str) -> Column:
    """Join condition: same keys, ``later.ts`` within ``window`` after ``earlier.ts``, and
    ``later`` landed in one of the ``span + 1`` partitions from ``earlier``'s on."""
    from pyspark.sql import functions as F

    condition = (
        (later["ts"] >= earlier["ts"])
        & (later["ts"] <= earlier["ts"] + F.expr(f"INTERVAL {int(window.total_seconds())} SECONDS"))
        & (later[HOUR_NO] >= earlier[HOUR_NO])
        & (later[HOUR_NO] <= earlier[HOUR_NO] + span)
    )
    for key in keys:
        condition &= later[key] == earlier[key]
    return condition


def _partition_columns(frame: DataFrame) -> DataFrame:
    """``date`` and ``hour`` as the ``YYYY-MM-DD`` and ``HH`` strings of the directory names."""
    from pyspark.sql import functions as F

    return frame.withColumn("date", F.col("date").cast("string")).withColumn(
        "hour", F.lpad(F.col("hour").cast("string"), 2, "0")
    )


def _staged_dir(staging: Path, table: str, hour: datetime) -> Path:
    return staging / table / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def build_interactions(
    spark: SparkSession, curated_root: Path, hour_start: datetime, params: IngestParams
) -> InteractionsResult:
    """Build, reconcile and publish the interactions and unattributed clicks of one hour.

    Raises:
        FileNotFoundError: The hour's impressions are not curated yet.
        ReconciliationError: Rows were lost or duplicated; nothing is published.
    """
    return build_interactions_hours(spark, curated_root, [hour_start], params)[0]


def build_interactions_hours(
    spark: SparkSession, curated_root: Path, hours: Iterable[datetime], params: IngestParams
) -> list[InteractionsResult]:
    """Build, reconcile and publish the interactions and unattributed clicks of ``hours``.

    All hours go through the same three Spark jobs (the labelled impressions, the
    unattributed clicks, the attributed clicks per hour), so a day costs about what one hour
    does. Each hour reconciles on its own, from the staged files' footers and columns;
    every hour is published only when all of them hold.

    Args:
        spark: Session from :func:`ingest.spark.get_spark`.
        curated_root: Root of the curated tables.
        hours: Impressions' landing hours (aware, on the hour; any order, duplicates ignored).
        params: The ``ingest`` section of params.yaml.

    Returns:
        One result per hour, in hour order.

    Raises:
        FileNotFoundError: Some hour's impressions are not curated yet; nothing is built.
        ReconciliationError: Some hour lost or duplicated rows; nothing is published.
    """
    from pyspark.sql import functions as F

    began = time.perf_counter()
    curated_root = Path(curated_root)
    hours = sorted({hour.astimezone(UTC) for hour in hours})
    if not hours:
        return []
    missing = [h for h in hours if _with_rows(curated_root, Source.IMPRESSIONS, h) is None]
    if missing:
        raise FileNotFoundError(
            "no curated impressions for " + ", ".join(f"{h:%Y-%m-%dT%H}" for h in missing)
        )
    window = params.attribution_window
    span = math.ceil(window / HOUR)
    following = {hour + n * HOUR for hour in hours for n in range(span + 1)}
    preceding = {hour - n * HOUR for hour in hours for n in range(span + 1)}

    impressions = _read_hours(spark, curated_root, Source.IMPRESSIONS, hours)
    clicks = _read_hours(spark, curated_root, Source.CLICKS, following)
    views = _read_hours(spark, curated_root, Source.VIEWS, following)
    imp = impressions.alias("i")
    labelled = imp
    if clicks is not None:
        click = clicks.alias("c")
        first_click = (
            imp.join(click, _attributed(click, imp, window, span, "request_id", "item_id"))
            .groupBy(F.col("i.event_id").alias("event_id"))
            .agg(F.min("c.ts").alias("click_ts"))
        )
        labelled = labelled.join(F.broadcast(first_click), "event_id", "left")
    else:
        labelled = labelled.withColumn("click_ts", F.lit(None).cast("timestamp"))
    if views is not None:
        view = views.alias("v")
        same_request = F.col("v.request_id").isNull() | (
            F.col("v.request_id") == F.col("i.request_id")
        )
        first_view = (
            imp.join(
                view, _attributed(view, imp, window, span, "user_id", "item_id") & same_request
            )
            .groupBy(F.col("i.event_id").alias("event_id"))
            .agg(
                F.min_by("v.dwell_ms", "v.ts").alias("dwell_ms"),
                F.min_by("v.completion_ratio", "v.ts").alias("completion_ratio"),
            )
        )
        labelled = labelled.join(F.broadcast(first_view), "event_id", "left")
    else:
        labelled = labelled.withColumn("dwell_ms", F.lit(None).cast("bigint")).withColumn(
            "completion_ratio", F.lit(None).cast("double")
        )
    interactions = (
        _partition_columns(labelled.withColumn("clicked", F.col("click_ts").isNotNull()))
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
            "date",
            "hour",
        )
        .sortWithinPartitions("date", "hour", "domain", "event_id")
    )

    batch_clicks = _read_hours(
        spark,
        curated_root,
        Source.CLICKS,
        [h for h in hours if _with_rows(curated_root, Source.CLICKS, h) is not None],
    )
    staging = staging_dir(curated_root)
    try:
        write_parquet(
            interactions, staging / INTERACTIONS, ["date", "hour", "domain"], ["event_id"]
        )
        attributed: dict[int, int] = {}
        if batch_clicks is not None:
            earlier_impressions = _read_hours(spark, curated_root, Source.IMPRESSIONS, preceding)
            click, earlier = batch_clicks.alias("c"), earlier_impressions.alias("i")
            # The impressions stream past the batch's clicks (broadcast): only the clicks'
            # ids that found an impression are shuffled, never the impressions.
            matched = (
                earlier.join(
                    F.broadcast(click),
                    _attributed(click, earlier, window, span, "request_id", "item_id"),
                )
                .select(F.col("c.event_id").alias("event_id"))
                .distinct()
                .withColumn(MATCHED, F.lit(True))
            )
            flagged = (
                batch_clicks.join(F.broadcast(matched), "event_id", "left")
                .withColumn(MATCHED, F.coalesce(F.col(MATCHED), F.lit(False)))
                .cache()
            )
            try:
                original = [name for name in batch_clicks.columns if name != HOUR_NO]
                unattributed = (
                    _partition_columns(
                        flagged.where(~F.col(MATCHED)).select(
                            F.to_json(F.struct(*original)).alias(RAW_LINE),
                            F.lit(Reason.CLICK_WITHOUT_IMPRESSION.value).alias(REASON),
                            F.lit("request_id").alias(FIELD),
                            F.lit(
                                "no impression with this request_id and item_id within "
                                f"{params.attribution_window_minutes} minutes before the click "
                                "(raw_line is the curated click as JSON)"
                            ).alias(DETAIL),
                            "date",
                            "hour",
                        )
                    )
                    .select(*QUARANTINE_SCHEMA.names, "date", "hour")
                    .repartition(len(hours), "date", "hour")
                    .sortWithinPartitions("date", "hour", RAW_LINE)
                )
                write_parquet(unattributed, staging / "quarantine", ["date", "hour"])
                attributed = {
                    row[HOUR_NO]: row["count"]
                    for row in flagged.where(F.col(MATCHED)).groupBy(HOUR_NO).count().collect()
                }
            finally:
                flagged.unpersist()
        seconds = round(time.perf_counter() - began, 3)
        results, failed = [], []
        for hour in hours:
            staged = _staged_dir(staging, INTERACTIONS, hour)
            quarantined = _staged_dir(staging, "quarantine", hour)
            staged.mkdir(parents=True, exist_ok=True)
            if not any(quarantined.glob("*.parquet")):
                write_quarantine(QUARANTINE_ARROW_SCHEMA.empty_table(), quarantined)
            clicks_dir = _with_rows(curated_root, Source.CLICKS, hour)
            written = (
                ds.dataset(staged, format="parquet").to_table(columns=["event_id", "clicked"])
                if any(staged.rglob("*.parquet"))
                else pa.table(
                    {"event_id": pa.array([], pa.string()), "clicked": pa.array([], pa.bool_())}
                )
            )
            result = InteractionsResult(
                hour_start=hour.isoformat(),
                impressions=row_count(
                    curated_partition_dir(curated_root, Source.IMPRESSIONS, hour)
                ),
                interactions=row_count(staged),
                clicked=int(pc.sum(written["clicked"]).as_py() or 0),
                clicks=row_count(clicks_dir) if clicks_dir is not None else 0,
                clicks_attributed=attributed.get(_hour_no(hour), 0),
                clicks_without_impression=row_count(quarantined),
                seconds=seconds,
                hours_built=len(hours),
            )
            distinct = pc.count_distinct(written["event_id"]).as_py()
            result.holds = (
                result.interactions == result.impressions == distinct
                and result.clicks == result.clicks_attributed + result.clicks_without_impression
            )
            if not result.holds:
                failed.append(
                    f"{hour:%Y-%m-%dT%H}: {result.interactions} rows ({distinct} distinct) for "
                    f"{result.impressions} impressions, {result.clicks} clicks != "
                    f"{result.clicks_attributed} attributed + "
                    f"{result.clicks_without_impression} unattributed"
                )
            results.append(result)
        if failed:
            raise ReconciliationError(
                "interactions did not reconcile; nothing published: " + "; ".join(failed)
            )
        for hour, result in zip(hours, results, strict=True):
            swap(
                _staged_dir(staging, INTERACTIONS, hour),
                curated_partition_dir(curated_root, INTERACTIONS, hour),
            )
            swap(
                _staged_dir(staging, "quarantine", hour),
                quarantine_partition_dir(curated_root, INTERACTIONS, hour),
            )
            write_json(reconciliation_path(curated_root, INTERACTIONS, hour), asdict(result))
        return results
    finally:
        shutil.rmtree(staging, ignore_errors=True)
