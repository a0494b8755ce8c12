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

Several hours are built together by one Spark job (:func:`build_interactions_hours`): a
task per hour, balanced over the cores, labels the hour with Arrow (:mod:`ingest.label`),
reading the curated files of the hours its window reaches, so an hour's rows are the same
whether it is built alone or with others.
"""

from __future__ import annotations

import json
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
import pyarrow.parquet as pq

from muma.contract import Source

from .config import IngestParams
from .curate import balanced_slots
from .job import (
    ReconciliationError,
    curated_partition_dir,
    default_slots,
    quarantine_partition_dir,
    reconciliation_path,
    run_on_executors,
)
from .label import OUTCOME_SCHEMA, HourFiles, HourOutcome, run_hours
from .publish import row_count, staging_dir, swap, write_json

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

INTERACTIONS = "interactions"
HOUR = timedelta(hours=1)


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
        seconds: Wall time of the build that wrote this hour (with the other hours it
            built together).
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


def _hour_files(curated_root: Path, source: Source, hour: datetime) -> list[Path]:
    directory = curated_partition_dir(curated_root, source, hour)
    return sorted(directory.rglob("*.parquet")) if directory.is_dir() else []


def _with_rows(curated_root: Path, source: Source, hour: datetime) -> bool:
    return bool(_hour_files(curated_root, source, hour))


def _staged_dir(staging: Path, table: str, hour: datetime) -> Path:
    return staging / table / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def _task(
    curated_root: Path, staging: Path, hour: datetime, span: int, params: IngestParams
) -> HourFiles:
    def files(source: Source, hours: range) -> tuple[str, ...]:
        return tuple(
            str(path) for n in hours for path in _hour_files(curated_root, source, hour + n * HOUR)
        )

    return HourFiles(
        hour=hour.isoformat(),
        impressions=tuple(
            (str(path), path.parent.name.removeprefix("domain="))
            for path in _hour_files(curated_root, Source.IMPRESSIONS, hour)
        ),
        clicks=files(Source.CLICKS, range(span + 1)),
        views=files(Source.VIEWS, range(span + 1)),
        hour_clicks=files(Source.CLICKS, range(1)),
        earlier_impressions=files(Source.IMPRESSIONS, range(-span, 1)),
        interactions_dir=str(_staged_dir(staging, INTERACTIONS, hour)),
        quarantine_dir=str(_staged_dir(staging, "quarantine", hour)),
        window_micros=int(params.attribution_window / timedelta(microseconds=1)),
        window_minutes=f"{params.attribution_window_minutes}",
    )


def _run(spark: SparkSession, tasks: list[HourFiles]) -> dict[str, HourOutcome]:
    """Every task on the executors (a plain RDD job; ``mapInArrow`` on Spark Connect)."""
    slots = balanced_slots(tasks, default_slots(spark))
    reports = run_on_executors(spark, slots, lambda slot: run_hours(tasks, slot), OUTCOME_SCHEMA)
    outcomes = [HourOutcome(**json.loads(report)) for _, report in reports]
    return {outcome.hour: outcome for outcome in outcomes}


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

    One Spark job of a few tasks labels every hour (:func:`ingest.label.label_hour`). Each
    hour then reconciles on its own, from the staged files' footers and columns (which must
    also agree with what its task says it wrote); every hour is published only when all of
    them hold.

    Args:
        spark: Session from :func:`ingest.spark.get_spark`.
        curated_root: Root of the curated tables (on a file system every executor mounts).
        hours: Impressions' landing hours (aware, on the hour; any order, duplicates ignored).
        params: The ``ingest`` section of params.yaml.

    Returns:
        One result per hour, in hour order.

    Raises:
        FileNotFoundError: Some hour's impressions are not curated yet; nothing is built.
        ReconciliationError: Some hour lost or duplicated rows; nothing is published.
    """
    began = time.perf_counter()
    curated_root = Path(curated_root)
    hours = sorted({hour.astimezone(UTC) for hour in hours})
    if not hours:
        return []
    missing = [h for h in hours if not _with_rows(curated_root, Source.IMPRESSIONS, h)]
    if missing:
        raise FileNotFoundError(
            "no curated impressions for " + ", ".join(f"{h:%Y-%m-%dT%H}" for h in missing)
        )
    span = math.ceil(params.attribution_window / HOUR)
    staging = staging_dir(curated_root)
    try:
        tasks = [_task(curated_root, staging, hour, span, params) for hour in hours]
        outcomes = _run(spark, tasks)
        seconds = round(time.perf_counter() - began, 3)
        results, failed = [], []
        for hour in hours:
            staged = _staged_dir(staging, INTERACTIONS, hour)
            quarantined = _staged_dir(staging, "quarantine", hour)
            outcome = outcomes.get(hour.isoformat())
            if outcome is None:
                failed.append(f"{hour:%Y-%m-%dT%H}: no task reported it")
                continue
            written = (
                ds.dataset(staged, format="parquet").to_table(columns=["event_id", "clicked"])
                if any(staged.rglob("*.parquet"))
                else pa.table(
                    {"event_id": pa.array([], pa.string()), "clicked": pa.array([], pa.bool_())}
                )
            )
            clicks = _hour_files(curated_root, Source.CLICKS, hour)
            result = InteractionsResult(
                hour_start=hour.isoformat(),
                impressions=row_count(
                    curated_partition_dir(curated_root, Source.IMPRESSIONS, hour)
                ),
                interactions=row_count(staged),
                clicked=int(pc.sum(written["clicked"]).as_py() or 0),
                clicks=sum(pq.read_metadata(path).num_rows for path in clicks),
                clicks_attributed=outcome.clicks_attributed,
                clicks_without_impression=row_count(quarantined),
                seconds=seconds,
            )
            distinct = pc.count_distinct(written["event_id"]).as_py()
            result.holds = (
                result.interactions == result.impressions == distinct == outcome.interactions
                and result.clicked == outcome.clicked
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
