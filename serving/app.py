"""The FastAPI application: ``create_app(settings)`` (``muma serve`` runs it with uvicorn).

Endpoints (OpenAPI at ``/docs`` and ``/openapi.json``):

- ``POST /recommend``: slates per domain with scores and propensities (``degraded`` and
  ``cold_start`` flags); 503 only while no model is loaded.
- ``POST /events`` (bearer token): clicks, views, gaze, social edges; 202 when queued.
- ``GET /health`` (liveness, with details), ``GET /ready`` (503 until a model is loaded),
  ``GET /metrics`` (Prometheus text).
- ``POST /admin/reload`` (bearer token): check the champion pointer now.
- ``/console/``: the operator console (login, dashboard, upload, review, users; see
  ``docs/console.md``).

Malformed bodies get 422 with one message per problem, bodies over ``serve.max_body_bytes``
get 413 before they are read, and a missing or wrong token gets 401. Without
``MUMA_API_TOKEN`` the write endpoints answer 503: they are never open by accident.
"""

from __future__ import annotations

import gc
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from .config import ServeParams, load_serve_params
from .events import SpoolFull
from .schemas import EventsRequest, EventsResponse, RecommendRequest, RecommendResponse
from .service import NotReady, RequestError, Service

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from feature_repo.config import FeaturesParams
    from feature_repo.store import FeastParams
    from muma.settings import Settings
    from serving.metrics import Metrics


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes (declared or streamed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        seen = 0
        too_large = False

        async def limited() -> Message:
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Stop reading; the app's answer is replaced by 413 below.
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        replaced = False

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if too_large:
                if not replaced:
                    replaced = True
                    await self._too_large(send)
                return
            await send(message)

        await self.app(scope, limited, guarded_send)

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse(
            {"error": "request body too large", "detail": f"at most {self.limit} bytes"},
            status_code=413,
        )
        await response({"type": "http"}, _no_receive, send)


class Measure:
    """ASGI middleware: request count by endpoint and status, and latency by endpoint.

    A plain ASGI wrapper rather than ``@app.middleware("http")``, whose
    ``BaseHTTPMiddleware`` runs every request through an extra task and memory stream.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.inc("muma_http_requests_total", endpoint=endpoint, status=str(status))
            self.metrics.observe(
                "muma_http_request_seconds", time.perf_counter() - began, endpoint=endpoint
            )


async def _no_receive() -> Message:  # pragma: no cover - JSONResponse never reads
    return {"type": "http.disconnect"}


def _problems(error: RequestValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part != "body") or "body"
        problems.append(f"{where}: {item.get('msg')}")
    return problems


def create_app(
    settings: Settings,
    params: ServeParams | None = None,
    *,
    features: FeaturesParams | None = None,
    feast: FeastParams | None = None,
    bundle_dir: Path | None = None,
    background: bool = True,
) -> FastAPI:
    """Build the API for ``settings``.

    Args:
        settings: Runtime settings (data root, Redis URL, API token).
        params: The ``serve`` section (default: from ``settings.params_path``, else defaults).
        features: The ``features`` section (default: from params.yaml).
        feast: The ``feast`` section (default: from params.yaml).
        bundle_dir: Serve this bundle instead of the registry's champion.
        background: Start the reload, log and event threads (tests may drive them by hand).
    """
    params = params or load_serve_params(settings.params_path)
    service = Service(settings, params, features, feast, bundle_dir)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        import anyio.to_thread

        anyio.to_thread.current_default_thread_limiter().total_tokens = params.worker_threads
        await run_in_threadpool(service.start, background)
        if background:
            # Torch, pandas, Feast and the model leave ~400,000 objects the cyclic collector
            # would walk in every full collection: about 0.3 s holding the GIL, stalling every
            # request in flight. They live as long as the process; refcounting still frees
            # what is dropped (an old model after a reload), only cyclic garbage among them
            # would stay.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if background:
                gc.unfreeze()
            await run_in_threadpool(service.stop)

    app = FastAPI(
        title="MUMA serving",
        description="Real-time recommendations for news, video and ads, and event intake.",
        version="1",
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(BodyLimit, limit=params.max_body_bytes)
    metrics = service.metrics
    token = settings.api_token.get_secret_value() if settings.api_token else None

    app.add_middleware(Measure, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request", "detail": _problems(error)}, 422)

    async def require_token(authorization: str | None = Header(default=None)) -> None:
        # async: a plain check must not hop to the worker threads busy scoring requests
        if token is None:
            raise HTTPException(503, "write endpoints are disabled: MUMA_API_TOKEN is not set")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(
                401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(body: RecommendRequest) -> dict[str, Any]:
        """Slates per domain for a user, with scores and exact propensities."""
        # async with an explicit hop: FastAPI validates a sync endpoint's answer in a second
        # worker-thread hop, which under load queues behind requests being scored; here it is
        # validated and encoded (pydantic, a few tens of microseconds) on the event loop.
        try:
            return await run_in_threadpool(service.recommend, body)
        except NotReady as error:
            raise HTTPException(503, str(error)) from None
        except RequestError as error:
            raise HTTPException(422, str(error)) from None

    @app.post(
        "/events",
        status_code=202,
        response_model=EventsResponse,
        dependencies=[Depends(require_token)],
    )
    async def events(body: EventsRequest) -> Any:
        """Clicks, views (with dwell), gaze and social edges, checked against the contract.

        Runs on the event loop, not in a worker thread: it only validates and queues, so it
        never waits behind recommendations being scored.
        """
        try:
            answer, errors = service.ingest_events(body.events)
        except SpoolFull as error:
            raise HTTPException(503, str(error), {"Retry-After": "5"}) from None
        if errors:
            return JSONResponse({"error": "events break the data contract", "detail": errors}, 422)
        return answer

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness, with the model, online store, index and event queue state."""
        return service.health()

    @app.get("/ready")
    async def ready() -> JSONResponse:
        """200 once a model is loaded (a degraded online store still serves)."""
        state = service.manager.state
        if state is None:
            return JSONResponse({"ready": False, "detail": "no model loaded"}, 503)
        return JSONResponse({"ready": True, "model_version": state.version})

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text format."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.post("/admin/reload", dependencies=[Depends(require_token)])
    def reload() -> dict[str, Any]:
        """Check the champion pointer now (also retries a pointer refused before)."""
        return service.manager.check(force=True).as_dict()

    from .console.routes import create_console

    app.mount("/console", create_console(settings, service))
    return app
