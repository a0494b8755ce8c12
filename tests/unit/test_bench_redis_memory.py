"""The Redis-memory benchmark's helpers: the build's interval and the size summary."""

from datetime import UTC, datetime

import pytest

from bench.bench_redis_memory import build_interval, distribution, keys_by_entity, user_sizes
from feature_repo.online import entity_key_prefix, redis_key


def test_build_interval_spans_every_table(tmp_path):
    for table, day, hour in [
        ("a", "2026-11-01", "03"),
        ("a", "2026-11-02", "00"),
        ("b", "2026-11-02", "05"),
    ]:
        (tmp_path / table / f"date={day}" / f"hour={hour}").mkdir(parents=True)
    (tmp_path / "b" / "date=2026-11-09").mkdir()  # no hour: not a partition
    start, end = build_interval(tmp_path)
    assert start == datetime(2026, 11, 1, 3, tzinfo=UTC)
    assert end == datetime(2026, 11, 2, 6, tzinfo=UTC)


def test_build_interval_without_partitions_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="muma features build"):
        build_interval(tmp_path)


def test_distribution_by_hand():
    summary = distribution([1000, 2000, 3000, 4000])
    assert summary["entities"] == 4
    assert summary["median"] == 2500
    assert summary["mean"] == 2500
    assert summary["max"] == 4000
    assert summary["share_over_2kb"] == 0.5  # 3000 and 4000 are over 2,048
    assert distribution([]) == {"entities": 0}


def test_keys_by_entity_tells_the_batch_hash_from_the_sequence_key():
    """``seq_user_id`` contains ``user_id``: keys are told apart by their whole prefix."""
    users, sequences = entity_key_prefix("user_id"), entity_key_prefix("seq_user_id")
    keys = [
        redis_key(users, "u1", b"muma"),
        redis_key(sequences, "u1", b"muma"),
        redis_key(users, "ünï", b"muma"),
        redis_key(entity_key_prefix("item_id"), "i1", b"muma"),
    ]
    assert keys_by_entity(keys, users) == {"u1": keys[0], "ünï": keys[2]}
    assert keys_by_entity(keys, sequences) == {"u1": keys[1]}


def test_user_sizes_add_both_keys_per_user():
    sizes = user_sizes({"a": 1000, "b": 1500}, {"b": 700})
    assert sizes["batch"]["max"] == 1500
    assert sizes["sequence"]["entities"] == 1
    assert sizes["total"]["entities"] == 2
    assert sizes["total"]["max"] == 2200  # b: 1500 + 700; a has no sequence key
    assert sizes["total"]["share_over_2kb"] == 0.5
