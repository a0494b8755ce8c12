"""Ingest landing partitions into curated Parquet, a quarantine table and reconciliations.

One Spark job ingests a batch of one source's landing partitions (:func:`ingest_hours`; one
partition: :func:`ingest_partition`); every landing partition still gets its own output
directories and reconciliation file, exactly as if it had been ingested alone.

Layout under ``curated_root`` (``date``/``hour`` are the *landing* partition's, so a rerun
replaces exactly the directories one partition produced)::

    <source>/date=YYYY-MM-DD/hour=HH[/domain=<domain>]/part-NNNNN.snappy.parquet
    quarantine/source=<source>/date=YYYY-MM-DD/hour=HH/part-NNNNN.snappy.parquet
    _reconciliation/source=<source>/date=YYYY-MM-DD/hour=HH.json

Every output is written to ``_staging/<run id>/`` first and renamed into place only after
the reconciliation holds, so a killed or failed run leaves the previous output intact.
Files get deterministic names and rows a deterministic order: a rerun on the same landing
partition writes byte-identical Parquet.

Cost (``docs/ingest.md``): the lines are read and classified once, into a batch cache; the
counts, the duplicate check and the curated write read that cache. When every line takes
the native fast path and no id repeats, the curated write needs no shuffle.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from muma.contract import Source, partition_dir

from .classify import ACCEPTED, classify_lines
from .config import IngestParams
from .publish import STAGING_DIR as STAGING_DIR
from .publish import row_count, staging_dir, swap, write_json, write_parquet
from .schemas import (
    PARTITION_START,
    QUARANTINE_SCHEMA,
    RAW_LINE,
    REASON,
    curated_schema,
    has_domain,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

QUARANTINE_TABLE = "quarantine"
RECONCILIATION_DIR = "_reconciliation"


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
        seconds: Wall time of the run; in a batch, the batch's wall time shared out in
            proportion to ``records_read``.
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HOUR = timedelta(hours=1)
_HOUR_MICROS = _HOUR // timedelta(microseconds=1)


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def lookback_hours(allowed_lateness: timedelta) -> int:
    """How many earlier hours may hold the first copy of an event accepted in an hour.

    An accepted event is at most ``allowed_lateness`` older than its partition, so its first
    copy landed at most ``ceil(allowed_lateness / 1h) + 1`` hours earlier.
    """
    return math.ceil(allowed_lateness / _HOUR) + 1


def _partition_start():
    """Epoch microseconds of the ``date=``/``hour=`` directory a row's file sits in.

    Computed from Spark's partition columns ``date`` and ``hour`` (constant per file, so
    nothing is parsed from the file path per row) with integer arithmetic; works whether
    the columns are strings or the date and integer types partition discovery infers.
    """
    from pyspark.sql import functions as F

    days = F.unix_date(F.to_date(F.col("date"))).cast("long")
    return (days * 24 + F.col("hour").cast("long")) * F.lit(_HOUR_MICROS)


def _landing_files(directory: Path) -> list[Path]:
    """The files Spark reads in a landing partition (it skips names starting ``_`` or ``.``)."""
    return [
        path
        for path in directory.iterdir()
        if path.is_file() and not path.name.startswith(("_", "."))
    ]


def _read_landing(
    spark: SparkSession, landing_root: Path, source: Source, hours: list[datetime]
) -> DataFrame:
    """The non-blank lines of ``source``'s landing partitions of ``hours``.

    Returns:
        Columns ``value`` (the raw line) and :data:`PARTITION_START`.
    """
    from pyspark.sql import functions as F

    dirs = [partition_dir(landing_root, source, hour) for hour in hours]
    return (
        # The schema names the partition columns as strings, so Spark reads them from the
        # directory names as they are; JSON Lines ends a record at \n only (Spark's default
        # also splits at a bare \r).
        spark.read.schema("value STRING, date STRING, hour STRING")
        .option("basePath", str(dirs[0].parent.parent))
        .option("lineSep", "\n")
        .text([str(directory) for directory in dirs])
        # A line starting with "{" is not blank: trim (a copy of the line) only for the rest.
        .where(F.col("value").startswith("{") | (F.length(F.trim("value")) > 0))
        .select("value", _partition_start().alias(PARTITION_START))
    )


def _earlier_curated_ids(
    spark: SparkSession,
    curated_root: Path,
    source: Source,
    hours: list[datetime],
    allowed_lateness: timedelta,
) -> DataFrame | None:
    """``event_id`` and partition of curated rows in hours outside the batch it looks back on.

    Hours of the batch are excluded: the batch replaces them. Ingest hours in order: earlier
    landing partitions win.
    """
    lookback = lookback_hours(allowed_lateness)
    batch = set(hours)
    earlier = sorted({hour - n * _HOUR for hour in hours for n in range(1, lookback + 1)} - batch)
    dirs = []
    for hour in earlier:
        directory = curated_partition_dir(curated_root, source, hour)
        if directory.is_dir() and any(directory.rglob("*.parquet")):
            dirs.append(str(directory))
    if not dirs:
        return None
    return (
        spark.read.option("basePath", str(Path(curated_root) / str(source)))
        .parquet(*dirs)
        .select("event_id", _partition_start().alias(PARTITION_START))
    )


def _duplicate_copies(
    copies: list[tuple[str, int, int]], earlier: list[tuple[str, int]], lookback: int
) -> list[tuple[str, int, int]]:
    """Which copies of repeated event ids are duplicates, as hour-by-hour ingest decides.

    Args:
        copies: ``(event_id, partition start, copy)`` of the batch's valid rows whose id
            occurs more than once; ``copy`` numbers an id's rows within a partition by raw
            line (1 = smallest).
        earlier: ``(event_id, partition start)`` of rows already curated outside the batch.
        lookback: :func:`lookback_hours`.

    Returns:
        The ``(event_id, partition start, copy)`` keys to drop: a copy is a duplicate when a
        curated copy exists in its own partition or in the ``lookback`` hours before it.
    """
    span = lookback * (_HOUR // timedelta(microseconds=1))
    kept: dict[str, list[int]] = {}
    for event_id, start in earlier:
        kept.setdefault(event_id, []).append(start)
    dropped = []
    for event_id, start, copy in sorted(copies):
        curated = kept.setdefault(event_id, [])
        if any(start - span <= other <= start for other in curated):
            dropped.append((event_id, start, copy))
        else:
            curated.append(start)
    return dropped


def _deduplicated(
    spark: SparkSession, valid: DataFrame, earlier: DataFrame | None, lookback: int
) -> tuple[DataFrame, Counter[int]]:
    """Valid rows without duplicates, and duplicates dropped per partition start.

    Only ids occurring more than once (in the batch or in earlier curated hours) are looked
    at row by row, on the driver; for the usual unique id this is one shuffle of ids.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ids = valid.select("event_id", PARTITION_START)
    if earlier is not None:
        ids = ids.unionByName(earlier)
    repeated = ids.groupBy("event_id").count().where("count > 1").select("event_id").cache()
    try:
        if repeated.isEmpty():
            return valid, Counter()
        first = Window.partitionBy("event_id", PARTITION_START).orderBy(RAW_LINE)
        multi = valid.join(F.broadcast(repeated), "event_id", "left_semi").withColumn(
            "_copy", F.row_number().over(first)
        )
        copies = [
            (row[0], row[1], row[2])
            for row in multi.select("event_id", PARTITION_START, "_copy").collect()
        ]
        earlier_copies = (
            []
            if earlier is None
            else [
                (row[0], row[1])
                for row in earlier.join(F.broadcast(repeated), "event_id", "left_semi").collect()
            ]
        )
    finally:
        repeated.unpersist()
    dropped = _duplicate_copies(copies, earlier_copies, lookback)
    by_partition = Counter(start for _, start, _ in dropped)
    ids_seen = sorted({event_id for event_id, _, _ in copies})
    singles = valid.join(
        F.broadcast(spark.createDataFrame([(i,) for i in ids_seen], "event_id string")),
        "event_id",
        "left_anti",
    )
    if dropped:
        drop = spark.createDataFrame(dropped, f"event_id string, {PARTITION_START} long, _copy int")
        multi = multi.join(F.broadcast(drop), ["event_id", PARTITION_START, "_copy"], "left_anti")
    kept = singles.unionByName(multi.drop("_copy"))
    return kept, by_partition


