"""Snapshot chunks and the decay algebra shared by every feature builder.

A build range is cut into chunks of at most one UTC day. Inside a chunk, every event with
``ts < chunk.end`` falls into one bucket: events before the chunk start all go to the bucket
ending at ``chunk.start``; later ones to the snapshot grain that holds them, whose end
``b`` is the first snapshot the event may count in (``ts < b``). A bucket stores
``S_b = sum of value * decay(b - ts)``, and the value at snapshot ``T`` is
``sum over b <= T of S_b * decay(T - b)``, which equals ``sum over ts < T of value *
decay(T - ts)`` exactly (one multiplication per bucket instead of one rescan per snapshot).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from feature_repo.decay import spark_decay_weight

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

TS = "ts_s"
"""Event time as epoch seconds (double) in every event frame."""

SNAPSHOT = "snapshot"
"""Snapshot time ``T`` as epoch seconds (bigint) until the writer turns it into a timestamp."""

BUCKET_END = "bucket_end"


@dataclass(frozen=True, slots=True)
class Chunk:
    """Snapshots ``start + g, start + 2g, ..., end`` of one stretch of at most a UTC day.

    Attributes:
        start: Start (aware UTC), a multiple of the grain.
        end: End, the last snapshot.
        grain_hours: Hours between snapshots.
    """

    start: datetime
    end: datetime
    grain_hours: int

    @property
    def start_s(self) -> int:
        return int(self.start.timestamp())

    @property
    def end_s(self) -> int:
        return int(self.end.timestamp())

    @property
    def grain_s(self) -> int:
        return self.grain_hours * 3600

    @property
    def snapshots(self) -> list[datetime]:
        step = timedelta(hours=self.grain_hours)
        count = int((self.end - self.start) / step)
        return [self.start + step * (n + 1) for n in range(count)]

    @property
    def first_snapshot_s(self) -> int:
        return self.start_s + self.grain_s


def _aligned(moment: datetime, grain_hours: int) -> bool:
    return moment.timestamp() % (grain_hours * 3600) == 0


def chunks(start: datetime, end: datetime, grain_hours: int) -> Iterator[Chunk]:
    """Cut ``[start, end)`` into per-UTC-day chunks.

    Raises:
        ValueError: Naive or misaligned bounds, or an empty range.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise ValueError(f"empty range: end {end} is not after start {start}")
    if not (_aligned(start, grain_hours) and _aligned(end, grain_hours)):
        raise ValueError(f"start and end must be multiples of {grain_hours} h (UTC)")
    cursor = start
    while cursor < end:
        next_day = datetime(cursor.year, cursor.month, cursor.day, tzinfo=UTC) + timedelta(days=1)
        stop = min(next_day, end)
        yield Chunk(cursor, stop, grain_hours)
        cursor = stop


def epoch_seconds(column: str) -> Column:
    """A timestamp column as epoch seconds (double, microsecond precision)."""
    from pyspark.sql import functions as F

    return F.unix_micros(F.col(column)) / F.lit(1_000_000.0)


def snapshots_frame(spark: SparkSession, chunk: Chunk) -> DataFrame:
    """One row per snapshot of ``chunk``: column ``snapshot`` (epoch seconds)."""
    return spark.createDataFrame(
        [(int(moment.timestamp()),) for moment in chunk.snapshots], f"{SNAPSHOT} bigint"
    )


def _bucket_end(chunk: Chunk) -> Column:
    from pyspark.sql import functions as F

    ts = F.col(TS)
    offset = F.floor((ts - F.lit(float(chunk.start_s))) / F.lit(float(chunk.grain_s)))
    return (
        F.when(ts < F.lit(float(chunk.start_s)), F.lit(chunk.start_s))
        .otherwise(F.lit(chunk.start_s) + (offset + 1) * F.lit(chunk.grain_s))
        .cast("bigint")
    )


def in_chunk(events: DataFrame, chunk: Chunk) -> DataFrame:
    """Events that may count at some snapshot of ``chunk`` (``ts < chunk.end``)."""
    from pyspark.sql import functions as F

    return events.where(F.col(TS) < F.lit(float(chunk.end_s)))


def bucket_sums(
    events: DataFrame,
    keys: Sequence[str],
    values: Mapping[str, Column],
    half_lives: Mapping[str, float],
    chunk: Chunk,
    maxima: Mapping[str, Column] | None = None,
) -> DataFrame:
    """Decayed sums per bucket: ``S_b`` of every value at every half-life.

    Args:
        events: Frame with ``ts_s`` and the columns ``values`` and ``maxima`` use.
        keys: Grouping columns (entity key plus e.g. ``domain``).
        values: Output name -> per-event value.
        half_lives: Label -> half-life hours; output column ``<value>__<label>``.
        chunk: The chunk; events at or after its end are dropped.
        maxima: Output name -> per-event value whose maximum per bucket is kept.

    Returns:
        ``keys``, ``bucket_end``, the sums and the maxima.
    """
    from pyspark.sql import functions as F

    bucketed = in_chunk(events, chunk).withColumn(BUCKET_END, _bucket_end(chunk))
    age = F.col(BUCKET_END).cast("double") - F.col(TS)
    aggregations = [
        F.sum(value * spark_decay_weight(age, half_life)).alias(f"{name}__{label}")
        for name, value in values.items()
        for label, half_life in half_lives.items()
    ]
    aggregations += [F.max(value).alias(name) for name, value in (maxima or {}).items()]
    return bucketed.groupBy(*keys, BUCKET_END).agg(*aggregations)


