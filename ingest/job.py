"""Ingest one landing partition into curated Parquet, a quarantine table and a reconciliation.

Layout under ``curated_root`` (``date``/``hour`` are the *landing* partition's, so a rerun
replaces exactly the directories one partition produced)::

    <source>/date=YYYY-MM-DD/hour=HH[/domain=<domain>]/part-NNNNN.snappy.parquet
    quarantine/source=<source>/date=YYYY-MM-DD/hour=HH/part-NNNNN.snappy.parquet
    _reconciliation/source=<source>/date=YYYY-MM-DD/hour=HH.json

Every output is written to ``_staging/<run id>/`` first and renamed into place only after
the reconciliation holds, so a killed or failed run leaves the previous output intact.
Files get deterministic names and rows a deterministic order: a rerun on the same landing
partition writes byte-identical Parquet.
"""

from __future__ import annotations

import math
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from muma.contract import Source, partition_dir

from .classify import line_classifier
from .config import IngestParams
from .publish import row_count, swap, write_json, write_parquet
from .schemas import (
    QUARANTINE_SCHEMA,
    RAW_LINE,
    REASON,
    classified_schema,
    curated_schema,
    has_domain,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

QUARANTINE_TABLE = "quarantine"
RECONCILIATION_DIR = "_reconciliation"
STAGING_DIR = "_staging"


class ReconciliationError(RuntimeError):
    """Records read do not equal curated + quarantined + duplicates dropped."""


@dataclass
class IngestResult:
    """What ingesting one landing partition did; written as the reconciliation JSON.

    Attributes:
        source: Landing source.
        hour_start: Start of the landing partition's hour (UTC, ISO-8601).
        records_read: Non-blank lines in the landing partition.
        curated: Rows written to the curated table.
        quarantined: Rows written to the quarantine table.
        duplicates_dropped: Valid rows whose ``event_id`` was already kept, in this
            partition or in an earlier curated partition.
        quarantined_by_reason: Quarantined rows per reason code.
        holds: ``records_read == curated + quarantined + duplicates_dropped``.
        seconds: Wall time of the run.
    """

    source: str
    hour_start: str
    records_read: int
    curated: int
    quarantined: int
    duplicates_dropped: int
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    holds: bool = False
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.records_read / self.seconds if self.seconds else math.nan


def _hour_parts(hour_start: datetime) -> tuple[str, str]:
    return f"{hour_start:%Y-%m-%d}", f"{hour_start:%H}"


def curated_partition_dir(curated_root: Path, source: Source | str, hour_start: datetime) -> Path:
    """``<curated_root>/<source>/date=YYYY-MM-DD/hour=HH``."""
    date, hour = _hour_parts(hour_start)
    return Path(curated_root) / str(source) / f"date={date}" / f"hour={hour}"


def quarantine_partition_dir(
    curated_root: Path, source: Source | str, hour_start: datetime
) -> Path:
    """``<curated_root>/quarantine/source=<source>/date=YYYY-MM-DD/hour=HH``."""
    date, hour = _hour_parts(hour_start)
    return (
        Path(curated_root) / QUARANTINE_TABLE / f"source={source}" / f"date={date}" / f"hour={hour}"
    )


def reconciliation_path(curated_root: Path, source: Source | str, hour_start: datetime) -> Path:
    """``<curated_root>/_reconciliation/source=<source>/date=YYYY-MM-DD/hour=HH.json``."""
    date, hour = _hour_parts(hour_start)
    return (
        Path(curated_root)
        / RECONCILIATION_DIR
        / f"source={source}"
        / f"date={date}"
        / f"hour={hour}.json"
    )


def _earlier_curated_dirs(
    curated_root: Path, source: Source, hour_start: datetime, allowed_lateness: timedelta
) -> list[str]:
    """Curated partitions that may already hold an event of this partition.

    An accepted event is at most ``allowed_lateness`` older than this partition, so its first
    copy landed at most ``ceil(allowed_lateness / 1h) + 1`` hours earlier. Earlier landing
    partitions win: ingest hours in order.
    """
    lookback = math.ceil(allowed_lateness / timedelta(hours=1)) + 1
    dirs = []
    for back in range(1, lookback + 1):
        directory = curated_partition_dir(curated_root, source, hour_start - timedelta(hours=back))
        if directory.is_dir() and any(directory.rglob("*.parquet")):
            dirs.append(str(directory))
    return dirs


def _classify(
    spark: SparkSession,
    landing_dir: Path,
    source: Source,
    hour_start: datetime,
    params: IngestParams,
) -> tuple[DataFrame, int]:
    """Classified rows of one landing partition (cached) and the number of lines read."""
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import TimestampType

    lines = spark.read.text(str(landing_dir)).where(F.length(F.trim("value")) > 0)
    records_read = lines.count()
    schema = classified_schema(source)
    classifier = line_classifier(
        source, hour_start, params.allowed_lateness, to_arrow_schema(schema)
    )
    # A gzip file is one task; spread the Python classification over the shuffle partitions.
    parallelism = int(spark.conf.get("spark.sql.shuffle.partitions"))
    classified = lines.repartition(parallelism).mapInArrow(classifier, schema)
    for column in curated_schema(source).fields:
        if isinstance(column.dataType, TimestampType):
            classified = classified.withColumn(column.name, F.timestamp_micros(column.name))
    return classified.cache(), records_read


def _flag_duplicates(
    valid: DataFrame, earlier_dirs: list[str], table_dir: Path, spark: SparkSession
) -> DataFrame:
    """Add ``is_duplicate``: a repeated ``event_id`` in the partition, or one curated earlier.

    Within the partition the copy with the smallest raw line is kept, so the choice does not
    depend on line order.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = Window.partitionBy("event_id").orderBy(RAW_LINE)
    flagged = valid.withColumn("_copy", F.row_number().over(first))
    if earlier_dirs:
        earlier = (
            spark.read.option("basePath", str(table_dir))
            .parquet(*earlier_dirs)
            .select("event_id")
            .distinct()
            .withColumn("_curated_earlier", F.lit(True))
        )
        flagged = flagged.join(F.broadcast(earlier), "event_id", "left")
    else:
        flagged = flagged.withColumn("_curated_earlier", F.lit(None).cast("boolean"))
    return flagged.withColumn(
        "is_duplicate", (F.col("_copy") > 1) | F.coalesce(F.col("_curated_earlier"), F.lit(False))
    ).drop("_copy", "_curated_earlier")


def ingest_partition(
    spark: SparkSession,
    landing_root: Path,
    curated_root: Path,
    source: Source | str,
    hour_start: datetime,
    params: IngestParams,
) -> IngestResult:
    """Curate, quarantine and reconcile one landing partition.

    Args:
        spark: Session from :func:`ingest.spark.get_spark`.
        landing_root: Root of the landing zone (holding ``v1/``).
        curated_root: Root of the curated tables.
        source: Landing source.
        hour_start: Start of the partition's hour (aware datetime).
        params: The ``ingest`` section of params.yaml.

    Returns:
        The counts, also written to the reconciliation JSON.

    Raises:
        FileNotFoundError: The landing partition does not exist.
        ReconciliationError: Records read differ from curated + quarantined + duplicates;
            nothing of this run is published then.
    """
    from pyspark.sql import functions as F

    began = time.perf_counter()
    source = Source(source)
    hour_start = hour_start.astimezone(UTC)
    landing_dir = partition_dir(landing_root, source, hour_start)
    if not landing_dir.is_dir():
        raise FileNotFoundError(f"no landing partition at {landing_dir}")
    curated_root = Path(curated_root)
    staging = curated_root / STAGING_DIR / uuid.uuid4().hex
    classified = None
    try:
        classified, records_read = _classify(spark, landing_dir, source, hour_start, params)
        valid = classified.where(F.col(REASON).isNull())
        earlier = _earlier_curated_dirs(curated_root, source, hour_start, params.allowed_lateness)
        flagged = _flag_duplicates(valid, earlier, curated_root / str(source), spark)
        duplicates = flagged.where("is_duplicate").count()

        columns = [f.name for f in curated_schema(source).fields]
        partition_by = ["domain"] if has_domain(source) else []
        curated = (
            flagged.where(~F.col("is_duplicate"))
            .select(*columns)
            .repartition(1)
            .sortWithinPartitions(*partition_by, "event_id")
        )
        write_parquet(curated, staging / "curated", partition_by)

        quarantine = (
            classified.where(F.col(REASON).isNotNull())
            .select(*QUARANTINE_SCHEMA.names)
            .repartition(1)
            .sortWithinPartitions(REASON, RAW_LINE)
        )
        write_parquet(quarantine, staging / "quarantine", [])
        by_reason = {
            row[REASON]: row["count"]
            for row in classified.where(F.col(REASON).isNotNull()).groupBy(REASON).count().collect()
        }

        result = IngestResult(
            source=str(source),
            hour_start=hour_start.isoformat(),
            records_read=records_read,
            curated=row_count(staging / "curated"),
            quarantined=row_count(staging / "quarantine"),
            duplicates_dropped=duplicates,
            quarantined_by_reason=dict(sorted(by_reason.items())),
        )
        result.holds = (
            result.records_read == result.curated + result.quarantined + result.duplicates_dropped
            and result.quarantined == sum(by_reason.values())
        )
        if not result.holds:
            raise ReconciliationError(
                f"{source} {hour_start:%Y-%m-%dT%H}: read {result.records_read} != curated "
                f"{result.curated} + quarantined {result.quarantined} + duplicates "
                f"{result.duplicates_dropped}; nothing published"
            )
        swap(staging / "curated", curated_partition_dir(curated_root, source, hour_start))
        swap(staging / "quarantine", quarantine_partition_dir(curated_root, source, hour_start))
        result.seconds = round(time.perf_counter() - began, 3)
        write_json(
            reconciliation_path(curated_root, source, hour_start),
            asdict(result),
        )
        return result
    finally:
        if classified is not None:
            classified.unpersist()
        shutil.rmtree(staging, ignore_errors=True)
