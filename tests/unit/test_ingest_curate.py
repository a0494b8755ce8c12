"""Pieces of the Arrow task: line splitting, id hashes, task balancing, first copies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from ingest.curate import (
    PartitionTask,
    balanced_slots,
    classify_partition,
    first_copies,
    id_hashes,
    split_lines,
)
from muma.contract import Source

HOUR = datetime(2026, 11, 1, 16, tzinfo=UTC)
START = (HOUR - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _lines(data: bytes) -> list[bytes]:
    lines = split_lines(data)
    return [lines.line(i) for i in range(len(lines))]


def test_lines_end_at_newline_only_and_blank_means_spaces():
    data = b'{"a":1}\n\n   \n\t\n{"b":2}\r\n x \n{"c":3}'
    # Spark's text reader with lineSep "\n" and trim: "\t" and "\r" are not blank.
    assert _lines(data) == [b'{"a":1}', b"\t", b'{"b":2}\r', b" x ", b'{"c":3}']
    assert _lines(b"") == [] and _lines(b"\n\n") == []


def test_id_hashes_do_not_depend_on_the_other_ids():
    ids = ["e1", "late-within-window", "e22", "a" * 17, "a" * 16, "é1", "ü" * 9]
    together = id_hashes(pa.array(ids))
    alone = [int(id_hashes(pa.array([i]))[0]) for i in ids]
    assert together.tolist() == alone
    assert len(set(alone)) == len(ids)
    sliced = pa.array(["zz", *ids]).slice(1)
    assert id_hashes(sliced).tolist() == alone
    assert id_hashes(pa.chunked_array([ids[:2], ids[2:]])).tolist() == alone


def test_id_hashes_are_well_spread():
    hashes = id_hashes(pa.array([f"e{n:08d}" for n in range(100_000)]))
    assert len(np.unique(hashes)) == 100_000
    # Every bit flips for about half the ids.
    bits = np.unpackbits(hashes.view(np.uint8)).reshape(-1, 64).mean(axis=0)
    assert bits.min() > 0.45 and bits.max() < 0.55


def test_balanced_slots_spread_work_and_lose_no_task(tmp_path: Path):
    tasks = []
    for n, size in enumerate([900, 100, 500, 400, 50, 50]):
        path = tmp_path / f"f{n}"
        path.write_bytes(b"x" * size)
        tasks.append(PartitionTask(Source.CLICKS, n, (str(path),), "c", "q"))
    slots = balanced_slots(tasks, 2)
    assert sorted(i for slot in slots for i in slot) == list(range(6))
    loads = [sum(tasks[i].size for i in slot) for slot in slots]
    assert max(loads) - min(loads) <= 100
    assert balanced_slots(tasks[:1], 4) == [[0]]


@pytest.mark.parametrize("order", [1, -1])
def test_a_repeated_id_keeps_its_smallest_raw_line(order: int):
    base = (
        '{"event_id":"e1","ts":"2026-11-01T16:30:00Z","request_id":"r1","user_id":"u1",'
        '"item_id":"i1","domain":"news","position":POS,"policy":"p","model_version":"m",'
        '"propensity":0.5}'
    )
    lines = [base.replace("POS", "2"), base.replace("POS", "1"), base.replace("POS", "3")]
    data = "".join(line + "\n" for line in lines[::order]).encode()
    classified = classify_partition(split_lines(data), Source.IMPRESSIONS, START, timedelta(0))
    kept, dropped, hashes = first_copies(classified)
    assert dropped == 2
    assert kept.column("position").to_pylist() == [1]
    assert hashes.tolist() == id_hashes(pa.array(["e1"])).tolist()


def test_every_gzip_member_is_read_and_a_broken_file_is_named(tmp_path: Path):
    import gzip

    from ingest.curate import read_partition

    whole = tmp_path / "part-00000.jsonl.gz"
    whole.write_bytes(gzip.compress(b"{}\n") + gzip.compress(b"[]"))
    plain = tmp_path / "part-00001.jsonl"
    plain.write_bytes(b"{ }")
    lines = read_partition([str(plain), str(whole)])
    assert [lines.line(i) for i in range(len(lines))] == [b"{}", b"[]", b"{ }"]
    broken = tmp_path / "part-00002.jsonl.gz"
    broken.write_bytes(gzip.compress(b"{}\n" * 100)[:-12])
    with pytest.raises(ValueError, match=r"part-00002\.jsonl\.gz is not a readable gzip file"):
        read_partition([str(broken)])
