"""Ingest a range of hours: every source's landing partitions, then the interactions.

:func:`ingest_range` is what ``muma ingest --start/--end`` and the DAG call. It batches up to
``hours_per_batch`` hours of every source into one Spark job (:func:`ingest.job.stage_batch`),
which keeps per-partition outputs, reconciliation files, staged swaps and byte-identical
reruns while paying Spark's fixed cost per batch instead of per partition.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from muma.contract import Source, partition_dir

from .config import IngestParams
from .interactions import InteractionsResult, build_interactions_hours
from .job import IngestResult, StagedBatch, publish_batch, stage_batch
from .publish import Cleanup, remove_abandoned

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

BATCHES_AHEAD = 2
"""Batches whose Spark jobs may be queued or running while the driver publishes another."""
HOURS_PER_BATCH = 24
"""Hours per Spark job (every source): a day amortises the fixed cost of a job."""


@dataclass
class RangeResult:
    """What :func:`ingest_range` did.

    Attributes:
        partitions: One result per ingested (source, hour), in hour order.
        interactions: One result per interactions hour built.
        absent: ``(source, hour)`` pairs of the range without a landing partition.
        cleanup: Leftovers of killed runs removed before starting.
        ingest_seconds: Wall time of the partitions' ingest.
        interactions_seconds: Wall time of the interactions builds.
    """

    partitions: list[IngestResult] = field(default_factory=list)
    interactions: list[InteractionsResult] = field(default_factory=list)
    absent: list[tuple[str, str]] = field(default_factory=list)
    cleanup: Cleanup = field(default_factory=Cleanup)
    ingest_seconds: float = 0.0
    interactions_seconds: float = 0.0

    @property
    def records_read(self) -> int:
        return sum(result.records_read for result in self.partitions)

    @property
    def curated(self) -> int:
        return sum(result.curated for result in self.partitions)

    @property
    def quarantined(self) -> int:
        return sum(result.quarantined for result in self.partitions)

    @property
    def duplicates_dropped(self) -> int:
        return sum(result.duplicates_dropped for result in self.partitions)

    @property
    def quarantined_by_reason(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for result in self.partitions:
            total.update(result.quarantined_by_reason)
        return dict(sorted(total.items()))

    @property
    def seconds(self) -> float:
        return self.ingest_seconds + self.interactions_seconds

    @property
    def events_per_second(self) -> float:
        """Records read per second of the whole run (ingest and interactions)."""
        return self.records_read / self.seconds if self.seconds else math.nan

    def totals(self) -> dict:
        """Totals as a JSON-ready dict (for the CLI and the benchmark)."""
        return {
            "partitions": len(self.partitions),
            "absent": len(self.absent),
            "interactions_hours": len(self.interactions),
            "records_read": self.records_read,
            "curated": self.curated,
            "quarantined": self.quarantined,
            "duplicates_dropped": self.duplicates_dropped,
            "quarantined_by_reason": self.quarantined_by_reason,
            "ingest_seconds": round(self.ingest_seconds, 3),
            "interactions_seconds": round(self.interactions_seconds, 3),
            "events_per_second": round(self.events_per_second, 1),
        }


def range_hours(start: datetime, end: datetime) -> list[datetime]:
    """Hour starts in ``[start, end)``; both must be aware and on the hour."""
    for moment in (start, end):
        if moment.tzinfo is None:
            raise ValueError(f"{moment} has no time zone")
        if (moment.minute, moment.second, moment.microsecond) != (0, 0, 0):
            raise ValueError(f"{moment} is not on the hour")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        raise ValueError(f"empty range: end {end} is not after start {start}")
    count = (end - start) // timedelta(hours=1)
    return [start + n * timedelta(hours=1) for n in range(count)]


def ingest_range(
    spark: SparkSession,
    landing_root: Path,
    curated_root: Path,
    start: datetime,
    end: datetime,
    params: IngestParams,
    sources: list[Source | str] | None = None,
    hours_per_batch: int = HOURS_PER_BATCH,
    interactions: bool = True,
) -> RangeResult:
    """Ingest every (source, hour) of ``[start, end)`` in hour order, then the interactions.

    Hours go in batches of ``hours_per_batch``; a batch of every source is one Spark job
    (:func:`ingest.job.stage_batch`). Up to :data:`BATCHES_AHEAD` later batches are staged
    while one is published (:func:`ingest.job.publish_batch`), in hour order.
    Interactions of hour H are built once the clicks and views of H .. H + ceil(window) are
    ingested, or the range ends (the last hours then see the clicks the range holds).

    Args:
        spark: Session from :func:`ingest.spark.get_spark`.
        landing_root: Root of the landing zone (holding ``v1/``).
        curated_root: Root of the curated tables.
        start: First hour (inclusive, aware, on the hour).
        end: End of the range (exclusive).
        params: The ``ingest`` section of params.yaml.
        sources: Sources to ingest (default: all). Interactions need impressions.
        hours_per_batch: Hours per Spark job.
        interactions: Whether to build the interactions table.

    Returns:
        Per-partition and per-hour results with totals.

    Raises:
        ValueError: Bad range or ``hours_per_batch`` below 1.
        ingest.job.ReconciliationError: A batch did not reconcile; earlier batches stay
            published, that batch and later ones are not.
    """
    if hours_per_batch < 1:
        raise ValueError(f"hours_per_batch must be at least 1, got {hours_per_batch}")
    hours = range_hours(start, end)
    chosen = [Source(source) for source in (sources or list(Source))]
    order = [source for source in Source if source in chosen]
    result = RangeResult(cleanup=remove_abandoned(curated_root))
    span = math.ceil(params.attribution_window / timedelta(hours=1))
    plan: list[tuple[list[datetime], dict[Source, list[datetime]]]] = []
    for first in range(0, len(hours), hours_per_batch):
        batch = hours[first : first + hours_per_batch]
        present: dict[Source, list[datetime]] = {}
        for source in order:
            for hour in batch:
                if partition_dir(landing_root, source, hour).is_dir():
                    present.setdefault(source, []).append(hour)
                else:
                    result.absent.append((str(source), hour.isoformat()))
        plan.append((batch, present))

    began = time.perf_counter()
    pending: list[datetime] = []
    in_flight: deque[Future[StagedBatch] | None] = deque()
    with ThreadPoolExecutor(max_workers=BATCHES_AHEAD, thread_name_prefix="ingest") as pool:
        planned = iter(plan)

        def stage_ahead() -> None:
            # Later batches' Spark jobs run while this one is published, and their tasks
            # take the cores an ending job frees: no core waits for the driver.
            while len(in_flight) < BATCHES_AHEAD:
                upcoming = next(planned, None)
                if upcoming is None:
                    return
                present = upcoming[1]
                in_flight.append(
                    pool.submit(stage_batch, spark, landing_root, curated_root, present, params)
                    if present
                    else None
                )

        try:
            stage_ahead()
            for number, (batch, present) in enumerate(plan):
                future = in_flight.popleft()
                staged = future.result() if future is not None else None
                stage_ahead()
                if staged is not None:
                    result.partitions.extend(publish_batch(staged, curated_root, params))
                    pending.extend(present.get(Source.IMPRESSIONS, []))
                if not interactions:
                    continue
                ingested_until = batch[-1] + timedelta(hours=1)
                is_last = number == len(plan) - 1
                ready = [
                    h for h in pending if is_last or h + timedelta(hours=span + 1) <= ingested_until
                ]
                built = time.perf_counter()
                result.interactions.extend(
                    build_interactions_hours(spark, curated_root, ready, params)
                )
                pending = [h for h in pending if h not in ready]
                result.interactions_seconds += time.perf_counter() - built
        except BaseException:
            for future in in_flight:
                if future is not None and future.exception() is None:
                    future.result().discard()
            raise
    result.ingest_seconds = time.perf_counter() - began - result.interactions_seconds
    result.partitions.sort(key=lambda r: (r.hour_start, list(Source).index(Source(r.source))))
    return result
