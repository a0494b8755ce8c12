"""The serving logic behind the endpoints: one :class:`Service` per process.

``recommend``: friends from the model's graph -> the user's online row and friends' recent
items (one round trip) -> candidates per domain -> the candidates' item rows (one round trip)
-> one batched score of all candidates -> a slate per domain from the policy with exact
propensities -> impressions and served features logged. When the online store fails at any
step the request continues on the in-process fallback (popular and fresh items with their
last-read features, the user as a cold start) and says ``degraded: true``; never a 5xx.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from feature_repo.config import FeaturesParams
from feature_repo.store import FeastParams
from muma.contract import Source
from policy.policies import choose_slates
from policy.slate import SlateError

from .candidates import DOMAIN_NAMES, friends_of, generate
from .config import ServeParams
from .events import (
    EventIntake,
    EventSpool,
    SpoolFull,
    ValidEvent,
    realtime_event,
    validate_events,
)
from .features import FeatureStoreDown, FriendsRecent, StoreGuard, UserRow, online_features
from .impressions import FeatureRecord, ServingLog, hour_of, iso_utc
from .item_cache import ItemRows
from .metrics import AGE_BUCKETS, Metrics
from .reload import ModelManager, ModelState, ReloadResult

if TYPE_CHECKING:
    from muma.settings import Settings
    from training.bundle import ModelBundle

    from .console.gate import ContentGate
    from .schemas import RecommendRequest

log = logging.getLogger("muma.serving")


_SIDECAR_IDS = ("user_id", "item_id", "domain", "position", "policy", "model_version")
"""Impression keys copied into the served-features sidecar (after event, request and ts)."""


class NotReady(RuntimeError):
    """No model is loaded yet (503)."""


class RequestError(ValueError):
    """A request asks for more than the service allows (422)."""


def _sections(settings: Settings) -> tuple[FeaturesParams, FeastParams]:
    from muma.params import load_params, load_section

    path = Path(settings.params_path)
    present = load_params(path) if path.is_file() else {}
    features = load_section(path, "features", FeaturesParams) if "features" in present else None
    feast = load_section(path, "feast", FeastParams) if "feast" in present else None
    return features or FeaturesParams(), feast or FeastParams()


class Service:
    """Model, online features, policy, logs and the event intake of one serving process.

    Args:
        settings: Runtime settings (data root, Redis URL, API token).
        params: The ``serve`` section.
        features: The ``features`` section (feature names and half-lives), default from
            ``settings.params_path``.
        feast: The ``feast`` section (project, real-time half-life), likewise.
        bundle_dir: Serve this bundle instead of the registry's champion (tests, benchmarks).
    """

    def __init__(
        self,
        settings: Settings,
        params: ServeParams,
        features: FeaturesParams | None = None,
        feast: FeastParams | None = None,
        bundle_dir: Path | None = None,
    ) -> None:
        import torch

        defaults = _sections(settings) if features is None or feast is None else (None, None)
        self.settings = settings
        self.params = params
        self.features_params = features or defaults[0]
        self.feast_params = feast or defaults[1]
        torch.set_num_threads(params.torch_threads)
        self.metrics = _metrics()
        self.guard = StoreGuard(params.redis_retry_seconds)
        self._store_client: Any = None
        self._feast_store: Any = None
        self.manager = ModelManager(
            settings, params, self._reader_for, self.guard, self._on_reload, pinned=bundle_dir
        )
        self.log = ServingLog(
            settings.landing_root, settings.data_root, params.flush_seconds, params.flush_records
        )
        spool = EventSpool(
            Path(settings.data_root) / "serving" / "spool",
            params.spool_memory_events,
            params.spool_disk_events,
        )
        self.intake = EventIntake(
            self._push_realtime,
            self.guard,
            spool,
            params.event_batch,
            self._on_pushed,
            params.push_interval_seconds,
        )
        self._updater: Any = None
        self._updater_lock = threading.Lock()
        self._served: OrderedDict[str, dict[str, tuple[str, np.ndarray]]] = OrderedDict()
        self._served_lock = threading.Lock()
        self.content_gate: ContentGate | None = None
        """Approved and blocked uploads of the operator console (set when it is mounted)."""
        self._register_gauges()

    # ------------------------------------------------------------------ lifecycle
    def start(self, background: bool = True) -> None:
        """Load the champion now, then start the reload, log and event threads."""
        self.manager.check()
        self._realtime_updater()
        # The push path's first use imports Feast: seconds of work holding the GIL, which
        # would stall every request in flight. Pay it here, before the service is ready.
        import feast  # noqa: F401

        if background:
            self.manager.start()
            self.log.start()
            self.intake.start()

    def stop(self) -> None:
        self.manager.stop()
        self.intake.stop()
        self.log.stop()

    # --------------------------------------------------------------- online store
    def _client(self) -> Any:
        if self._store_client is None and self.settings.redis_url:
            from .features import redis_serving_client

            self._store_client = redis_serving_client(
                self.settings.redis_url, self.params.redis_timeout_ms
            )
        return self._store_client

    def _reader_for(self, bundle: ModelBundle):
        names = [c.name for c in bundle.featurizer.user_columns]
        if self.settings.redis_url:
            from .features import RedisOnlineFeatures

            return RedisOnlineFeatures(
                self._client(),
                self.feast_params.project,
                self.features_params,
                names,
                self.feast_params.realtime_half_life_hours,
                item_features=[c.name for c in bundle.featurizer.item_columns],
            )
        reader, _ = online_features(
            self.settings,
            self.features_params,
            self.feast_params,
            names,
            self.params.redis_timeout_ms,
        )
        self._feast_store = getattr(reader, "store", None)
        return reader

    def _realtime_updater(self) -> Any:
        """The real-time push path, built on first use (Redis direct, else Feast's push)."""
        with self._updater_lock:
            if self._updater is None:
                from feature_repo.online import RedisFeatureReader, ViewSpec
                from feature_repo.realtime import (
                    RealtimeUpdater,
                    RedisRealtimeWriter,
                    realtime_table,
                )

                half_life = self.feast_params.realtime_half_life_hours
                if self.settings.redis_url:
                    client = self._client()
                    table = realtime_table(half_life)
                    reader = RedisFeatureReader(
                        client,
                        self.feast_params.project,
                        {table.entity_key: [ViewSpec.from_table(table)]},
                    )
                    writer = RedisRealtimeWriter(
                        client,
                        self.feast_params.project,
                        half_life,
                        self.feast_params.redis_key_ttl_seconds,
                    )
                    self._updater = RealtimeUpdater(None, half_life, reader=reader, writer=writer)  # type: ignore[arg-type]
                else:
                    from feature_repo.store import get_store

                    store = self._feast_store or get_store(self.settings, self.feast_params)
                    self._updater = RealtimeUpdater(store, half_life)
            return self._updater

    def _push_realtime(self, events: list[dict[str, Any]]) -> None:
        try:
            self._realtime_updater().push_events(events)
        except ValueError:
            raise
        except Exception as error:  # redis and Feast raise many types for a dead store
            if _is_store_error(error):
                raise FeatureStoreDown(str(error)) from None
            raise

    # ------------------------------------------------------------------ recommend
    def recommend(self, request: RecommendRequest, *, record: bool = True) -> dict[str, Any]:
        """One slate per requested domain (see the module docstring).

        Args:
            request: The request.
            record: Log impressions and served features, update the bandit and the request
                metrics (False for a preview nobody sees, such as the console's user page).

        Raises:
            NotReady: No model is loaded.
            RequestError: ``k`` or ``candidates`` above the configured limits.
        """
        began = time.perf_counter()
        state = self.manager.state
        if state is None:
            raise NotReady("no champion model is loaded yet; see GET /ready")
        params = self.params
        bundle, featurizer = state.bundle, state.bundle.featurizer
        now_s = time.time()
        request_id = f"r{uuid.uuid4().hex}"
        domains = [domain.value for domain in request.domains]
        k = request.k or params.default_k
        if k > params.max_k:
            raise RequestError(f"k={k} exceeds serve.max_k={params.max_k}")
        per_domain = request.candidates or params.candidates.per_domain
        if per_domain > params.candidates.max_per_domain:
            raise RequestError(
                f"candidates={per_domain} exceeds serve.candidates.max_per_domain="
                f"{params.candidates.max_per_domain}"
            )
        degraded = False
        friends = friends_of(featurizer, request.user_id, params.candidates.friends_read)
        try:
            user, recent = self.guard.call(state.reader.read_user, request.user_id, friends)
        except FeatureStoreDown:
            degraded = True
            user, recent = UserRow(request.user_id, {}, False), FriendsRecent()
        fetched = time.perf_counter()
        sequence = list(user.values.get("seq_item_ids") or [])
        gate = self.content_gate.snapshot(featurizer) if self.content_gate else None
        candidates = generate(
            featurizer,
            state.index,
            request.user_id,
            sequence,
            recent.items,
            domains,
            per_domain,
            params,
            uploaded=gate.approved_ids if gate else None,
            blocked=gate.blocked_ids if gate else (),
        )
        tokens = [token for d in domains for token in candidates.tokens(featurizer, d)]
        item_rows, degraded = self._item_rows(state, tokens, now_s, gate, degraded)
        generated = time.perf_counter()
        slates: dict[str, list[dict[str, Any]]] = {d: [] for d in domains}
        impressions: list[dict[str, Any]] = []
        served_rows: list[int] = []
        if tokens:
            candidate_domains = np.concatenate(
                [np.full(candidates.count(d), d, dtype=object) for d in domains]
            )
            position = int(bundle.info.get("serving_position", 1))
            scores = state.scorer.score(
                request.user_id,
                user.values,
                item_rows,
                candidate_domains,
                now_s,
                position,
                with_hidden=state.bandits is not None,
            )
            scored = time.perf_counter()
            probabilities = scores.probabilities
            rng = np.random.default_rng()
            stamp = iso_utc(now_s)
            start = 0
            for domain in domains:
                count = candidates.count(domain)
                if count == 0:
                    continue
                columns = np.arange(start, start + count)
                start += count
                chosen, propensity, policy = self._choose(
                    state, domain, scores, columns, min(k, count), rng
                )
                for slot, (column, p) in enumerate(zip(chosen, propensity, strict=True), start=1):
                    row = int(columns[column])
                    served_rows.append(row)
                    slates[domain].append(
                        {
                            "item_id": tokens[row],
                            "position": slot,
                            "score": float(probabilities[row]),
                            "propensity": float(p),
                        }
                    )
                    impressions.append(
                        {
                            "event_id": f"i{request_id[1:]}-{domain[0]}{slot}",
                            "ts": stamp,
                            "request_id": request_id,
                            "user_id": request.user_id,
                            "item_id": tokens[row],
                            "domain": domain,
                            "position": slot,
                            "policy": policy,
                            "model_version": bundle.version,
                            "propensity": float(p),
                        }
                    )
            if record and state.bandits is not None and scores.hidden is not None:
                self._remember(state, request_id, impressions, served_rows, scores.hidden)
        else:
            scored = time.perf_counter()
        if record:
            self._log_served(
                state, request_id, now_s, user.values, item_rows, impressions, served_rows, degraded
            )
        done = time.perf_counter()
        if record:  # a preview is not a served recommendation
            self._observe(user, degraded, candidates.total, began, fetched, generated, scored, done)
        return {
            "request_id": request_id,
            "user_id": request.user_id,
            "model_version": bundle.version,
            "policy": params.policy,
            "degraded": degraded,
            "cold_start": not user.found,
            "slates": slates,
            "candidates": {d: candidates.count(d) for d in domains},
        }

    def _item_rows(
        self,
        state: ModelState,
        tokens: list[str],
        now_s: float,
        gate: Any,
        degraded: bool,
    ) -> tuple[ItemRows, bool]:
        """The candidates' encoded rows and whether the answer is degraded.

        In-date rows come from the item cache; the others are read from the online store (one
        pipelined round trip), encoded and cached. With the store down, rows past their TTL
        are still served from the cache and items never seen get the fallback's rows.
        """
        cache = state.items
        slots, fresh = cache.lookup(tokens, now_s)
        parts: list[tuple[np.ndarray, ItemRows]] = []
        if fresh.any():
            parts.append((np.flatnonzero(fresh), cache.rows(slots[fresh])))
        need = np.flatnonzero(~fresh)
        if len(need):
            wanted = [tokens[i] for i in need]
            frame = None
            if not degraded:
                try:
                    frame = self.guard.call(state.reader.read_items, wanted)
                except FeatureStoreDown:
                    degraded = True
            if frame is not None:
                if gate is not None:
                    frame = gate.fill_item_rows(frame, now_s)
                rows = state.encoder.items(frame)
                cache.store(wanted, rows, now_s)
                parts.append((need, rows))
            else:
                stale = slots[need] >= 0
                if stale.any():
                    parts.append((need[stale], cache.rows(slots[need][stale])))
                unseen = need[~stale]
                if len(unseen):
                    frame = state.index.fallback.reindex([tokens[i] for i in unseen])
                    frame = frame.reset_index().rename(columns={"index": "item_id"})
                    if gate is not None:
                        frame = gate.fill_item_rows(frame, now_s)
                    parts.append((unseen, state.encoder.items(frame)))
        if not parts:
            return state.encoder.items(pd.DataFrame({"item_id": []})), degraded
        return ItemRows.assemble(parts, len(tokens)), degraded

    def _choose(
        self,
        state: ModelState,
        domain: str,
        scores: Any,
        columns: np.ndarray,
        slate_size: int,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """One domain's slate: chosen columns, propensities and the policy that chose them."""
        exploration = self.params.exploration_for(domain)
        floor = min(exploration.propensity_floor, 0.5 / len(columns))
        exploration = exploration.model_copy(update={"propensity_floor": floor})
        logits = scores.logits[columns][None, :]
        kwargs: dict[str, Any] = {}
        if state.bandits is not None and scores.hidden is not None:
            kwargs = {
                "bandit": state.bandits[domain],
                "domain": domain,
                "hidden": scores.hidden[columns][None, :, :],
            }
        try:
            with state.bandit_lock:
                slates = choose_slates(
                    self.params.policy, logits, slate_size, exploration, rng, **kwargs
                )
        except SlateError:  # e.g. all weight on fewer items than the slate: fall back exactly
            slates = choose_slates("epsilon_greedy", logits, slate_size, exploration, rng)
        return slates.chosen[0], slates.propensity[0], slates.policy

    def _remember(
        self,
        state: ModelState,
        request_id: str,
        impressions: list[dict[str, Any]],
        rows: list[int],
        hidden: np.ndarray,
    ) -> None:
        """Shown items update the bandit as non-clicks now; a click later adds its reward."""
        shown: dict[str, tuple[str, np.ndarray]] = {}
        by_domain: dict[str, list[np.ndarray]] = {}
        for impression, row in zip(impressions, rows, strict=True):
            shown[impression["item_id"]] = (impression["domain"], hidden[row])
            by_domain.setdefault(impression["domain"], []).append(hidden[row])
        with state.bandit_lock:
            for domain, vectors in by_domain.items():
                matrix = np.stack(vectors)
                state.bandits[domain].update(domain, matrix, np.zeros(len(matrix)))  # type: ignore[index]
        with self._served_lock:
            self._served[request_id] = shown
            while len(self._served) > 20_000:
                self._served.popitem(last=False)

    def _reward_clicks(self, clicks: list[dict[str, Any]]) -> None:
        state = self.manager.state
        if state is None or state.bandits is None:
            return
        for click in clicks:
            with self._served_lock:
                shown = self._served.get(str(click.get("request_id")), {})
            found = shown.get(click["item_id"])
            if found is not None:
                domain, vector = found
                with state.bandit_lock:
                    bandit = state.bandits[domain]
                    if bandit.dim == len(vector):
                        bandit.response[domain] += vector

    def _log_served(
        self,
        state: ModelState,
        request_id: str,
        now_s: float,
        user_values: dict[str, Any],
        item_rows: ItemRows,
        impressions: list[dict[str, Any]],
        rows: list[int],
        degraded: bool,
    ) -> None:
        """Queue the impressions and the feature values they were scored with.

        The landing records are encoded now; the served features are queued as read and
        converted by the log's writer thread (:class:`serving.impressions.FeatureRecord`).
        """
        if not impressions:
            return
        self.log.append(Source.IMPRESSIONS, impressions, [now_s] * len(impressions))
        featurizer = state.bundle.featurizer
        count = len(impressions)

        def column(name: str) -> list[Any]:
            return [impression[name] for impression in impressions]

        meta: dict[str, list[Any]] = {
            "event_id": column("event_id"),
            "request_id": [request_id] * count,
            "ts": [pd.Timestamp(now_s, unit="s", tz="UTC")] * count,
            **{name: column(name) for name in _SIDECAR_IDS},
            "propensity": column("propensity"),
            "degraded": [degraded] * count,
        }
        user_widths = [(c.name, c.width) for c in featurizer.user_columns]
        record = FeatureRecord(
            meta=meta,
            user={name: user_values.get(name) for name, _ in user_widths},
            user_widths=user_widths,
            seq_length=len(user_values.get("seq_item_ids") or []),
            items=item_rows.raw[rows],
            item_widths=[(c.name, c.width) for c in featurizer.item_columns],
            hour=hour_of(now_s),
        )
        self.log.append_features(record)

    def _observe(
        self,
        user: UserRow,
        degraded: bool,
        candidates: int,
        began: float,
        fetched: float,
        generated: float,
        scored: float,
        done: float,
    ) -> None:
        metrics = self.metrics
        metrics.inc("muma_recommendations_total", degraded=str(degraded).lower())
        if degraded:
            metrics.inc("muma_fallback_total")
        if not user.found:
            metrics.inc("muma_cold_start_total")
        metrics.observe("muma_stage_seconds", fetched - began, stage="user_features")
        metrics.observe("muma_stage_seconds", generated - fetched, stage="candidates_and_items")
        metrics.observe("muma_stage_seconds", scored - generated, stage="score")
        metrics.observe("muma_stage_seconds", done - scored, stage="policy_and_log")
        metrics.inc("muma_candidates_scored_total", candidates)
        if math.isfinite(user.realtime_updated_s):
            metrics.observe(
                "muma_realtime_feature_age_seconds", max(time.time() - user.realtime_updated_s, 0.0)
            )

    # --------------------------------------------------------------------- events
    def ingest_events(self, events: list[Any]) -> tuple[dict[str, Any] | None, list[dict]]:
        """Validate, log and queue events; returns ``(answer, [])`` or ``(None, errors)``.

        Raises:
            SpoolFull: The spool cannot take the real-time events (503, retry).
        """
        state = self.manager.state
        featurizer = state.bundle.featurizer if state is not None else None

        def domain_of(item_id: str) -> str | None:
            if featurizer is None:
                return None
            index = int(featurizer.items.ids([item_id])[0])
            domain = int(featurizer.item_domain[index]) if index >= 2 else 0
            return DOMAIN_NAMES[domain - 1] if domain > 0 else None

        valid, errors = validate_events(events, time.time(), domain_of)
        if errors:
            self.metrics.inc("muma_events_rejected_total", len(errors))
            return None, [error.as_dict() for error in errors]
        realtime = [realtime_event(e) for e in valid if e.domain is not None]
        self.intake.accept(realtime)
        by_source: dict[Source, list[ValidEvent]] = {}
        for event in valid:
            by_source.setdefault(event.source, []).append(event)
        for source, group in by_source.items():
            self.log.append(source, [e.record for e in group], [e.epoch_s for e in group])
            self.metrics.inc("muma_events_total", len(group), source=str(source))
        without = sum(
            1 for e in valid if e.source in (Source.CLICKS, Source.VIEWS) and e.domain is None
        )
        if without:
            self.metrics.inc("muma_events_without_domain_total", without)
        self._reward_clicks([e.record for e in valid if e.source is Source.CLICKS])
        return {
            "accepted": len(valid),
            "realtime_queued": len(realtime),
            "event_ids": [e.record["event_id"] for e in valid],
        }, []

    def _on_pushed(self, count: int, replay: bool) -> None:
        self.metrics.inc("muma_events_pushed_total", count, replay=str(replay).lower())

    def _on_reload(self, result: ReloadResult) -> None:
        self.metrics.inc("muma_model_reloads_total", result=result.result)

    # ---------------------------------------------------------------------- health
    def health(self) -> dict[str, Any]:
        state = self.manager.state
        last = self.manager.last_result
        return {
            "status": "ok",
            "model_version": state.version if state else None,
            "model_loaded_at": iso_utc(state.loaded_at) if state else None,
            "last_reload": last.as_dict() if last else None,
            "online_store": {
                "kind": "redis" if self.settings.redis_url else "feast-sdk",
                "healthy": self.guard.healthy,
                "failures": self.guard.failures,
                "last_error": self.guard.last_error,
            },
            "candidate_index": {
                "from_store": state.index.from_store if state else None,
                "age_seconds": round(time.time() - state.index.built_at, 1) if state else None,
            },
            "events": {
                "queued": len(self.intake.spool),
                "in_memory": self.intake.spool.in_memory,
                "on_disk": self.intake.spool.on_disk,
                "pushed": self.intake.pushed,
                "replayed": self.intake.replayed,
            },
        }

    def _register_gauges(self) -> None:
        metrics = self.metrics

        def model() -> dict:
            state = self.manager.state
            return {(("version", state.version),): 1.0} if state else {}

        metrics.gauge("muma_model_info", "the model being served (value 1)", model)
        metrics.gauge(
            "muma_model_loaded",
            "1 when a model is loaded",
            lambda: {(): float(self.manager.state is not None)},
        )
        metrics.gauge(
            "muma_online_store_up",
            "1 while the online store answers (0 while backing off after a failure)",
            lambda: {(): float(self.guard.healthy)},
        )
        metrics.gauge(
            "muma_online_store_last_success_age_seconds",
            "seconds since the last successful online read (feature freshness of the path)",
            lambda: {
                (): time.time() - self.guard.last_success
                if self.guard.last_success
                else float("nan")
            },
        )
        metrics.gauge(
            "muma_candidate_index_age_seconds",
            "seconds since popular and fresh items were read from the online store",
            lambda: (
                {(): time.time() - self.manager.state.index.built_at} if self.manager.state else {}
            ),
        )
        metrics.gauge(
            "muma_events_queued",
            "real-time events waiting for the online store",
            lambda: {
                (("where", "memory"),): float(self.intake.spool.in_memory),
                (("where", "disk"),): float(self.intake.spool.on_disk),
            },
        )
        metrics.gauge(
            "muma_serving_log_failures",
            "failed writes of impressions, events or served features (retried)",
            lambda: {(): float(self.log.stats.failures)},
        )


def _is_store_error(error: Exception) -> bool:
    try:
        import redis

        if isinstance(error, redis.exceptions.RedisError):
            return True
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    return isinstance(error, OSError | ConnectionError | TimeoutError)


def _metrics() -> Metrics:
    metrics = Metrics()
    metrics.counter("muma_http_requests_total", "HTTP requests by endpoint and status")
    metrics.histogram("muma_http_request_seconds", "HTTP request latency by endpoint")
    metrics.counter("muma_recommendations_total", "recommendations served, by degraded flag")
    metrics.counter("muma_fallback_total", "recommendations answered from the in-process fallback")
    metrics.counter("muma_cold_start_total", "recommendations for users without online features")
    metrics.counter("muma_candidates_scored_total", "candidates scored")
    metrics.histogram("muma_stage_seconds", "time per recommendation stage")
    metrics.histogram(
        "muma_realtime_feature_age_seconds",
        "age of the user's real-time row at request time (feature freshness)",
        AGE_BUCKETS,
    )
    metrics.counter("muma_events_total", "events accepted, by landing source")
    metrics.counter("muma_events_rejected_total", "events refused by the data contract")
    metrics.counter(
        "muma_events_without_domain_total", "clicks/views of unknown items (landing only)"
    )
    metrics.counter("muma_events_pushed_total", "real-time events pushed, by replay flag")
    metrics.counter("muma_model_reloads_total", "model reload checks that did something, by result")
    return metrics


__all__ = ["NotReady", "RequestError", "ServeParams", "Service", "SpoolFull"]
