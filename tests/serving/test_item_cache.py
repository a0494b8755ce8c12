"""The item cache: encoded candidate rows reused for a TTL, refreshed after it, bounded."""

from __future__ import annotations

import time

import numpy as np
import pytest

from serving.item_cache import ItemCache, ItemRows
from serving.scoring import RequestEncoder


@pytest.fixture
def encoder(world) -> RequestEncoder:
    return RequestEncoder(world.featurizer)


def _rows(encoder: RequestEncoder, world, ids: list[str]) -> ItemRows:
    frame = world.catalog.set_index("item_id").reindex(ids).reset_index()
    return encoder.items(frame)


def _same(left: ItemRows, right: ItemRows) -> None:
    for name in ("item", "category", "creator", "item_dense"):
        np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)
    assert left.raw.tolist() == right.raw.tolist()


def test_stored_rows_come_back_in_date_until_the_ttl(encoder, world):
    cache = ItemCache(ttl_seconds=30.0, max_items=1000)
    ids = world.catalog["item_id"].head(6).tolist()
    rows = _rows(encoder, world, ids)
    cache.store(ids, rows, now_s=100.0)
    asked = [ids[4], "never-stored", ids[0], ids[4]]
    slots, fresh = cache.lookup(asked, now_s=129.0)
    assert fresh.tolist() == [True, False, True, True] and slots[1] == -1
    _same(cache.rows(slots[fresh]), rows.take(np.asarray([4, 0, 4])))
    slots, fresh = cache.lookup(asked, now_s=131.0)
    assert not fresh.any() and (slots[[0, 2, 3]] >= 0).all()  # stale, still there
    assert cache.hits == 3 and cache.misses == 5


def test_storing_again_refreshes_the_values_and_the_clock(encoder, world):
    cache = ItemCache(ttl_seconds=10.0, max_items=1000)
    ids = world.catalog["item_id"].head(3).tolist()
    cache.store(ids, _rows(encoder, world, ids), now_s=0.0)
    changed = world.catalog.set_index("item_id").reindex(ids).reset_index()
    number = next(c.name for c in encoder.featurizer.item_columns if not c.width)
    changed[number] = changed[number] + 1000.0
    newer = encoder.items(changed)
    cache.store(ids[1:2], newer.take(np.asarray([1])), now_s=50.0)
    slots, fresh = cache.lookup(ids, now_s=55.0)
    assert fresh.tolist() == [False, True, False] and len(cache) == 3
    _same(cache.rows(slots[1:2]), newer.take(np.asarray([1])))


def test_the_cache_grows_past_its_first_buffer_and_starts_over_at_its_bound(encoder, world):
    ids = world.catalog["item_id"].tolist()
    assert len(ids) > 40
    rows = _rows(encoder, world, ids)
    cache = ItemCache(ttl_seconds=5.0, max_items=len(ids) + 10)
    for start in range(0, len(ids), 7):
        chunk = np.arange(start, min(start + 7, len(ids)))
        cache.store([ids[i] for i in chunk], rows.take(chunk), now_s=1.0)
    slots, fresh = cache.lookup(ids, now_s=2.0)
    assert fresh.all()
    _same(cache.rows(slots), rows)
    within = ["x1", "x2", *ids[:20]]  # two new entries: still within the bound
    cache.store(within, _rows(encoder, world, within), 3.0)
    assert len(cache) == len(ids) + 2
    over = [f"y{n}" for n in range(9)] + ids[:20]
    cache.store(over, _rows(encoder, world, over), 4.0)
    assert len(cache) == 29  # over the bound: started over with the new rows only
    slots, fresh = cache.lookup(over, now_s=4.0)
    assert fresh.all()
    _same(cache.rows(slots[9:]), rows.take(np.arange(20)))


