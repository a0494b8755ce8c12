"""The served-features log: a record queued as the request had it (raw values, columns) is
written as the rows the sidecar always held, one per impression: the impression's ids, then
the user's columns, then the item's, each value converted by ``plain_value``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from serving.impressions import FeatureRecord, ServingLog, features_dir, plain_value

HOUR = datetime(2026, 11, 1, 5, tzinfo=UTC)


def _record(request: str, hour: datetime = HOUR, rows: int = 2) -> FeatureRecord:
    """Two impressions with awkward values: ints, None, strings, NaN, numpy vectors, a
    scalar where a vector belongs, and ``shared``, a name both the user and the items hold."""
    items = np.empty((rows, 3), dtype=object)
    for row in range(rows):
        items[row] = [
            [np.float32(0.25), 0.75] if row % 2 == 0 else None,
            float("nan") if row == 1 else 3 + row,
            10 + row,
        ]
    return FeatureRecord(
        meta={
            "event_id": [f"i{request}-n{slot}" for slot in range(1, rows + 1)],
            "request_id": [f"r{request}"] * rows,
            "ts": [pd.Timestamp(hour)] * rows,
            "position": list(range(1, rows + 1)),
            "propensity": [0.5] * rows,
            "degraded": [False] * rows,
        },
        user={
            "clicks": 4,
            "interest": np.asarray([0.5, 0.5], np.float32),
            "misshapen": 2.0,
            "label": "not a number",
            "shared": 1.0,
        },
        user_widths=[
            ("clicks", 0),
            ("interest", 2),
            ("misshapen", 3),
            ("label", 0),
            ("missing", 0),
            ("shared", 0),
        ],
        seq_length=7,
        items=items,
        item_widths=[("item_interest", 2), ("ctr", 0), ("shared", 0)],
        hour=hour,
    )


def _expected_rows(record: FeatureRecord) -> list[dict]:
    """The rows as the request path built them before: ``{**meta, **user, **item}``."""
    user = {name: plain_value(record.user.get(name), width) for name, width in record.user_widths}
    user["seq_length"] = record.seq_length
    rows = []
    for index in range(len(record)):
        meta = {name: values[index] for name, values in record.meta.items()}
        item = {
            name: plain_value(value, width)
            for (name, width), value in zip(record.item_widths, record.items[index], strict=True)
        }
        rows.append({**meta, **user, **item})
    return rows


def test_plain_values_are_floats_lists_of_floats_or_none():
    assert plain_value(3, 0) == 3.0 and isinstance(plain_value(3, 0), float)
    assert plain_value(None, 0) is None
    assert plain_value("x", 0) is None
    assert plain_value([1, 2], 0) is None
    assert plain_value(np.asarray([1, 2], np.float32), 2) == [1.0, 2.0]
    assert plain_value(2.0, 3) is None
    assert np.isnan(plain_value(float("nan"), 0))


def _as_written(frame: pd.DataFrame, directory: Path) -> pd.DataFrame:
    """``frame`` after a Parquet round trip (lists come back as arrays)."""
    path = directory / "expected.parquet"
    frame.to_parquet(path, index=False)
    return pd.read_parquet(path)


def test_record_columns_equal_the_merged_rows():
    record = _record("a")
    got = pd.DataFrame(record.columns())
    pd.testing.assert_frame_equal(got, pd.DataFrame(_expected_rows(record)))
    assert list(got.columns[:6]) == list(record.meta)
    assert got["shared"].tolist() == [10.0, 11.0]  # the item's value wins over the user's
    assert got["seq_length"].tolist() == [7, 7]


def test_the_writer_puts_every_record_in_its_hour(tmp_path: Path):
    log = ServingLog(tmp_path / "landing", tmp_path, flush_seconds=60, flush_records=10_000)
    later = HOUR.replace(hour=6)
    records = [_record("a"), _record("b", later, rows=3), _record("c")]
    for record in records:
        log.append_features(record)
    log.flush()
    assert log.stats.failures == 0, log.stats.last_error
    for hour, parts in ((HOUR, records[::2]), (later, records[1:2])):
        directory = features_dir(tmp_path) / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        (path,) = directory.glob("*.parquet")
        want = pd.DataFrame([row for record in parts for row in _expected_rows(record)])
        pd.testing.assert_frame_equal(pd.read_parquet(path), _as_written(want, tmp_path))


def test_records_with_different_columns_are_written_together(tmp_path: Path):
    log = ServingLog(tmp_path / "landing", tmp_path, flush_seconds=60, flush_records=10_000)
    first, second = _record("a"), _record("b")
    second.item_widths = second.item_widths[:2]
    second.items = second.items[:, :2]
    second.meta["extra"] = ["x", "y"]
    log.append_features(first)
    log.append_features(second)
    log.flush()
    (path,) = features_dir(tmp_path).rglob("*.parquet")
    written = pd.read_parquet(path)
    assert len(written) == 4
    # the second record has no item ``shared``: the user's value fills its rows
    assert written["shared"].tolist() == [10.0, 11.0, 1.0, 1.0]
    assert written["extra"].tolist() == [None, None, "x", "y"]
