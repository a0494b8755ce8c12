"""The Feast store of MUMA: configuration, ``apply``, materialisation and training sets.

Every function takes the :class:`~muma.settings.Settings` read at the edge plus the typed
``features`` (:class:`~feature_repo.config.FeaturesParams`) and ``feast``
(:class:`FeastParams`) sections of params.yaml; none reads the environment.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field

from .config import FeaturesParams
from .tables import EVENT_TIMESTAMP, ITEM_ID, USER_ID, feature_tables

if TYPE_CHECKING:
    import pandas as pd
    from feast import FeatureStore
    from feast.repo_config import RepoConfig

    from muma.settings import Settings

FEATURE_STORE_YAML = Path(__file__).with_name("feature_store.yaml")


class FeastParams(BaseModel):
    """The ``feast`` section of params.yaml.

    Attributes:
        project: Feast project (also the suffix of every Redis key Feast writes).
        ttl_hours: How far back a batch row may be served or joined (the feature tables
            write a row per entity at least once per UTC day).
        realtime_half_life_hours: Half-life of the real-time counters.
        realtime_ttl_hours: How long a real-time row stays servable.
        redis_key_ttl_seconds: Expiry of Redis entity keys (``None``: no expiry).
        materialize_engine: ``redis_bulk`` (:mod:`feature_repo.redis_load`: the bytes
            ``feast materialize`` writes, written in bulk, about 20x faster here) or ``feast``
            (``FeatureStore.materialize``). The bulk engine applies to the Redis online store
            only; with SQLite, Feast's runs whatever this says.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str = Field(default="muma", pattern=r"^[A-Za-z0-9][A-Za-z0-9_]*$")
    ttl_hours: float = Field(default=24.0, gt=0)
    realtime_half_life_hours: float = Field(default=1.0, gt=0)
    realtime_ttl_hours: float = Field(default=24.0, gt=0)
    redis_key_ttl_seconds: int | None = Field(default=None, gt=0)
    materialize_engine: Literal["feast", "redis_bulk"] = "redis_bulk"


