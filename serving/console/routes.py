"""The operator console: a small FastAPI app mounted at ``/console`` by ``serving.app``.

Pages (server-rendered Jinja2, inline SVG charts, one small script; nothing from a CDN):

- ``/console/login`` and ``/console/logout``;
- ``/console/`` dashboard (any operator);
- ``/console/upload`` and ``/console/review`` (editors and admins);
- ``/console/users`` look-up of a user: behaviour, interests, friends, recommendations now;
- ``/console/operators`` (admins): add, disable and enable operators;
- ``/console/reports/monitoring/<date>/report.html``: the Evidently report behind the drift
  decision.

Every page but login needs a session (else 303 to the login page); every POST needs the
session's CSRF token (else 403); a role that may not do something gets 403.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from muma.contract import CONTRACT_VERSION, Domain, Source, check_record
from muma.landing import write_partition_bytes
from serving.impressions import hour_of

from . import charts, dashboard
from .auth import COOKIE, LoginThrottle, Session, Sessions
from .gate import ContentGate
from .store import ConsoleStore, Operator, Role, Status, StoreError, Upload, store_path

if TYPE_CHECKING:
    from muma.settings import Settings
    from serving.service import Service

log = logging.getLogger("muma.console")
HERE = Path(__file__).parent
BASE = "/console"
TITLE_LIMITS = (3, 200)
TEXT_LIMIT = 5000
_CREATOR = re.compile(r"^[\w .'&-]{1,80}$")
_USER_ID = re.compile(r"^[\w.:@-]{1,128}$")


@dataclass(frozen=True)
class _MountedRoute:
    path: str


class _PrefixRouteLabels:
    """ASGI middleware: the API's request metrics label console pages ``/console/...``.

    The service's ``measure`` middleware labels requests with ``scope["route"].path``, which
    inside a mounted app is the path within the mount (``/login``); when the console starts
    its answer, the route is replaced by one carrying the full path.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def relabel(message: Any) -> None:
            # Before the answer starts: the service's middleware reads the route right then.
            if message["type"] == "http.response.start":
                route = scope.get("route")
                if route is not None and not isinstance(route, _MountedRoute):
                    scope["route"] = _MountedRoute(BASE + getattr(route, "path", ""))
            await send(message)

        await self.app(scope, receive, relabel)


class LoginRequired(Exception):
    """No operator in the session: the handler redirects to the login page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def validate_upload(
    form: dict[str, str], categories: dict[str, tuple[str, ...]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The upload form's fields, cleaned, and one message per bad field.

    Args:
        form: Raw form values.
        categories: Allowed categories per domain (the feature build's vocabulary).

    Returns:
        ``(fields, errors)``; ``errors`` is empty when the upload may be stored.
    """
    errors: dict[str, str] = {}
    fields: dict[str, Any] = {
        name: (form.get(name) or "").strip()
        for name in ("title", "text", "domain", "category", "creator_id", "duration_s")
    }
    domains = [d.value for d in Domain]
    if fields["domain"] not in domains:
        errors["domain"] = f"choose one of: {', '.join(domains)}"
    low, high = TITLE_LIMITS
    if not low <= len(fields["title"]) <= high:
        errors["title"] = f"a title of {low} to {high} characters is required"
    if len(fields["text"]) > TEXT_LIMIT:
        errors["text"] = f"at most {TEXT_LIMIT} characters (got {len(fields['text'])})"
    allowed = categories.get(fields["domain"], ())
    if "domain" not in errors and fields["category"] not in allowed:
        errors["category"] = f"for {fields['domain']}, one of: {', '.join(allowed)}"
    if not _CREATOR.match(fields["creator_id"]):
        errors["creator_id"] = (
            "1 to 80 letters, digits, spaces or . ' & - _ (author, channel or advertiser)"
        )
    duration = fields.pop("duration_s")
    fields["duration_s"] = None
    if duration:
        if fields["domain"] != "video":
            errors["duration_s"] = "only videos have a duration"
        else:
            try:
                fields["duration_s"] = float(duration)
                if not 0 < fields["duration_s"] <= 86_400:
                    raise ValueError
            except ValueError:
                errors["duration_s"] = "a number of seconds between 0 and 86400"
    return fields, errors


def landing_record(upload: Upload, now_s: float) -> dict[str, Any]:
    """The ``items`` landing record of an approved upload (checked against the contract)."""
    from serving.impressions import iso_utc

    record: dict[str, Any] = {
        "event_id": f"console-{upload.item_id}",
        "ts": iso_utc(now_s),
        "item_id": upload.item_id,
        "domain": upload.domain,
        "category": upload.category,
        "creator_id": upload.creator_id,
        "title": upload.title,
        "text": upload.text or None,
        "publish_ts": iso_utc(now_s),
    }
    if upload.duration_s is not None:
        record["duration_s"] = float(upload.duration_s)
    violation = check_record(Source.ITEMS, record)
    if violation is not None:
        raise StoreError(f"the item breaks the data contract: {violation.detail}")
    return record


