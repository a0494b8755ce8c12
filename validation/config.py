"""Typed ``validate`` section of params.yaml."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from muma.contract import MAX_DWELL_MS, Domain, Source

INTERACTIONS = "interactions"
"""The labelled impressions table of :mod:`ingest.interactions` (same name as its constant;
importing it here would pull in Spark)."""

TABLES: tuple[str, ...] = (*(source.value for source in Source), INTERACTIONS)
"""Curated tables, each validated by its own suite."""


class Check(StrEnum):
    """Kinds of expectation; each expectation of a suite belongs to one, named in its ``meta``.

    ``ValidationParams.critical`` decides which kinds fail the stage; the others only warn.
    """

    SCHEMA = "schema"
    """The column set and each column's Spark type."""
    NOT_NULL = "not_null"
    """Required keys of the contract (``event_id``, ``ts``, ``user_id``, ...) are never null."""
    UNIQUE_EVENT_ID = "unique_event_id"
    """``event_id`` is unique within the partition."""
    VALUE_RANGE = "value_range"
    """Numeric ranges of the contract (position, completion, fixation, durations)."""
    ALLOWED_VALUES = "allowed_values"
    """Enumerated strings of the contract (domain, relation, action, region)."""
    PROPENSITY = "propensity"
    """Logged propensities lie in (0, 1]."""
    DWELL = "dwell"
    """``dwell_ms`` lies in ``[0, max_dwell_ms]``."""
    ATTRIBUTION = "attribution"
    """Interactions: a click is never earlier than its impression."""
    CTR = "ctr"
    """Interactions: the click-through rate of each domain is plausible."""
    ROW_COUNT_CHANGE = "row_count_change"
    """The row count is within a factor of the previous hour's partition."""


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


DEFAULT_CRITICAL = (
    Check.SCHEMA,
    Check.NOT_NULL,
    Check.UNIQUE_EVENT_ID,
    Check.VALUE_RANGE,
    Check.ALLOWED_VALUES,
    Check.PROPENSITY,
    Check.DWELL,
    Check.ATTRIBUTION,
)
"""Broken data: fail the stage. Implausible but possible data (CTR, volume) only warns."""


class CtrBounds(BaseModel):
    """Plausible click-through rate of one domain, both ends inclusive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float = Field(ge=0.0, le=1.0)
    max: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> CtrBounds:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


def _default_ctr_bounds() -> dict[Domain, CtrBounds]:
    return {
        Domain.NEWS: CtrBounds(min=0.01, max=0.5),
        Domain.VIDEO: CtrBounds(min=0.01, max=0.5),
        Domain.AD: CtrBounds(min=0.001, max=0.3),
    }


class ValidationParams(BaseModel):
    """Parameters of the validation step.

    Attributes:
        reports_dir: Where JSON results (``<table>/date=.../hour=HH.json``) and Data Docs
            (``data_docs/``) are written; relative paths are relative to the working
            directory of the caller.
        critical: Kinds of expectation (:class:`Check`) whose failure fails the stage; the
            others are warnings.
        max_dwell_ms: Upper bound of ``dwell_ms`` (at most the contract's own bound).
        ctr_bounds: Plausible click-through rate per domain of the ``interactions`` table;
            a domain left out is not checked.
        min_impressions_for_ctr: A domain's CTR is only judged from at least this many
            impressions in the partition; fewer are too noisy to warn about.
        max_row_count_ratio: A partition may have up to this factor more, or this factor
            fewer, rows than the previous hour's partition of the same table.
        row_count_change_tables: Tables whose row count is compared with the previous hour.
            ``items`` and ``social_edges`` are left out by default: a simulated range starts
            with a full catalog and graph snapshot, then only changes follow.
        result_format: GX result format. ``BASIC`` reports up to 20 unexpected values of
            each column check (one extra Spark job per check); ``BOOLEAN_ONLY`` only counts
            them; ``SUMMARY`` adds value counts, ``COMPLETE`` every unexpected value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reports_dir: Path = Path("reports/validation")
    critical: tuple[Check, ...] = DEFAULT_CRITICAL
    max_dwell_ms: int = Field(default=MAX_DWELL_MS, gt=0, le=MAX_DWELL_MS)
    ctr_bounds: dict[Domain, CtrBounds] = Field(default_factory=_default_ctr_bounds)
    min_impressions_for_ctr: int = Field(default=200, ge=1)
    max_row_count_ratio: float = Field(default=3.0, gt=1.0)
    row_count_change_tables: tuple[str, ...] = (
        Source.IMPRESSIONS.value,
        Source.CLICKS.value,
        Source.VIEWS.value,
        Source.GAZE.value,
        INTERACTIONS,
    )
    result_format: str = Field(default="BASIC", pattern="^(BOOLEAN_ONLY|BASIC|SUMMARY|COMPLETE)$")

    @field_validator("critical")
    @classmethod
    def _no_repeats(cls, value: tuple[Check, ...]) -> tuple[Check, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists a check twice")
        return value

    @field_validator("row_count_change_tables")
    @classmethod
    def _known_tables(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(TABLES))
        if unknown:
            raise ValueError(f"unknown tables {unknown}; known tables: {', '.join(TABLES)}")
        return value

    def severity(self, check: Check) -> Severity:
        """Whether a failure of ``check`` fails the stage."""
        return Severity.CRITICAL if check in self.critical else Severity.WARNING
