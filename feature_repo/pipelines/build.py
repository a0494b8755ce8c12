"""``build_features``: the Spark build of every offline feature table for a range of snapshots."""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ingest.publish import row_count, swap, write_parquet

from ..config import FeaturesParams
from ..tables import (
    ITEM_STATS,
    USER_GAZE,
    USER_SEQUENCE,
    USER_SOCIAL,
    USER_STATS,
    FeatureTable,
    feature_tables,
    partition_dir,
)
from .common import SNAPSHOT, Chunk, chunks
from .ctr import domain_ctr
from .events import load_events
from .gaze import build_user_gaze
from .item import build_item_stats
from .sequence import build_user_sequence
from .social import build_user_social
from .user import build_user_stats

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from .events import CuratedEvents

STAGING_DIR = "_staging"


@dataclass
class TableBuild:
    """What the build wrote for one table.

    Attributes:
        rows: Rows written over the whole range.
        entities: Distinct entity keys among them.
        snapshot_dirs: Snapshot-hour directories written (others in the range were emptied).
        mean_row_bytes: Mean uncompressed (Arrow) size of a row.
        max_row_bytes: Largest uncompressed row (strings and arrays counted by length).
    """

    rows: int = 0
    entities: int = 0
    snapshot_dirs: int = 0
    mean_row_bytes: float = 0.0
    max_row_bytes: int = 0


@dataclass
class FeatureBuildResult:
    """What :func:`build_features` did.

    Attributes:
        start: Range start (UTC, ISO-8601); the first snapshot is one grain later.
        end: Range end, the last snapshot.
        snapshots: Snapshot times built.
        tables: Per table name, what was written.
        seconds: Wall time.
    """

    start: str
    end: str
    snapshots: int
    tables: dict[str, TableBuild] = field(default_factory=dict)
    seconds: float = 0.0


def _chunk_frames(
    spark: SparkSession, events: CuratedEvents, chunk: Chunk, params: FeaturesParams
) -> tuple[dict[str, DataFrame], list[DataFrame]]:
    """Every table's frame for ``chunk``, and the cached intermediates to release after it."""
    prior = domain_ctr(spark, events, chunk, params).cache()
    frames = {
        USER_STATS: build_user_stats(spark, events, chunk, params, prior),
        ITEM_STATS: build_item_stats(spark, events, chunk, params, prior),
        USER_SOCIAL: build_user_social(spark, events, chunk, params),
        USER_GAZE: build_user_gaze(events, chunk, params),
        USER_SEQUENCE: build_user_sequence(events, chunk, params),
    }
    return frames, [prior]


def _finalise(
    spark: SparkSession, frame: DataFrame, table: FeatureTable, chunk: Chunk, created: datetime
) -> DataFrame:
    """Declared columns and types, timestamps, and the ``date``/``hour`` partition columns."""
    from pyspark.sql import functions as F

    # Partition names come from Python, not from the session time zone.
    partitions = spark.createDataFrame(
        [
            (int(moment.timestamp()), f"{moment:%Y-%m-%d}", f"{moment:%H}")
            for moment in chunk.snapshots
        ],
        f"{SNAPSHOT} bigint, date string, hour string",
    )
    return (
        frame.join(F.broadcast(partitions), SNAPSHOT)
        .select(
            F.col(table.entity_key),
            F.timestamp_seconds(F.col(SNAPSHOT)).alias(table.timestamp_column),
            F.timestamp_seconds(F.lit(int(created.timestamp()))).alias(table.created_column),
            *[F.col(c.name).cast(c.dtype.value).alias(c.name) for c in table.features],
            "date",
            "hour",
        )
        .repartition(1)
        .sortWithinPartitions("date", "hour", table.entity_key)
    )


