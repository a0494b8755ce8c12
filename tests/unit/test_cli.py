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
