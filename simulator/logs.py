"""Hour-by-hour generation of landing-zone logs from the simulated world.

:func:`simulate` streams one hour partition at a time (memory does not grow with the time
range): requests from active users, candidate sets, a logging policy that samples slates
with exact Plackett-Luce propensities, and the users' clicks, views (dwell) and gaze drawn
from the world's ground truth; plus catalog and social-graph events. When asked, it injects
a share of bad records of every kind the contract names and writes a manifest of them, so
ingest's quarantine can be checked record by record. The true click probability of every
impression is written beside the logs (never into them) for evaluation.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import polars as pl

from muma.contract import CONTRACT_VERSION, Reason, ScreenRegion, Source, partition_dir
from muma.landing import frame_to_jsonl, write_partition_bytes
from policy.slate import mix_uniform, plackett_luce_slates, softmax_weights

from .config import SimulatorConfig
from .world import DOMAINS, MediaWorld, sigmoid, to_ms

_HOUR_MS = 3_600_000
# Relative activity by hour of day (UTC), mean 1: quiet nights, evening peak.
DIURNAL = 1.0 + 0.6 * np.sin(2 * np.pi * (np.arange(24) - 13) / 24)
_REGIONS = np.array([r.value for r in ScreenRegion])
_LOCAL_OFFSETS = np.array([480, -300, 330, 60])  # minutes: a few client time zones


@dataclass
class HourResult:
    """What one simulated hour produced."""

    hour_start: datetime
    counts: dict[Source, int] = field(default_factory=dict)
    bad: Counter[str] = field(default_factory=Counter)


def _hour_stamp(hour_start: datetime) -> str:
    return f"{hour_start:%Y%m%d%H}"


def _prefixes(stamp: str) -> dict[Source, dict[str, str]]:
    """Id prefixes per source: ids are ``<letter><YYYYMMDDHH>-<n>``, unique across hours."""
    request = {"request_id": f"r{stamp}-"}
    return {
        Source.IMPRESSIONS: {"event_id": f"i{stamp}-", **request},
        Source.CLICKS: {"event_id": f"c{stamp}-", **request},
        Source.VIEWS: {"event_id": f"w{stamp}-", **request},
        Source.GAZE: {"event_id": f"g{stamp}-", **request},
        Source.SOCIAL_EDGES: {"event_id": f"s{stamp}-"},
        Source.ITEMS: {"event_id": f"m{stamp}-"},
    }


@dataclass
class HourFrames:
    """One hour's producer frames (ids and times still numeric) and how to render them."""

    frames: dict[Source, pd.DataFrame]
    ts_offsets: dict[Source, np.ndarray]
    truth: pd.DataFrame
    prefixes: dict[Source, dict[str, str]]

    def payload(self, source: Source) -> bytes:
        frame = self.frames.get(source)
        if frame is None or frame.empty:
            return b""
        return frame_to_jsonl(source, frame, self.prefixes[source], self.ts_offsets[source])

    def truth_frame(self) -> pl.DataFrame:
        """Ground truth per impression, keyed by the impression's event id."""
        prefixes = self.prefixes[Source.IMPRESSIONS]
        return pl.from_pandas(self.truth).with_columns(
            pl.concat_str([pl.lit(prefixes[name]), pl.col(name).cast(pl.Utf8)]).alias(name)
            for name in ("event_id", "request_id")
        )


def _within_hour(ts_ms: np.ndarray, h0: int) -> np.ndarray:
    """Keep follow-up events in their impression's hour partition (clamped, never dropped)."""
    return np.minimum(ts_ms, h0 + _HOUR_MS - 1)


