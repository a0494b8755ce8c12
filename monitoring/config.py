"""Typed thresholds of the monitoring step (the ``monitor`` section of params.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NumMethod = Literal["wasserstein", "ks", "psi", "kl_div", "jensenshannon", "hellinger"]
CatMethod = Literal["jensenshannon", "psi", "chisquare", "z", "kl_div", "hellinger", "TVD"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureDriftParams(_Strict):
    """Column drift through Evidently: one method and threshold per column kind.

    Distance methods (normed Wasserstein, Jensen-Shannon) are used rather than p-values:
    with a million rows every p-value is tiny, while a distance measures how much moved.
    """

    num_method: NumMethod = "wasserstein"
    num_threshold: float = Field(default=0.1, gt=0)
    cat_method: CatMethod = "jensenshannon"
    cat_threshold: float = Field(default=0.1, gt=0)
    drift_share: float = Field(
        default=0.5, gt=0, le=1, description="retrain when this share of features drifts"
    )
    prediction_threshold: float = Field(
        default=0.1, gt=0, description="normed Wasserstein distance of the predicted CTR"
    )
    max_rows: int = Field(
        default=50_000,
        ge=1_000,
        description="uniform sample (seeded) per window fed to Evidently; stats stay exact",
    )
    min_rows: int = Field(
        default=100, ge=1, description="windows with fewer rows are reported as too small"
    )


class CtrParams(_Strict):
    """Per-domain CTR and calibration checks."""

    max_relative_drop: float = Field(
        default=0.2, gt=0, lt=1, description="flag a domain whose CTR fell by more than this"
    )
    min_z: float = Field(
        default=3.0, gt=0, description="and whose two-proportion z statistic is below -min_z"
    )
    min_impressions: int = Field(default=500, ge=1, description="per domain and window")
    max_calibration_error: float = Field(
        default=0.25, gt=0, description="|mean predicted / observed CTR - 1| per domain"
    )
    calibration_bins: int = Field(default=10, ge=2)


class InterestParams(_Strict):
    """Users' category-interest distributions per domain, reference vs current."""

    smoothing: float = Field(
        default=1.0, gt=0, description="pseudo-clicks spread like the domain's pooled mix"
    )
    dwell_weighted: bool = Field(
        default=False, description="weight clicks by log1p(dwell seconds) instead of 1"
    )
    min_user_events: int = Field(
        default=3, ge=1, description="clicks a user needs in each window to be compared"
    )
    min_users: int = Field(default=20, ge=2, description="eligible users a domain needs")
    permutations: int = Field(
        default=200, ge=0, description="0 uses user_js_threshold instead of a permutation test"
    )
    alpha: float = Field(default=0.01, gt=0, lt=1, description="permutation test level")
    margin: float = Field(
        default=0.03,
        ge=0,
        description="JS a mean must exceed the permutation quantile by (effect size, not noise)",
    )
    user_js_threshold: float = Field(default=0.3, gt=0, le=1)
    population_js_threshold: float = Field(default=0.1, gt=0, le=1)
    representation_shift_threshold: float = Field(
        default=0.2, gt=0, le=2, description="mean cosine distance between a user's embeddings"
    )


class PropensityParams(_Strict):
    """Health of the logged propensities used by off-policy estimators."""

    weight_clip: float = Field(
        default=200.0, gt=1, description="clip of 1/propensity weights (50 candidates: median 27)"
    )
    max_clipped_share: float = Field(default=0.05, ge=0, le=1)
    min_ess_share: float = Field(
        default=0.05, gt=0, le=1, description="effective sample size / rows, per policy+domain"
    )
    min_propensity: float = Field(default=1e-4, gt=0, le=1)


class MonitorParams(_Strict):
    """The ``monitor`` section of params.yaml."""

    seed: int = Field(default=0, ge=0)
    features: FeatureDriftParams = FeatureDriftParams()
    ctr: CtrParams = CtrParams()
    interest: InterestParams = InterestParams()
    propensity: PropensityParams = PropensityParams()
    workspace_project: str = Field(default="muma-monitoring", min_length=1)
