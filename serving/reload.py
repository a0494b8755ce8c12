"""The champion model in memory, and its hot reload.

A background thread polls ``<data_root>/models/champion.json`` (replaced atomically by
``muma promote``) every ``reload_poll_seconds``; ``POST /admin/reload`` asks at once. A new
version is loaded off the request path: :meth:`training.bundle.ModelBundle.load` verifies
the SHA-256 digests, a one-row smoke score must give finite numbers, the candidate index is
built for the new vocabulary, and only then one reference is swapped. A request takes the
reference once at its start, so in-flight requests finish on the model they began with and
none is dropped. A bundle that fails any step is refused: the old model keeps serving, the
error is logged and counted (``muma_model_reloads_total{result="refused"}``), and the same
pointer is not retried until it changes or a reload is asked for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .candidates import CandidateIndex
from .item_cache import ItemCache, ItemRows
from .scoring import RequestEncoder, RequestScorer, score, speed_up

if TYPE_CHECKING:
    import pandas as pd

    from muma.settings import Settings
    from policy.bandit import NeuralLinearUCB
    from training.bundle import ModelBundle
    from training.featurize import Encoded

    from .config import ServeParams
    from .features import OnlineFeatures, StoreGuard

log = logging.getLogger("muma.serving.reload")


@dataclass
class ModelState:
    """Everything a request needs from one model, swapped as one reference.

    Attributes:
        bundle: The verified bundle.
        path: Its directory.
        reader: Online feature reader for the features this model reads.
        encoder: Encodes requests with the model's featurizer.
        scorer: Scores a request's candidates (the fast path for MUMA; built per model).
        items: Its candidates' encoded rows, kept ``serve.item_cache_seconds``.
        index: Popular and fresh candidates over its item vocabulary.
        bandits: Neural-linear posteriors per domain (``bandit`` policy only).
        loaded_at: Epoch seconds.
    """

    bundle: ModelBundle
    path: Path
    reader: OnlineFeatures
    index: CandidateIndex
    encoder: RequestEncoder
    items: ItemCache
    scorer: RequestScorer
    bandits: dict[str, NeuralLinearUCB] | None = None
    loaded_at: float = field(default_factory=time.time)
    bandit_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def version(self) -> str:
        return self.bundle.version


@dataclass(frozen=True)
class ReloadResult:
    """What a reload check did: ``unchanged``, ``loaded``, ``refused`` or ``missing``."""

    result: str
    version: str | None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"result": self.result, "version": self.version, "detail": self.detail}


def _cold_row(encoder: RequestEncoder, position: int) -> Encoded:
    import pandas as pd

    items = encoder.items(pd.DataFrame({"item_id": ["__smoke__"]}))
    domains = np.asarray(["news"], dtype=object)
    return encoder.request("__smoke__", {}, items, domains, time.time(), position)


def smoke_score(bundle: ModelBundle, scorer: RequestScorer, position: int) -> None:
    """Score one cold-start row; raises unless the model gives a finite logit, and the same
    through the scorer as through the ordinary forward pass."""
    logits = score(bundle, _cold_row(scorer.encoder, position)).logits
    if not np.isfinite(logits).all():
        raise ValueError("the model gives non-finite scores on a cold-start row")
    row = _cold_row(scorer.encoder, position)
    items = ItemRows(row.item, row.category, row.creator, row.item_dense, np.empty((1, 0), object))
    fast = scorer.score("__smoke__", {}, items, np.asarray(["news"], dtype=object), 0.0, position)
    if not np.allclose(fast.logits, logits, rtol=1e-4, atol=1e-4):
        raise ValueError(
            f"the request scorer gives {fast.logits[0]:.6f} on a cold-start row, the model's "
            f"forward pass {logits[0]:.6f}"
        )


def _catalog_into(items: ItemCache, encoder: RequestEncoder) -> Callable:
    """Stores the catalogue's rows the store holds, read for the candidate index, encoded in
    the item cache, so requests find every known item there (the index is rebuilt every
    ``index_refresh_seconds``, shorter than ``item_cache_seconds``, so they stay in date)."""

    def store(rows: pd.DataFrame, read_at: float) -> None:
        # Items the store has no row for stay misses: a request reads them again, and an
        # approved console upload among them gets its attributes filled in then.
        if "found" in rows:
            rows = rows[rows["found"].to_numpy(dtype=bool)]
        if items.enabled and 0 < len(rows) <= items.max_items:
            items.store(rows["item_id"].tolist(), encoder.items(rows), read_at)

    return store


class ModelManager:
    """Holds the serving :class:`ModelState` and replaces it when the champion changes.

    Args:
        settings: Data root (the registry lives under it).
        params: Serving params (poll interval, policy, index sizes).
        make_reader: Builds the online feature reader for a bundle.
        guard: The online store's back-off (index builds read through it).
        on_result: Called with every :class:`ReloadResult` that is not ``unchanged``.
        pinned: Serve this bundle directory instead of the registry's champion.
    """

    def __init__(
        self,
        settings: Settings,
        params: ServeParams,
        make_reader: Callable[[ModelBundle], OnlineFeatures],
        guard: StoreGuard,
        on_result: Callable[[ReloadResult], None] | None = None,
        pinned: Path | None = None,
    ) -> None:
        self.settings = settings
        self.params = params
        self.make_reader = make_reader
        self.guard = guard
        self.on_result = on_result or (lambda result: None)
        self.pinned = pinned
        self.state: ModelState | None = None
        self.refused: dict[tuple[str, str], str] = {}
        self.last_result: ReloadResult | None = None
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------------- loading
    def _pointer(self) -> tuple[str, Path] | None:
        from training.registry import models_root, read_champion

        if self.pinned is not None:
            return (str(self.pinned), self.pinned)
        pointer = read_champion(self.settings)
        if pointer is None:
            return None
        return str(pointer.get("version")), models_root(self.settings) / str(pointer["path"])

    def build_state(self, path: Path) -> ModelState:
        """Load, verify, smoke-test and index a bundle (off the request path)."""
        from training.bundle import ModelBundle

        bundle = ModelBundle.load(path)
        speed_up(bundle.featurizer)
        encoder = RequestEncoder(bundle.featurizer)
        scorer = RequestScorer(bundle, encoder)
        smoke_score(bundle, scorer, int(bundle.info.get("serving_position", 1)))
        reader = self.make_reader(bundle)
        items = ItemCache(self.params.item_cache_seconds, self.params.item_cache_items)
        index = CandidateIndex.build(
            bundle.featurizer,
            self._guarded_items(reader),
            self.params,
            on_read=_catalog_into(items, encoder),
        )
        bandits = self._bandits(bundle, encoder) if self.params.policy == "bandit" else None
        return ModelState(bundle, Path(path), reader, index, encoder, items, scorer, bandits)

    def _guarded_items(self, reader: OnlineFeatures) -> Callable:
        return lambda ids: self.guard.call(reader.read_items, ids)

    def _bandits(self, bundle: ModelBundle, encoder: RequestEncoder) -> dict[str, NeuralLinearUCB]:
        from policy.bandit import NeuralLinearUCB

        if bundle.kind != "muma":
            raise ValueError(
                f"the bandit policy needs a MUMA model, the champion is {bundle.kind!r}"
            )
        hidden = score(bundle, _cold_row(encoder, 1), with_hidden=True).hidden
        dim = hidden.shape[1]  # type: ignore[union-attr]
        return {
            domain: NeuralLinearUCB(
                dim,
                [domain],
                ridge=self.params.bandit_ridge,
                alpha=self.params.exploration_for(domain).ucb_alpha,
            )
            for domain in ("news", "video", "ad")
        }

    def check(self, force: bool = False) -> ReloadResult:
        """Load the champion if its pointer changed (``force``: retry a refused pointer)."""
        with self._load_lock:
            try:
                pointer = self._pointer()
            except Exception as error:  # unreadable champion.json: keep serving
                result = ReloadResult("refused", None, f"cannot read the champion pointer: {error}")
                return self._finish(result)
            if pointer is None:
                result = ReloadResult("missing", None, "no champion has been promoted yet")
                if self.last_result is None or self.last_result.result != "missing":
                    return self._finish(result)
                return result
            version, path = pointer
            current = self.state
            if current is not None and (current.version == version or current.path == path):
                return ReloadResult("unchanged", current.version)
            if not force and (version, str(path)) in self.refused:
                return ReloadResult("refused", version, self.refused[(version, str(path))])
            try:
                state = self.build_state(path)
            except Exception as error:  # a bad bundle must never stop the service
                detail = f"{type(error).__name__}: {error}"
                self.refused[(version, str(path))] = detail
                log.error("refusing model %s at %s: %s", version, path, detail)
                return self._finish(ReloadResult("refused", version, detail))
            self.state = state
            log.info("serving model %s from %s", state.version, path)
            return self._finish(ReloadResult("loaded", state.version))

    def _finish(self, result: ReloadResult) -> ReloadResult:
        self.last_result = result
        self.on_result(result)
        return result

    def refresh_index(self) -> None:
        """Rebuild the candidate index of the current model and swap it in."""
        state = self.state
        if state is None:
            return
        index = CandidateIndex.build(
            state.bundle.featurizer,
            self._guarded_items(state.reader),
            self.params,
            on_read=_catalog_into(state.items, state.encoder),
        )
        if index.from_store or not state.index.from_store:
            state.index = index

    # ----------------------------------------------------------------------- the thread
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-reload", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        next_index = time.monotonic() + self.params.index_refresh_seconds
        while not self._stop.wait(self.params.reload_poll_seconds):
            try:
                self.check()
                state = self.state
                stale = state is not None and not state.index.from_store and self.guard.healthy
                if stale or time.monotonic() >= next_index:
                    self.refresh_index()
                    next_index = time.monotonic() + self.params.index_refresh_seconds
            except Exception:  # the poller must survive anything
                log.exception("model reload check failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
