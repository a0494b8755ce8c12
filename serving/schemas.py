"""Request and response bodies of the API (OpenAPI documents them from these models)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from muma.contract import Domain


class RecommendRequest(BaseModel):
    """``POST /recommend``.

    Attributes:
        user_id: The user; an id the model has never seen gets the cold-start path.
        domains: Domains to fill, each with its own slate (default: every domain).
        k: Slate size per domain (default ``serve.default_k``).
        candidates: Candidates scored per domain (default ``serve.candidates.per_domain``).
        context: Free client context (device, page...), echoed into nothing but logs.
    """

    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=128)
    domains: list[Domain] = Field(default_factory=lambda: list(Domain), min_length=1)
    k: int | None = Field(default=None, ge=1, le=100)
    candidates: int | None = Field(default=None, ge=1)
    context: dict[str, str | int | float | bool] = Field(default_factory=dict, max_length=32)

    @field_validator("domains")
    @classmethod
    def _distinct(cls, value: list[Domain]) -> list[Domain]:
        if len(set(value)) != len(value):
            raise ValueError("domains must be distinct")
        return value


class SlateItem(BaseModel):
    item_id: str
    position: int
    score: float = Field(description="calibrated click probability at the serving position")
    propensity: float = Field(description="exact slot-conditional propensity of the policy")


class RecommendResponse(BaseModel):
    """``POST /recommend`` answer: one slate per requested domain.

    Attributes:
        request_id: Id logged with every impression; send it back with clicks and views.
        degraded: True when the online store was unreachable and the in-process fallback
            (popular and fresh items, features from the last index build) answered.
        cold_start: True when the user has no online features (unknown or new user).
    """

    request_id: str
    user_id: str
    model_version: str
    policy: str
    degraded: bool
    cold_start: bool
    slates: dict[str, list[SlateItem]]
    candidates: dict[str, int]


class EventsRequest(BaseModel):
    """``POST /events``: up to 1,000 events, each ``{"type": click|view|gaze|social_edge, ...}``
    with the data contract's keys (``event_id`` and ``ts`` may be left to the server) and, for
    clicks and views, an optional ``domain``."""

    model_config = ConfigDict(extra="forbid")

    events: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class EventsResponse(BaseModel):
    accepted: int
    realtime_queued: int
    event_ids: list[str]
