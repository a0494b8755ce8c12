"""Training end to end on the real path: simulate, Spark ingest and feature build, then the
``muma training-set``, ``train``, ``evaluate`` and ``promote`` commands, with champion and
challenger on the same test window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from feature_repo.config import FeaturesParams
from feature_repo.pipelines import build_features
from ingest.config import IngestParams
from ingest.run import ingest_range
from muma.cli import app
from simulator.config import SimulatorConfig
from simulator.logs import simulate
from training.bundle import ModelBundle
from training.registry import read_champion

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 1, 6, tzinfo=UTC)
END = START + timedelta(hours=10)
runner = CliRunner()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def workspace(spark, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("training")
    data = root / "data"
    simulate(SimulatorConfig(users=1500, items=300), 7, START, END, data / "landing")
    ingest_range(spark, data / "landing", data / "curated", START, END, IngestParams())
    features = FeaturesParams(sequence_length=20)
    build_features(spark, data / "curated", data / "features", START, END, features)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["features"]["sequence_length"] = 20
    params["train"].update(
        {
            "split": {"start": None, "end": None, "valid_hours": 2, "test_hours": 2},
            "long_length": 20,
            "epochs": 2,
            "batch_size": 256,
        }
    )
    params["evaluate"]["max_ece"] = 0.5
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


@pytest.fixture()
def env(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MUMA_DATA_ROOT", str(workspace / "data"))
    monkeypatch.setenv("MUMA_PARAMS_PATH", str(workspace / "params.yaml"))
    monkeypatch.chdir(workspace)
    return workspace


def _run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_train_evaluate_promote_and_never_promote_a_worse_model(env: Path) -> None:
    data = env / "data"
    _run("training-set")
    split = json.loads((data / "training" / "split.json").read_text())
    assert split["split"]["test"]["end"] == END.isoformat()
    test = pd.read_parquet(data / "training" / "test.parquet")
    train = pd.read_parquet(data / "training" / "train.parquet")
    # Split by time: every training row is older than every test row.
    assert train["ts"].max() < test["ts"].min()
    assert test["true_p_click"].notna().all() and len(test) > 200
    # Point in time: no sequence entry is newer than its impression.
    stamps = test["ts"].astype("int64") // 10**9
    assert all(
        s is None or max(s, default=0) <= t for s, t in zip(test["seq_ts"], stamps, strict=True)
    )

    _run("train", "--no-progress")
    summary = json.loads((env / "metrics" / "train.json").read_text())
    assert summary["test"]["overall"]["auc"] > 0.55
    assert summary["test"]["overall"]["pearson"] is not None
    assert (env / "plots" / "train" / "learning_curve.json").is_file()
    first = ModelBundle.load(data / "models" / "challenger")

    # Same seed, same data: same weights (the version is the weights' digest).
    _run("train", "--no-progress", "--out", str(env / "again"))
    assert ModelBundle.load(env / "again").version == first.version

    _run("evaluate")
    decision = json.loads((data / "models" / "decision.json").read_text())
    assert decision["promote"] and decision["reason"] == "no champion yet"
    _run("promote")
    assert read_champion_version(env) == first.version

    # A barely trained FM is worse on the same test window: evaluated, never promoted.
    params = yaml.safe_load((env / "params.yaml").read_text())
    params["train"]["epochs"] = 1
    params["train"]["lr"] = 1e-5
    (env / "params.yaml").write_text(yaml.safe_dump(params))
    _run("train", "--no-progress", "--model", "fm")
    output = _run("evaluate")
    decision = json.loads((data / "models" / "decision.json").read_text())
    assert not decision["promote"], output
    assert decision["champion_version"] == first.version
    _run("promote")
    assert read_champion_version(env) == first.version

    # Monitoring scores both windows with the champion: prediction and representation drift.
    _run("monitor", "--out", str(env / "monitoring"), "--workspace", str(env / "ws"))
    report = json.loads((env / "metrics" / "monitor.json").read_text())
    assert report["champion_version"] == first.version
    assert report["representation"]["status"] == "ok"
    assert {row["status"] for row in report["calibration"]} == {"ok"}


def read_champion_version(env: Path) -> str:
    from muma.settings import Settings

    pointer = read_champion(Settings(data_root=env / "data"))
    assert pointer is not None
    return pointer["version"]


def _flat(text: str) -> str:
    """CLI output with rich's line wrapping undone (it wraps at the terminal width)."""
    return " ".join(text.split())


def test_clear_errors_without_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUMA_DATA_ROOT", str(tmp_path / "empty"))
    monkeypatch.setenv("MUMA_PARAMS_PATH", str(ROOT / "params.yaml"))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["training-set"])
    assert result.exit_code == 1 and "run `muma ingest` first" in _flat(result.output)
    result = runner.invoke(app, ["train", "--no-progress"])
    assert result.exit_code == 1 and "run `muma training-set` first" in _flat(result.output)
    result = runner.invoke(app, ["evaluate"])
    assert result.exit_code == 1
    result = runner.invoke(app, ["promote"])
    assert result.exit_code == 1 and "run `muma evaluate` first" in _flat(result.output)
