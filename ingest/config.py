"""Typed ``ingest`` section of params.yaml."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class IngestParams(BaseModel):
    """Parameters of the Spark ingest step.

    Attributes:
        allowed_lateness_minutes: How long after its own hour an event may still land in a
            later hour's partition; later events are quarantined as ``late_event``.
        attribution_window_minutes: How long after an impression a click or view is still
            attributed to it in the ``interactions`` table.
        curated_dir: Curated tables' directory, relative to ``Settings.data_root``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_lateness_minutes: int = Field(default=120, ge=0)
    attribution_window_minutes: int = Field(default=30, gt=0)
    curated_dir: Path = Path("curated")

    @property
    def allowed_lateness(self) -> timedelta:
        return timedelta(minutes=self.allowed_lateness_minutes)

    @property
    def attribution_window(self) -> timedelta:
        return timedelta(minutes=self.attribution_window_minutes)