def redis_connection_string(url: str) -> str:
    """Feast's ``host:port,db=N,password=...`` form of a ``redis://`` URL.

    Raises:
        ValueError: Not a ``redis://``/``rediss://`` URL with a host, or a bad DB number.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ValueError(f"not a redis://host:port[/db] URL: {url!r}")
    parts = [f"{parsed.hostname}:{parsed.port or 6379}"]
    db = parsed.path.lstrip("/")
    if db:
        if not db.isdigit():
            raise ValueError(f"Redis DB must be a number, got {db!r} in {url!r}")
        parts.append(f"db={int(db)}")
    if parsed.username:
        parts.append(f"username={unquote(parsed.username)}")
    if parsed.password:
        parts.append(f"password={unquote(parsed.password)}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


def repo_config(
    settings: Settings, feast: FeastParams | None = None, yaml_path: Path = FEATURE_STORE_YAML
) -> RepoConfig:
    """The effective Feast configuration: ``feature_store.yaml`` with MUMA's settings applied.

    The YAML is read the way Feast reads it (``os.path.expandvars``, strict validation); then
    the project comes from ``feast``, relative paths resolve against ``settings.data_root``,
    and ``settings.redis_url``, when set, replaces the SQLite online store with Redis.
    """
    from feast.repo_config import RepoConfig

    feast = feast or FeastParams()
    with open(yaml_path, encoding="utf-8") as handle:
        raw: dict[str, Any] = yaml.safe_load(os.path.expandvars(handle.read()))
    raw["project"] = feast.project
    if settings.redis_url:
        online: dict[str, Any] = {
            "type": "redis",
            "connection_string": redis_connection_string(settings.redis_url),
        }
        if feast.redis_key_ttl_seconds:
            online["key_ttl_seconds"] = feast.redis_key_ttl_seconds
        raw["online_store"] = online
    config = RepoConfig(**raw)
    config.repo_path = Path(settings.data_root).resolve()
    return config


def get_store(settings: Settings, feast: FeastParams | None = None) -> FeatureStore:
    """A ``FeatureStore`` for the settings (SQLite by default, Redis with a Redis URL)."""
    from feast import FeatureStore

    config = repo_config(settings, feast)
    (config.repo_path / "feast").mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(config.repo_path), config=config)


@dataclass(frozen=True)
class RepoObjects:
    """Every Feast object of the repository, as :func:`repo_objects` builds them."""

    entities: list
    views: dict
    realtime: Any
    decayed: Any
    services: list

    def all(self) -> list:
        return [
            *self.entities,
            *self.views.values(),
            self.realtime,
            self.decayed,
            *self.services,
        ]


def repo_objects(features: FeaturesParams, feast: FeastParams) -> RepoObjects:
    """Build entities, sources, views and services from the two params sections."""
    from .entities import item_entity, sequence_owner_entity, user_entity
    from .feature_services import feature_services
    from .features import batch_views, realtime_view, request_decay_view

    users, items, owners = user_entity(), item_entity(), sequence_owner_entity()
    views = batch_views(features, users, items, owners, timedelta(hours=feast.ttl_hours))
    realtime = realtime_view(
        features, users, timedelta(hours=feast.realtime_ttl_hours), feast.realtime_half_life_hours
    )
    decayed = request_decay_view(realtime, feast.realtime_half_life_hours)
    return RepoObjects(
        entities=[users, items, owners],
        views=views,
        realtime=realtime,
        decayed=decayed,
        services=feature_services(views, realtime, decayed),
    )


def apply(
    settings: Settings,
    features: FeaturesParams | None = None,
    feast: FeastParams | None = None,
) -> FeatureStore:
    """``feast apply``: register every object and create the online tables; returns the store."""
    feast = feast or FeastParams()
    store = get_store(settings, feast)
    store.apply(repo_objects(features or FeaturesParams(), feast).all())
    return store


@dataclass(frozen=True)
class MaterializeResult:
    """One materialisation run.

    Attributes:
        start: Interval start (inclusive).
        end: Interval end.
        views: Views materialised.
        rows: Offline rows with an event timestamp in the interval (what was loaded).
        seconds: Wall time.
    """

    start: datetime
    end: datetime
    views: tuple[str, ...]
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _rows_in_interval(
    data_root: Path, features: FeaturesParams, table: str, start: datetime, end: datetime
) -> int:
    import pyarrow.dataset as ds

    path = Path(data_root) / features.features_dir / table
    if not path.exists():
        return 0
    dataset = ds.dataset(str(path), format="parquet", partitioning="hive")
    column = ds.field(EVENT_TIMESTAMP)
    return dataset.count_rows(filter=(column >= start) & (column <= end))


def materialize(
    settings: Settings,
    start: datetime,
    end: datetime,
    features: FeaturesParams | None = None,
    feast: FeastParams | None = None,
    views: list[str] | None = None,
) -> MaterializeResult:
    """Load the offline rows stamped in ``[start, end]`` into the online store.

    Meant to run once per data interval (an Airflow task or DVC stage per hour or day):
    Feast keeps, for each key, the latest row, so intervals may be loaded in any order.
    With ``feast.materialize_engine == "redis_bulk"`` and a Redis online store the rows are
    written by :func:`feature_repo.redis_load.bulk_materialize` (the same bytes, in bulk).

    Args:
        settings: Runtime settings (data root, Redis URL).
        start: Interval start, timezone-aware.
        end: Interval end, timezone-aware, after ``start``.
        features: The ``features`` section (table names).
        feast: The ``feast`` section.
        views: Batch views to load (default: every offline table).

    Raises:
        ValueError: Naive or empty interval, or an unknown view.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end <= start:
        raise ValueError(f"empty interval: {start} .. {end}")
    features = features or FeaturesParams()
    names = list(views or feature_tables(features))
    unknown = set(names) - set(feature_tables(features))
    if unknown:
        raise ValueError(f"unknown batch views {sorted(unknown)}")
    feast = feast or FeastParams()
    store = get_store(settings, feast)
    began = time.perf_counter()
    if feast.materialize_engine == "redis_bulk" and settings.redis_url:
        from .online import redis_client
        from .redis_load import bulk_materialize

        client = redis_client(settings.redis_url)
        try:
            bulk_materialize(store, client, names, start, end, feast.redis_key_ttl_seconds)
        finally:
            client.close()
    else:
        store.materialize(start.astimezone(UTC), end.astimezone(UTC), feature_views=names)
    seconds = time.perf_counter() - began
    rows = sum(_rows_in_interval(settings.data_root, features, n, start, end) for n in names)
    return MaterializeResult(start, end, tuple(names), rows, seconds)


def _offline_keys(store: FeatureStore, view: Any, join_key: str) -> set:
    """Every entity key present in a view's Parquet source (``join_key``: the view's)."""
    import pyarrow.dataset as ds

    from .data_sources import source_column

    path = Path(view.batch_source.path)
    if not path.is_absolute():
        path = Path(store.config.repo_path) / path
    if not path.exists():
        return set()
    column = source_column(view.batch_source, join_key)
    table = ds.dataset(str(path), format="parquet", partitioning="hive").to_table([column])
    return set(table[column].unique().to_pylist())


