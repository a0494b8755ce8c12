"""The monitoring run: Evidently report, interest and propensity checks, and the decision.

:func:`assess` is pure: frames in, an :class:`Assessment` (summary, decision, Evidently
snapshot) out. :func:`monitor` is the entry the CLI and the DAG call: it assesses, saves the
snapshot's HTML and JSON and the summary under ``<out_dir>/<date>/``, and adds the run to an
Evidently workspace (browse with ``evidently ui --workspace <dir>``).

Evidently's cost grows with the rows it histograms and plots, so each window is a seeded
uniform sample of at most ``features.max_rows`` rows for the Evidently report (columns are
screened on that sample); the CTR, calibration, interest and propensity figures are always
computed on every row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .config import FeatureDriftParams, MonitorParams
from .decision import Decision, FeatureDriftSummary, decide
from .drift import (
    FEATURES,
    PREDICTION,
    TARGET,
    ColumnKind,
    ColumnStatus,
    calibration_by_domain,
    ctr_by_domain,
    derive_features,
    sample_rows,
    screen_columns,
)
from .interest import interest_drift, representation_drift
from .propensity import propensity_health

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

_DISTANCE_METHODS = {"wasserstein", "psi", "kl_div", "jensenshannon", "hellinger"}


def _to_pandas(frame: Any) -> pd.DataFrame:
    """Accept pandas or polars frames at the edge; the core works on pandas."""
    if isinstance(frame, pd.DataFrame):
        return frame
    to_pandas = getattr(frame, "to_pandas", None)
    if to_pandas is None:
        raise TypeError(f"expected a pandas or polars DataFrame, got {type(frame).__name__}")
    return to_pandas()


def _drift_result(score: float, method: str, threshold: float) -> dict:
    # Distances drift when large, p-values when small.
    drifted = score >= threshold if method in _DISTANCE_METHODS else score < threshold
    return {
        "score": round(float(score), 5),
        "method": method,
        "threshold": threshold,
        "drifted": bool(drifted),
    }


def feature_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: dict[str, ColumnKind],
    params: FeatureDriftParams,
    seed: int = 0,
    tags: list[str] | None = None,
) -> tuple[Snapshot | None, FeatureDriftSummary]:
    """Run Evidently's column drift, prediction and target (CTR) metrics on two windows.

    Args:
        reference: ``N x C`` feature frame of the reference window (:func:`derive_features`).
        current: ``M x C`` feature frame of the current window.
        columns: Feature columns to compare and their kinds (``prediction`` and ``clicked``
            are added when present).
        params: Methods, thresholds, sample size and minimum rows.
        seed: Seed of the row sample.
        tags: Tags stored on the snapshot (shown in Evidently's UI).

    Returns:
        The snapshot (``None`` when a window is empty) and its summary.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue, RowCount, ValueDrift
    from evidently.metrics.group_by import GroupBy

    n_ref, n_cur = len(reference), len(current)
    if min(n_ref, n_cur) == 0:
        screened = screen_columns(reference, current, columns)
        return None, FeatureDriftSummary(
            "empty", screened=screened, reference_rows=n_ref, current_rows=n_cur
        )
    status = "ok" if min(n_ref, n_cur) >= params.min_rows else "too_few_rows"
    ref = sample_rows(reference, params.max_rows, seed)
    cur = sample_rows(current, params.max_rows, seed + 1)
    sampled = max(len(ref), len(cur)) if len(ref) < n_ref or len(cur) < n_cur else None
    # Screen what Evidently will see: the samples (cheap, and exactly what must not crash).
    screened = screen_columns(ref, cur, columns)

    extra: dict[str, ColumnKind] = {}
    if PREDICTION in ref and PREDICTION in cur:
        extra[PREDICTION] = "numerical"
    extra[TARGET] = "categorical"
    extra_status = {s.column: s for s in screen_columns(ref, cur, extra)}
    usable = {s.column: s.kind for s in screened if s.status in ("ok", "constant")}
    usable |= {c: s.kind for c, s in extra_status.items() if s.status in ("ok", "constant")}
    compared = [s.column for s in screened if s.status == "ok"]
    definition = DataDefinition(
        numerical_columns=[c for c, kind in usable.items() if kind == "numerical"],
        categorical_columns=[c for c, kind in usable.items() if kind == "categorical"],
    )
    fp = params

    def method_of(column: str) -> tuple[str, float]:
        if usable.get(column) == "numerical":
            return fp.num_method, fp.num_threshold
        return fp.cat_method, fp.cat_threshold

    # No DriftedColumnsCount: it recomputes every column's drift (a third of the report's
    # time); the drifted share is counted from the ValueDrift results below.
    metrics: list[Any] = [RowCount()]
    for column in compared:
        method, threshold = method_of(column)
        metrics.append(ValueDrift(column=column, method=method, threshold=threshold))
    prediction_ok = PREDICTION in extra_status and extra_status[PREDICTION].status == "ok"
    if prediction_ok:
        metrics.append(
            ValueDrift(column=PREDICTION, method=fp.num_method, threshold=fp.prediction_threshold)
        )
    target_ok = extra_status[TARGET].status == "ok"
    if target_ok:
        metrics.append(ValueDrift(column=TARGET, method=fp.cat_method, threshold=fp.cat_threshold))
    if TARGET in usable:
        metrics.append(MeanValue(column=TARGET))
        if "domain" in usable:
            metrics.append(GroupBy(MeanValue(column=TARGET), "domain"))
    if prediction_ok:
        metrics.append(MeanValue(column=PREDICTION))
    keep = list(usable)
    datasets = [
        Dataset.from_pandas(window[keep].reset_index(drop=True), data_definition=definition)
        for window in (ref, cur)
    ]
    snapshot = Report(metrics, tags=tags or [], include_tests=True).run(
        reference_data=datasets[0], current_data=datasets[1]
    )
    results: dict[str, dict] = {}
    prediction = target = None
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        column = config["column"]
        result = _drift_result(metric["value"], config["method"], config["threshold"])
        if column == PREDICTION:
            prediction = result
        elif column == TARGET:
            target = result
        else:
            results[column] = result
    drifted = sum(r["drifted"] for r in results.values())
    constant_ref = sum(s.status == "constant_reference" for s in screened)
    denominator = len(results) + constant_ref
    return snapshot, FeatureDriftSummary(
        status,
        columns=results,
        drifted_share=round((drifted + constant_ref) / denominator, 4) if denominator else None,
        screened=[s for s in screened if s.status != "ok"],
        prediction=prediction,
        target=target,
        reference_rows=n_ref,
        current_rows=n_cur,
        sampled_rows=sampled,
    )


@dataclass
class Assessment:
    """Everything one monitoring run measured.

    Attributes:
        summary: JSON-ready summary (``metrics/monitor.json``), decision included.
        decision: Retrain or not, and why.
        snapshot: Evidently snapshot (``None`` when a window was empty).
    """

    summary: dict
    decision: Decision
    snapshot: Snapshot | None = None


def assess(
    reference: Any,
    current: Any,
    params: MonitorParams,
    *,
    items: Any | None = None,
    reference_embeddings: pd.DataFrame | None = None,
    current_embeddings: pd.DataFrame | None = None,
    extra_columns: dict[str, ColumnKind] | None = None,
    tags: list[str] | None = None,
) -> Assessment:
    """Measure every signal on two windows of interactions and decide.

    Args:
        reference: Curated interactions of the reference window (pandas or polars), e.g.
            the champion's training data; an optional ``prediction`` column is the ranker's
            CTR.
        current: Curated interactions of the current window, same columns.
        params: The ``monitor`` section of params.yaml.
        items: Item catalog (``item_id``, ``category``, ``publish_ts``) joined for the
            category and item age; ``None`` when the interactions carry ``category``.
        reference_embeddings: ``U x D`` user embeddings indexed by ``user_id`` (optional).
        current_embeddings: Same model's embeddings for the current window (optional).
        extra_columns: More per-row feature columns present in both windows, with kinds.
        tags: Tags stored on the Evidently snapshot.
    """
    catalog = None if items is None else _to_pandas(items)
    ref = derive_features(_to_pandas(reference), catalog)
    cur = derive_features(_to_pandas(current), catalog)
    raw_ref, raw_cur = _to_pandas(reference), _to_pandas(current)
    for column in extra_columns or {}:
        for name, raw, derived in (("reference", raw_ref, ref), ("current", raw_cur, cur)):
            if column not in raw:
                raise ValueError(f"extra column {column!r} is missing from the {name} window")
            derived[column] = raw[column].to_numpy()
    columns = {**FEATURES, **(extra_columns or {})}
    snapshot, features = feature_drift_report(ref, cur, columns, params.features, params.seed, tags)
    ctr = ctr_by_domain(ref, cur, params.ctr)
    calibration = calibration_by_domain(cur, params.ctr)
    interest = (
        interest_drift(ref, cur, params.interest, params.seed)
        if {"user_id", "category"} <= set(ref) & set(cur)
        else []
    )
    representation = representation_drift(reference_embeddings, current_embeddings, params.interest)
    propensity = propensity_health(cur, params.propensity) if "propensity" in cur else []
    decision = decide(
        features,
        params.features.drift_share,
        ctr,
        calibration,
        interest,
        representation,
        propensity,
    )
    summary = {
        "retrain": decision.retrain,
        "reasons": decision.reasons,
        "skipped": decision.skipped,
        "alerts": decision.alerts,
        "rows": {"reference": len(ref), "current": len(cur)},
        "features": features.as_dict(),
        "ctr": [r.as_dict() for r in ctr],
        "calibration": [r.as_dict() for r in calibration],
        "interest": [r.as_dict() for r in interest]
        or "not available (no user_id or category column)",
        "representation": representation.as_dict(),
        "propensity": [h.as_dict() for h in propensity],
    }
    return Assessment(summary=_json_ready(summary), decision=decision, snapshot=snapshot)


def _json_ready(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, non-finite floats as ``None``."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, ColumnStatus):
        return value.as_dict()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def add_to_workspace(snapshot: Snapshot, workspace: Path, project: str) -> str:
    """Add a snapshot to a local Evidently workspace (created when absent); returns its id."""
    from evidently.ui.workspace import Workspace

    ws = Workspace.create(str(workspace))
    found = ws.search_project(project)
    target = found[0] if found else ws.create_project(project, description="MUMA drift runs")
    return str(ws.add_run(target.id, snapshot).id)


@dataclass
class MonitorResult:
    """Outputs of one monitoring run.

    Attributes:
        summary: The ``metrics/monitor.json`` content (the CLI writes it there).
        decision: Retrain or not, and why.
        run_dir: ``<out_dir>/<date>/``.
        html_path: Evidently HTML report (``None`` when a window was empty).
        json_path: Evidently JSON (metric values) of the snapshot.
        summary_path: The summary, also saved in ``run_dir``.
        workspace_run: Id of the run in the Evidently workspace, when one was given.
    """

    summary: dict
    decision: Decision
    run_dir: Path
    html_path: Path | None = None
    json_path: Path | None = None
    summary_path: Path | None = None
    workspace_run: str | None = None
    paths: dict[str, str] = field(default_factory=dict)


def monitor(
    reference: Any,
    current: Any,
    params: MonitorParams,
    out_dir: Path,
    *,
    run_date: date | None = None,
    workspace: Path | None = None,
    **inputs: Any,
) -> MonitorResult:
    """Assess two windows and save the HTML, JSON and summary of the run.

    Args:
        reference: Reference interactions (see :func:`assess`).
        current: Current interactions.
        params: The ``monitor`` section of params.yaml.
        out_dir: Root of the reports, e.g. ``reports/monitoring``; the run goes to
            ``<out_dir>/<run_date>/``.
        run_date: Date naming the run (the current window's day); today (UTC) by default.
        workspace: Local Evidently workspace directory to add the run to (optional).
        **inputs: ``items``, ``reference_embeddings``, ``current_embeddings``,
            ``extra_columns`` for :func:`assess`.
    """
    run_date = run_date or datetime.now(UTC).date()
    assessment = assess(reference, current, params, tags=[f"date={run_date}"], **inputs)
    run_dir = Path(out_dir) / run_date.isoformat()
    run_dir.mkdir(parents=True, exist_ok=True)
    result = MonitorResult(assessment.summary, assessment.decision, run_dir)
    if assessment.snapshot is not None:
        result.html_path = run_dir / "report.html"
        result.json_path = run_dir / "evidently.json"
        assessment.snapshot.save_html(str(result.html_path))
        assessment.snapshot.save_json(str(result.json_path))
        if workspace is not None:
            result.workspace_run = add_to_workspace(
                assessment.snapshot, Path(workspace), params.workspace_project
            )
    result.summary_path = run_dir / "summary.json"
    result.paths = {
        name: str(path)
        for name, path in (
            ("html", result.html_path),
            ("json", result.json_path),
            ("summary", result.summary_path),
        )
        if path is not None
    }
    result.summary = {**assessment.summary, "date": run_date.isoformat(), "paths": result.paths}
    if result.workspace_run:
        result.summary["workspace_run"] = result.workspace_run
    result.summary_path.write_text(json.dumps(result.summary, indent=2) + "\n", encoding="utf-8")
    return result
