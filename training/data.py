"""Training data: labelled impressions from the curated tables, split by time, with point-in-time
features from the feature store.

The split is by hour, never at random: the window's last ``test_hours`` are the test set, the
``valid_hours`` before them are for early stopping and calibration, and every earlier hour is
for training. Features come from Feast's ``get_historical_features`` (through
:func:`feature_repo.store.training_set`), so a row only sees feature snapshots stamped at or
before its impression. The graph and the vocabularies are built from the training window only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from muma.contract import EdgeAction, Source

from .config import SplitParams

if TYPE_CHECKING:
    import pandas as pd

    from feature_repo.config import FeaturesParams
    from feature_repo.store import FeastParams
    from muma.settings import Settings

LABEL_COLUMNS = (
    "event_id",
    "ts",
    "request_id",
    "user_id",
    "item_id",
    "domain",
    "position",
    "propensity",
    "policy",
    "clicked",
    "dwell_ms",
)
"""Columns of a labelled impression (a subset of the curated ``interactions`` table)."""


class TrainingDataError(ValueError):
    """The curated data cannot make a training set (empty window, missing column, ...)."""


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open hour range ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / timedelta(hours=1))

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


@dataclass(frozen=True, slots=True)
class TimeSplit:
    """Train, validation and test windows, in this order and adjacent."""

    train: Window
    valid: Window
    test: Window

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {name: getattr(self, name).as_dict() for name in ("train", "valid", "test")}


def _parse(value: str | None) -> datetime | None:
    if value is None:
        return None
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise TrainingDataError(f"split time {value!r} needs an offset (e.g. Z)")
    return stamp.astimezone(UTC)


def curated_hours(curated_root: Path) -> list[datetime]:
    """Start hours of the curated ``interactions`` partitions, sorted."""
    from muma.landing import partition_hours

    return partition_hours(Path(curated_root), "interactions")


def time_split(curated_root: Path, params: SplitParams) -> TimeSplit:
    """The train/valid/test windows for ``params`` over the curated interactions.

    Raises:
        TrainingDataError: No curated interactions, or too few hours for three windows.
    """
    hours = curated_hours(curated_root)
    start = _parse(params.start) or (hours[0] if hours else None)
    end = _parse(params.end) or (hours[-1] + timedelta(hours=1) if hours else None)
    if start is None or end is None:
        raise TrainingDataError(
            f"no curated interactions under {curated_root}/interactions: run `muma ingest` first"
        )
    test_start = end - timedelta(hours=params.test_hours)
    valid_start = test_start - timedelta(hours=params.valid_hours)
    if valid_start <= start:
        raise TrainingDataError(
            f"the window [{start:%Y-%m-%dT%H}, {end:%Y-%m-%dT%H}) has "
            f"{int((end - start) / timedelta(hours=1))} hours; it needs more than "
            f"valid_hours + test_hours = {params.valid_hours + params.test_hours} "
            "so that some hours are left for training"
        )
    return TimeSplit(
        Window(start, valid_start), Window(valid_start, test_start), Window(test_start, end)
    )


def labelled_impressions(curated_root: Path, window: Window) -> pd.DataFrame:
    """One row per impression of ``window`` with its label, dwell, position and propensity.

    Raises:
        TrainingDataError: No rows in the window, or a required column is missing.
    """
    from monitoring.inputs import read_interactions

    try:
        frame = read_interactions(Path(curated_root), window.start, window.end)
    except FileNotFoundError as error:
        raise TrainingDataError(str(error)) from None
    missing = sorted(set(LABEL_COLUMNS) - set(frame.columns))
    if missing:
        raise TrainingDataError(f"curated interactions lack columns {missing}")
    frame = frame.loc[:, list(LABEL_COLUMNS)]
    if frame.empty:
        raise TrainingDataError(
            f"no impressions in [{window.start:%Y-%m-%dT%H}, {window.end:%Y-%m-%dT%H})"
        )
    frame["clicked"] = frame["clicked"].astype("bool")
    frame["ts"] = frame["ts"].dt.tz_convert(UTC)
    return frame.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)


def with_features(
    settings: Settings,
    impressions: pd.DataFrame,
    feature_service: str,
    features: FeaturesParams,
    feast: FeastParams,
    engine: str = "polars",
) -> pd.DataFrame:
    """``impressions`` plus the service's point-in-time features.

    Args:
        engine: ``feast`` asks Feast's offline store (``get_historical_features``);
            ``polars`` runs the same join on the same files about 100x faster (the parity is
            tested in tests/integration/test_feast_pipeline.py).
    """
    # Item views also carry ``domain``; the impression's own value wins (it is never null).
    domain = impressions["domain"].to_numpy()
    rows = impressions.drop(columns=["domain"])
    if engine == "feast":
        from feature_repo.store import training_set

        frame = training_set(settings, rows, feature_service, feast, timestamp_column="ts")
        frame = frame.rename(columns={"event_timestamp": "ts"})
    else:
        from feature_repo.pit import point_in_time_features, service_tables
        from feature_repo.tables import feature_tables

        try:
            tables = service_tables(feature_service, feature_tables(features))
        except ValueError as error:
            raise TrainingDataError(str(error)) from None
        frame = point_in_time_features(
            Path(settings.data_root) / features.features_dir,
            rows,
            tables,
            timedelta(hours=feast.ttl_hours),
        )
    return frame.assign(domain=domain)


def item_catalog(curated_root: Path, end: datetime | None) -> pd.DataFrame:
    """Latest ``item_id, domain, category, creator_id`` per item landed before ``end``."""
    from monitoring.inputs import read_items

    try:
        catalog = read_items(Path(curated_root), end)
    except FileNotFoundError as error:
        raise TrainingDataError(str(error)) from None
    return catalog.loc[:, ["item_id", "domain", "category", "creator_id", "ts"]]


def friendships(curated_root: Path, end: datetime) -> pd.DataFrame:
    """Undirected ``user_id, friend_id`` pairs alive at ``end`` (edges added minus removed).

    Every relation kind (friend, family, follow) counts as a social link.
    """
    import pandas as pd
    import polars as pl

    from muma.landing import partition_hour

    base = Path(curated_root) / Source.SOCIAL_EDGES
    files = [
        path
        for path in sorted(base.glob("date=*/hour=*/**/*.parquet"))
        if partition_hour(path) < end
    ]
    if not files:
        return pd.DataFrame({"user_id": pd.Series(dtype=str), "friend_id": pd.Series(dtype=str)})
    edges = pl.concat(
        [pl.read_parquet(path, columns=["ts", "user_id", "friend_id", "action"]) for path in files],
        how="vertical_relaxed",
    )
    low = pl.min_horizontal("user_id", "friend_id")
    high = pl.max_horizontal("user_id", "friend_id")
    latest = (
        edges.with_columns(low.alias("a"), high.alias("b"))
        .sort("ts")
        .group_by("a", "b")
        .agg(pl.col("action").last())
        .filter(pl.col("action") == EdgeAction.ADDED.value)
    )
    return latest.select(pl.col("a").alias("user_id"), pl.col("b").alias("friend_id")).to_pandas()
