"""Reading the monitoring windows.

Production reads the curated ``interactions`` table that ingest publishes (Parquet,
partitioned by date, hour and domain): :func:`read_interactions`. Tests, benchmarks and
notebooks without Spark build the same rows straight from a landing zone (the simulator's
output) with :func:`interactions_from_landing`: every line is checked against the data
contract, clicks join impressions on ``request_id`` + ``item_id`` and views (dwell) on
``request_id`` + ``item_id`` as well. This skips ingest's dedup, lateness and attribution
window, so it is only for clean, simulated logs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import polars as pl

from muma.contract import Source, check_line
from muma.landing import read_partition_lines

INTERACTION_COLUMNS = [
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
]
"""Columns of the curated ``interactions`` table (see ``ingest/interactions.py``)."""


def _hours(start: datetime, end: datetime) -> list[datetime]:
    start = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    count = int((end.astimezone(UTC) - start) // timedelta(hours=1))
    return [start + timedelta(hours=n) for n in range(max(count, 0))]


def landing_records(
    landing_root: Path, source: Source, start: datetime, end: datetime
) -> pl.DataFrame:
    """Contract-valid records of ``source`` in the hour partitions of ``[start, end)``.

    Invalid lines are dropped (ingest quarantines them); ``ts`` is parsed to UTC.
    """
    rows = []
    for hour in _hours(start, end):
        for line in read_partition_lines(Path(landing_root), source, hour):
            record, violation = check_line(source, line)
            if violation is None:
                rows.append(record)
    if not rows:
        return pl.DataFrame()
    frame = pl.DataFrame(rows, infer_schema_length=None)
    return frame.with_columns(
        pl.col(c).str.to_datetime(time_zone="UTC", time_unit="ms")
        for c in ("ts", "publish_ts")
        if c in frame.columns
    )


def interactions_from_landing(landing_root: Path, start: datetime, end: datetime) -> pd.DataFrame:
    """Interactions-shaped rows (:data:`INTERACTION_COLUMNS`) of ``[start, end)``.

    Args:
        landing_root: Landing zone root (``<root>/v1/<source>/date=.../hour=...``).
        start: First hour (inclusive, UTC).
        end: End (exclusive).

    Returns:
        One row per impression, ``clicked`` and the first view's dwell attached; empty
        (with the columns) when the range holds no impressions.
    """
    impressions = landing_records(landing_root, Source.IMPRESSIONS, start, end)
    if impressions.is_empty():
        return pd.DataFrame(columns=INTERACTION_COLUMNS)
    keys = ["request_id", "item_id"]
    clicks = landing_records(landing_root, Source.CLICKS, start, end)
    views = landing_records(landing_root, Source.VIEWS, start, end)
    frame = impressions
    if clicks.is_empty():
        frame = frame.with_columns(pl.lit(None, dtype=pl.Datetime("ms", "UTC")).alias("click_ts"))
    else:
        first = clicks.group_by(keys).agg(pl.col("ts").min().alias("click_ts"))
        frame = frame.join(first, on=keys, how="left")
    if views.is_empty() or "request_id" not in views.columns:
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.Int64).alias("dwell_ms"),
            pl.lit(None, dtype=pl.Float64).alias("completion_ratio"),
        )
    else:
        first_view = (
            views.drop_nulls("request_id")
            .sort("ts")
            .group_by(keys)
            .agg(pl.col("dwell_ms").first(), pl.col("completion_ratio").first())
        )
        frame = frame.join(first_view, on=keys, how="left")
    frame = frame.with_columns(pl.col("click_ts").is_not_null().alias("clicked"))
    return frame.select(INTERACTION_COLUMNS).sort("ts", "event_id").to_pandas()


def items_from_landing(landing_root: Path, start: datetime, end: datetime) -> pd.DataFrame:
    """The item catalog events of ``[start, end)`` (the first hour holds the backlog)."""
    return landing_records(landing_root, Source.ITEMS, start, end).to_pandas()


def read_interactions(curated_root: Path, start: datetime, end: datetime) -> pd.DataFrame:
    """Curated ``interactions`` rows whose partition hour lies in ``[start, end)``.

    Args:
        curated_root: Root of the curated tables (``<root>/interactions/date=/hour=/domain=``).
        start: First hour (inclusive, UTC).
        end: End (exclusive).

    Raises:
        FileNotFoundError: No partition of the range exists.
    """
    base = Path(curated_root) / "interactions"
    files = [
        path
        for hour in _hours(start, end)
        for path in sorted(
            (base / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}").glob("domain=*/*.parquet")
        )
    ]
    if not files:
        raise FileNotFoundError(f"no curated interactions under {base} for [{start}, {end})")
    frames = []
    for path in files:
        frame = pl.read_parquet(path)
        if "domain" not in frame.columns:  # hive partition column, not stored in the file
            frame = frame.with_columns(pl.lit(path.parent.name.split("=", 1)[1]).alias("domain"))
        frames.append(frame)
    return pl.concat(frames, how="diagonal_relaxed").to_pandas()


def read_items(curated_root: Path, end: datetime | None = None) -> pd.DataFrame:
    """The curated item catalog as of ``end``: the latest row per ``item_id``.

    Args:
        curated_root: Root of the curated tables (``<root>/items/date=/hour=/domain=``).
        end: Only catalog events landed before this hour (None: all).

    Raises:
        FileNotFoundError: No curated items exist.
    """
    base = Path(curated_root) / Source.ITEMS
    files = []
    for path in sorted(base.glob("date=*/hour=*/domain=*/*.parquet")):
        hour = datetime.strptime(
            f"{path.parents[2].name[5:]}T{path.parents[1].name[5:]}", "%Y-%m-%dT%H"
        ).replace(tzinfo=UTC)
        if end is None or hour < end:
            files.append(path)
    if not files:
        raise FileNotFoundError(f"no curated items under {base}")
    frames = [
        pl.read_parquet(path).with_columns(
            pl.lit(path.parent.name.split("=", 1)[1]).alias("domain")
        )
        for path in files
    ]
    catalog = pl.concat(frames, how="diagonal_relaxed").sort("ts")
    return catalog.unique("item_id", keep="last", maintain_order=True).to_pandas()
