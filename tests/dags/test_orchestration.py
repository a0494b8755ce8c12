"""The task functions' own rules: intervals from asset events, paths, the demo's run order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from muma.orchestration import (
    demo_day_runs,
    demo_runs,
    features_interval,
    resolve_settings,
    run_interval,
)
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


def test_a_run_works_on_its_params_range_else_on_its_data_interval() -> None:
    hour = (T0, T0 + timedelta(hours=1))
    assert run_interval(None, *hour) == hour
    assert run_interval({"start": None, "end": None}, *hour) == hour
    day = {"start": iso(0), "end": iso(24)}
    assert run_interval(day, *hour) == (T0, T0 + timedelta(hours=24))
    with pytest.raises(ValueError, match="both 'start' and 'end'"):
        run_interval({"start": iso(0), "end": None}, *hour)
    with pytest.raises(ValueError, match="empty interval"):
        run_interval({"start": iso(3), "end": iso(1)}, *hour)
    with pytest.raises(ValueError, match="whole hours"):
        run_interval({"start": iso(0), "end": (T0 + timedelta(minutes=90)).isoformat()}, *hour)
    with pytest.raises(ValueError, match="no time zone"):
        run_interval({"start": "2026-11-01T00:00:00", "end": iso(1)}, *hour)


def test_the_demo_day_runs_the_whole_loop_once_per_dag_in_order() -> None:
    start, end = T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1)
    runs = demo_day_runs(start, end, policy_days=4)
    day = {"start": start.isoformat(), "end": end.isoformat()}
    assert runs == [
        ("muma_simulate", end, day),
        ("muma_ingest", end, day),
        ("muma_features", end, day),
        ("muma_train", end, {}),
        ("muma_monitor", end, {}),
        ("muma_policy", end, {"days": 4}),
    ]
    assert demo_day_runs(start, end)[-1] == ("muma_policy", end, {})
