"""Per-row features of a window, column screening, and per-domain CTR and calibration.

The features are what can be derived from curated ``interactions`` rows joined with the
item catalog today (position, propensity, dwell, completion, domain, category, hour of
day, item age, user activity); the ranker's ``prediction`` column joins them when serving
logs carry it. Columns Evidently cannot compare (absent, all null, constant in both
windows: evidently issue 1480) are screened out first and reported as such.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pandas as pd

from .config import CtrParams

ColumnKind = Literal["numerical", "categorical"]

FEATURES: dict[str, ColumnKind] = {
    "position": "numerical",
    "propensity": "numerical",
    "dwell_ms": "numerical",
    "completion_ratio": "numerical",
    "hour_of_day": "numerical",
    "item_age_hours": "numerical",
    "user_impressions": "numerical",
    "user_clicks": "numerical",
    "domain": "categorical",
    "category": "categorical",
    "policy": "categorical",
}
"""Features derived by :func:`derive_features`, with the kind Evidently compares them as."""

TARGET = "clicked"
PREDICTION = "prediction"


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True, format="ISO8601")


def derive_features(interactions: pd.DataFrame, items: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-row monitoring features of one window.

    Args:
        interactions: Curated ``interactions`` rows (``ts``, ``user_id``, ``item_id``,
            ``position``, ``propensity``, ``policy``, ``clicked``, ``dwell_ms``,
            ``completion_ratio``, ``domain``; optionally ``prediction`` and ``category``).
        items: Item catalog rows (``item_id``, ``category``, ``publish_ts``; several rows
            of one item keep the latest ``ts``). ``None`` keeps ``category`` when present.

    Returns:
        ``N`` rows: the :data:`FEATURES` columns that could be derived, ``clicked`` as 0/1,
        ``user_id``, and ``prediction`` when given.

    Raises:
        ValueError: ``clicked`` or ``domain`` is missing.
    """
    missing = {TARGET, "domain"} - set(interactions.columns)
    if missing:
        raise ValueError(f"interactions lack columns {sorted(missing)}")
    frame = interactions.copy()
    if items is not None and len(items) and "item_id" in frame:
        catalog = items
        if "ts" in catalog:
            catalog = catalog.sort_values("ts")
        catalog = catalog.drop_duplicates("item_id", keep="last").set_index("item_id")
        for column in ("category", "publish_ts"):
            if column in catalog and column not in frame:
                frame[column] = frame["item_id"].map(catalog[column])
    out = pd.DataFrame(index=frame.index)
    for column in ("position", "propensity", "dwell_ms", "completion_ratio"):
        if column in frame:
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    if "ts" in frame:
        ts = _utc(frame["ts"])
        out["hour_of_day"] = ts.dt.hour.astype(float)
        if "publish_ts" in frame:
            age = (ts - _utc(frame["publish_ts"])).dt.total_seconds() / 3600
            out["item_age_hours"] = age.astype(float)
    clicked = frame[TARGET].fillna(False).astype(bool).astype(int)
    if "user_id" in frame:
        users = frame["user_id"]
        out["user_impressions"] = users.map(users.value_counts()).astype(float)
        out["user_clicks"] = clicked.groupby(users).transform("sum").astype(float)
        out["user_id"] = users.astype(str)
    for column in ("domain", "category", "policy"):
        if column in frame:
            out[column] = frame[column].astype("string").astype(object)
    out[TARGET] = clicked
    if PREDICTION in frame:
        out[PREDICTION] = pd.to_numeric(frame[PREDICTION], errors="coerce").astype(float)
    return out


@dataclass(frozen=True)
class ColumnStatus:
    """Whether a column can be compared, and why not.

    Attributes:
        column: Column name.
        kind: ``numerical`` or ``categorical``.
        status: ``ok``, ``missing`` (absent from a window), ``all_null`` (no value in a
            window), ``constant`` (one and the same value in both windows: nothing can drift),
            ``constant_reference`` (numerical, one value in the reference, others now: drift
            by definition, Evidently's normed distances divide by the reference spread).
        detail: Human-readable explanation.
    """

    column: str
    kind: ColumnKind
    status: str
    detail: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _single_valued(values: pd.Series) -> bool:
    """Whether a non-empty, null-free series holds one value only."""
    if pd.api.types.is_numeric_dtype(values):
        return bool(values.min() == values.max())
    return bool((values == values.iloc[0]).all())


def screen_columns(
    reference: pd.DataFrame, current: pd.DataFrame, columns: dict[str, ColumnKind]
) -> list[ColumnStatus]:
    """Classify each column before it reaches Evidently (which raises on empty columns)."""
    statuses = []
    for column, kind in columns.items():
        windows = (("reference", reference), ("current", current))
        absent = [name for name, frame in windows if column not in frame]
        if absent:
            statuses.append(ColumnStatus(column, kind, "missing", f"absent from {absent[0]}"))
            continue
        ref, cur = reference[column].dropna(), current[column].dropna()
        empty = [name for name, values in (("reference", ref), ("current", cur)) if values.empty]
        if empty:
            detail = f"no non-null value in {' and '.join(empty)}"
            statuses.append(ColumnStatus(column, kind, "all_null", detail))
            continue
        # A cheap single-value check first: unique() over a million rows is not free.
        if _single_valued(ref):
            ref_values = [_plain(ref.iloc[0])]
            cur_values = [_plain(v) for v in cur.unique()]
            if len(cur_values) == 1 and cur_values[0] == ref_values[0]:
                statuses.append(ColumnStatus(column, kind, "constant", f"always {ref_values[0]!r}"))
                continue
            if kind == "numerical":
                statuses.append(
                    ColumnStatus(
                        column,
                        kind,
                        "constant_reference",
                        f"reference always {ref_values[0]!r}; current has {len(cur_values)} values",
                    )
                )
                continue
        statuses.append(ColumnStatus(column, kind, "ok"))
    return statuses