def decayed_at_rows(
    buckets: DataFrame,
    rows: DataFrame,
    row_keys: Sequence[str],
    groups: Sequence[str],
    sums: Mapping[str, tuple[str, float]],
    maxima: Sequence[str] = (),
) -> DataFrame:
    """Values at the requested snapshots: ``sum over b <= T of S_b * decay(T - b)``.

    Args:
        buckets: Output of :func:`bucket_sums`.
        rows: ``row_keys`` + ``snapshot``: where values are wanted.
        row_keys: Columns joining rows and buckets (may be empty: every row sees every
            bucket).
        groups: Further bucket keys kept in the output (e.g. ``domain``).
        sums: Output name -> (bucket sum column, its half-life hours).
        maxima: Bucket maxima to carry (maximum over buckets ``b <= T``).

    Returns:
        ``row_keys``, ``snapshot``, ``groups`` and the values; a (row, group) without any
        bucket before ``T`` has no output row.
    """
    from pyspark.sql import functions as F

    b, r = buckets.alias("b"), rows.alias("r")
    condition = F.col(f"b.{BUCKET_END}") <= F.col(f"r.{SNAPSHOT}")
    for key in row_keys:
        condition &= F.col(f"b.{key}") == F.col(f"r.{key}")
    joined = r.join(b, condition).select(
        *[F.col(f"r.{key}").alias(key) for key in row_keys],
        F.col(f"r.{SNAPSHOT}").alias(SNAPSHOT),
        *[F.col(f"b.{group}").alias(group) for group in groups],
        F.col(f"b.{BUCKET_END}").alias(BUCKET_END),
        *[F.col(f"b.{column}").alias(column) for column, _ in sums.values()],
        *[F.col(f"b.{name}").alias(name) for name in maxima],
    )
    age = (F.col(SNAPSHOT) - F.col(BUCKET_END)).cast("double")
    return joined.groupBy(*row_keys, SNAPSHOT, *groups).agg(
        *[
            F.sum(F.col(column) * spark_decay_weight(age, half_life)).alias(name)
            for name, (column, half_life) in sums.items()
        ],
        *[F.max(name).alias(name) for name in maxima],
    )


def row_snapshots(activity: DataFrame, keys: Sequence[str], chunk: Chunk) -> DataFrame:
    """Snapshots at which an entity gets a row.

    The first snapshot of the chunk for every entity with any event before it (so a Feast
    TTL of one day always finds a row), and every later snapshot whose grain holds an event
    of the entity.

    Args:
        activity: ``keys`` + ``ts_s`` of the events that change the entity's features.
        keys: Entity key columns.
        chunk: The chunk.
    """
    from pyspark.sql import functions as F

    events = in_chunk(activity, chunk)
    anchors = (
        events.where(F.col(TS) < F.lit(float(chunk.first_snapshot_s)))
        .select(*keys)
        .distinct()
        .withColumn(SNAPSHOT, F.lit(chunk.first_snapshot_s).cast("bigint"))
    )
    return anchors.unionByName(active_snapshots(activity, keys, chunk)).distinct()


def active_snapshots(activity: DataFrame, keys: Sequence[str], chunk: Chunk) -> DataFrame:
    """``keys`` + ``snapshot`` of every grain of ``chunk`` holding an event of the entity."""
    from pyspark.sql import functions as F

    return (
        in_chunk(activity, chunk)
        .where(F.col(TS) >= F.lit(float(chunk.start_s)))
        .select(*keys, _bucket_end(chunk).alias(SNAPSHOT))
        .distinct()
    )


def normalised_vector(parts: Sequence[Column]) -> Column:
    """``array<float>`` of ``parts / sum(parts)``; all zeros when the sum is zero or null."""
    from pyspark.sql import functions as F

    filled = [F.coalesce(part.cast("double"), F.lit(0.0)) for part in parts]
    total = filled[0]
    for part in filled[1:]:
        total = total + part
    return F.array(
        *[F.when(total > 0, part / total).otherwise(F.lit(0.0)).cast("float") for part in filled]
    )


def smoothed_ctr(clicks: Column, impressions: Column, prior: Column, strength: float) -> Column:
    """Bayesian smoothing ``(clicks + m * prior) / (impressions + m)``; null when undefined."""
    from pyspark.sql import functions as F

    numerator = clicks + F.lit(strength) * prior
    denominator = impressions + F.lit(strength)
    return F.when(denominator > 0, numerator / denominator)