def _with_hour_columns(frame: DataFrame) -> DataFrame:
    """Add ``date`` and ``hour`` strings of the landing partition (the output directories).

    Integer arithmetic on :data:`PARTITION_START` (a whole hour in epoch microseconds)
    instead of formatting a timestamp per row.
    """
    from pyspark.sql import functions as F

    hours = F.expr(f"{PARTITION_START} div {_HOUR_MICROS}")
    date = F.date_from_unix_date(F.expr(f"{PARTITION_START} div {24 * _HOUR_MICROS}"))
    return frame.withColumn("date", date.cast("string")).withColumn(
        "hour", F.lpad((hours % 24).cast("string"), 2, "0")
    )


def _write_empty_quarantine(directory: Path) -> None:
    """A schema-only quarantine file, so every published partition has a readable table."""
    directory.mkdir(parents=True, exist_ok=True)
    schema = pa.schema(
        [pa.field(f.name, pa.string(), nullable=f.nullable) for f in QUARANTINE_SCHEMA.fields]
    )
    pq.write_table(schema.empty_table(), directory / "part-00000.snappy.parquet")


def ingest_hours(
    spark: SparkSession,
    landing_root: Path,
    curated_root: Path,
    source: Source | str,
    hours: list[datetime],
    params: IngestParams,
) -> list[IngestResult]:
    """Curate, quarantine and reconcile several landing partitions of one source in one job.

    Each partition gets the outputs and reconciliation that ingesting it alone, hour by hour
    in order, would give: duplicates are decided against earlier partitions of the batch and
    against curated partitions before it. Nothing is published unless every partition's
    reconciliation holds.

    Args:
        spark: Session from :func:`ingest.spark.get_spark`.
        landing_root: Root of the landing zone (holding ``v1/``).
        curated_root: Root of the curated tables.
        source: Landing source.
        hours: Starts of the partitions' hours (aware datetimes; each must exist).
        params: The ``ingest`` section of params.yaml.

    Returns:
        One result per hour, in hour order, as written to the reconciliation JSONs.

    Raises:
        FileNotFoundError: A landing partition does not exist.
        ReconciliationError: A partition's records read differ from curated + quarantined +
            duplicates; nothing of this batch is published then.
        ValueError: ``hours`` is empty or repeats an hour.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    began = time.perf_counter()
    source = Source(source)
    hours = sorted(hour.astimezone(UTC) for hour in hours)
    if not hours or len(set(hours)) != len(hours):
        raise ValueError(f"need distinct hours to ingest, got {hours}")
    landing_dirs = [partition_dir(landing_root, source, hour) for hour in hours]
    for directory in landing_dirs:
        if not directory.is_dir():
            raise FileNotFoundError(f"no landing partition at {directory}")
    curated_root = Path(curated_root)
    staging = staging_dir(curated_root)
    lines = _read_landing(spark, landing_root, source, hours)
    annotated, fallback = classify_lines(lines, source, params.allowed_lateness)
    annotated, fallback = annotated.cache(), fallback.cache()
    try:
        # One pass over the lines fills the cache and counts them; every later step reads
        # the cache.
        read: dict[int, int] = {}
        unusual = 0
        for start, count, accepted in (
            annotated.groupBy(PARTITION_START)
            .agg(F.count(F.lit(1)), F.count_if(F.col(ACCEPTED)))
            .collect()
        ):
            read[start] = count
            unusual += count - accepted
        by_reason: dict[int, dict[str, int]] = {}
        rescued = 0
        if unusual:
            for start, reason, count in fallback.groupBy(PARTITION_START, REASON).count().collect():
                if reason is None:
                    rescued += count
                else:
                    by_reason.setdefault(start, {})[reason] = count

        columns = [f.name for f in curated_schema(source).fields]
        timestamps = [
            f.name for f in curated_schema(source).fields if isinstance(f.dataType, TimestampType)
        ]
        keep = [PARTITION_START, RAW_LINE, *columns]
        valid = annotated.where(F.col(ACCEPTED)).withColumnRenamed("value", RAW_LINE).select(*keep)
        if rescued:
            valid = valid.unionByName(fallback.where(F.col(REASON).isNull()).select(*keep))
        earlier = _earlier_curated_ids(spark, curated_root, source, hours, params.allowed_lateness)
        kept, duplicates = _deduplicated(
            spark, valid, earlier, lookback_hours(params.allowed_lateness)
        )
        # Without a shuffle, the rows of an hour stay in the Spark partition that read its
        # file (a gzip file is never split), which writes that hour's output alone. That
        # needs one file per landing partition, as the simulator and importers write them,
        # and every curated row coming straight from the fast path.
        reshuffled = (
            rescued > 0
            or kept is not valid
            or any(len(_landing_files(directory)) != 1 for directory in landing_dirs)
        )
        for name in timestamps:
            kept = kept.withColumn(name, F.timestamp_micros(name))

        writers = min(len(hours), 4 * spark.sparkContext.defaultParallelism)
        partition_by = ["domain"] if has_domain(source) else []
        curated = _with_hour_columns(kept).select(*columns, "date", "hour")
        if reshuffled:
            # Gather each hour's rows into one writer: one file per output directory.
            curated = curated.repartition(writers, "date", "hour")
        curated = curated.sortWithinPartitions("date", "hour", *partition_by, "event_id")
        write_parquet(curated, staging / "curated", ["date", "hour", *partition_by], ["event_id"])
        if by_reason:
            quarantine = (
                _with_hour_columns(fallback.where(F.col(REASON).isNotNull()))
                .select(*QUARANTINE_SCHEMA.names, "date", "hour")
                .repartition(writers, "date", "hour")
                .sortWithinPartitions("date", "hour", REASON, RAW_LINE)
            )
            write_parquet(quarantine, staging / "quarantine", ["date", "hour"])

        results = []
        for hour in hours:
            start = _micros(hour)
            date, hh = _hour_parts(hour)
            staged_curated = staging / "curated" / f"date={date}" / f"hour={hh}"
            staged_quarantine = staging / "quarantine" / f"date={date}" / f"hour={hh}"
            staged_curated.mkdir(parents=True, exist_ok=True)
            if not staged_quarantine.is_dir():
                _write_empty_quarantine(staged_quarantine)
            reasons = by_reason.get(start, {})
            result = IngestResult(
                source=str(source),
                hour_start=hour.isoformat(),
                records_read=read.get(start, 0),
                curated=row_count(staged_curated),
                quarantined=row_count(staged_quarantine),
                duplicates_dropped=duplicates.get(start, 0),
                quarantined_by_reason=dict(sorted(reasons.items())),
            )
            result.holds = (
                result.records_read
                == result.curated + result.quarantined + result.duplicates_dropped
                and result.quarantined == sum(reasons.values())
            )
            if not result.holds:
                raise ReconciliationError(
                    f"{source} {hour:%Y-%m-%dT%H}: read {result.records_read} != curated "
                    f"{result.curated} + quarantined {result.quarantined} + duplicates "
                    f"{result.duplicates_dropped}; nothing published"
                )
            results.append(result)

        for hour in hours:
            date, hh = _hour_parts(hour)
            swap(
                staging / "curated" / f"date={date}" / f"hour={hh}",
                curated_partition_dir(curated_root, source, hour),
            )
            swap(
                staging / "quarantine" / f"date={date}" / f"hour={hh}",
                quarantine_partition_dir(curated_root, source, hour),
            )
        seconds = time.perf_counter() - began
        total = sum(result.records_read for result in results)
        for hour, result in zip(hours, results, strict=True):
            share = result.records_read / total if total else 1 / len(results)
            result.seconds = round(seconds * share, 3)
            write_json(reconciliation_path(curated_root, source, hour), asdict(result))
        return results
    finally:
        annotated.unpersist()
        fallback.unpersist()
        shutil.rmtree(staging, ignore_errors=True)


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
    return ingest_hours(spark, landing_root, curated_root, source, [hour_start], params)[0]
