"""The web console: server-rendered pages over the same service functions as the JSON API.

Sign-in exchanges an API key for a server-side session (an HttpOnly, SameSite=Strict cookie); every
form carries the session's CSRF token; the key's role decides what each page shows, and every
write goes through the same role check as the API (:func:`modelwarden.server.deps.caller`), so a
hidden button is never the control. Assets (htmx, uPlot, Swagger UI) ship inside the package.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from starlette.concurrency import run_in_threadpool

from modelwarden.drift.history import read_history
from modelwarden.errors import InputError, NotFoundError, WardenError
from modelwarden.evals import service as evals_service
from modelwarden.governance import audit, incidents, registry
from modelwarden.governance import service as governance
from modelwarden.governance.keys import ApiKey, AuthError, may
from modelwarden.governance.sessions import close_session, open_session
from modelwarden.kpi.service import last_day, overview_kpis
from modelwarden.policy import service as policy_service
from modelwarden.review import service as review_service
from modelwarden.rollout import service as rollout_service
from modelwarden.rollout import store as rollout_store
from modelwarden.server.deps import (
    SESSION_COOKIE,
    actor_of,
    audit_refusal,
    caller,
    runtime_of,
    session_of,
)
from modelwarden.windows import iso_week, week_label

HERE = Path(__file__).parent
STATIC = "/console/static"
PRE_COOKIE = "mw_pre"
FLASH_COOKIE = "mw_flash"
RCA_ROWS = 200

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(HERE / "templates"))

NAV: list[tuple[str, str, str | None]] = [
    ("/", "Overview", None),
    ("/drift", "Drift", None),
    ("/rollouts", "Rollouts", None),
    ("/incidents", "Incidents", None),
    ("/registry", "Registry", None),
    ("/review", "Review", "review"),
    ("/reports", "Reports", None),
    ("/sop", "SOP", None),
    ("/audit", "Audit", None),
]
# Who sees the review workbench. A queue's progress and agreement are for the key that created it
# and for admin keys (review_service.may_see_progress).
REVIEW_ROLES = frozenset({"reviewer", "operator", "admin"})


# ---- formatting --------------------------------------------------------------------------------
def _num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "—"
    if isinstance(v, int | float):
        return f"{v:.{digits}g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _signed(v: Any) -> str:
    return "—" if v is None else f"{v:+.2f}"


def _pct(v: Any) -> str:
    return "—" if v is None else f"{v:+.1f} %"


def _rate(v: Any) -> str:
    return "—" if v is None else f"{100 * v:.2f} %"


def _ms(v: Any) -> str:
    return "—" if v is None else f"{v:,.0f} ms"


def _when(v: Any) -> str:
    if v is None or v == "":
        return "—"
    if isinstance(v, datetime):
        return f"{v.astimezone(UTC):%Y-%m-%d %H:%M}"
    text = str(v)
    return text[:16].replace("T", " ") if len(text) >= 16 else text


for _name, _fn in (
    ("num", _num),
    ("signed", _signed),
    ("pct", _pct),
    ("rate", _rate),
    ("ms", _ms),
    ("when", _when),
):
    templates.env.filters[_name] = _fn


# ---- pages and sessions ------------------------------------------------------------------------
def _safe_next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith("//") or urlparse(value).netloc:
        return "/"
    return value


def _redirect(to: str, flash: str | None = None, kind: str = "ok") -> RedirectResponse:
    res = RedirectResponse(to, status_code=303)
    if flash:
        res.set_cookie(
            FLASH_COOKIE,
            quote(json.dumps({"text": flash[:500], "kind": kind})),
            httponly=True,
            samesite="strict",
            max_age=60,
        )
    return res


def _render(request: Request, name: str, here: str, **ctx: Any) -> HTMLResponse:
    session = session_of(request)
    user = session.key if session else None
    flash = None
    raw = request.cookies.get(FLASH_COOKIE)
    if raw:
        try:
            flash = json.loads(unquote(raw))
        except ValueError:
            flash = None
    nav = [
        (href, label)
        for href, label, gate in NAV
        if user is not None and (gate is None or user.role in REVIEW_ROLES)
    ]
    res = templates.TemplateResponse(
        request,
        name,
        {
            "title": ctx.pop("title", name.removesuffix(".html").capitalize()),
            "static": STATIC,
            "user": user,
            "csrf": session.csrf if session else ctx.pop("pre_csrf", ""),
            "nav": nav,
            "here": here,
            "flash": flash["text"] if flash else None,
            "flash_kind": flash["kind"] if flash else None,
            **ctx,
        },
    )
    if raw:
        res.delete_cookie(FLASH_COOKIE)
    return res


class SignIn(Exception):
    """Raised by a page that needs a session; answered with a redirect to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def _user(request: Request) -> ApiKey:
    session = session_of(request)
    if session is None:
        raise SignIn(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return session.key


def _errors_as_page(request: Request) -> None:
    """Errors of a console page come back as a page with the error's status and message."""

    def page(exc: WardenError) -> Response:
        if isinstance(exc, AuthError) and session_of(request) is None:
            return _redirect(f"/signin?next={quote(request.url.path)}", exc.message, "err")
        res = _render(request, "error.html", "", title="Refused", message=exc.message)
        res.status_code = exc.http_status
        return res

    request.state.mw_error_page = page


def _errors_as_flash(request: Request, back: str) -> None:
    """Errors of a console form come back as a message on the page it was sent from."""

    def page(exc: WardenError) -> Response:
        if isinstance(exc, AuthError) and session_of(request) is None:
            return _redirect(f"/signin?next={quote(back)}", exc.message, "err")
        return _redirect(back, exc.message, "err")

    request.state.mw_error_page = page


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.get("/signin")
def signin_page(request: Request, next: str = "/") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    res = _render(
        request, "login.html", "/signin", title="Sign in", next=_safe_next(next), pre_csrf=token
    )
    res.set_cookie(PRE_COOKIE, token, httponly=True, samesite="strict", max_age=1800)
    return res


@router.post("/signin")
async def signin(request: Request) -> Response:
    rt = runtime_of(request)
    form = await _form(request)
    target = _safe_next(form.get("next"))
    pre = request.cookies.get(PRE_COOKIE)
    if not pre or form.get("csrf") != pre:
        return _redirect(
            f"/signin?next={quote(target)}", "the sign-in form expired; try again", "err"
        )
    try:
        sid, session = await run_in_threadpool(open_session, rt.state, form.get("key", ""))
    except AuthError as exc:
        request.state.mw_key = None
        await run_in_threadpool(audit_refusal, request, exc)
        return _redirect(f"/signin?next={quote(target)}", exc.message, "err")
    res = _redirect(target)
    secure = request.url.scheme == "https"
    res.set_cookie(
        SESSION_COOKIE,
        sid,
        httponly=True,
        samesite="strict",
        secure=secure,
        max_age=int((session.expires_at - datetime.now(UTC)).total_seconds()),
        path="/",
    )
    res.delete_cookie(PRE_COOKIE)
    return res


@router.post("/signout")
async def signout(request: Request) -> Response:
    rt = runtime_of(request)
    session = session_of(request)
    if session is not None:
        form = await _form(request)
        if form.get("csrf") == session.csrf:
            await run_in_threadpool(close_session, rt.state, request.cookies.get(SESSION_COOKIE))
    res = _redirect("/signin", "signed out")
    res.delete_cookie(SESSION_COOKIE, path="/")
    return res


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    """Swagger UI from the packaged assets: works on a network with no internet."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="ModelWarden API",
        swagger_js_url=f"{STATIC}/swagger/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC}/swagger/swagger-ui.css",
        swagger_favicon_url=f"{STATIC}/swagger/favicon-32x32.png",
    )


# ---- overview ----------------------------------------------------------------------------------
def _day(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{field} must be a date (YYYY-MM-DD)", field=field) from None


def overview_data(
    rt: Any, since: date | None, until: date | None, plant: str, version: str
) -> dict[str, Any]:
    settings, state = rt.settings, rt.state
    last = last_day(settings)
    end = until or ((last or datetime.now(UTC).date()) + timedelta(days=1))
    start = since or (end - timedelta(days=28))
    rows: list[dict[str, Any]] = []
    days: list[dict[str, Any]] = []
    source = "rollups"
    if start < end:
        # Daily rollups when built (no scan of the requests per page view), else exact.
        rows, source = overview_kpis(settings, start, end, "week")
        days, _ = overview_kpis(settings, start, end, "day")
    plants = sorted({r["plant_id"] for r in rows if r["plant_id"]})
    versions = sorted({r["model_version"] for r in rows if r["model_version"]})

    def keep(r: dict[str, Any]) -> bool:
        return (not plant or r["plant_id"] == plant) and (
            not version or r["model_version"] == version
        )

    kpis = [
        {**r, "week": f"{r['window_start']:%G-W%V}"}
        for r in sorted(
            rows, key=lambda r: (r["window_start"], r["plant_id"] or "", r["model_version"] or "")
        )
        if keep(r) and r["requests"]
    ]
    per_day: dict[datetime, dict[str, float]] = {}
    for r in days:
        if not keep(r) or not r["requests"]:
            continue
        d = per_day.setdefault(r["window_start"], {"n": 0.0, "unsafe": 0.0})
        d["n"] += r["requests"]
        d["unsafe"] += r["safety_incidents"] or 0
    xs = sorted(per_day)
    trend = {
        "x": [x.timestamp() for x in xs],
        "series": [
            {"label": "requests / day", "values": [per_day[x]["n"] for x in xs]},
            {
                "label": "safety rate %",
                "scale": "y2",
                "values": [100 * per_day[x]["unsafe"] / per_day[x]["n"] for x in xs],
            },
        ],
        "ylabel": "requests",
        "y2label": "safety %",
    }
    lights = _lights(settings, state)
    return {
        "kpis": kpis,
        "trend": trend,
        "plants": plants,
        "versions": versions,
        "lights": lights,
        "kpi_source": source,
        "f": {
            "since": start.isoformat(),
            "until": end.isoformat(),
            "plant": plant,
            "version": version,
        },
    }


def _lights(settings: Any, state: Any) -> list[dict[str, str]]:
    recent = read_history(settings, since=datetime.now(UTC) - timedelta(days=21))
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in recent:
        k = (r["kind"], r["scope"])
        if k not in latest or r["window_end"] > latest[k]["window_end"]:
            latest[k] = r
    drifting = sorted(f"{k[0]} @ {k[1]}" for k, r in latest.items() if r["status"] == "ALERT")
    live = rollout_store.active(state)
    open_incidents = [i for i in incidents.list_incidents(state) if i.status != "closed"]
    quarantined = sorted(registry.quarantined_versions(state))
    return [
        {
            "name": "drift",
            "label": "Drift",
            "level": "bad" if drifting else "ok",
            "text": ", ".join(drifting[:3])
            if drifting
            else ("no alert" if latest else "no history yet"),
        },
        {
            "name": "rollouts",
            "label": "Live rollouts",
            "level": "warn" if live else "ok",
            "text": f"{live.version}: {live.status}, step {live.step + 1}" if live else "none",
        },
        {
            "name": "incidents",
            "label": "Open incidents",
            "level": "bad" if open_incidents else "ok",
            "text": str(len(open_incidents)),
        },
        {
            "name": "quarantine",
            "label": "Quarantined versions",
            "level": "warn" if quarantined else "ok",
            "text": ", ".join(quarantined) if quarantined else "none",
        },
    ]


@router.get("/")
async def overview(
    request: Request,
    since: str | None = None,
    until: str | None = None,
    plant: str = "",
    version: str = "",
) -> Response:
    _user(request)
    rt = runtime_of(request)
    data = await run_in_threadpool(
        overview_data, rt, _day(since, "since"), _day(until, "until"), plant, version
    )
    return _render(request, "overview.html", "/", title="Overview", **data)


# ---- rollouts ----------------------------------------------------------------------------------
@router.get("/rollouts")
async def rollouts(request: Request) -> Response:
    user = _user(request)
    rt = runtime_of(request)
    view = await run_in_threadpool(rollout_service.rollout_view, rt.settings, rt.state)
    history = rollout_service.list_rollouts(rt.state, 20)
    return _render(
        request,
        "rollouts.html",
        "/rollouts",
        title="Rollouts",
        view=view,
        history=history,
        can_operate=may(user.role, "rollout"),
    )


@router.get("/rollouts/live")
async def rollouts_live(request: Request) -> Response:
    _user(request)
    rt = runtime_of(request)
    view = await run_in_threadpool(rollout_service.rollout_view, rt.settings, rt.state)
    return templates.TemplateResponse(request, "rollout_live.html", {"view": view})


@router.post("/rollouts/{operation}")
async def rollout_operate(request: Request, operation: str) -> Response:
    _errors_as_flash(request, "/rollouts")
    key = await caller(request, "rollout")
    rt = runtime_of(request)
    form = await _form(request)
    await run_in_threadpool(
        rollout_service.operate,
        rt.settings,
        rt.state,
        operation,
        actor_of(key),
        form.get("reason", ""),
        rt.notifier,
    )
    rt.routes.invalidate()
    return _redirect("/rollouts", f"{operation}: done")


# ---- registry and approvals --------------------------------------------------------------------
@router.get("/registry")
def registry_page(request: Request) -> Response:
    _user(request)
    versions = governance.list_versions(runtime_of(request).state)
    return _render(request, "registry.html", "/registry", title="Registry", versions=versions)


@router.get("/registry/{version}")
async def version_page(request: Request, version: str) -> Response:
    user = _user(request)
    rt = runtime_of(request)
    d = governance.version_detail(rt.state, version)
    info = d["version"]
    open_request = next((r for r in d["release_requests"] if r["status"] == "open"), None)
    quarantined_at = info.get("quarantined_at")
    runs = [
        {**r, "after": bool(quarantined_at) and _at(r["created_at"]) >= _at(quarantined_at)}
        for r in evals_service.runs(rt.state, version)
    ]
    try:
        card = await run_in_threadpool(governance.version_scorecard, rt.settings, rt.state, version)
    except NotFoundError:
        card = None
    return _render(
        request,
        "version.html",
        "/registry",
        title=version,
        d=d,
        open_request=open_request,
        own_request=bool(open_request and open_request.get("requested_by_key") == user.id),
        can_approve=may(user.role, "approve"),
        can_request=may(user.role, "release"),
        runs=runs,
        card=card,
    )


def _at(v: Any) -> datetime:
    t = v if isinstance(v, datetime) else datetime.fromisoformat(str(v))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@router.post("/registry/{version}/approve")
async def approve(request: Request, version: str) -> Response:
    back = f"/registry/{quote(version)}"
    _errors_as_flash(request, back)
    key = await caller(request, "approve")
    assert key is not None
    rt = runtime_of(request)
    form = await _form(request)
    res = await run_in_threadpool(
        governance.approve_release,
        rt.state,
        version,
        key,
        form.get("eval_run", ""),
        None,
        None,
        form.get("note", ""),
    )
    rt.routes.invalidate()
    if res.approved:
        return _redirect(back, f"{version} released to staging")
    return _redirect(back, "; ".join(res.reasons) or "refused", "err")


@router.post("/registry/{version}/request-release")
async def request_release(request: Request, version: str) -> Response:
    back = f"/registry/{quote(version)}"
    _errors_as_flash(request, back)
    key = await caller(request, "release")
    assert key is not None
    form = await _form(request)
    await run_in_threadpool(
        governance.request_release, runtime_of(request).state, version, key, form.get("reason", "")
    )
    return _redirect(back, "release requested; a different approver approves it")


# ---- review workbench --------------------------------------------------------------------------
def _keymap(dim: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    if dim["type"] == "boolean":
        return {"y": "yes", "n": "no"}, ["yes", "no"]
    if dim["type"] == "categorical":
        labels = list(dim.get("labels") or [])
        return {str(i + 1): v for i, v in enumerate(labels[:9])}, labels
    lo, hi = int(dim["min"]), int(dim["max"])
    values = [str(v) for v in range(lo, hi + 1)]
    return {v: v for v in values if len(v) == 1}, values


@router.get("/review")
async def review_page(request: Request, queue: str | None = None) -> Response:
    user = _user(request)
    rt = runtime_of(request)
    if user.role not in REVIEW_ROLES:
        return _redirect("/", f"a key with role {user.role!r} does not review", "err")
    bench = await run_in_threadpool(
        review_service.workbench, rt.state, queue, user.name or user.prefix, user
    )
    item = bench["item"]
    dims: list[dict[str, Any]] = []
    if item is not None:
        for d in item["rubric"]["dimensions"]:
            keymap, values = _keymap(d)
            dims.append(
                {**d, "keymap": keymap, "options": values, "anchors": d.get("anchors") or {}}
            )
    progress = bench["progress"]
    return _render(
        request,
        "review.html",
        "/review",
        title="Review",
        queues=bench["queues"],
        queue=bench["queue"],
        item=item,
        dims=dims,
        agreement=progress["agreement"] if progress else None,
        status=progress["status"] if progress else None,
    )


@router.get("/review/progress")
async def review_progress(request: Request, queue: str) -> Response:
    """A queue's progress and agreement: its owner and admin keys only (403, audited, else)."""
    user = _user(request)
    _errors_as_page(request)
    request.state.mw_key = user
    rt = runtime_of(request)
    view = await run_in_threadpool(review_service.progress, rt.state, queue, user)
    return _render(request, "review_progress.html", "/review", title=f"Queue {queue}", **view)


@router.post("/review")
async def review_submit(request: Request) -> Response:
    form = await _form(request)
    queue = form.get("queue", "")
    back = f"/review?queue={quote(queue)}"
    _errors_as_flash(request, back)
    key = await caller(request, "events")
    assert key is not None
    rt = runtime_of(request)
    answers = {k[4:]: _answer(v) for k, v in form.items() if k.startswith("dim_")}
    await run_in_threadpool(
        partial(
            review_service.submit,
            rt.state,
            form.get("item_id", ""),
            key.name or key.prefix,
            answers,
            form.get("comment") or None,
            origin="console",
            queue=queue,
        )
    )
    return _redirect(back, "review saved")


def _answer(v: str) -> Any:
    if v in ("yes", "no"):
        return v == "yes"
    try:
        return int(v)
    except ValueError:
        return v


# ---- incidents ---------------------------------------------------------------------------------
@router.get("/incidents")
def incidents_page(request: Request) -> Response:
    _user(request)
    items = governance.list_incidents(runtime_of(request).state)
    return _render(request, "incidents.html", "/incidents", title="Incidents", items=items)


def _rca_rows(settings: Any, incident_id: str, q: str) -> tuple[list[dict[str, Any]], int]:
    try:
        path = governance.rca_file(settings, incident_id, "requests", "jsonl")
    except NotFoundError:
        return [], 0
    rows: list[dict[str, Any]] = []
    total = 0
    needle = q.lower().strip()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if needle and needle not in line.lower():
                continue
            total += 1
            if len(rows) < RCA_ROWS:
                rows.append(json.loads(line))
    return rows, total


@router.get("/incidents/{incident_id}")
async def incident_page(request: Request, incident_id: str, q: str = "") -> Response:
    user = _user(request)
    rt = runtime_of(request)
    inc = governance.incident_detail(rt.state, incident_id)
    rca, total = await run_in_threadpool(_rca_rows, rt.settings, incident_id, q)
    return _render(
        request,
        "incident.html",
        "/incidents",
        title=incident_id,
        inc=inc,
        rca=rca,
        rca_total=total,
        q=q,
        can_resolve=may(user.role, "incidents"),
    )


@router.post("/incidents/{incident_id}/resolve")
async def incident_resolve(request: Request, incident_id: str) -> Response:
    back = f"/incidents/{quote(incident_id)}"
    _errors_as_flash(request, back)
    key = await caller(request, "incidents")
    form = await _form(request)
    await run_in_threadpool(
        governance.close_incident,
        runtime_of(request).state,
        incident_id,
        actor_of(key),
        form.get("note", ""),
    )
    return _redirect(back, "incident closed")


# ---- drift, reports, SOP, audit ----------------------------------------------------------------
def drift_data(settings: Any) -> dict[str, Any]:
    rows = read_history(settings)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("parent_method"):
            continue
        groups.setdefault((r["kind"], r["scope"]), []).append(r)
    charts = []
    for (kind, scope), pts in sorted(groups.items()):
        pts.sort(key=lambda r: r["window_end"])
        xs = [
            datetime.fromisoformat(str(p["window_end"])[:19]).replace(tzinfo=UTC).timestamp()
            for p in pts
        ]
        charts.append(
            {
                "title": f"{kind} drift · {scope}",
                "spec": {
                    "x": xs,
                    "series": [{"label": "p-value", "values": [p["p_value"] for p in pts]}],
                    "ylabel": "p-value",
                    "height": 160,
                },
            }
        )
    alerts = []
    for r in sorted(rows, key=lambda r: r["window_end"], reverse=True):
        if r["status"] != "ALERT" or r.get("parent_method"):
            continue
        topics = r.get("topics")
        if isinstance(topics, str):
            try:
                topics = json.loads(topics)
            except ValueError:
                topics = []
        alerts.append({**r, "topics": [t for t in (topics or []) if isinstance(t, dict)]})
    return {"charts": charts, "alerts": alerts[:50]}


@router.get("/drift")
async def drift_page(request: Request) -> Response:
    _user(request)
    data = await run_in_threadpool(drift_data, runtime_of(request).settings)
    return _render(request, "drift.html", "/drift", title="Drift", **data)


PACK_SUFFIXES = (".html", ".md", ".json", ".pdf")


def _packs(settings: Any) -> list[dict[str, Any]]:
    """The weekly packs written by ``modelwarden report`` under DATA/reports/, newest first."""
    d = Path(settings.reports_dir)
    if not d.is_dir():
        return []
    files = [p for p in d.iterdir() if p.is_file() and p.suffix in PACK_SUFFIXES]
    files.sort(key=lambda p: (p.stem, p.suffix), reverse=True)
    return [
        {
            "name": p.name,
            "stem": p.stem,
            "format": p.suffix[1:],
            "size": p.stat().st_size,
            "modified": datetime.fromtimestamp(p.stat().st_mtime, UTC),
        }
        for p in files
    ]


@router.get("/reports")
def reports_page(request: Request, pack: str | None = None) -> Response:
    _user(request)
    packs = _packs(runtime_of(request).settings)
    html = [p for p in packs if p["format"] == "html"]
    chosen = next((p for p in html if p["name"] == pack), html[0] if html else None)
    return _render(request, "reports.html", "/reports", title="Reports", packs=packs, chosen=chosen)


@router.get("/reports/{week}")
def report_of_week(request: Request, week: str) -> Response:
    """One week's pack, the page the weekly pack's e-mail and chat message link to."""
    _user(request)
    label = week_label(iso_week(week)[0])
    packs = _packs(runtime_of(request).settings)
    chosen = next((p for p in packs if p["name"] == f"weekly-{label}.html"), None)
    if chosen is None:
        raise NotFoundError(
            f"no HTML pack for {label} yet (modelwarden report --week {label} --format html)",
            field="week",
        )
    return _render(
        request, "reports.html", "/reports", title=f"Report {label}", packs=packs, chosen=chosen
    )


@router.get("/reports/files/{name}")
def report_file(request: Request, name: str) -> Response:
    _user(request)
    packs = {p["name"]: p for p in _packs(runtime_of(request).settings)}
    if name not in packs:
        raise NotFoundError(f"no report pack {name!r}", field="name")
    path = Path(runtime_of(request).settings.reports_dir) / name
    media = {
        "html": "text/html; charset=utf-8",
        "md": "text/markdown; charset=utf-8",
        "json": "application/json; charset=utf-8",
        "pdf": "application/pdf",
    }
    return Response(
        path.read_bytes(),
        media_type=media[packs[name]["format"]],
        # A pack is a document, not an app: no scripts, nothing fetched from elsewhere.
        headers={
            "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
        },
    )


_md = MarkdownIt("commonmark").enable("table")


@router.get("/sop")
def sop_page(request: Request) -> Response:
    _user(request)
    rt = runtime_of(request)
    cur = policy_service.current(rt.settings, rt.state)
    html = _md.render(policy_service.sop_markdown(rt.settings, state=rt.state))
    return _render(request, "sop.html", "/sop", title="SOP", html=html, source=cur["source"])


@router.get("/audit")
async def audit_page(
    request: Request, subject: str | None = None, action: str | None = None
) -> Response:
    _user(request)
    state = runtime_of(request).state
    v = await run_in_threadpool(audit.verify, state)
    entries = governance.audit_entries(state, subject or None, action or None, 200)
    return _render(
        request,
        "audit.html",
        "/audit",
        title="Audit",
        v=v.to_dict(),
        entries=entries,
        subject=subject,
        action=action,
    )


def install(app: Any) -> None:
    """Mount the console and its packaged assets on ``app``."""
    app.mount(STATIC, StaticFiles(directory=str(HERE / "static")), name="console-static")
    app.include_router(router)

    async def to_signin(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignIn)
        return _redirect(f"/signin?next={quote(exc.next_url)}")

    app.add_exception_handler(SignIn, to_signin)


__all__ = ["install", "router"]
