"""Propensity health: are the logged propensities still usable for off-policy estimates?

Inverse-propensity weights ``1 / propensity`` blow up when a policy logs tiny
probabilities; an estimate then rests on a few rows. Per policy and domain this reports
the effective sample size ``(sum w)^2 / sum w^2`` (Kish), its share of the rows, the
smallest propensity and the share of weights above the clip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from .config import PropensityParams


@dataclass(frozen=True)
class PropensityHealth:
    """Propensity health of one policy in one domain.

    Attributes:
        policy: Logging policy name.
        domain: Content domain.
        rows: Impressions with a propensity.
        missing: Impressions without a usable propensity (null or outside ``(0, 1]``).
        ess: Kish effective sample size of the ``1 / propensity`` weights.
        ess_share: ``ess / rows``.
        min_propensity: Smallest logged propensity.
        clipped_share: Share of weights above ``weight_clip``.
        problems: Human-readable problems (empty when healthy).
    """

    policy: str
    domain: str
    rows: int
    missing: int
    ess: float | None
    ess_share: float | None
    min_propensity: float | None
    clipped_share: float | None
    problems: list[str]

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {**asdict(self), "healthy": self.healthy}


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish effective sample size ``(sum w)^2 / sum w^2`` of ``N`` non-negative weights."""
    if len(weights) == 0:
        return 0.0
    return float(weights.sum() ** 2 / np.square(weights).sum())


def _health(
    policy: str, domain: str, propensity: pd.Series, params: PropensityParams
) -> PropensityHealth:
    values = pd.to_numeric(propensity, errors="coerce").to_numpy(dtype=float)
    usable = np.isfinite(values) & (values > 0) & (values <= 1)
    p = values[usable]
    missing = int((~usable).sum())
    if len(p) == 0:
        return PropensityHealth(
            policy, domain, 0, missing, None, None, None, None, ["no usable propensity"]
        )
    weights = 1.0 / p
    ess = effective_sample_size(weights)
    ess_share = ess / len(p)
    clipped = float((weights > params.weight_clip).mean())
    smallest = float(p.min())
    problems = []
    where = f"{policy}/{domain}"
    if ess_share < params.min_ess_share:
        problems.append(
            f"propensity ESS in {where}: {ess:.0f} of {len(p)} rows "
            f"({ess_share:.1%} < {params.min_ess_share:.1%})"
        )
    if clipped > params.max_clipped_share:
        problems.append(
            f"clipped weights in {where}: {clipped:.1%} > {params.max_clipped_share:.1%} "
            f"above {params.weight_clip:g}"
        )
    if smallest < params.min_propensity:
        problems.append(
            f"smallest propensity in {where}: {smallest:.2e} < {params.min_propensity:.0e}"
        )
    if missing:
        problems.append(f"{missing} rows in {where} lack a usable propensity")
    return PropensityHealth(
        policy,
        domain,
        rows=len(p),
        missing=missing,
        ess=round(ess, 1),
        ess_share=round(ess_share, 4),
        min_propensity=smallest,
        clipped_share=round(clipped, 4),
        problems=problems,
    )


def propensity_health(frame: pd.DataFrame, params: PropensityParams) -> list[PropensityHealth]:
    """Health per ``(policy, domain)`` of a window of interactions.

    Args:
        frame: Rows with ``propensity``, ``domain`` and (optionally) ``policy``.
        params: Clip and thresholds.

    Raises:
        ValueError: ``propensity`` or ``domain`` is missing.
    """
    missing = {"propensity", "domain"} - set(frame.columns)
    if missing:
        raise ValueError(f"propensity health needs columns {sorted(missing)}")
    policy = frame["policy"] if "policy" in frame else pd.Series("unknown", index=frame.index)
    groups = frame.assign(_policy=policy.fillna("unknown"), _domain=frame["domain"].fillna("?"))
    return [
        _health(str(p), str(d), rows["propensity"], params)
        for (p, d), rows in groups.groupby(["_policy", "_domain"], sort=True)
    ]
