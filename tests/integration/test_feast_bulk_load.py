"""Bulk materialisation (:mod:`feature_repo.redis_load`) against ``feast materialize``.

The same offline tables (nulls, NaN, empty strings and arrays, long and non-ASCII strings,
negative integers, two rows of one entity at one event time told apart by the created time)
are loaded into two Feast projects on Redis DB 13, one by Feast and one in bulk, interval by
interval; every Redis hash must be equal byte for byte, and Feast's ``get_online_features``
must read the bulk-loaded rows as it reads its own. Keys are deleted after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_repo.config import FeaturesParams
from feature_repo.online import redis_client
from feature_repo.store import FeastParams, apply, materialize
from feature_repo.tables import USER_ID, Dtype, FeatureTable, feature_tables, partition_dir
from muma.settings import Settings

REDIS_URL = "redis://127.0.0.1:6379/13"
T0 = datetime(2026, 11, 1, 0, tzinfo=UTC)
PARAMS = FeaturesParams()
USERS = [f"u{i}" for i in range(30)] + ["ünï-user"]
ITEMS = [f"i{i}" for i in range(25)]

pytestmark = [
    pytest.mark.redis,
    pytest.mark.filterwarnings(
        "ignore::FutureWarning", "ignore::DeprecationWarning", "ignore::RuntimeWarning"
    ),
]

ARROW_TYPES = {
    Dtype.DOUBLE: pa.float64(),
    Dtype.FLOAT: pa.float32(),
    Dtype.BIGINT: pa.int64(),
    Dtype.STRING: pa.string(),
    Dtype.FLOAT_ARRAY: pa.list_(pa.float32()),
    Dtype.STRING_ARRAY: pa.list_(pa.string()),
    Dtype.BIGINT_ARRAY: pa.list_(pa.int64()),
}


def value(dtype: Dtype, hour: int, index: int, key: str) -> object:
    """A value with every awkward case somewhere: null, NaN, empty, long, negative."""
    if index % 7 == 3:
        return None
    if dtype is Dtype.DOUBLE:
        return float("nan") if index % 11 == 5 else (hour * 1000.0 + index) / 3 - index % 2
    if dtype is Dtype.FLOAT:
        return hour + index / 8
    if dtype is Dtype.BIGINT:
        return -(10**12) * index if index % 2 else hour * 1000 + index
    if dtype is Dtype.STRING:
        return ["", "ünïcode", "x" * 300, f"{key}-h{hour}"][index % 4]
    if dtype is Dtype.FLOAT_ARRAY:
        return [] if index % 5 == 1 else [hour / 3, index / 7, 0.5]
    if dtype is Dtype.STRING_ARRAY:
        return [] if index % 5 == 1 else [f"h{hour}", key, "ï" * (index % 3)]
    return [] if index % 5 == 1 else [hour, -index, 2**40]


def write_table(root: Path, table: FeatureTable, hour: int, keys: list[str], created: list) -> None:
    stamp = T0 + timedelta(hours=hour)
    stamp_type = pa.timestamp("us", tz="UTC")
    columns = {
        table.entity_key: pa.array(keys, pa.string()),
        table.timestamp_column: pa.array([stamp] * len(keys), stamp_type),
        table.created_column: pa.array(created, stamp_type),
    }
    for column in table.features:
        # A row created after its event time holds other values, so the winner shows.
        columns[column.name] = pa.array(
            [
                value(column.dtype, hour * 10 + (made > stamp), n, key)
                for n, (key, made) in enumerate(zip(keys, created, strict=True))
            ],
            ARROW_TYPES[column.dtype],
        )
    directory = partition_dir(root / PARAMS.features_dir, table.name, stamp)
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), directory / f"part-{uuid.uuid4().hex[:6]}.parquet")


def write_tables(root: Path) -> None:
    """Hour 1: everyone. Hour 2: every third entity, the first one twice (later created
    wins). Hour 3: a few entities (loaded in a second interval)."""
    for table in feature_tables(PARAMS).values():
        ids = USERS if table.entity_key == USER_ID else ITEMS
        for hour, keys in ((1, ids), (2, ids[::3]), (3, ids[1:5])):
            stamp = T0 + timedelta(hours=hour)
            created = [stamp] * len(keys)
            if hour == 2:
                keys = [*keys, keys[0]]
                created = [*created, stamp + timedelta(minutes=5)]
            write_table(root, table, hour, keys, created)


class Loaded:
    """The same tables in two projects: one loaded by Feast, one in bulk."""

    def __init__(self, root: Path) -> None:
        write_tables(root)
        self.settings = Settings(data_root=root, redis_url=REDIS_URL)
        tag = uuid.uuid4().hex[:6]
        self.feast = FeastParams(
            project=f"muma_feast_{tag}", redis_key_ttl_seconds=86_400, materialize_engine="feast"
        )
        self.bulk = self.feast.model_copy(
            update={"project": f"muma_bulk_{tag}", "materialize_engine": "redis_bulk"}
        )
        self.stores = {}
        for params in (self.feast, self.bulk):
            self.stores[params.project] = apply(self.settings, PARAMS, params)
            # Newest interval first: the older one must not overwrite it.
            for start, end in ((2, 3), (0, 2)):
                materialize(
                    self.settings,
                    T0 + timedelta(hours=start),
                    T0 + timedelta(hours=end),
                    PARAMS,
                    params,
                )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    state = Loaded(tmp_path_factory.mktemp("bulk-load"))
    yield state
    client = redis_client(REDIS_URL)
    for project in (state.feast.project, state.bulk.project):
        keys = list(client.scan_iter(match=b"*" + project.encode(), count=1000))
        if keys:
            client.delete(*keys)


def test_every_hash_is_byte_for_byte_what_feast_writes(loaded: Loaded) -> None:
    client = redis_client(REDIS_URL)
    theirs_suffix, ours_suffix = loaded.feast.project.encode(), loaded.bulk.project.encode()
    theirs = sorted(client.scan_iter(match=b"*" + theirs_suffix, count=1000))
    ours = sorted(client.scan_iter(match=b"*" + ours_suffix, count=1000))
    # A user is two keys: the batch features (user_id) and the sequence (seq_user_id).
    assert len(theirs) == 2 * len(USERS) + len(ITEMS) == len(ours)
    assert sum(b"seq_user_id" in key for key in ours) == len(USERS)
    for key in theirs:
        twin = key[: -len(theirs_suffix)] + ours_suffix
        assert client.hgetall(twin) == client.hgetall(key), key
        assert 0 < client.ttl(twin) <= 86_400


def test_feast_reads_the_bulk_rows_as_its_own(loaded: Loaded) -> None:
    tables = feature_tables(PARAMS)
    for table in tables.values():
        ids = USERS if table.entity_key == USER_ID else ITEMS
        refs = [f"{table.name}:{name}" for name in table.view_feature_names]
        rows = [{table.join_key: key} for key in [*ids, "missing"]]
        answers = [
            store.get_online_features(features=refs, entity_rows=rows).to_dict()
            for store in loaded.stores.values()
        ]
        assert repr(answers[0]) == repr(answers[1]), table.name


def test_the_interval_is_recorded_in_the_registry(loaded: Loaded) -> None:
    store = loaded.stores[loaded.bulk.project]
    view = store.get_feature_view(next(iter(feature_tables(PARAMS))))
    ends = sorted(interval[1] for interval in view.materialization_intervals)
    assert ends[-1] == T0 + timedelta(hours=3)


def test_latest_rows_reads_naive_utc_timestamps_and_breaks_ties_by_created_time(
    tmp_path: Path,
) -> None:
    from feature_repo.redis_load import latest_rows

    naive = [datetime(2026, 11, 1, h) for h in (1, 2, 2, 5)]
    created = [datetime(2026, 11, 1, 1), datetime(2026, 11, 1, 3), datetime(2026, 11, 1, 2)]
    pq.write_table(
        pa.table(
            {
                "user_id": ["a", "a", "a", "a"],
                "event_timestamp": pa.array(naive, pa.timestamp("us")),
                "created_timestamp": pa.array([*created, naive[3]], pa.timestamp("us")),
                "x": [1.0, 2.0, 3.0, 4.0],
            }
        ),
        tmp_path / "part.parquet",
    )
    rows, stamped = latest_rows(
        tmp_path,
        "user_id",
        ["x"],
        T0,
        T0 + timedelta(hours=4),
        "event_timestamp",
        "created_timestamp",
    )
    assert stamped == 3
    assert rows.column("x").to_pylist() == [2.0]
