"""The task functions' own rules: intervals from asset events, paths, the demo's run order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from muma.orchestration import demo_runs, features_interval, resolve_settings
from muma.settings import load_settings

T0 = datetime(2026, 11, 1, 6, tzinfo=UTC)


def iso(hours: int) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def test_an_asset_triggered_run_covers_every_consumed_interval() -> None:
    events = [
        {"start": iso(2), "end": iso(3)},
        {"start": iso(0), "end": iso(1)},
        {"unrelated": True},
    ]
    assert features_interval(events, iso(10), iso(11)) == (iso(0), iso(3))


def test_a_manual_run_names_its_interval() -> None:
    assert features_interval([], iso(0), iso(5)) == (iso(0), iso(5))
    with pytest.raises(ValueError, match="no interval"):
        features_interval([], None, None)
    with pytest.raises(ValueError, match="empty interval"):
        features_interval([], iso(5), iso(5))


def test_relative_paths_resolve_against_the_folder_of_params(tmp_path: Path) -> None:
    settings = load_settings(data_root=Path("data"), params_path=tmp_path / "params.yaml")
    resolved = resolve_settings(settings)
    assert resolved.data_root == tmp_path / "data"
    assert resolved.params_path == tmp_path / "params.yaml"
    absolute = load_settings(data_root=tmp_path / "x", params_path=tmp_path / "params.yaml")
    assert resolve_settings(absolute).data_root == tmp_path / "x"


def test_the_demo_runs_each_hour_then_features_then_each_day() -> None:
    runs = demo_runs(T0, T0 + timedelta(hours=2))
    assert [(dag_id, date.isoformat()) for dag_id, date, _ in runs] == [
        ("muma_simulate", iso(1)),
        ("muma_simulate", iso(2)),
        ("muma_ingest", iso(1)),
        ("muma_ingest", iso(2)),
        ("muma_features", iso(2)),
        ("muma_monitor", "2026-11-02T00:00:00+00:00"),
    ]
    assert runs[4][2] == {"start": iso(0), "end": iso(2)}
