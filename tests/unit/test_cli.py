"""The `muma` command line: thin wrappers with clear errors."""

import json
from pathlib import Path

from typer.testing import CliRunner

from muma.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_simulate_writes_the_landing_zone_and_reports_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("MUMA_PARAMS_PATH", str(ROOT / "params.yaml"))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        [
            "simulate",
            "--end",
            "2026-11-01T02:00:00Z",
            "--users",
            "200",
            "--items",
            "300",
            "--out",
            str(tmp_path / "landing"),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["hours"] == 2
    assert summary["events_per_source"]["impressions"] > 0
    files = sorted((tmp_path / "landing" / "v1").rglob("*.jsonl.gz"))
    assert {f.parts[-4] for f in files} == {
        "impressions",
        "clicks",
        "views",
        "social_edges",
        "gaze",
        "items",
    }


def test_invalid_setting_fails_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUMA_SPARK_MASTER", "bogus")
    result = runner.invoke(app, ["settings"])
    assert result.exit_code == 2
    assert "MUMA_SPARK_MASTER" in result.output


def test_time_without_offset_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MUMA_PARAMS_PATH", str(ROOT / "params.yaml"))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["simulate", "--end", "2026-11-01T02:00:00"])
    assert result.exit_code != 0
    assert "UTC offset" in result.output


def test_settings_masks_the_api_token(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MUMA_API_TOKEN", "s3cret-value")
    result = runner.invoke(app, ["settings"])
    assert result.exit_code == 0
    assert "s3cret-value" not in result.output
    assert "api_token = ***" in result.output


def test_window_options_are_checked_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("MUMA_PARAMS_PATH", str(ROOT / "params.yaml"))
    monkeypatch.setenv("MUMA_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    cases = [
        (["ingest", "--hour", "3"], "--hour needs --date"),
        (["ingest", "--date", "2026-11-01", "--start", "2026-11-01T00:00:00Z"], "not both"),
        (["ingest", "--start", "2026-11-01T00:00:00Z"], "give both --start and --end"),
        (["ingest", "--date", "yesterday"], "not a date"),
        (["validate", "--table", "nonsense", "--date", "2026-11-01"], "unknown nonsense"),
        (["monitor", "--current", "2026-13-45"], "not a date or START/END"),
    ]
    for arguments, message in cases:
        result = runner.invoke(app, arguments)
        assert result.exit_code == 2, (arguments, result.output)
        assert message in " ".join(result.output.split()), (arguments, result.output)


def test_commands_without_data_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MUMA_PARAMS_PATH", str(ROOT / "params.yaml"))
    monkeypatch.setenv("MUMA_DATA_ROOT", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    for command in (["ingest"], ["validate"], ["monitor"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, (command, result.output)
        assert "no partitions found" in result.output or "no curated" in result.output
