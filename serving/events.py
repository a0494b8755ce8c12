"""``POST /events``: validate against the data contract, log to the landing zone, and fold
clicks and views into the users' real-time features; none lost while Redis is down.

Each event is checked with :func:`muma.contract.check_record` (the one declaration of the
contract), appended to the landing zone (:class:`serving.impressions.ServingLog`), and, for
clicks and views, queued for the real-time push path (:class:`feature_repo.realtime.
RealtimeUpdater` with the direct Redis writer, or ``FeatureStore.push``). A background thread
pushes the queue in batches, so the request returns as soon as the event is queued.

When the online store fails, queued events stay: up to ``spool_memory_events`` in memory,
the rest appended to a disk spool (``<data_root>/serving/spool/*.jsonl``); the thread retries
after the back-off and replays memory and disk once the store answers. The merge of real-time
rows does not depend on arrival order, so a replay gives the same counters as on-time events.
On shutdown the queue is written to the spool and replayed by the next start.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from muma.contract import SCHEMAS, Domain, Source, Violation, check_record, parse_timestamp

from .features import FeatureStoreDown, StoreGuard
from .impressions import iso_utc

log = logging.getLogger("muma.serving.events")

EVENT_TYPES: dict[str, Source] = {
    "click": Source.CLICKS,
    "view": Source.VIEWS,
    "gaze": Source.GAZE,
    "social_edge": Source.SOCIAL_EDGES,
}
"""Event ``type`` of the API -> landing source."""

_ID_PREFIX = {Source.CLICKS: "c", Source.VIEWS: "w", Source.GAZE: "g", Source.SOCIAL_EDGES: "s"}
EXTRA_KEYS = ("type", "domain")
"""Keys allowed besides the contract's: the event type, and the item's domain (clicks and
views; otherwise taken from the model's catalog) for the real-time counters."""


class SpoolFull(RuntimeError):
    """The disk spool reached its bound; the client must retry later (503)."""


@dataclass(frozen=True)
class EventError:
    """Why one event of a request was refused."""

    index: int
    reason: str
    field: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "reason": self.reason,
            "field": self.field,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class ValidEvent:
    """A contract record with its source, time and real-time domain (None: landing only)."""

    source: Source
    record: dict[str, Any]
    epoch_s: float
    domain: str | None


def validate_events(
    events: list[Any], now_s: float, domain_of: Callable[[str], str | None]
) -> tuple[list[ValidEvent], list[EventError]]:
    """Turn API events into contract records, or say why each bad one is refused.

    ``event_id`` and ``ts`` may be left out (the server assigns them); every other key is the
    contract's, plus ``type`` and an optional ``domain``.
    """
    valid, errors = [], []
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            errors.append(EventError(index, "malformed_json", None, "an event is a JSON object"))
            continue
        kind = event.get("type")
        if kind not in EVENT_TYPES:
            detail = f"type must be one of {sorted(EVENT_TYPES)}, got {kind!r}"
            errors.append(EventError(index, "invalid_value", "type", detail))
            continue
        source = EVENT_TYPES[kind]
        names = [field.name for field in SCHEMAS[source]]
        unknown = sorted(set(event) - set(names) - set(EXTRA_KEYS))
        if unknown:
            detail = (
                f"unknown keys {unknown} for a {kind} event; allowed: {names + list(EXTRA_KEYS)}"
            )
            errors.append(EventError(index, "invalid_value", unknown[0], detail))
            continue
        record = {name: event[name] for name in names if event.get(name) is not None}
        record.setdefault("event_id", f"{_ID_PREFIX[source]}{uuid.uuid4().hex}")
        record.setdefault("ts", iso_utc(now_s))
        record = {name: record[name] for name in names if name in record}
        violation: Violation | None = check_record(source, record)
        if violation is not None:
            errors.append(
                EventError(index, violation.reason.value, violation.field, violation.detail)
            )
            continue
        domain = event.get("domain")
        if domain is not None and domain not in {d.value for d in Domain}:
            detail = f"domain must be one of {[d.value for d in Domain]}, got {domain!r}"
            errors.append(EventError(index, "unknown_domain", "domain", detail))
            continue
        stamp = parse_timestamp(record["ts"])
        assert stamp is not None  # check_record accepted it
        if source in (Source.CLICKS, Source.VIEWS):
            domain = domain or domain_of(record["item_id"])
        else:
            domain = None
        valid.append(ValidEvent(source, record, stamp.timestamp(), domain))
    return valid, errors


def realtime_event(event: ValidEvent) -> dict[str, Any]:
    """The real-time path's event (:data:`feature_repo.realtime.EVENT_COLUMNS`)."""
    record = event.record
    return {
        "user_id": record["user_id"],
        "item_id": record["item_id"],
        "domain": event.domain,
        "kind": "click" if event.source is Source.CLICKS else "view",
        "ts": event.epoch_s,
        "dwell_ms": float(record.get("dwell_ms", 0)),
    }


class EventSpool:
    """Queue of real-time events: memory first, a JSONL file on disk beyond its bound.

    Args:
        directory: Spool directory (created).
        memory_events: Events kept in memory.
        disk_events: Largest number of events on disk; beyond, :class:`SpoolFull`.
    """

    def __init__(self, directory: Path, memory_events: int, disk_events: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.memory_events = memory_events
        self.disk_events = disk_events
        self._lock = threading.Lock()
        self._memory: deque[dict[str, Any]] = deque()
        self._in_flight = 0
        """Events handed out by :meth:`take` and not yet settled or given back."""
        self._file = self.directory / f"events-{os.getpid()}.jsonl"
        self.on_disk = sum(self._count(path) for path in self.directory.glob("*.jsonl"))

    @staticmethod
    def _count(path: Path) -> int:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())

    def __len__(self) -> int:
        """Events not yet in the online store: queued, on disk, or being pushed."""
        return len(self._memory) + self.on_disk + self._in_flight

    @property
    def in_memory(self) -> int:
        return len(self._memory)

    def put(self, events: list[dict[str, Any]]) -> None:
        """Queue events (memory while there is room, else disk).

        Raises:
            SpoolFull: The disk bound would be exceeded; nothing was queued.
        """
        with self._lock:
            room = max(self.memory_events - len(self._memory) - self._in_flight, 0)
            to_disk = events[room:]
            if to_disk and self.on_disk + len(to_disk) > self.disk_events:
                raise SpoolFull(f"event spool is full ({self.on_disk} events on disk)")
            self._memory.extend(events[:room])
            if to_disk:
                self._write(to_disk)

    def _write(self, events: list[dict[str, Any]]) -> None:
        with self._file.open("ab") as handle:
            handle.write(b"".join(orjson.dumps(event) + b"\n" for event in events))
        self.on_disk += len(events)

    def take(self, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            count = min(limit, len(self._memory))
            self._in_flight += count
            return [self._memory.popleft() for _ in range(count)]

    def settle(self, count: int) -> None:
        """``count`` taken events left the spool for good (pushed, or refused and logged)."""
        with self._lock:
            self._in_flight -= count

    def give_back(self, events: list[dict[str, Any]]) -> None:
        """Return events that could not be pushed to the front; overflow goes to disk."""
        with self._lock:
            self._in_flight -= len(events)
            self._memory.extendleft(reversed(events))
            overflow = len(self._memory) + self._in_flight - self.memory_events
            if overflow > 0:
                spilled = [self._memory.pop() for _ in range(overflow)][::-1]
                self._write(spilled)

    def replay_disk(self, push: Callable[[list[dict[str, Any]]], Any], batch: int) -> int:
        """Push every spooled file in batches; stops at the first failure, keeping the rest.

        Raises:
            FeatureStoreDown: From ``push``; unsent events are back in the spool.
        """
        pushed = 0
        with self._lock:
            files = sorted(self.directory.glob("*.jsonl"))
            claimed = []
            for path in files:
                target = path.with_name(f".replay-{uuid.uuid4().hex}.jsonl.part")
                os.replace(path, target)
                claimed.append(target)
        for index, path in enumerate(claimed):
            with path.open("rb") as handle:
                events = [orjson.loads(line) for line in handle if line.strip()]
            for start in range(0, len(events), batch):
                part = events[start : start + batch]
                try:
                    push(part)
                except FeatureStoreDown:
                    with self._lock:
                        rest = events[start:]
                        self.on_disk -= len(events) - len(rest)
                        for later in claimed[index + 1 :]:
                            os.replace(
                                later, self.directory / f"events-requeued-{uuid.uuid4().hex}.jsonl"
                            )
                        path.unlink()
                        self.on_disk -= len(rest)
                        self._write(rest)
                    raise
                pushed += len(part)
            with self._lock:
                self.on_disk -= len(events)
            path.unlink()
        return pushed

    def spill(self) -> int:
        """Write everything in memory to disk (shutdown); returns how many."""
        with self._lock:
            events = list(self._memory)
            self._memory.clear()
            if events:
                self._write(events)
            return len(events)


class EventIntake:
    """Queues validated real-time events and pushes them from a background thread.

    Args:
        push: Pushes a batch of real-time events; raises :class:`FeatureStoreDown` when the
            online store fails (the batch is then kept).
        guard: The online store's back-off, shared with the recommendation reads.
        spool: Where events wait.
        batch: Largest batch per push.
        on_pushed: Called with the number of events pushed (metrics).
        interval: Least seconds between two pushes (events arriving meanwhile batch up).
    """

    def __init__(
        self,
        push: Callable[[list[dict[str, Any]]], Any],
        guard: StoreGuard,
        spool: EventSpool,
        batch: int,
        on_pushed: Callable[[int, bool], None] | None = None,
        interval: float = 0.0,
    ) -> None:
        self.interval = interval
        self.push = push
        self.guard = guard
        self.spool = spool
        self.batch = batch
        self.on_pushed = on_pushed or (lambda count, replay: None)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pushed = 0
        self.replayed = 0
        self.dropped = 0

    def accept(self, events: list[dict[str, Any]]) -> None:
        """Queue events for the push thread (:class:`SpoolFull` when nothing can hold them)."""
        if events:
            self.spool.put(events)
            self._wake.set()

    def _guarded_push(self, events: list[dict[str, Any]]) -> None:
        self.guard.call(self.push, events)

    def drain_once(self) -> int:
        """Push what is queued now (memory, then the disk spool); returns events pushed."""
        pushed = 0
        while True:
            events = self.spool.take(self.batch)
            if not events:
                break
            try:
                self._guarded_push(events)
            except FeatureStoreDown:
                self.spool.give_back(events)
                return pushed
            except ValueError as error:  # validated before queueing; never block the queue
                self.spool.settle(len(events))
                log.error(
                    "dropping %d real-time events that the push path refuses: %s",
                    len(events),
                    error,
                )
                self.dropped += len(events)
                continue
            except BaseException:  # anything unexpected: keep the events for the next try
                self.spool.give_back(events)
                raise
            self.spool.settle(len(events))
            pushed += len(events)
            self.pushed += len(events)
            self.on_pushed(len(events), False)
        if self.spool.on_disk:
            try:
                replayed = self.spool.replay_disk(self._guarded_push, self.batch)
            except FeatureStoreDown:
                return pushed
            self.replayed += replayed
            self.pushed += replayed
            pushed += replayed
            self.on_pushed(replayed, True)
        return pushed

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="event-push", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5 if len(self.spool) == 0 else self.guard.retry_seconds or 0.05)
            self._wake.clear()
            if self._stop.is_set():
                break
            if len(self.spool) and self.guard.healthy:
                try:
                    began = time.monotonic()
                    self.drain_once()
                    self._stop.wait(max(self.interval - (time.monotonic() - began), 0.0))
                except Exception:  # never let the thread die; the events stay queued
                    log.exception("event push thread failed; retrying")
                    time.sleep(0.5)

    def stop(self) -> None:
        """Push what can be pushed, then spool the rest to disk for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if len(self.spool) and self.guard.healthy:
            self.drain_once()
        self.spool.spill()
