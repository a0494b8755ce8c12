"""The ``serve`` section of params.yaml: policy, candidates, limits and timings of the API.

Read once at start-up (:func:`load_serve_params`) and passed down. params.yaml may have no
``serve`` section; then every default below applies.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from muma.contract import Domain
from muma.params import load_params, load_section
from policy.policies import ExplorationParams, PolicyName


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_exploration() -> dict[str, ExplorationParams]:
    return {domain.value: ExplorationParams() for domain in Domain}


class CandidateParams(_Strict):
    """Candidate sources' shares of each domain (scaled to the size asked for) and limits.

    Attributes:
        per_domain: Cap on candidates scored per domain after deduplication (a request may
            ask for fewer, never more than ``max_per_domain``).
        max_per_domain: Largest ``candidates`` a request may ask for.
        graph: Neighbours of the user's recent items in the heterogeneous graph (item
            metapaths) and the user's own item-ending metapaths (cross-domain transfer).
        friends: Recent items of the user's friends (``user_friend_user`` metapath).
        popular: Most clicked items of the domain (decayed, from ``item_hourly_stats``).
        fresh: Newest items of the domain (``age_hours``).
        recent_items: How many of the user's newest behaviours seed graph neighbours.
        friends_read: How many friends' sequences are read per request.
        exclude_seen: Leave out items already in the user's behaviour sequence.
    """

    per_domain: int = Field(default=100, ge=1)
    max_per_domain: int = Field(default=1000, ge=1)
    graph: int = Field(default=60, ge=0)
    friends: int = Field(default=30, ge=0)
    popular: int = Field(default=60, ge=0)
    fresh: int = Field(default=40, ge=0)
    recent_items: int = Field(default=10, ge=0)
    friends_read: int = Field(default=10, ge=0)
    exclude_seen: bool = True

    @model_validator(mode="after")
    def _cap(self) -> CandidateParams:
        if self.per_domain > self.max_per_domain:
            raise ValueError("per_domain must not exceed max_per_domain")
        return self


class ServeParams(_Strict):
    """Everything the serving API reads from params.yaml (section ``serve``).

    Attributes:
        policy: Slate policy (:mod:`policy.policies`); ``bandit`` needs a MUMA model.
        exploration: Exploration per domain (temperature, epsilon, floor, UCB width).
        bandit_ridge: Prior precision of the neural-linear posterior (``bandit`` only).
        candidates: Candidate generation.
        default_k: Slate size per domain when a request gives none.
        max_k: Largest slate size a request may ask for.
        max_body_bytes: Larger request bodies get 413.
        redis_timeout_ms: Socket timeout of the online-store reads and writes.
        redis_retry_seconds: After a Redis failure, serve degraded this long before trying
            Redis again (so a dead server costs one timeout, not one per request).
        reload_poll_seconds: How often ``champion.json`` is checked for a new version.
        index_refresh_seconds: How often every known item's row is re-read: popular and fresh
            items ranked again, the item cache refilled.
        fallback_items_per_domain: Popular and fresh items kept in process with their
            features, served when the online store is down.
        flush_seconds: Impressions, events and served features are written this often.
        flush_records: ... or as soon as this many records wait.
        spool_memory_events: Events kept in memory while Redis is down; more go to disk.
        spool_disk_events: Bound of the disk spool (the oldest are never dropped: beyond it
            ``/events`` answers 503 so the client retries).
        event_batch: Largest batch of events pushed to the online store at once.
        torch_threads: torch intra-op threads (requests run in parallel threads already).
        worker_threads: Threads running requests at once (more only queue for the two cores
            and grow memory: each thread keeps its own allocator arena).
        push_interval_seconds: Least time between two real-time pushes, so events batch up
            instead of each costing a pandas aggregation under load.
        item_cache_seconds: How long a candidate's encoded item row is reused before it is
            read from the online store again (:mod:`serving.item_cache`; item features change
            when the store is materialised); 0 reads every candidate on every request. Every
            index build (``index_refresh_seconds``) stores the whole catalogue in the cache, so
            with a longer TTL than that, requests find every known item in date.
        item_cache_items: Bound on the cached items (the cache starts over beyond it).
    """

    policy: PolicyName = "softmax"
    exploration: dict[str, ExplorationParams] = Field(default_factory=_default_exploration)
    bandit_ridge: float = Field(default=1.0, gt=0)
    candidates: CandidateParams = CandidateParams()
    default_k: int = Field(default=10, ge=1)
    max_k: int = Field(default=50, ge=1, le=100)
    max_body_bytes: int = Field(default=64 * 1024, ge=256)
    redis_timeout_ms: float = Field(default=250.0, gt=0)
    redis_retry_seconds: float = Field(default=1.0, ge=0)
    reload_poll_seconds: float = Field(default=2.0, gt=0)
    index_refresh_seconds: float = Field(default=60.0, gt=0)
    fallback_items_per_domain: int = Field(default=500, ge=1)
    flush_seconds: float = Field(default=2.0, gt=0)
    flush_records: int = Field(default=20_000, ge=1)
    spool_memory_events: int = Field(default=50_000, ge=1)
    spool_disk_events: int = Field(default=5_000_000, ge=1)
    event_batch: int = Field(default=2_000, ge=1)
    torch_threads: int = Field(default=1, ge=1)
    worker_threads: int = Field(default=8, ge=1)
    push_interval_seconds: float = Field(default=0.2, ge=0)
    item_cache_seconds: float = Field(default=90.0, ge=0)
    item_cache_items: int = Field(default=500_000, ge=1)

    @model_validator(mode="after")
    def _domains(self) -> ServeParams:
        unknown = set(self.exploration) - {domain.value for domain in Domain}
        if unknown:
            raise ValueError(f"exploration has unknown domains {sorted(unknown)}")
        if self.default_k > self.max_k:
            raise ValueError("default_k must not exceed max_k")
        return self

    def exploration_for(self, domain: str) -> ExplorationParams:
        return self.exploration.get(domain) or ExplorationParams()


def load_serve_params(path: Path) -> ServeParams:
    """The ``serve`` section of ``path``, or the defaults when the file or section is absent.

    Raises:
        muma.params.ParamsError: The section exists but does not validate.
    """
    if not Path(path).is_file() or "serve" not in load_params(path):
        return ServeParams()
    return load_section(path, "serve", ServeParams)
