"""One hour's interactions labelled with Arrow (ingest.label), on hand-made curated files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.config import IngestParams
from ingest.curate import curated_arrow_schema, curated_table, write_curated
from ingest.interactions import INTERACTIONS, _task
from ingest.job import curated_partition_dir
from ingest.label import INTERACTIONS_SCHEMA, label_hour, run_hours
from muma.contract import Reason, Source

H = datetime(2026, 11, 1, 10, tzinfo=UTC)
PARAMS = IngestParams(attribution_window_minutes=30)


def at(minutes: float) -> datetime:
    return H + timedelta(minutes=minutes)


def impression(event_id: str, minutes: float, request: str, user: str, item: str, domain: str):
    return {
        "event_id": event_id,
        "ts": at(minutes),
        "request_id": request,
        "user_id": user,
        "item_id": item,
        "domain": domain,
        "position": 1,
        "policy": "greedy",
        "model_version": "m1",
        "propensity": 0.5,
    }


def click(event_id: str, minutes: float, request: str, item: str, user: str = "u1"):
    return {
        "event_id": event_id,
        "ts": at(minutes),
        "request_id": request,
        "item_id": item,
        "user_id": user,
    }


def view(event_id: str, minutes: float, user: str, item: str, dwell: int, request=None):
    return {
        "event_id": event_id,
        "ts": at(minutes),
        "user_id": user,
        "item_id": item,
        "dwell_ms": dwell,
        "completion_ratio": dwell / 10_000,
        "request_id": request,
    }


def curate(root: Path, source: Source, hour: datetime, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(rows, schema=curated_arrow_schema(source))
    write_curated(curated_table(table, source), curated_partition_dir(root, source, hour), source)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "curated"
    curate(
        root,
        Source.IMPRESSIONS,
        H,
        [
            impression("i1", 0, "r1", "u1", "n1", "news"),
            impression("i2", 0, "r1", "u1", "n2", "news"),
            impression("i3", 50, "r2", "u2", "v1", "video"),
            impression("i4", 55, "r3", "u3", "a1", "ads"),
        ],
    )
    # i1: clicked twice (the earlier counts); i2: clicked after the window; i3: clicked in
    # the next hour; c9 matches nothing.
    curate(
        root,
        Source.CLICKS,
        H,
        [
            click("c1", 5, "r1", "n1"),
            click("c0", 2, "r1", "n1"),
            click("c2", 31, "r1", "n2"),
            click("c9", 40, "r404", "n1"),
        ],
    )
    curate(root, Source.CLICKS, H + timedelta(hours=1), [click("c3", 62, "r2", "v1", "u2")])
    # i1: two views at the same time (the smaller view id wins); i3: one of another request
    # (ignored) and one without a request; i4: none.
    curate(
        root,
        Source.VIEWS,
        H,
        [
            view("w2", 3, "u1", "n1", 2_000, "r1"),
            view("w1", 3, "u1", "n1", 1_000, "r1"),
            view("w3", 52, "u2", "v1", 9_000, "r-other"),
        ],
    )
    curate(root, Source.VIEWS, H + timedelta(hours=1), [view("w4", 61, "u2", "v1", 7_000)])
    return root


def test_one_hour_is_labelled(root: Path, tmp_path: Path):
    task = _task(root, tmp_path / "staging", H, 1, PARAMS)
    outcome = label_hour(task)
    assert (outcome.interactions, outcome.clicked) == (4, 2)
    # c0 and c1 found i1; c2 came after i2's window and c9 has no impression at all.
    assert (outcome.clicks_attributed, outcome.clicks_without_impression) == (2, 2)
    rows = {}
    for domain in ("news", "video", "ads"):
        table = pq.read_table(Path(task.interactions_dir) / f"domain={domain}")
        assert table.schema.remove_metadata() == INTERACTIONS_SCHEMA
        assert table["event_id"].to_pylist() == sorted(table["event_id"].to_pylist())
        rows |= {row["event_id"]: row for row in table.to_pylist()}
    assert {k: (v["clicked"], v["click_ts"], v["dwell_ms"]) for k, v in rows.items()} == {
        "i1": (True, at(2), 1_000),
        "i2": (False, None, None),
        "i3": (True, at(62), 7_000),
        "i4": (False, None, None),
    }
    quarantine = pq.read_table(task.quarantine_dir).to_pylist()
    assert [row["reason"] for row in quarantine] == [Reason.CLICK_WITHOUT_IMPRESSION.value] * 2
    assert [json.loads(row["raw_line"])["event_id"] for row in quarantine] == ["c2", "c9"]
    assert json.loads(quarantine[1]["raw_line"]) == {
        "event_id": "c9",
        "ts": "2026-11-01T10:40:00.000Z",
        "request_id": "r404",
        "item_id": "n1",
        "user_id": "u1",
        "date": "2026-11-01",
        "hour": 10,
    }
    assert "30 minutes" in quarantine[0]["detail"]


def test_a_click_finds_an_impression_of_an_earlier_hour(root: Path, tmp_path: Path):
    later = H + timedelta(hours=1)
    curate(root, Source.IMPRESSIONS, later, [impression("i5", 70, "r5", "u5", "n5", "news")])
    outcome = label_hour(_task(root, tmp_path / "staging", later, 1, PARAMS))
    # c3 (hour 11) belongs to i3 (hour 10): attributed, though no impression of 11 has it.
    assert (outcome.clicks_attributed, outcome.clicks_without_impression) == (1, 0)
    assert (outcome.interactions, outcome.clicked) == (1, 0)


def test_run_hours_reports_each_task(root: Path, tmp_path: Path):
    tasks = [_task(root, tmp_path / "staging", H, 1, PARAMS)]
    ((index, report),) = run_hours(tasks, [0])
    assert index == 0 and json.loads(report)["interactions"] == 4
    assert Path(tasks[0].interactions_dir).parts[-3:] == (
        INTERACTIONS,
        "date=2026-11-01",
        "hour=10",
    )


def test_an_hour_without_impressions_is_an_error(root: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no curated impressions"):
        label_hour(_task(root, tmp_path / "staging", H + timedelta(hours=5), 1, PARAMS))
