"""Typed configuration of the simulated media world (the ``simulate`` section of params.yaml)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from muma.contract import Domain


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps need an explicit UTC offset, e.g. 2026-11-01T00:00:00Z")
    return value.astimezone(UTC)


class InterestShock(_Strict):
    """A sudden interest drift injected at ``at``: a share of users turn towards one category."""

    at: datetime
    domain: Domain = Domain.NEWS
    category: str | None = Field(
        default=None, description="category users turn to; None picks the least popular one"
    )
    strength: float = Field(default=3.0, gt=0, description="logit boost of that category")
    share: float = Field(default=0.6, gt=0, le=1, description="share of users affected")

    _aware_at = field_validator("at")(lambda cls, v: _aware(v))


class BadRecords(_Strict):
    """Share of injected bad records per partition, for the quarantine tests."""

    share: float = Field(default=0.0, ge=0, le=0.5)
    late_by_hours: float = Field(
        default=48.0, gt=0, description="how far before the partition a late event's time lies"
    )


class LoggingPolicy(_Strict):
    """The production policy whose impressions the simulator logs, with exact propensities.

    Scores are a noisy view of the truth (``knowledge`` of the users' interests plus item
    quality); slates are Plackett-Luce samples from ``(1 - epsilon) * softmax(score /
    temperature) + epsilon / candidates``, so every candidate keeps a floor probability.
    """

    name: str = "logging_softmax"
    model_version: str = "sim-logging-v1"
    temperature: float = Field(default=1.0, gt=0)
    epsilon: float = Field(default=0.1, ge=0, le=1)
    knowledge: float = Field(default=0.6, ge=0, le=1)


class SimulatorConfig(_Strict):
    """Parameters of the simulated media platform and its ground truth."""

    users: int = Field(default=2_000, ge=2)
    items: int = Field(default=3_000, ge=3)
    domain_shares: dict[Domain, float] = Field(
        default={Domain.NEWS: 0.5, Domain.VIDEO: 0.35, Domain.AD: 0.15}
    )
    categories: dict[Domain, list[str]] = Field(
        default={
            Domain.NEWS: [
                "politics",
                "world",
                "business",
                "tech",
                "science",
                "health",
                "sports",
                "entertainment",
                "lifestyle",
                "travel",
                "autos",
                "weather",
            ],
            Domain.VIDEO: [
                "music",
                "gaming",
                "comedy",
                "documentary",
                "cooking",
                "fitness",
                "movies",
                "kids",
                "diy",
                "esports",
            ],
            Domain.AD: [
                "retail",
                "finance",
                "auto_ads",
                "travel_ads",
                "food",
                "apps",
                "fashion",
                "telecom",
            ],
        }
    )
    creators_per_domain: dict[Domain, int] = Field(
        default={Domain.NEWS: 120, Domain.VIDEO: 90, Domain.AD: 40}
    )
    backlog_days: float = Field(
        default=7.0, ge=0, description="items published this long before the start already exist"
    )
    communities: int = Field(default=12, ge=1)
    community_weight: float = Field(default=0.7, ge=0, le=1)
    interest_concentration: float = Field(default=0.4, gt=0, description="Dirichlet alpha")
    mean_friends: float = Field(default=8.0, ge=0)
    homophily: float = Field(default=0.85, ge=0, le=1)
    edge_churn_per_hour: float = Field(default=0.002, ge=0, description="share of edges changing")
    drift_per_day: float = Field(
        default=0.0, ge=0, description="std of the daily random walk of interest logits"
    )
    social_influence: float = Field(
        default=0.0, ge=0, le=1, description="daily pull of interests toward friends' mean"
    )
    shock: InterestShock | None = None
    sessions_per_user_per_day: float = Field(default=1.5, gt=0)
    requests_per_session: float = Field(default=3.0, ge=1)
    slate_size: int = Field(default=5, ge=1, le=20)
    candidates: int = Field(default=50, ge=2)
    position_bias: float = Field(default=0.9, ge=0, description="examination = position^-bias")
    base_logit: dict[Domain, float] = Field(
        default={Domain.NEWS: -1.6, Domain.VIDEO: -1.4, Domain.AD: -2.6}
    )
    interest_weight: float = 1.2
    quality_weight: float = 0.6
    latent_weight: float = 0.5
    session_boost: float = 0.8
    fatigue_per_request: float = Field(default=0.15, ge=0)
    freshness_half_life_hours: dict[Domain, float] = Field(
        default={Domain.NEWS: 24.0, Domain.VIDEO: 168.0, Domain.AD: 72.0}
    )
    gaze_panel_share: float = Field(default=0.05, ge=0, le=1)
    offset_share: float = Field(
        default=0.1, ge=0, le=1, description="share of records written in a non-UTC offset"
    )
    logging_policy: LoggingPolicy = LoggingPolicy()
    bad_records: BadRecords = BadRecords()

    @model_validator(mode="after")
    def _consistent(self) -> SimulatorConfig:
        for mapping in (
            self.domain_shares,
            self.categories,
            self.creators_per_domain,
            self.base_logit,
            self.freshness_half_life_hours,
        ):
            missing = set(Domain) - set(mapping)
            if missing:
                raise ValueError(f"every domain needs a value; missing {sorted(missing)}")
        names = [name for domain in Domain for name in self.categories[domain]]
        if len(names) != len(set(names)):
            raise ValueError("category names must be unique across domains")
        if self.candidates < self.slate_size:
            raise ValueError("candidates must be at least slate_size")
        if (
            self.shock
            and self.shock.category is not None
            and (self.shock.category not in self.categories[self.shock.domain])
        ):
            raise ValueError(
                f"shock.category {self.shock.category!r} is not a {self.shock.domain} category"
            )
        return self


class SimulateParams(_Strict):
    """The ``simulate`` section of params.yaml: the default run plus the world."""

    start: datetime
    end: datetime
    world: SimulatorConfig = SimulatorConfig()

    _aware_start = field_validator("start", "end")(lambda cls, v: _aware(v))

    @model_validator(mode="after")
    def _ordered(self) -> SimulateParams:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self