def sample_rows(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """A uniform sample without replacement of at most ``max_rows`` rows (seeded)."""
    if len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed)


@dataclass(frozen=True)
class DomainCtr:
    """CTR of one domain, reference vs current, with the drop test.

    Attributes:
        domain: Content domain.
        status: ``ok`` or ``too_few_impressions``.
        reference_ctr: Clicks / impressions in the reference window.
        current_ctr: Same, current window.
        relative_change: ``current / reference - 1``.
        z: Two-proportion z statistic (negative: CTR fell).
        dropped: Fell by more than ``max_relative_drop`` with ``z < -min_z``.
    """

    domain: str
    status: str
    reference_impressions: int
    current_impressions: int
    reference_ctr: float | None = None
    current_ctr: float | None = None
    relative_change: float | None = None
    z: float | None = None
    dropped: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def _two_proportion_z(k1: int, n1: int, k2: int, n2: int) -> float:
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return 0.0 if se == 0 else (k2 / n2 - k1 / n1) / se


def ctr_by_domain(
    reference: pd.DataFrame, current: pd.DataFrame, params: CtrParams
) -> list[DomainCtr]:
    """Per-domain CTR drift: a drop is relative (``max_relative_drop``) and significant (z)."""
    results = []
    domains = sorted(set(reference["domain"].dropna()) | set(current["domain"].dropna()))
    for domain in domains:
        ref = reference.loc[reference["domain"] == domain, TARGET]
        cur = current.loc[current["domain"] == domain, TARGET]
        n1, n2 = len(ref), len(cur)
        if min(n1, n2) < params.min_impressions:
            results.append(DomainCtr(domain, "too_few_impressions", n1, n2))
            continue
        k1, k2 = int(ref.sum()), int(cur.sum())
        ctr1, ctr2 = k1 / n1, k2 / n2
        change = ctr2 / ctr1 - 1 if ctr1 > 0 else None
        z = _two_proportion_z(k1, n1, k2, n2)
        dropped = change is not None and change < -params.max_relative_drop and z < -params.min_z
        results.append(
            DomainCtr(
                domain,
                "ok",
                n1,
                n2,
                reference_ctr=round(ctr1, 5),
                current_ctr=round(ctr2, 5),
                relative_change=None if change is None else round(change, 4),
                z=round(z, 2),
                dropped=dropped,
            )
        )
    return results


@dataclass(frozen=True)
class DomainCalibration:
    """Calibration of the predicted CTR in one domain of the current window.

    Attributes:
        domain: Content domain.
        status: ``ok``, ``not available`` (no prediction column) or ``no_rows``.
        rows: Rows with a prediction.
        mean_prediction: Mean predicted CTR.
        observed_ctr: Observed CTR.
        ratio_error: ``mean_prediction / observed_ctr - 1``.
        ece: Expected calibration error over equal-width probability bins.
        miscalibrated: ``|ratio_error| > max_calibration_error``.
    """

    domain: str
    status: str
    rows: int = 0
    mean_prediction: float | None = None
    observed_ctr: float | None = None
    ratio_error: float | None = None
    ece: float | None = None
    miscalibrated: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def expected_calibration_error(prediction: np.ndarray, clicked: np.ndarray, bins: int) -> float:
    """``sum_b n_b / N * |mean(prediction_b) - mean(clicked_b)|`` over ``bins`` equal bins."""
    index = np.minimum((prediction * bins).astype(int), bins - 1)
    pred_sum = np.bincount(index, weights=prediction, minlength=bins)
    click_sum = np.bincount(index, weights=clicked, minlength=bins)
    return float(np.abs(pred_sum - click_sum).sum() / max(len(prediction), 1))


def calibration_by_domain(frame: pd.DataFrame, params: CtrParams) -> list[DomainCalibration]:
    """Per-domain calibration of ``prediction``; ``not available`` without that column."""
    domains = sorted(frame["domain"].dropna().unique())
    if PREDICTION not in frame or frame[PREDICTION].isna().all():
        return [DomainCalibration(str(d), "not available") for d in domains]
    results = []
    for domain in domains:
        rows = frame[(frame["domain"] == domain) & frame[PREDICTION].notna()]
        if rows.empty:
            results.append(DomainCalibration(str(domain), "no_rows"))
            continue
        prediction = rows[PREDICTION].to_numpy(dtype=float).clip(0, 1)
        clicked = rows[TARGET].to_numpy(dtype=float)
        mean_pred, observed = float(prediction.mean()), float(clicked.mean())
        bins = params.calibration_bins
        ratio = mean_pred / observed - 1 if observed > 0 else math.inf
        results.append(
            DomainCalibration(
                str(domain),
                "ok",
                rows=len(rows),
                mean_prediction=round(mean_pred, 5),
                observed_ctr=round(observed, 5),
                ratio_error=round(ratio, 4) if math.isfinite(ratio) else None,
                ece=round(expected_calibration_error(prediction, clicked, bins), 5),
                miscalibrated=abs(ratio) > params.max_calibration_error,
            )
        )
    return results
