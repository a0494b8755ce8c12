"""Redis bytes per user and per item on a real feature build (issue 4: < 2 KB per user).

:mod:`bench.bench_features` measures synthetic rows in which every user has a full 50-item
behaviour sequence of random ids: the worst case. This measures what ``muma features build``
wrote under a data root (by default the simulator's, ``data``): every batch view of the
build's whole interval is materialised into a private ``redis-server`` on Redis' defaults
(the project's bulk engine, the bytes ``feast materialize`` writes), and each key's
``MEMORY USAGE`` is read; then the same keys are copied with DUMP/RESTORE into a second
private server with ``hash-max-listpack-value 1024`` and read again. Redis keeps a hash as a
compact listpack only while every value is at most ``hash-max-listpack-value`` bytes (64 by
default). A user is two keys: the batch-features hash (``user_id``: stats, social, gaze)
and the behaviour sequence (``seq_user_id``), whose arrays pass 64 bytes after a handful of
clicks; each is reported alone, and their sum per user. A build materialised by code from
before the split has no sequence keys: its user hash holds every view.

Usage: ``python -m bench.bench_redis_memory [--data-root DIR] [--save]``.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from bench.common import conditions, save
from muma.testing.redis_server import PrivateRedisServer

LISTPACK_VALUE_BYTES = 1024
"""``hash-max-listpack-value`` of the second measurement (Redis' default is 64)."""
TARGET_BYTES = 2048
"""Issue 4: a user's batch features under 2 KB."""
SEQUENCE_KEY = "seq_user_id"
"""Join key of the sequence's own key (:data:`feature_repo.tables.SEQUENCE_USER_ID`; spelt
out so that a checkout from before the split measures the same way)."""
_PARTITION = re.compile(r"date=(\d{4}-\d{2}-\d{2})/hour=(\d{2})$")
_LENGTH = struct.Struct("<II")


def build_interval(features_root: Path) -> tuple[datetime, datetime]:
    """First snapshot hour and one hour past the last, over every offline feature table.

    Raises:
        FileNotFoundError: No ``<table>/date=/hour=`` partition under ``features_root``.
    """
    hours = [
        datetime.fromisoformat(f"{match[1]}T{match[2]}:00:00+00:00")
        for path in features_root.glob("*/date=*/hour=*")
        if (match := _PARTITION.search(path.as_posix()))
    ]
    if not hours:
        raise FileNotFoundError(
            f"no offline feature partitions under {features_root}: run `muma features build`"
        )
    return min(hours), max(hours) + timedelta(hours=1)


def distribution(sizes: list[int]) -> dict:
    """Summary of per-key byte counts: entities, median, mean, p90, p99, max, share > 2 KB."""
    values = np.asarray(sizes, dtype=np.float64)
    if values.size == 0:
        return {"entities": 0}
    return {
        "entities": int(values.size),
        "median": round(float(np.median(values))),
        "mean": round(float(values.mean())),
        "p90": round(float(np.percentile(values, 90))),
        "p99": round(float(np.percentile(values, 99))),
        "max": round(float(values.max())),
        "share_over_2kb": round(float((values > TARGET_BYTES).mean()), 4),
    }


def keys_by_entity(keys: list[bytes], prefix: bytes) -> dict[str, bytes]:
    """The keys of one string join key (its :func:`feature_repo.online.entity_key_prefix`),
    by entity value."""
    out = {}
    for key in keys:
        if key.startswith(prefix):
            _, length = _LENGTH.unpack_from(key, len(prefix))
            start = len(prefix) + _LENGTH.size
            out[key[start : start + length].decode("utf-8")] = key
    return out


def user_sizes(batch: dict[str, int], sequence: dict[str, int]) -> dict:
    """Distributions of the batch hash, the sequence key and their sum per user.

    Args:
        batch: ``MEMORY USAGE`` of each user's batch-features hash, by user id.
        sequence: The same of each user's sequence key (users without one count 0).
    """
    users = sorted(set(batch) | set(sequence))
    return {
        "batch": distribution(list(batch.values())),
        "sequence": distribution(list(sequence.values())),
        "total": distribution([batch.get(u, 0) + sequence.get(u, 0) for u in users]),
    }


def measure(data_root: Path) -> dict:
    """Materialise ``data_root``'s offline features into private servers; bytes per entity."""
    from feature_repo.config import FeaturesParams
    from feature_repo.online import entity_key_prefix, redis_client
    from feature_repo.store import FeastParams, apply, materialize
    from feature_repo.tables import ITEM_ID, USER_ID
    from muma.params import load_section
    from muma.settings import Settings

    params_path = Settings().params_path
    features = load_section(params_path, "features", FeaturesParams)
    start, end = build_interval(data_root / features.features_dir)
    # The project of params.yaml, so keys are as long as in production; the servers are
    # private, and ``apply`` of an unchanged repository changes nothing in the registry.
    feast = load_section(params_path, "feast", FeastParams)
    with PrivateRedisServer() as server:
        client = redis_client(server.url)
        settings = Settings(data_root=data_root, redis_url=server.url)
        apply(settings, features, feast)
        loaded = materialize(settings, start, end, features, feast)
        keys = list(client.scan_iter(count=5000))
        users = keys_by_entity(keys, entity_key_prefix(USER_ID))
        sequences = keys_by_entity(keys, entity_key_prefix(SEQUENCE_KEY))
        items = list(keys_by_entity(keys, entity_key_prefix(ITEM_ID)).values())

        def usage(server, entity_keys: dict[str, bytes]) -> dict[str, int]:
            return {e: server.memory_usage(k, samples=0) for e, k in entity_keys.items()}

        def encodings(entity_keys: dict[str, bytes]) -> dict[str, int]:
            found = Counter(client.object("encoding", k).decode() for k in entity_keys.values())
            return dict(found)

        default = user_sizes(usage(client, users), usage(client, sequences))
        default_items = [client.memory_usage(key, samples=0) for key in items]
        config = {"hash-max-listpack-value": LISTPACK_VALUE_BYTES}
        with PrivateRedisServer(config=config) as listpack_server:
            listpack = redis_client(listpack_server.url)
            for key in [*users.values(), *sequences.values()]:
                listpack.restore(key, 0, client.dump(key), replace=True)
            with_listpack = user_sizes(usage(listpack, users), usage(listpack, sequences))
            listpack.close()
        result = {
            **conditions(),
            "data_root": str(data_root),
            "interval": [start.isoformat(), end.isoformat()],
            "rows_materialised": loaded.rows,
            "user_encodings_default": encodings(users),
            "sequence_encodings_default": encodings(sequences),
            "bytes_per_user_default": default["total"],
            "bytes_per_user_batch_default": default["batch"],
            "bytes_per_user_sequence_default": default["sequence"],
            "bytes_per_user_listpack": with_listpack["total"],
            "bytes_per_user_batch_listpack": with_listpack["batch"],
            "bytes_per_user_sequence_listpack": with_listpack["sequence"],
            "listpack_value_bytes": LISTPACK_VALUE_BYTES,
            "bytes_per_item_default": distribution(default_items),
        }
        client.close()
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root", type=Path, default=Path("data"), help="root holding features/ (default data)"
    )
    parser.add_argument("--save", action="store_true", help="merge into bench/results.json")
    args = parser.parse_args(argv)
    result = measure(args.data_root)
    print(json.dumps(result, indent=2))
    if args.save:
        result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        save("redis_memory", result)
    return result


if __name__ == "__main__":
    main()
