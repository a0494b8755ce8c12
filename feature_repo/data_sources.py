"""Feast data sources: one Parquet ``FileSource`` per offline table, a ``PushSource`` for real time.

Paths are relative: Feast resolves a relative ``FileSource`` path (and the registry and SQLite
paths) against ``RepoConfig.repo_path``, which :func:`feature_repo.store.repo_config` sets to
``Settings.data_root``. The registry therefore stays valid when the data root moves.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .tables import FeatureTable, table_dir

if TYPE_CHECKING:
    from feast import FileSource, PushSource
    from feast.data_source import DataSource

REALTIME_PUSH_SOURCE = "user_realtime_source"
"""Name of the push source the real-time path writes through (``FeatureStore.push``)."""


def source_name(table: str) -> str:
    """``<table>_source``: the data source of an offline table."""
    return f"{table}_source"


def file_source(table: FeatureTable, features_dir: Path) -> FileSource:
    """The Parquet source of ``table`` under ``<data_root>/<features_dir>/<table>``.

    A table whose Feast join key differs from its key column (``FeatureTable.feast_key``)
    maps the column to it (``field_mapping``), so the files keep the column Spark writes.

    Args:
        table: Declaration from :mod:`feature_repo.tables`.
        features_dir: Offline tables' directory relative to the data root.
    """
    from feast import FileSource
    from feast.data_format import ParquetFormat

    return FileSource(
        name=source_name(table.name),
        path=str(table_dir(features_dir, table.name)),
        file_format=ParquetFormat(),
        timestamp_field=table.timestamp_column,
        created_timestamp_column=table.created_column,
        field_mapping={table.entity_key: table.feast_key} if table.feast_key else None,
        description=table.doc,
    )


def source_column(source: DataSource | None, name: str) -> str:
    """The file column a Feast source reads for the view field ``name`` (its field mapping
    undone)."""
    mapping = (source.field_mapping if source is not None else None) or {}
    return {field: column for column, field in mapping.items()}.get(name, name)


def realtime_push_source(table: FeatureTable, features_dir: Path) -> PushSource:
    """The push source of the real-time user features.

    Feast requires a batch source behind every push source; it points at the table's
    directory, where nothing is written yet (the real-time rows live only online).
    """
    from feast import PushSource

    return PushSource(
        name=REALTIME_PUSH_SOURCE,
        batch_source=file_source(table, features_dir),
        description="click and view events folded into per-user decayed counters",
    )