def test_a_zero_ttl_turns_the_cache_off(encoder, world):
    cache = ItemCache(ttl_seconds=0.0, max_items=1000)
    ids = world.catalog["item_id"].head(2).tolist()
    cache.store(ids, _rows(encoder, world, ids), now_s=0.0)
    slots, fresh = cache.lookup(ids, now_s=0.0)
    assert not fresh.any() and (slots == -1).all() and len(cache) == 0


def test_assembled_rows_equal_the_parts_concatenated_and_reordered(encoder, world):
    ids = world.catalog["item_id"].head(7).tolist()
    rows = _rows(encoder, world, ids)
    parts = [
        (np.asarray([5, 0, 3]), rows.take(np.asarray([5, 0, 3]))),
        (np.asarray([6, 1]), rows.take(np.asarray([6, 1]))),
        (np.asarray([2, 4]), rows.take(np.asarray([2, 4]))),
    ]
    _same(ItemRows.assemble(parts, 7), rows)
    whole = [(np.arange(7), rows)]
    assert ItemRows.assemble(whole, 7) is rows  # already in order: no copy
    _same(ItemRows.assemble([(np.arange(7)[::-1], rows)], 7), rows.take(np.arange(7)[::-1]))


def test_raw_values_are_the_frame_cells_and_none_for_absent_columns(encoder, world):
    frame = world.catalog.head(4).drop(columns=[encoder.featurizer.item_columns[0].name])
    rows = encoder.items(frame)
    for index, column in enumerate(encoder.featurizer.item_columns):
        want = frame[column.name].tolist() if column.name in frame else [None] * len(frame)
        assert rows.raw[:, index].tolist() == want, column.name


def test_every_index_build_stores_the_whole_catalogue(
    tmp_path, bundles, world, redis_server, helpers, monkeypatch
):
    import redis

    from feature_repo.config import FeaturesParams
    from feature_repo.tables import ITEM_STATS, feature_tables
    from serving.online_rows import write_rows
    from serving.schemas import RecommendRequest

    data_root = tmp_path / "data"
    svc = helpers.service_on(data_root, redis_server.url, world, bundles["first"])
    client = redis.Redis.from_url(redis_server.url)
    svc.start(background=False)
    try:
        state = svc.manager.state
        tokens = state.bundle.featurizer.items.tokens.tolist()
        assert len(state.items) == len(tokens)
        reads: list[list[str]] = []
        read_items = state.reader.read_items
        monkeypatch.setattr(
            state.reader, "read_items", lambda ids: reads.append(ids) or read_items(ids)
        )
        answer = svc.recommend(RecommendRequest(user_id="u4", k=3))
        assert sum(answer["candidates"].values()) > 0 and reads == []  # all from the cache

        catalog = world.catalog.copy()
        catalog["clicks_24h"] = catalog["clicks_24h"] + 500.0
        write_rows(
            client,
            helpers.feast.project,
            feature_tables(FeaturesParams())[ITEM_STATS],
            catalog,
            helpers.t0,
        )
        svc.manager.refresh_index()
        slots, fresh = state.items.lookup(tokens, now_s=time.time())
        assert fresh.all()
        want = state.encoder.items(catalog.set_index("item_id").reindex(tokens).reset_index())
        _same(state.items.rows(slots), want)
    finally:
        svc.stop()


def test_the_catalogue_leaves_items_the_store_lacks_to_the_request_path(encoder, world):
    from serving.reload import _catalog_into

    ids = world.catalog["item_id"].head(5).tolist()
    frame = world.catalog.set_index("item_id").reindex(ids).reset_index()
    frame["found"] = [True, False, True, True, False]
    cache = ItemCache(ttl_seconds=30.0, max_items=1000)
    _catalog_into(cache, encoder)(frame, 100.0)
    slots, fresh = cache.lookup(ids, now_s=101.0)
    assert fresh.tolist() == [True, False, True, True, False] and len(cache) == 3
    _same(cache.rows(slots[fresh]), encoder.items(frame[frame["found"]]))