def _categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of a ``N x K`` probability matrix."""
    draws = rng.random(len(probs))[:, None]
    return np.minimum((probs.cumsum(axis=1) < draws).sum(axis=1), probs.shape[1] - 1)


def logging_policy_weights(scores: np.ndarray, temperature: float, epsilon: float) -> np.ndarray:
    """``(1 - epsilon) * softmax(scores / temperature) + epsilon / C`` per row."""
    return mix_uniform(softmax_weights(scores, temperature), epsilon)


class HourGenerator:
    """Generates the events of one hour from a world; the world evolves between calls."""

    def __init__(self, world: MediaWorld, seed: int):
        self.world = world
        self.seed = seed
        self.config: SimulatorConfig = world.config

    def _rng(self, hour_start: datetime, stream: int) -> np.random.Generator:
        hour_idx = int((hour_start - self.world.start) // timedelta(hours=1))
        return np.random.default_rng(np.random.SeedSequence([self.seed, 3, hour_idx, stream]))

    def requests(self, hour_start: datetime, rng: np.random.Generator) -> pd.DataFrame:
        """Recommendation requests of the hour: user, time, domain, index within the session."""
        cfg, world = self.config, self.world
        h0 = to_ms(hour_start)
        rate = world.activity * cfg.sessions_per_user_per_day / 24 * DIURNAL[hour_start.hour]
        sessions = rng.poisson(rate)
        session_user = np.repeat(np.arange(cfg.users), sessions)
        per_session = 1 + rng.poisson(cfg.requests_per_session - 1, size=len(session_user))
        user = np.repeat(session_user, per_session)
        first = np.repeat(np.cumsum(per_session) - per_session, per_session)
        index = np.arange(len(user)) - first
        start = np.repeat(h0 + rng.integers(0, _HOUR_MS, size=len(session_user)), per_session)
        gap = rng.exponential(45_000, size=len(user)).astype(np.int64)
        ts = _within_hour(start + index * gap, h0)
        domain = _categorical(world.domain_preference[user], rng)
        return pd.DataFrame({"user": user, "ts": ts, "domain": domain, "index": index})

    def impressions(
        self, hour_start: datetime, requests: pd.DataFrame, rng: np.random.Generator
    ) -> pd.DataFrame:
        """Slates chosen by the logging policy, with propensities and the true click draws."""
        cfg, world, policy = self.config, self.world, self.config.logging_policy
        h0 = to_ms(hour_start)
        frames = []
        for d_idx, domain in enumerate(DOMAINS):
            req = requests[requests["domain"] == d_idx]
            available = world.available_items(domain, h0)
            if req.empty or len(available) < cfg.slate_size:
                continue
            n_cand = min(cfg.candidates, len(available))
            pool = rng.permutation(available)
            offsets = rng.integers(0, len(pool), size=len(req))
            cand = pool[(offsets[:, None] + np.arange(n_cand)) % len(pool)]  # R x C
            users = req["user"].to_numpy()
            truth = world.relevance_logit(users[:, None], cand, h0)
            scores = policy.knowledge * truth + (1 - policy.knowledge) * rng.normal(
                0, 1.5, size=cand.shape
            )
            weights = logging_policy_weights(scores, policy.temperature, policy.epsilon)
            chosen, propensity = plackett_luce_slates(weights, cfg.slate_size, rng)
            shown = np.take_along_axis(cand, chosen, axis=1)  # R x K
            focus = world.sample_focus(users, np.full(len(users), d_idx), rng)
            ts = req["ts"].to_numpy()
            relevance = sigmoid(
                world.relevance_logit(
                    users[:, None],
                    shown,
                    ts[:, None],
                    focus[:, None],
                    req["index"].to_numpy()[:, None],
                )
            )
            positions = np.broadcast_to(np.arange(1, cfg.slate_size + 1), shown.shape)
            p_click = world.examination(positions) * relevance
            k = cfg.slate_size
            frames.append(
                pd.DataFrame(
                    {
                        "request_seq": np.repeat(req.index.to_numpy(), k),
                        "user": np.repeat(users, k),
                        "item": shown.ravel(),
                        "domain": domain.value,
                        "position": positions.ravel(),
                        "propensity": propensity.ravel(),
                        "ts_ms": _within_hour(np.repeat(ts, k) + positions.ravel() - 1, h0),
                        "relevance": relevance.ravel(),
                        "p_click": p_click.ravel(),
                    }
                )
            )
        if not frames:
            return pd.DataFrame()
        imp = pd.concat(frames, ignore_index=True).sort_values(["ts_ms", "position"], kind="stable")
        imp = imp.reset_index(drop=True)
        imp["clicked"] = rng.random(len(imp)) < imp["p_click"].to_numpy()
        imp["event_id"] = np.arange(len(imp))
        imp["request_id"] = imp["request_seq"]
        return imp

    def generate(self, hour_start: datetime, first_hour: bool) -> HourFrames:
        """All sources' frames for one hour, plus the impressions' ground truth."""
        world, cfg = self.world, self.config
        world.advance_to(hour_start)
        rng = self._rng(hour_start, 0)
        h0 = to_ms(hour_start)
        stamp = _hour_stamp(hour_start)
        requests = self.requests(hour_start, rng)
        imp = self.impressions(hour_start, requests, rng)
        user_ids, item_ids = world.user_ids, world.item_ids
        frames: dict[Source, pd.DataFrame] = {}
        frames[Source.IMPRESSIONS] = (
            pd.DataFrame(
                {
                    "event_id": imp["event_id"],
                    "ts": imp["ts_ms"],
                    "request_id": imp["request_id"],
                    "user_id": user_ids[imp["user"]],
                    "item_id": item_ids[imp["item"]],
                    "domain": imp["domain"],
                    "position": imp["position"],
                    "policy": cfg.logging_policy.name,
                    "model_version": cfg.logging_policy.model_version,
                    "propensity": imp["propensity"],
                }
            )
            if len(imp)
            else pd.DataFrame()
        )
        clicks = imp[imp["clicked"]] if len(imp) else imp
        click_ts = (
            _within_hour(
                clicks["ts_ms"].to_numpy() + rng.exponential(12_000, len(clicks)).astype(np.int64),
                h0,
            )
            if len(clicks)
            else np.array([], dtype=np.int64)
        )
        frames[Source.CLICKS] = pd.DataFrame(
            {
                "event_id": np.arange(len(clicks)),
                "ts": click_ts,
                "request_id": clicks["request_id"].to_numpy() if len(clicks) else [],
                "item_id": item_ids[clicks["item"]] if len(clicks) else [],
                "user_id": user_ids[clicks["user"]] if len(clicks) else [],
            }
        )
        if len(clicks):
            dwell, completion = world.consumption(
                clicks["item"].to_numpy(), clicks["relevance"].to_numpy(), rng
            )
        else:
            dwell, completion = np.array([], dtype=np.int64), np.array([])
        frames[Source.VIEWS] = pd.DataFrame(
            {
                "event_id": np.arange(len(clicks)),
                "ts": _within_hour(click_ts + dwell, h0),
                "user_id": user_ids[clicks["user"]] if len(clicks) else [],
                "item_id": item_ids[clicks["item"]] if len(clicks) else [],
                "dwell_ms": dwell,
                "completion_ratio": completion,
                "request_id": clicks["request_id"].to_numpy() if len(clicks) else [],
            }
        )
        frames[Source.GAZE] = self._gaze(imp, h0, rng)
        frames[Source.SOCIAL_EDGES] = self._social(hour_start, first_hour, rng)
        frames[Source.ITEMS] = self._items(hour_start, first_hour, rng)
        truth = (
            imp[["event_id", "request_id", "p_click", "relevance", "clicked"]]
            if len(imp)
            else pd.DataFrame()
        )
        offsets = {
            source: np.where(
                rng.random(len(frame)) < cfg.offset_share,
                rng.choice(_LOCAL_OFFSETS, size=len(frame)),
                0,
            )
            for source, frame in frames.items()
        }
        return HourFrames(frames, offsets, truth, _prefixes(stamp))

    def _gaze(self, imp: pd.DataFrame, h0: int, rng: np.random.Generator) -> pd.DataFrame:
        if not len(imp):
            return pd.DataFrame()
        panel = imp[self.world.gaze_panel[imp["user"].to_numpy()]]
        fixation = self.world.fixation(
            panel["position"].to_numpy(), panel["relevance"].to_numpy(), rng
        )
        seen = fixation > 0
        panel, fixation = panel[seen], fixation[seen]
        region = _REGIONS[np.minimum(panel["position"].to_numpy(), len(_REGIONS)) - 1]
        return pd.DataFrame(
            {
                "event_id": np.arange(len(panel)),
                "ts": _within_hour(
                    panel["ts_ms"].to_numpy() + 400 * panel["position"].to_numpy(), h0
                ),
                "user_id": self.world.user_ids[panel["user"]],
                "item_id": self.world.item_ids[panel["item"]],
                "region": region,
                "fixation_ms": fixation,
                "request_id": panel["request_id"].to_numpy(),
            }
        )

    def _social(
        self, hour_start: datetime, first_hour: bool, rng: np.random.Generator
    ) -> pd.DataFrame:
        """The graph snapshot in the first hour, then hourly churn (adds and removals)."""
        world, cfg = self.world, self.config
        h0 = to_ms(hour_start)
        rows: list[tuple[int, int, str, str]] = []
        if first_hour:
            rows += [(u, v, rel, "added") for (u, v), rel in world.edges.items()]
        n_change = rng.poisson(cfg.edge_churn_per_hour * max(len(world.edges), 1))
        n_remove = min(rng.binomial(n_change, 0.5), len(world.edges))
        if n_remove:
            existing = list(world.edges.keys())
            for k in np.sort(rng.choice(len(existing), size=n_remove, replace=False)):
                u, v = existing[k]
                rows.append((u, v, world.edges.pop((u, v)), "removed"))
        for _ in range(n_change - n_remove):
            u = int(rng.integers(0, cfg.users))
            members = world.community_members[world.community[u]]
            pool = members if rng.random() < cfg.homophily else np.arange(cfg.users)
            v = int(pool[rng.integers(0, len(pool))])
            key = (min(u, v), max(u, v))
            if u == v or key in world.edges:
                continue
            world.edges[key] = "friend"
            rows.append((key[0], key[1], "friend", "added"))
        if not rows:
            return pd.DataFrame()
        u, v, relation, action = (np.array(col) for col in zip(*rows, strict=True))
        return pd.DataFrame(
            {
                "event_id": np.arange(len(rows)),
                "ts": np.sort(h0 + rng.integers(0, _HOUR_MS, size=len(rows))),
                "user_id": world.user_ids[u],
                "friend_id": world.user_ids[v],
                "relation": relation,
                "action": action,
            }
        )

    def _items(
        self, hour_start: datetime, first_hour: bool, rng: np.random.Generator
    ) -> pd.DataFrame:
        """Catalog events: the backlog in the first hour, then items as they are published."""
        world = self.world
        h0 = to_ms(hour_start)
        published = world.item_publish_ms
        new = (published >= h0) & (published < h0 + _HOUR_MS)
        backlog = published < h0 if first_hour else np.zeros_like(new)
        idx = np.flatnonzero(new | backlog)
        if idx.size == 0:
            return pd.DataFrame()
        ts = np.where(published[idx] < h0, h0 + rng.integers(0, 60_000, idx.size), published[idx])
        category = np.array(world.category_names)[world.item_category[idx]]
        domain = np.array([d.value for d in DOMAINS])[world.item_domain_idx[idx]]
        creator = np.array(world.creator_ids)[world.item_creator[idx]]
        ids = world.item_ids[idx]
        frame = pd.DataFrame(
            {
                "event_id": np.arange(idx.size),
                "ts": ts,
                "item_id": ids,
                "domain": domain,
                "category": category,
                "creator_id": creator,
                "title": (pd.Series(category) + " story " + pd.Series(ids)).to_numpy(),
                "text": (pd.Series(domain) + " item by " + pd.Series(creator)).to_numpy(),
                "publish_ts": published[idx],
                "duration_s": world.item_duration_s[idx],
            }
        )
        return frame.sort_values("ts", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- bad records
def _fresh(record: dict, stamp: str, counter: int) -> dict:
    return {**record, "event_id": f"x{stamp}-{counter}"}


BadMaker = Callable[[dict, str, int, datetime, float, np.random.Generator], tuple[bytes, Reason]]

_WRONG_TYPE_FIELD = {
    Source.IMPRESSIONS: ("position", "first"),
    Source.CLICKS: ("ts", 1_793_000_000),
    Source.VIEWS: ("dwell_ms", "long"),
    Source.SOCIAL_EDGES: ("ts", "yesterday"),
    Source.GAZE: ("fixation_ms", "300ms"),
    Source.ITEMS: ("publish_ts", "last week"),
}
_MISSING_FIELD = {
    Source.IMPRESSIONS: "propensity",
    Source.CLICKS: "request_id",
    Source.VIEWS: "dwell_ms",
    Source.SOCIAL_EDGES: "friend_id",
    Source.GAZE: "item_id",
    Source.ITEMS: "category",
}


def _impossible(
    source: Source, record: dict, rng: np.random.Generator
) -> tuple[dict, Reason] | None:
    if source is Source.IMPRESSIONS:
        return {
            **record,
            "propensity": float(rng.choice([0.0, 1.5, -0.25])),
        }, Reason.PROPENSITY_OUT_OF_RANGE
    if source is Source.VIEWS:
        if rng.random() < 0.5:
            return {**record, "dwell_ms": -int(rng.integers(1, 10_000))}, Reason.NEGATIVE_DWELL
        return {**record, "dwell_ms": int(rng.integers(10**8, 10**10))}, Reason.ABSURD_DWELL
    if source is Source.GAZE:
        return {**record, "fixation_ms": -int(rng.integers(1, 500))}, Reason.OUT_OF_RANGE
    if source is Source.SOCIAL_EDGES:
        return {**record, "relation": "enemy"}, Reason.INVALID_VALUE
    if source is Source.ITEMS:
        return {**record, "duration_s": -float(rng.integers(1, 100))}, Reason.OUT_OF_RANGE
    return None


def make_bad_line(
    kind: str,
    source: Source,
    good_line: bytes,
    stamp: str,
    counter: int,
    hour_start: datetime,
    late_by_hours: float,
    rng: np.random.Generator,
) -> tuple[bytes, Reason] | None:
    """Turn a good line into a bad one of ``kind``; ``None`` when the kind does not apply."""
    record = orjson.loads(good_line)
    if kind == "malformed_json":
        return good_line[: max(1, len(good_line) // 2)], Reason.MALFORMED_JSON
    if kind == "duplicate_event_id":
        return good_line, Reason.DUPLICATE_EVENT_ID
    record = _fresh(record, stamp, counter)
    if kind == "missing_key":
        record.pop(_MISSING_FIELD[source])
        return orjson.dumps(record), Reason.MISSING_KEY
    if kind == "wrong_type":
        name, value = _WRONG_TYPE_FIELD[source]
        return orjson.dumps({**record, name: value}), Reason.WRONG_TYPE
    if kind == "unknown_domain":
        if "domain" not in record:
            return None
        return orjson.dumps({**record, "domain": "podcast"}), Reason.UNKNOWN_DOMAIN
    if kind == "impossible_value":
        made = _impossible(source, record, rng)
        return None if made is None else (orjson.dumps(made[0]), made[1])
    if kind == "late_event":
        late = hour_start - timedelta(hours=late_by_hours)
        return orjson.dumps({**record, "ts": late.isoformat()}), Reason.LATE_EVENT
    if kind == "click_without_impression":
        if source is not Source.CLICKS:
            return None
        return orjson.dumps(
            {**record, "request_id": f"r-unknown-{counter}"}
        ), Reason.CLICK_WITHOUT_IMPRESSION
    raise ValueError(f"unknown bad-record kind {kind!r}")


BAD_KINDS = (
    "malformed_json",
    "missing_key",
    "wrong_type",
    "unknown_domain",
    "impossible_value",
    "duplicate_event_id",
    "late_event",
    "click_without_impression",
)


def inject_bad_records(
    source: Source,
    payload: bytes,
    share: float,
    hour_start: datetime,
    late_by_hours: float,
    rng: np.random.Generator,
) -> tuple[bytes, list[dict]]:
    """Append ``share`` of bad lines (of every applicable kind) to a partition's payload.

    Returns the new payload and the manifest: one entry per bad line with its kind, the
    reason code ingest must give it, and the line itself.
    """
    lines = payload.splitlines()
    n_bad = round(share * len(lines))
    if n_bad == 0 or not lines:
        return payload, []
    stamp = _hour_stamp(hour_start)
    manifest: list[dict] = []
    bad_lines: list[bytes] = []
    kinds = [
        kind
        for kind in BAD_KINDS
        if kind not in ("unknown_domain", "click_without_impression")
        or (kind == "unknown_domain" and source in (Source.IMPRESSIONS, Source.ITEMS))
        or (kind == "click_without_impression" and source is Source.CLICKS)
    ]
    if source in (Source.CLICKS,):
        kinds = [k for k in kinds if k != "impossible_value"]
    for counter in range(n_bad):
        kind = kinds[counter % len(kinds)]
        good = lines[int(rng.integers(0, len(lines)))]
        made = make_bad_line(kind, source, good, stamp, counter, hour_start, late_by_hours, rng)
        if made is None:
            continue
        line, reason = made
        bad_lines.append(line)
        manifest.append(
            {"kind": kind, "reason": reason.value, "line": line.decode("utf-8", "replace")}
        )
    # Bad lines are spread through the file, not appended as a block.
    merged = lines + bad_lines
    order = rng.permutation(len(merged))
    return b"\n".join(merged[i] for i in order) + b"\n", manifest


# --------------------------------------------------------------------------- the run
@dataclass
class SimulationSummary:
    """Totals of a simulation run."""

    hours: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    bad: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        return {
            "hours": self.hours,
            "events": self.events,
            "events_per_source": dict(self.counts),
            "bad_records_injected": dict(self.bad),
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events / self.seconds, 1) if self.seconds else None,
            "contract_version": CONTRACT_VERSION,
        }


def hours_between(start: datetime, end: datetime) -> Iterator[datetime]:
    """Hour starts in ``[start, end)`` (UTC, truncated to the hour)."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        yield hour
        hour += timedelta(hours=1)