def _when(epoch: float | None) -> str:
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def create_console(settings: Settings, service: Service) -> FastAPI:
    """The console app for ``service`` (mount it at ``/console``).

    Sets ``service.content_gate`` so the recommendation path serves approved uploads only.
    """
    store = ConsoleStore(store_path(settings.data_root))
    sessions = Sessions(store.secret_key())
    gate = ContentGate(store)
    service.content_gate = gate
    throttle = LoginThrottle()
    # Airflow's own setting, read once here: PostgreSQL in production, else the SQLite file.
    airflow_connection = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters["when"] = _when
    templates.env.filters["pct"] = lambda v: f"{v:.2%}" if v is not None else "—"
    categories = {str(k): tuple(v) for k, v in service.features_params.categories.items()}

    console = FastAPI(
        title="MUMA operator console", docs_url=None, redoc_url=None, openapi_url=None
    )
    console.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    console.add_middleware(_PrefixRouteLabels)
    console.state.store = store
    console.state.gate = gate

    @console.exception_handler(LoginRequired)
    async def to_login(_: Request, error: LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"{BASE}/login?next={quote(error.next_path)}", status_code=303)

    def session_of(request: Request) -> Session:
        if not hasattr(request.state, "console_session"):
            request.state.console_session = sessions.read(request.cookies.get(COOKIE))
        return request.state.console_session

    def operator_of(request: Request, *roles: Role) -> Operator:
        session = session_of(request)
        operator = store.operator(session.operator) if session.operator else None
        if operator is None or not operator.active:
            raise LoginRequired(request.url.path)
        if roles and operator.role not in roles:
            raise HTTPException(403, f"this page needs the role {' or '.join(roles)}")
        return operator

    async def checked_form(request: Request) -> dict[str, str]:
        form = await request.form()
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        if not sessions.csrf_ok(session_of(request), values.get("csrf_token")):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and retry")
        return values

    def with_cookie(request: Request, response: Response) -> Response:
        session = session_of(request)
        if session.new:
            response.set_cookie(
                COOKIE,
                sessions.cookie(session),
                max_age=sessions.max_age,
                httponly=True,
                samesite="strict",
                path=BASE,
            )
        return response

    def page(
        request: Request,
        template: str,
        operator: Operator | None,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        response = templates.TemplateResponse(
            request,
            template,
            {
                "base": BASE,
                "operator": operator,
                "csrf": sessions.csrf_token(session_of(request)),
                "flash": request.query_params.get("done"),
                **context,
            },
            status_code=status_code,
        )
        return with_cookie(request, response)

    def redirect(request: Request, target: str) -> Response:
        return with_cookie(request, RedirectResponse(target, status_code=303))

    @console.exception_handler(HTTPException)
    async def refused(request: Request, error: HTTPException) -> Response:
        return page(request, "error.html", None, error.status_code, message=error.detail)

    # ------------------------------------------------------------------ login/logout
    @console.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = BASE + "/") -> Response:
        return page(request, "login.html", None, next=next, error=None, name="")

    @console.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await checked_form(request)
        name, password = form.get("name", ""), form.get("password", "")
        target = form.get("next") or BASE + "/"
        if not target.startswith(BASE + "/") or target.startswith("//"):
            target = BASE + "/"
        keys = [
            f"name:{name.strip().lower()}",
            f"addr:{request.client.host if request.client else '?'}",
        ]
        wait = throttle.wait_seconds(keys)
        if wait > 0:
            return page(
                request,
                "login.html",
                None,
                429,
                next=target,
                error=f"too many failed logins: try again in {int(wait) + 1} s",
                name=name,
            )
        operator = store.authenticate(name, password) if name and password else None
        if operator is None:
            throttle.failed(keys)
            return page(
                request,
                "login.html",
                None,
                401,
                next=target,
                error="wrong name or password (or the account is disabled)",
                name=name,
            )
        throttle.succeeded(keys[0])
        request.state.console_session = sessions.fresh(operator.name)
        return redirect(request, target)

    @console.post("/logout")
    async def logout(request: Request) -> Response:
        await checked_form(request)
        request.state.console_session = sessions.fresh()
        return redirect(request, f"{BASE}/login")

    # ------------------------------------------------------------------------ dashboard
    def card(reader: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
        """One dashboard card; an output that cannot be read is an empty state, not a 500."""
        try:
            return reader(*args)
        except Exception as error:  # a malformed output file must not take the page down
            log.warning("console: %s failed: %s", reader.__name__, error)
            return {"available": False, "reason": f"cannot be read: {error}"}

    @console.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        operator = operator_of(request)
        ctr = card(dashboard.ctr, settings)
        ctr_chart = policy_chart = None
        if ctr["available"]:
            ctr_chart = charts.line_chart(ctr["hours"], ctr["domains"], "CTR per domain per hour")
            policy_chart = charts.bar_chart(
                ctr["policies"], "policy", "ctr", "CTR per logging policy"
            )
        study = card(dashboard.policy_study, settings)
        study_chart = None
        if study["available"]:
            study_chart = charts.bar_chart(
                study["policies"],
                "policy",
                "ctr",
                "CTR per policy in the closed-loop study",
                "closed-loop-study",
            )
        return page(
            request,
            "dashboard.html",
            operator,
            ctr=ctr,
            ctr_chart=ctr_chart,
            policy_chart=policy_chart,
            study=study,
            study_chart=study_chart,
            drift=card(dashboard.drift, settings),
            champion=card(dashboard.champion, settings),
            runs=card(dashboard.dag_runs, settings, airflow_connection),
            freshness=dashboard.freshness(settings, service),
            serving_version=service.manager.state.version if service.manager.state else None,
            pending=len(store.uploads(Status.PENDING)),
        )

    @console.get("/reports/monitoring/{date}/report.html")
    def monitoring_report(request: Request, date: str) -> Response:
        operator_of(request)
        path = dashboard.report_path(settings, date)
        if path is None:
            raise HTTPException(404, f"no monitoring report for {date!r}")
        return FileResponse(path, media_type="text/html")

    # --------------------------------------------------------------------------- upload
    @console.get("/upload", response_class=HTMLResponse)
    def upload_form(request: Request) -> Response:
        operator = operator_of(request, Role.EDITOR, Role.ADMIN)
        return page(request, "upload.html", operator, values={}, errors={}, categories=categories)

    @console.post("/upload", response_class=HTMLResponse)
    async def upload(request: Request) -> Response:
        operator = operator_of(request, Role.EDITOR, Role.ADMIN)
        form = await checked_form(request)
        fields, errors = validate_upload(form, categories)
        if errors:
            return page(
                request,
                "upload.html",
                operator,
                422,
                values=form,
                errors=errors,
                categories=categories,
            )
        item = store.add_upload(fields, operator.name)
        return redirect(request, f"{BASE}/review?done=uploaded+{item.item_id}")

    # --------------------------------------------------------------------------- review
    def approve_or_reject(item_id: str, status: Status, reviewer: str, note: str) -> None:
        """Review an item; an approved item's ``items`` record is in the landing zone first.

        The record is checked against the contract and written (its own file, atomically)
        before the status changes, and removed again if the review is refused: an approved
        item has always landed. A crash between the two leaves a pending item with a landed
        record; approving it rewrites the same file, rejecting it removes the file.
        """
        current = store.upload(item_id)
        if current is None:
            raise StoreError(f"no uploaded item {item_id!r}")
        landed = None
        if status is Status.APPROVED:
            now = time.time()
            record = landing_record(current, now)
            landed = write_partition_bytes(
                settings.landing_root,
                Source.ITEMS,
                hour_of(now),
                orjson.dumps(record) + b"\n",
                part=f"part-console-{item_id}",
            )
        try:
            store.review(item_id, status, reviewer, note)
        except StoreError:
            if landed is not None:
                landed.unlink(missing_ok=True)
            raise
        if status is Status.REJECTED and current.status is Status.PENDING:
            pattern = f"date=*/hour=*/part-console-{item_id}.jsonl.gz"
            base = Path(settings.landing_root) / f"v{CONTRACT_VERSION}" / str(Source.ITEMS)
            for stray in base.glob(pattern):
                stray.unlink(missing_ok=True)

    @console.get("/review", response_class=HTMLResponse)
    def review_queue(request: Request) -> Response:
        operator = operator_of(request, Role.EDITOR, Role.ADMIN)
        return page(
            request,
            "review.html",
            operator,
            pending=store.uploads(Status.PENDING),
            approved=store.uploads(Status.APPROVED, limit=50),
            rejected=store.uploads(Status.REJECTED, limit=50),
        )

    @console.post("/review/{item_id}")
    async def review(request: Request, item_id: str) -> Response:
        operator = operator_of(request, Role.EDITOR, Role.ADMIN)
        form = await checked_form(request)
        decision = form.get("decision")
        if decision not in ("approve", "reject"):
            raise HTTPException(422, "decision must be approve or reject")
        status = Status.APPROVED if decision == "approve" else Status.REJECTED
        note = (form.get("note") or "").strip()[:500]
        try:
            approve_or_reject(item_id, status, operator.name, note)
        except StoreError as error:
            raise HTTPException(409, str(error)) from None
        return redirect(request, f"{BASE}/review?done={decision}d+{item_id}")

    # ---------------------------------------------------------------------------- users
    @console.get("/users", response_class=HTMLResponse)
    def users(request: Request, user_id: str = "") -> Response:
        operator = operator_of(request)
        user_id = user_id.strip()
        if not user_id:
            return page(request, "users.html", operator, user_id="", found=None, error=None)
        if not _USER_ID.match(user_id):
            return page(
                request,
                "users.html",
                operator,
                422,
                user_id=user_id,
                found=None,
                error="a user id is 1-128 letters, digits or . : @ - _",
            )
        return page(
            request,
            "users.html",
            operator,
            user_id=user_id,
            error=None,
            found=_user_view(service, user_id),
        )

    # ------------------------------------------------------------------------ operators
    @console.get("/operators", response_class=HTMLResponse)
    def operators(request: Request) -> Response:
        operator = operator_of(request, Role.ADMIN)
        return page(
            request, "operators.html", operator, operators=store.operators(), error=None, form={}
        )

    @console.post("/operators", response_class=HTMLResponse)
    async def add_operator(request: Request) -> Response:
        operator = operator_of(request, Role.ADMIN)
        form = await checked_form(request)
        try:
            created = store.add_operator(
                form.get("name", ""), form.get("password", ""), form.get("role", "")
            )
        except StoreError as error:
            return page(
                request,
                "operators.html",
                operator,
                422,
                operators=store.operators(),
                error=str(error),
                form={"name": form.get("name", ""), "role": form.get("role", "")},
            )
        return redirect(request, f"{BASE}/operators?done=added+{created.name}")

    @console.post("/operators/{name}/active")
    async def set_active(request: Request, name: str) -> Response:
        operator_of(request, Role.ADMIN)
        form = await checked_form(request)
        try:
            store.set_active(name, form.get("active") == "1")
        except StoreError as error:
            raise HTTPException(409, str(error)) from None
        return redirect(request, f"{BASE}/operators?done=updated+{name}")

    return console


def _user_view(service: Service, user_id: str) -> dict[str, Any]:
    """What the users page shows: online row, interests, friends, recommendations now."""
    from serving.candidates import DOMAIN_NAMES, friends_of
    from serving.features import FeatureStoreDown
    from serving.schemas import RecommendRequest
    from serving.service import NotReady

    state = service.manager.state
    if state is None:
        return {"error": "no model is loaded yet, so there is nothing to look up"}
    featurizer = state.bundle.featurizer
    friends = friends_of(featurizer, user_id, 20)
    degraded = False
    try:
        user, recent = service.guard.call(state.reader.read_user, user_id, friends)
        values = user.values
        found = user.found
    except FeatureStoreDown:
        degraded, values, found, recent = True, {}, False, None
    behaviour = []
    stamps = list(values.get("seq_ts") or [])
    for index, item in enumerate(list(values.get("seq_item_ids") or [])[:20]):
        ident = int(featurizer.items.ids([item])[0])
        domain = int(featurizer.item_domain[ident]) if ident >= 2 else 0
        stamp = stamps[index] if index < len(stamps) else None
        behaviour.append(
            {
                "item_id": item,
                "domain": DOMAIN_NAMES[domain - 1] if domain else "unknown",
                "when": _when(float(stamp)) if stamp else "",
            }
        )
    interests = []
    for domain, names in service.features_params.categories.items():
        vector = values.get(f"{domain}_category_interest")
        if vector is None or not hasattr(vector, "__len__") or len(vector) != len(names):
            continue
        pairs = sorted(zip(names, (float(v) for v in vector), strict=True), key=lambda p: -p[1])
        interests.append({"domain": str(domain), "top": pairs[:5]})
    numbers = {
        name: value
        for name, value in sorted(values.items())
        if isinstance(value, float) and value == value
    }
    try:
        answer = service.recommend(RecommendRequest(user_id=user_id), record=False)
    except NotReady as error:
        answer = {"error": str(error)}
    return {
        "found": found,
        "degraded": degraded,
        "behaviour": behaviour,
        "interests": interests,
        "numbers": numbers,
        "friends": friends,
        "friends_recent": list(recent.items[:10]) if recent else [],
        "recommendations": answer,
    }