def row_bytes(table: pa.Table) -> np.ndarray:
    """Uncompressed bytes of each row: fixed-width values, string and array contents."""
    sizes = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        column = column.combine_chunks()
        kind = column.type
        if pa.types.is_list(kind):
            values = pc.list_flatten(column)
            parents = pc.list_parent_indices(column).to_numpy()
            if pa.types.is_string(values.type):
                widths = pc.fill_null(pc.binary_length(values), 0).to_numpy()
            else:
                widths = np.full(len(values), values.type.bit_width // 8)
            sizes += np.bincount(parents, weights=widths, minlength=table.num_rows).astype(np.int64)
        elif pa.types.is_string(kind):
            sizes += pc.fill_null(pc.binary_length(column), 0).to_numpy()
        else:
            sizes += kind.bit_width // 8
    return sizes


def build_features(
    spark: SparkSession,
    curated_root: Path,
    features_root: Path,
    start: datetime,
    end: datetime,
    params: FeaturesParams,
) -> FeatureBuildResult:
    """Build every offline feature table for the snapshots ``start + grain .. end``.

    Each value at snapshot ``T`` uses only events with ``ts < T`` (all history before it,
    decayed to ``T``). Output goes to ``_staging`` first and each snapshot hour's directory is
    swapped in afterwards, so rebuilding a range replaces exactly that range's rows, and a
    failed build leaves the previous files in place.

    Args:
        spark: Session (UTC, e.g. from :func:`ingest.spark.get_spark`).
        curated_root: Curated tables of the ingest stage.
        features_root: Root of the offline feature tables.
        start: Range start, aware, a multiple of the snapshot grain.
        end: Range end (the last snapshot), aware, a multiple of the grain.
        params: The ``features`` section of params.yaml.

    Returns:
        Rows, entities and row sizes per table.

    Raises:
        ValueError: Naive, misaligned or empty range.
        FileNotFoundError: No curated interactions or catalog.
        feature_repo.pipelines.events.CatalogError: A category outside the vocabulary.
    """
    began = time.perf_counter()
    plan = list(chunks(start, end, params.snapshot_grain_hours))
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    tables = feature_tables(params)
    features_root = Path(features_root)
    created = end
    events = load_events(spark, curated_root, end, params)
    staging = features_root / STAGING_DIR / uuid.uuid4().hex
    result = FeatureBuildResult(
        start=start.isoformat(), end=end.isoformat(), snapshots=sum(len(c.snapshots) for c in plan)
    )
    try:
        for n, chunk in enumerate(plan):
            frames, cached = _chunk_frames(spark, events, chunk, params)
            for name, frame in frames.items():
                write_parquet(
                    _finalise(spark, frame, tables[name], chunk, created),
                    staging / f"{n:03d}" / name,
                    ["date", "hour"],
                )
            for frame in cached:
                frame.unpersist()
        for n, chunk in enumerate(plan):
            for name in tables:
                staged_root = staging / f"{n:03d}" / name
                for moment in chunk.snapshots:
                    staged = staged_root / f"date={moment:%Y-%m-%d}" / f"hour={moment:%H}"
                    target = partition_dir(features_root, name, moment)
                    if not staged.is_dir():
                        staged.mkdir(parents=True)
                    swap(staged, target)
        for name in tables:
            build = TableBuild()
            for chunk in plan:
                for moment in chunk.snapshots:
                    directory = partition_dir(features_root, name, moment)
                    rows = row_count(directory)
                    build.rows += rows
                    build.snapshot_dirs += rows > 0
            sizes, keys = _range_rows(features_root, name, plan)
            build.entities = len(keys)
            build.mean_row_bytes = round(sum(sizes) / len(sizes), 1) if sizes else 0.0
            build.max_row_bytes = max(sizes, default=0)
            result.tables[name] = build
        result.seconds = round(time.perf_counter() - began, 3)
        return result
    finally:
        events.unpersist()
        shutil.rmtree(staging, ignore_errors=True)


def _range_rows(features_root: Path, name: str, plan: list[Chunk]) -> tuple[list[int], set[str]]:
    sizes: list[int] = []
    keys: set[str] = set()
    for chunk in plan:
        for moment in chunk.snapshots:
            for path in sorted(partition_dir(features_root, name, moment).rglob("*.parquet")):
                table = pq.read_table(path)
                sizes += row_bytes(table).tolist()
                keys.update(table.column(0).to_pylist())
    return sizes, keys