def simulate(
    config: SimulatorConfig,
    seed: int,
    start: datetime,
    end: datetime,
    landing_root: Path,
    sidecar_root: Path | None = None,
    on_hour: Callable[[HourResult], None] | None = None,
) -> SimulationSummary:
    """Write landing-zone logs for ``[start, end)``, one hour partition at a time.

    Args:
        config: World parameters.
        seed: Seed; the same seed, range and parameters give byte-identical logs.
        start: First hour (inclusive).
        end: End (exclusive).
        landing_root: Root of the landing zone.
        sidecar_root: Where ground truth and the bad-record manifest go (default: next to
            the landing root, under ``simulator/``). Never inside the landing zone.
        on_hour: Called after each hour is written (progress reporting).
    """
    began = time.perf_counter()
    world = MediaWorld(config, seed, start, end)
    generator = HourGenerator(world, seed)
    sidecar_root = sidecar_root or Path(landing_root).parent / "simulator"
    summary = SimulationSummary()
    # Compression and file writes release the GIL: they overlap with the next hour's
    # generation in one writer thread. At most one hour is in flight, so memory stays flat.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-writer") as writer:
        in_flight: list[Future] = []
        for n, hour_start in enumerate(hours_between(start, end)):
            hour = generator.generate(hour_start, first_hour=n == 0)
            result = HourResult(hour_start)
            bad_rng = generator._rng(hour_start, 1)
            payloads: dict[Source, bytes] = {}
            manifests: dict[Source, list[dict]] = {}
            for source in Source:
                payload = hour.payload(source)
                manifests[source] = []
                if config.bad_records.share > 0 and payload:
                    payload, manifests[source] = inject_bad_records(
                        source,
                        payload,
                        config.bad_records.share,
                        hour_start,
                        config.bad_records.late_by_hours,
                        bad_rng,
                    )
                payloads[source] = payload
                frame = hour.frames.get(source)
                result.counts[source] = (0 if frame is None else len(frame)) + len(
                    manifests[source]
                )
                result.bad.update(entry["kind"] for entry in manifests[source])
            for future in in_flight:
                future.result()
            in_flight = [
                writer.submit(
                    _write_hour,
                    landing_root,
                    sidecar_root,
                    hour_start,
                    payloads,
                    manifests,
                    hour.truth_frame() if len(hour.truth) else None,
                )
            ]
            summary.hours += 1
            summary.counts.update({str(k): v for k, v in result.counts.items()})
            summary.bad.update(result.bad)
            if on_hour:
                on_hour(result)
        for future in in_flight:
            future.result()
    summary.seconds = time.perf_counter() - began
    return summary


def _write_hour(
    landing_root: Path,
    sidecar_root: Path,
    hour_start: datetime,
    payloads: dict[Source, bytes],
    manifests: dict[Source, list[dict]],
    truth: pl.DataFrame | None,
) -> None:
    """Write one hour: every source's partition, the bad-record manifest and the truth."""
    for source, payload in payloads.items():
        write_partition_bytes(landing_root, source, hour_start, payload)
        manifest_path = partition_dir(sidecar_root / "injected", source, hour_start) / "bad.jsonl"
        if manifests[source]:
            manifest_path.parent.mkdir(parents=True, exist_ok=True)
            manifest_path.write_bytes(
                b"".join(orjson.dumps(entry) + b"\n" for entry in manifests[source])
            )
        elif manifest_path.exists():
            manifest_path.unlink()
    if truth is not None:
        truth_dir = partition_dir(sidecar_root / "truth", Source.IMPRESSIONS, hour_start)
        truth_dir.mkdir(parents=True, exist_ok=True)
        truth.write_parquet(truth_dir / "truth.parquet")
