"""Ingest landing partitions into curated Parquet, a quarantine table and reconciliations.

One Spark job ingests a batch of landing partitions of every source (:func:`stage_batch`,
then :func:`publish_batch`; one source: :func:`ingest_hours`; one partition:
:func:`ingest_partition`); every landing partition still gets its own output directories
and reconciliation file, exactly as if it had been ingested alone.

Layout under ``curated_root`` (``date``/``hour`` are the *landing* partition's, so a rerun
replaces exactly the directories one partition produced)::

    <source>/date=YYYY-MM-DD/hour=HH[/domain=<domain>]/part-NNNNN.snappy.parquet
    quarantine/source=<source>/date=YYYY-MM-DD/hour=HH/part-NNNNN.snappy.parquet
    _reconciliation/source=<source>/date=YYYY-MM-DD/hour=HH.json

Every output is written to ``_staging/<run id>/`` first and renamed into place only after
the reconciliation holds, so a killed or failed run leaves the previous output intact.
Files get deterministic names and rows a deterministic order: a rerun on the same landing
partition writes byte-identical Parquet.

Cost (``docs/ingest.md``): a batch is one Spark job of a few tasks (the default
parallelism), each curating whole partitions with Arrow (:mod:`ingest.curate`); repeated ids
are found from 64-bit hashes the tasks return, so no id string moves unless two hashes meet.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from muma.contract import Source, partition_dir

from .config import IngestParams
from .curate import (
    OUTCOME_SCHEMA,
    PartitionOutcome,
    PartitionTask,
    balanced_slots,
    id_hashes,
    run_slot,
    write_curated_file,
)
from .publish import STAGING_DIR as STAGING_DIR
from .publish import row_count, staging_dir, swap, write_json

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

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


def _landing_files(directory: Path) -> list[Path]:
    """The files Spark reads in a landing partition (it skips names starting ``_`` or ``.``)."""
    return [
        path
        for path in directory.iterdir()
        if path.is_file() and not path.name.startswith(("_", "."))
    ]


def _curated_ids(directory: Path) -> pa.Array:
    """``event_id`` of every curated file under ``directory``."""
    chunks = [
        pq.read_table(path, columns=["event_id"]).column("event_id")
        for path in sorted(directory.rglob("*.parquet"))
    ]
    return pa.chunked_array(chunks, pa.string()).combine_chunks()


def _earlier_curated_dirs(
    curated_root: Path, source: Source, hours: list[datetime], allowed_lateness: timedelta
) -> dict[int, Path]:
    """Curated partitions in hours outside the batch it looks back on, by start micros.

    Hours of the batch are excluded: the batch replaces them. Ingest hours in order: earlier
    landing partitions win.
    """
    lookback = lookback_hours(allowed_lateness)
    batch = set(hours)
    earlier = sorted({hour - n * _HOUR for hour in hours for n in range(1, lookback + 1)} - batch)
    dirs = {}
    for hour in earlier:
        directory = curated_partition_dir(curated_root, source, hour)
        if directory.is_dir() and any(directory.rglob("*.parquet")):
            dirs[_micros(hour)] = directory
    return dirs


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


def _cross_partition_duplicates(
    staged: dict[int, tuple[Path, np.ndarray]],
    curated_root: Path,
    source: Source,
    hours: list[datetime],
    params: IngestParams,
) -> dict[int, set[str]]:
    """Ids to drop from each staged partition because an earlier copy is kept.

    Every staged partition holds each id once (:func:`ingest.curate.first_copies`). Its
    tasks reported the ids' 64-bit hashes; a hash found in two partitions (of the batch, or
    a curated hour the batch looks back on) makes a candidate, and only candidates' ids are
    read back and compared exactly, then settled in hour order by
    :func:`_duplicate_copies`. For the usual unique id no string leaves its task.

    Args:
        staged: ``{start micros: (staged curated directory, sorted id hashes)}``.

    Returns:
        ``{partition start micros: event ids to drop}``, only partitions with drops.
    """
    earlier = _earlier_curated_dirs(curated_root, source, hours, params.allowed_lateness)
    places = {start: directory for start, (directory, _) in staged.items()} | earlier
    hashes = {start: found for start, (_, found) in staged.items()}
    for start, directory in earlier.items():
        hashes[start] = np.unique(id_hashes(_curated_ids(directory)))
    starts = list(hashes)
    every = np.concatenate([hashes[start] for start in starts]) if starts else np.empty(0)
    owner = np.repeat(np.arange(len(starts)), [len(hashes[start]) for start in starts])
    order = np.argsort(every, kind="stable")
    every, owner = every[order], owner[order]
    repeated = np.flatnonzero(every[1:] == every[:-1])
    if not len(repeated):
        return {}
    candidates = np.unique(every[repeated])
    involved = {
        starts[i] for i in np.unique(np.concatenate([owner[repeated], owner[repeated + 1]]))
    }
    copies: list[tuple[str, int, int]] = []
    kept_before: list[tuple[str, int]] = []
    for start in sorted(involved):
        ids = _curated_ids(places[start])
        picked = ids.filter(pa.array(np.isin(id_hashes(ids), candidates))).to_pylist()
        if start in staged:
            copies.extend((event_id, start, 1) for event_id in picked)
        else:
            kept_before.extend((event_id, start) for event_id in picked)
    dropped: dict[int, set[str]] = {}
    for event_id, start, _ in _duplicate_copies(
        copies, kept_before, lookback_hours(params.allowed_lateness)
    ):
        dropped.setdefault(start, set()).add(event_id)
    return dropped


def _drop_ids(directory: Path, event_ids: set[str]) -> None:
    """Rewrite the staged curated files under ``directory`` without ``event_ids``."""
    drop = pa.array(sorted(event_ids), pa.string())
    for path in sorted(directory.rglob("*.parquet")):
        table = pq.read_table(path)
        kept = table.filter(pc.invert(pc.is_in(table.column("event_id"), value_set=drop)))
        if kept.num_rows == table.num_rows:
            continue
        path.unlink()
        if kept.num_rows:
            write_curated_file(kept, path)
        elif path.parent != directory and not any(path.parent.iterdir()):
            path.parent.rmdir()


def default_slots(spark: SparkSession) -> int:
    """Tasks to spread a batch over: Spark's default parallelism.

    On a local master :func:`ingest.spark.get_spark` sets it to two per core, so a core that
    finishes its task early takes another; on a cluster it is the executors' cores.
    """
    try:
        return max(1, spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect has no SparkContext: its default parallelism
        return max(1, int(spark.conf.get("spark.default.parallelism", "2")))


Row = tuple[Any, ...]


def run_on_executors(
    spark: SparkSession,
    slots: list[list[int]],
    work: Callable[[list[int]], list[Row]],
    schema: pa.Schema,
    connect: bool | None = None,
) -> list[Row]:
    """Run ``work(slot)`` for every slot as one Spark job; the rows it returns, collected.

    A plain RDD job (no SQL planning or code generation for a handful of report rows); on
    Spark Connect, which has no RDDs, the same slots through ``mapInArrow`` over
    ``spark.range``, each slot's rows as one Arrow batch of ``schema``. ``connect`` forces a
    path (``None``: RDDs where the session has a SparkContext).
    """
    if connect is None:
        try:
            connect = spark.sparkContext is None
        except Exception:  # Spark Connect: no SparkContext
            connect = True
    if not connect:
        return (
            spark.sparkContext.parallelize(range(len(slots)), len(slots))
            .flatMap(lambda slot: work(slots[slot]))
            .collect()
        )
    from pyspark.sql.pandas.types import from_arrow_schema

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for slot in batch.column(0).to_pylist():
                rows = work(slots[slot])
                columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
                yield pa.RecordBatch.from_arrays(
                    [pa.array(c, f.type) for c, f in zip(columns, schema, strict=True)],
                    schema=schema,
                )

    frame = spark.range(0, len(slots), 1, len(slots)).mapInArrow(run, from_arrow_schema(schema))
    return [tuple(row) for row in frame.collect()]


@dataclass
class StagedBatch:
    """A batch whose tasks have run: outputs staged, not yet deduplicated across or published.

    Attributes:
        partitions: Hours per source, in contract order.
        staging: The batch's staging directory.
        outcomes: What each task reported, by (source, hour).
        began: ``time.perf_counter()`` when staging began.
    """

    partitions: dict[Source, list[datetime]]
    staging: Path
    outcomes: dict[tuple[Source, datetime], PartitionOutcome]
    began: float

    def staged(self, source: Source, table: str, hour: datetime) -> Path:
        date, hh = _hour_parts(hour)
        return self.staging / str(source) / table / f"date={date}" / f"hour={hh}"

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def stage_batch(
    spark: SparkSession,
    landing_root: Path,
    curated_root: Path,
    partitions: dict[Source | str, list[datetime]],
    params: IngestParams,
) -> StagedBatch:
    """Run a batch's Spark job: every partition curated and quarantined into staging.

    The partitions are spread over Spark's default parallelism in tasks, balanced by size;
    each task curates its partitions one by one (:func:`ingest.curate.curate_partition`).
    Nothing outside the staging directory is touched, so batches may be staged while an
    earlier one is published (:func:`ingest.run.ingest_range` does).

    Raises:
        FileNotFoundError: A landing partition does not exist.
        ReconciliationError: A task's report is missing.
        ValueError: No hours, or a source's hours repeat.
    """
    began = time.perf_counter()
    wanted = {
        Source(source): sorted(h.astimezone(UTC) for h in hours)
        for source, hours in partitions.items()
    }
    batch = {source: wanted[source] for source in Source if wanted.get(source)}
    if not batch:
        raise ValueError(f"need hours to ingest, got {partitions}")
    for source, hours in batch.items():
        if len(set(hours)) != len(hours):
            raise ValueError(f"need distinct hours to ingest, got {hours} for {source}")
        for hour in hours:
            directory = partition_dir(landing_root, source, hour)
            if not directory.is_dir():
                raise FileNotFoundError(f"no landing partition at {directory}")
    staged = StagedBatch(batch, staging_dir(Path(curated_root)), {}, began)
    keys = [(source, hour) for source, hours in batch.items() for hour in hours]
    tasks = [
        PartitionTask(
            source=source,
            start_micros=_micros(hour),
            files=tuple(
                sorted(
                    str(path) for path in _landing_files(partition_dir(landing_root, source, hour))
                )
            ),
            curated_dir=str(staged.staged(source, "curated", hour)),
            quarantine_dir=str(staged.staged(source, "quarantine", hour)),
        )
        for source, hour in keys
    ]
    try:
        slots = balanced_slots(tasks, default_slots(spark))
        lateness = params.allowed_lateness
        reports = run_on_executors(
            spark, slots, lambda slot: run_slot(tasks, slot, lateness), OUTCOME_SCHEMA
        )
        for index, report, hashes in reports:
            outcome = PartitionOutcome(**json.loads(report))
            outcome.id_hashes = np.frombuffer(hashes, np.uint64)
            staged.outcomes[keys[index]] = outcome
        if len(staged.outcomes) != len(keys):
            raise ReconciliationError(
                f"tasks reported {len(staged.outcomes)} of {len(keys)} partitions; "
                "nothing published"
            )
    except BaseException:
        staged.discard()
        raise
    return staged


def publish_batch(
    staged: StagedBatch, curated_root: Path, params: IngestParams
) -> list[IngestResult]:
    """Settle ids repeated across partitions, reconcile, and publish a staged batch.

    Ids repeated across the batch's partitions, or against curated hours before it, are
    dropped from all but the first copy's partition. Each partition gets the outputs and
    reconciliation that ingesting it alone, hour by hour in order, would give. Nothing is
    published unless every partition's reconciliation holds; the staging directory is gone
    afterwards either way.

    Returns:
        One result per partition, by source (contract order) then hour, as written to the
        reconciliation JSONs.

    Raises:
        ReconciliationError: A partition's records read differ from curated + quarantined +
            duplicates; nothing of this batch is published then.
    """
    curated_root = Path(curated_root)
    outcomes = staged.outcomes
    try:
        results = []
        for source, hours in staged.partitions.items():
            staged_ids = {
                _micros(hour): (
                    staged.staged(source, "curated", hour),
                    outcomes[source, hour].id_hashes,
                )
                for hour in hours
            }
            dropped = _cross_partition_duplicates(staged_ids, curated_root, source, hours, params)
            for start, event_ids in dropped.items():
                hour = _EPOCH + timedelta(microseconds=start)
                _drop_ids(staged.staged(source, "curated", hour), event_ids)
            for hour in hours:
                outcome = outcomes[source, hour]
                reasons = outcome.quarantined_by_reason
                result = IngestResult(
                    source=str(source),
                    hour_start=hour.isoformat(),
                    records_read=outcome.records_read,
                    curated=row_count(staged.staged(source, "curated", hour)),
                    quarantined=row_count(staged.staged(source, "quarantine", hour)),
                    duplicates_dropped=outcome.duplicates_dropped
                    + len(dropped.get(_micros(hour), ())),
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

        for source, hours in staged.partitions.items():
            for hour in hours:
                swap(
                    staged.staged(source, "curated", hour),
                    curated_partition_dir(curated_root, source, hour),
                )
                swap(
                    staged.staged(source, "quarantine", hour),
                    quarantine_partition_dir(curated_root, source, hour),
                )
        seconds = time.perf_counter() - staged.began
        total = sum(result.records_read for result in results)
        for result in results:
            share = result.records_read / total if total else 1 / len(results)
            result.seconds = round(seconds * share, 3)
            hour = datetime.fromisoformat(result.hour_start)
            write_json(reconciliation_path(curated_root, result.source, hour), asdict(result))
        return results
    finally:
        staged.discard()


def ingest_hours(
    spark: SparkSession,
    landing_root: Path,
    curated_root: Path,
    source: Source | str,
    hours: list[datetime],
    params: IngestParams,
) -> list[IngestResult]:
    """Curate, quarantine and reconcile one source's landing partitions in one Spark job.

    :func:`stage_batch` then :func:`publish_batch`; :func:`ingest.run.ingest_range` does the
    same for every source of a batch, staging the next batches meanwhile.

    Returns:
        One result per hour, in hour order, as written to the reconciliation JSONs.

    Raises:
        FileNotFoundError: A landing partition does not exist.
        ReconciliationError: A partition's records read differ from curated + quarantined +
            duplicates; nothing of this batch is published then.
        ValueError: ``hours`` is empty or repeats an hour.
    """
    if not hours:
        raise ValueError(f"need distinct hours to ingest, got {hours}")
    staged = stage_batch(spark, landing_root, curated_root, {source: hours}, params)
    return publish_batch(staged, curated_root, params)


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
