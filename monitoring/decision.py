"""The retraining decision: ``{retrain, reasons}`` from the signals and MonitorParams.

Each reason names the signal, the domain where it applies and the figures compared, e.g.
``interest drift in news: mean user JS 0.31 > 0.2 (permutation)`` or
``CTR drop in video: 2.1% vs 3.4% (-38%, z -6.2)``. Signals that could not be measured
(tiny window, no predictions) never trigger retraining; they are listed as ``skipped``.
Propensity problems are ``alerts``: they concern the logging policy, which retraining the
ranker does not fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from .drift import ColumnStatus, DomainCalibration, DomainCtr
from .interest import DomainInterestDrift, RepresentationDrift
from .propensity import PropensityHealth


@dataclass(frozen=True)
class FeatureDriftSummary:
    """Evidently's column drift, reduced to what the decision needs.

    Attributes:
        status: ``ok``, ``empty`` (a window has no rows) or ``too_few_rows``.
        columns: Drift score, threshold and verdict of each compared column.
        drifted_share: Share of compared features that drifted (target excluded).
        screened: Columns not compared, with why.
        prediction: Drift of the prediction column (``None``: not available).
        target: Drift of ``clicked`` (CTR) as Evidently measures it.
        reference_rows: Rows in the reference window (before sampling).
        current_rows: Rows in the current window (before sampling).
        sampled_rows: Rows per window fed to Evidently.
    """

    status: str
    columns: dict[str, dict] = field(default_factory=dict)
    drifted_share: float | None = None
    screened: list[ColumnStatus] = field(default_factory=list)
    prediction: dict | None = None
    target: dict | None = None
    reference_rows: int = 0
    current_rows: int = 0
    sampled_rows: int | None = None

    @property
    def drifted(self) -> list[str]:
        return [name for name, result in self.columns.items() if result["drifted"]]

    def as_dict(self) -> dict:
        data = asdict(self)
        data["screened"] = [status.as_dict() for status in self.screened]
        data["drifted"] = self.drifted
        return data


@dataclass(frozen=True)
class Decision:
    """Whether to retrain, and why.

    Attributes:
        retrain: At least one reason.
        reasons: One line per triggered signal, naming signal, domain and figures.
        skipped: Signals not measured, with why (never a reason to retrain).
        alerts: Problems retraining cannot fix (propensity health of the logging policy):
            reported for a person, never a reason to retrain.
    """

    retrain: bool
    reasons: list[str]
    skipped: list[str]
    alerts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def decide(
    features: FeatureDriftSummary,
    drift_share: float,
    ctr: Sequence[DomainCtr],
    calibration: Sequence[DomainCalibration],
    interest: Sequence[DomainInterestDrift],
    representation: RepresentationDrift,
    propensity: Sequence[PropensityHealth],
) -> Decision:
    """Turn the signals into a decision.

    Args:
        features: Column drift summary.
        drift_share: Retrain when at least this share of compared features drifted.
        ctr: Per-domain CTR results.
        calibration: Per-domain calibration of the current window.
        interest: Per-domain interest drift.
        representation: User-representation drift.
        propensity: Propensity health per policy and domain (current window).
    """
    reasons: list[str] = []
    skipped: list[str] = []
    if features.status != "ok":
        skipped.append(
            f"feature drift: {features.status} (reference {features.reference_rows}, "
            f"current {features.current_rows} rows)"
        )
    else:
        share = features.drifted_share
        if share is not None and share >= drift_share:
            names = ", ".join(f"{n} {features.columns[n]['score']:.3g}" for n in features.drifted)
            reasons.append(f"feature drift: {share:.0%} of features >= {drift_share:.0%} ({names})")
        for status in features.screened:
            if status.status == "constant_reference":
                reasons.append(f"feature drift in {status.column}: {status.detail}")
        if features.prediction is None:
            skipped.append("prediction drift: not available (no prediction column)")
        elif features.prediction["drifted"]:
            p = features.prediction
            reasons.append(
                f"prediction drift: {p['method']} {p['score']:.3g} > {p['threshold']:.3g}"
            )
    for result in ctr:
        if result.status != "ok":
            skipped.append(
                f"CTR in {result.domain}: too few impressions "
                f"({result.reference_impressions} / {result.current_impressions})"
            )
        elif result.dropped:
            reasons.append(
                f"CTR drop in {result.domain}: {result.current_ctr:.2%} vs "
                f"{result.reference_ctr:.2%} ({result.relative_change:+.0%}, z {result.z:.1f})"
            )
    for result in calibration:
        if result.status == "not available":
            skipped.append(f"calibration in {result.domain}: not available")
        elif result.miscalibrated:
            reasons.append(
                f"miscalibration in {result.domain}: predicted {result.mean_prediction:.2%} "
                f"vs observed {result.observed_ctr:.2%}"
            )
    for result in interest:
        if result.status != "ok":
            skipped.append(
                f"user interest drift in {result.domain}: {result.status} "
                f"({result.users_compared} users)"
            )
        elif (
            result.mean_js is not None
            and result.threshold is not None
            and result.mean_js > result.threshold
        ):
            reasons.append(
                f"interest drift in {result.domain}: mean user JS {result.mean_js:.3f} > "
                f"{result.threshold:.3f} ({result.threshold_source}, "
                f"{result.users_compared} users)"
            )
        if (
            result.population_js is not None
            and result.population_threshold is not None
            and result.population_js > result.population_threshold
        ):
            gain = result.top_gain or {}
            reasons.append(
                f"interest drift in {result.domain}: population JS {result.population_js:.3f} > "
                f"{result.population_threshold:.3f} ({gain.get('category')} "
                f"{gain.get('reference_share', 0):.1%} -> {gain.get('current_share', 0):.1%})"
            )
    if representation.status != "ok":
        skipped.append(f"representation drift: {representation.status}")
    elif representation.drifted:
        reasons.append(
            f"representation drift: mean cosine distance "
            f"{representation.mean_cosine_distance:.3f} > {representation.threshold:.3f}"
        )
    alerts = [f"propensity health: {problem}" for h in propensity for problem in h.problems]
    return Decision(retrain=bool(reasons), reasons=reasons, skipped=skipped, alerts=alerts)