def training_set(
    settings: Settings,
    labelled_impressions: pd.DataFrame,
    feature_service: str,
    feast: FeastParams | None = None,
    timestamp_column: str = "ts",
) -> pd.DataFrame:
    """Point-in-time correct features for labelled impressions (``get_historical_features``).

    Each impression row gets, per view, the latest feature row stamped at or before the
    impression's time and within the view's TTL; since a row stamped ``T`` only uses events
    before ``T``, nothing from after the impression leaks in.

    Feast's file (Dask) offline store deduplicates its output on the first view's join key and
    the timestamp, which collapses a slate (one user, several items, one time) to one row, and
    drops an entity row whose entity has feature rows but none inside the TTL window. So each
    view is retrieved alone for the distinct ``(key, time)`` pairs and joined back
    onto every impression here, which keeps every impression, in order. It also fails to sort
    when a partition's feature timestamps are all null, so only entities with offline rows are
    sent to it. A view the service maps to another key column (the sequence: ``seq_user_id``
    read from ``user_id``) is asked with that column renamed to its join key.

    Args:
        settings: Runtime settings.
        labelled_impressions: One row per impression with ``user_id``, ``item_id``, the
            impression time in ``timestamp_column`` (aware) and any label columns, which are
            passed through.
        feature_service: Name of a service in the registry (e.g. ``ranker_v1``); it must hold
            batch views only (request-time views exist at serving time only).
        feast: The ``feast`` section.
        timestamp_column: Column holding the impression time.

    Returns:
        The impressions (time column renamed ``event_timestamp``, UTC) with one column per
        feature, in the input row order; features are null where no row is in the window.

    Raises:
        ValueError: Missing columns, naive times, an unknown or request-time feature service,
            or an impression column named like a feature.
    """
    import pandas as pd

    missing = {USER_ID, ITEM_ID, timestamp_column} - set(labelled_impressions.columns)
    if missing:
        raise ValueError(f"labelled impressions lack columns {sorted(missing)}")
    impressions = labelled_impressions.rename(columns={timestamp_column: EVENT_TIMESTAMP})
    stamps = impressions[EVENT_TIMESTAMP]
    if not isinstance(stamps.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"{timestamp_column} must be timezone-aware timestamps")
    impressions = impressions.assign(
        **{EVENT_TIMESTAMP: stamps.dt.tz_convert(UTC).astype("datetime64[ns, UTC]")}
    ).reset_index(drop=True)
    store = get_store(settings, feast)
    try:
        service = store.get_feature_service(feature_service)
    except Exception as error:
        raise ValueError(f"unknown feature service {feature_service!r}: {error}") from None
    on_demand = {view.name for view in store.list_on_demand_feature_views()}
    views = []
    for projection in service.feature_view_projections:
        if projection.name in on_demand:
            raise ValueError(
                f"{feature_service!r} holds the request-time view {projection.name!r}; "
                "training sets take batch views only"
            )
        view = store.get_feature_view(projection.name)
        refs = [f"{projection.name}:{feature.name}" for feature in projection.features]
        (join_key,) = view.join_keys
        views.append((view, refs, join_key, projection.join_key_map.get(join_key, join_key)))
    names = {ref.split(":", 1)[1] for _, refs, _, _ in views for ref in refs}
    keys_used = {column for *_, column in views}
    clashes = sorted(names & (set(impressions.columns) - keys_used - {EVENT_TIMESTAMP}))
    if clashes:
        raise ValueError(f"impression columns {clashes} clash with feature names; drop them")
    absent = sorted(keys_used - set(impressions.columns))
    if absent:
        raise ValueError(f"labelled impressions lack columns {absent}")
    result = impressions
    for view, refs, join_key, column in views:
        # Only entities with offline rows: Feast's Dask store fails to sort an all-null
        # timestamp partition, which the others' rows would make. They get nulls below.
        known = _offline_keys(store, view, join_key)
        keys = impressions.loc[impressions[column].isin(known), [column, EVENT_TIMESTAMP]]
        keys = keys.drop_duplicates(ignore_index=True).rename(columns={column: join_key})
        if keys.empty:
            result = result.assign(**{ref.split(":", 1)[1]: None for ref in refs})
            continue
        found = store.get_historical_features(entity_df=keys, features=refs).to_df()
        found = found.rename(columns={join_key: column})
        found[EVENT_TIMESTAMP] = pd.to_datetime(found[EVENT_TIMESTAMP], utc=True).astype(
            "datetime64[ns, UTC]"
        )
        result = result.merge(found, on=[column, EVENT_TIMESTAMP], how="left", validate="m:1")
    return result
