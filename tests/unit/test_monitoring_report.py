"""The Evidently report and the monitor entry: outputs, workspace, and bad windows (issue 1480)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.config import MonitorParams
from monitoring.report import assess, monitor

DOMAINS = np.array(["news", "video", "ad"])
CATEGORIES = {"news": ["politics", "tech"], "video": ["music", "gaming"], "ad": ["retail"]}


def interactions(n: int, seed: int, ctr: float = 0.1, prediction: float | None = None):
    """``n`` interactions rows with the curated columns, plus ``category`` already joined."""
    rng = np.random.default_rng(seed)
    domain = DOMAINS[rng.integers(0, 3, n)]
    clicked = rng.random(n) < ctr
    frame = pd.DataFrame(
        {
            "event_id": [f"e{seed}-{i}" for i in range(n)],
            "ts": pd.Timestamp("2026-11-02", tz="UTC")
            + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s"),
            "request_id": [f"r{i // 5}" for i in range(n)],
            "user_id": [f"u{u}" for u in rng.integers(0, 40, n)],
            "item_id": [f"i{k}" for k in rng.integers(0, 100, n)],
            "position": rng.integers(1, 6, n),
            "propensity": rng.uniform(0.02, 0.5, n),
            "policy": "logging_softmax",
            "model_version": "v1",
            "clicked": clicked,
            "click_ts": pd.NaT,
            "dwell_ms": np.where(clicked, rng.integers(1_000, 90_000, n), np.nan),
            "completion_ratio": np.where(clicked, rng.random(n), np.nan),
            "domain": domain,
            "category": [CATEGORIES[d][rng.integers(0, len(CATEGORIES[d]))] for d in domain],
        }
    )
    if prediction is not None:
        frame["prediction"] = np.clip(rng.normal(prediction, 0.02, n), 0.001, 0.999)
    return frame


@pytest.fixture(scope="module")
def params() -> MonitorParams:
    return MonitorParams.model_validate(
        {"ctr": {"min_impressions": 200}, "interest": {"permutations": 50}}
    )


def test_monitor_writes_reports_summary_and_workspace_run(
    tmp_path: Path, params: MonitorParams
) -> None:
    from evidently.ui.workspace import Workspace

    reference = interactions(3_000, 1, prediction=0.1)
    current = interactions(3_000, 2, prediction=0.3)  # predictions drift and overshoot
    result = monitor(
        reference,
        current,
        params,
        tmp_path / "reports",
        run_date=date(2026, 11, 2),
        workspace=tmp_path / "workspace",
    )
    assert result.run_dir == tmp_path / "reports" / "2026-11-02"
    assert result.html_path.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype")
    evidently_json = json.loads(result.json_path.read_text())
    names = [m["metric_name"] for m in evidently_json["metrics"]]
    assert any(n.startswith("ValueDrift(column=prediction") for n in names)
    assert any(n.startswith("GroupByMetric(column_name=domain") for n in names)
    saved = json.loads(result.summary_path.read_text())
    assert saved == json.loads(json.dumps(result.summary))
    assert saved["features"]["prediction"]["drifted"]
    assert saved["features"]["target"] is not None
    assert {c["domain"] for c in saved["calibration"]} == {"news", "video", "ad"}
    assert result.decision.retrain
    assert any(r.startswith("prediction drift: wasserstein") for r in result.decision.reasons)
    assert any(r.startswith("miscalibration in news: predicted") for r in result.decision.reasons)
    ws = Workspace(str(tmp_path / "workspace"))
    (project,) = ws.search_project(params.workspace_project)
    assert [str(run) for run in ws.list_runs(project.id)] == [result.workspace_run]
    assert ws.get_run(project.id, result.workspace_run) is not None


def test_no_prediction_is_reported_not_faked(params: MonitorParams) -> None:
    assessment = assess(interactions(2_000, 3), interactions(2_000, 4), params)
    summary = assessment.summary
    assert summary["features"]["prediction"] is None
    assert {c["status"] for c in summary["calibration"]} == {"not available"}
    assert "prediction drift: not available (no prediction column)" in summary["skipped"]
    assert summary["representation"]["status"] == "not available"
    assert not assessment.decision.retrain, assessment.decision.reasons


def test_empty_window_does_not_crash(tmp_path: Path, params: MonitorParams) -> None:
    reference = interactions(2_000, 5)
    result = monitor(reference, reference.iloc[:0], params, tmp_path, run_date=date(2026, 11, 3))
    assert result.summary["features"]["status"] == "empty"
    assert result.html_path is None and result.summary_path.exists()
    assert not result.decision.retrain
    assert any(s.startswith("feature drift: empty") for s in result.decision.skipped)
    assert all(c["status"] == "too_few_impressions" for c in result.summary["ctr"])


def test_null_and_constant_columns_are_reported(params: MonitorParams) -> None:
    reference = interactions(1_500, 6).assign(dwell_ms=np.nan, position=3)
    current = interactions(1_500, 7).assign(completion_ratio=np.nan, position=3)
    assessment = assess(reference, current, params)
    screened = {s["column"]: s for s in assessment.summary["features"]["screened"]}
    assert screened["dwell_ms"]["status"] == "all_null"
    assert "reference" in screened["dwell_ms"]["detail"]
    assert screened["completion_ratio"]["status"] == "all_null"
    assert screened["position"]["status"] == "constant"
    assert "position" not in assessment.summary["features"]["columns"]
    assert "propensity" in assessment.summary["features"]["columns"]
    assert assessment.snapshot is not None


def test_constant_reference_that_moves_is_drift(params: MonitorParams) -> None:
    reference = interactions(1_500, 8).assign(position=1)
    assessment = assess(reference, interactions(1_500, 9), params)
    assert any(r.startswith("feature drift in position") for r in assessment.decision.reasons)


def test_tiny_windows_are_reported(params: MonitorParams) -> None:
    assessment = assess(interactions(3, 10), interactions(4, 11, ctr=0.9), params)
    summary = assessment.summary
    assert summary["features"]["status"] == "too_few_rows"
    assert not assessment.decision.retrain, assessment.decision.reasons
    assert any("too_few_rows (reference 3, current 4 rows)" in s for s in summary["skipped"])


def test_polars_input_and_bad_input(params: MonitorParams) -> None:
    import polars as pl

    frame = interactions(500, 12)
    assessment = assess(pl.from_pandas(frame), pl.from_pandas(frame), params)
    assert assessment.summary["rows"] == {"reference": 500, "current": 500}
    with pytest.raises(TypeError, match="pandas or polars"):
        assess([1, 2], frame, params)
    with pytest.raises(ValueError, match="clicked"):
        assess(frame.drop(columns="clicked"), frame, params)
