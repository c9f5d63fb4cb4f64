"""`/console`: the operator's pages, signed in with the admin key (docs/deploy.md,
"Console"): signing in and out, and the installations. The operations pages are in
`ops_routes.py`; what every page shares (headers, CSRF, cookies) in `web.py`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from castghl.common.errors import BridgeError
from castghl.common.usage import MANILA, totals
from castghl.common.validation import fields
from castghl.oauth.admin import (
    CONSOLE_ACTOR,
    AuditLog,
    SenderIdCheck,
    SettingsEditor,
    SettingsStore,
    SettingsUpdate,
    view,
)
from castghl.oauth.console import pages
from castghl.oauth.console.ops_routes import OwnParts, ops_routes
from castghl.oauth.console.session import (
    NONCE_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Sessions,
    Throttle,
)
from castghl.oauth.console.web import HEADERS, Console, form_of, html, redirect, set_cookie
from castghl.oauth.refresh import utcnow
from castghl.oauth.sender_api import SenderApi
from castghl.oauth.tenancy import DefaultKeyFor


def update_from(form: dict[str, str], current: dict[str, Any]) -> SettingsUpdate:
    """A form as an update of what it changes. The stop/allow form carries `sending`
    alone. In the settings form an empty sender ID or rate returns it to the default; an
    empty key field keeps the key; the inbound numbers are the lines given. A field left
    as it was is no change (nor an audit entry)."""
    if "sending" in form:
        return SettingsUpdate.model_validate({"sending": form["sending"]})
    data: dict[str, Any] = {
        "sender_id": form.get("sender_id", "").strip() or None,
        "inbound_numbers": [line.strip() for line in form.get("inbound_numbers", "").splitlines()
                            if line.strip()]}
    rate = form.get("rate_limit_per_second", "").strip()
    try:
        data["rate_limit_per_second"] = float(rate) if rate else None
    except ValueError:
        data["rate_limit_per_second"] = rate  # refused below, with the field named
    data = {name: value for name, value in data.items() if value != current.get(name)}
    if form.get("remove_key"):
        data["cast_api_key"] = None
    elif key := form.get("cast_api_key", "").strip():
        data["cast_api_key"] = key
    return SettingsUpdate.model_validate(data)


def _sign_in_routes(router: APIRouter, sessions: Sessions, throttle: Throttle) -> None:
    """The pages of no location: the style sheet, the entry, signing in and out."""

    def signed_in(request: Request) -> str | None:
        return sessions.session_of(request.cookies.get(SESSION_COOKIE))

    @router.get("/console.css")
    async def style() -> Response:
        return Response(pages.STYLE, media_type="text/css", headers=HEADERS)

    @router.get("")
    async def home(request: Request) -> Response:
        return redirect("/console/installations" if signed_in(request)
                         else "/console/sign-in")

    @router.get("/sign-in")
    async def sign_in_form(request: Request) -> Response:
        nonce = sessions.issue()  # a signed value: the sign-in form's own CSRF anchor
        anchor = sessions.session_of(nonce) or ""
        response = html(pages.sign_in(sessions.csrf(anchor)))
        set_cookie(response, request, NONCE_COOKIE, nonce, 3600)
        return response

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        client = request.client.host if request.client else "?"
        nonce = sessions.session_of(request.cookies.get(NONCE_COOKIE))
        form = await form_of(request)
        if nonce is None or not sessions.csrf_ok(nonce, form.get("csrf", "")):
            return html(pages.page("Refused", "<p>The form expired; "
                                    '<a href="/console/sign-in">sign in again</a>.</p>'), 403)
        if wait := throttle.wait(client):
            response = html(pages.sign_in(sessions.csrf(nonce), "Too many failed sign-ins; "
                                           f"try again in {wait:.0f} seconds."), 429)
            response.headers["Retry-After"] = str(int(wait))
            return response
        if not sessions.password_ok(form.get("password", "")):
            throttle.failed(client)
            return html(pages.sign_in(sessions.csrf(nonce), "Wrong admin key."), 401)
        signed = redirect("/console/installations")
        set_cookie(signed, request, SESSION_COOKIE, sessions.issue(), SESSION_SECONDS)
        signed.delete_cookie(NONCE_COOKIE, path="/console")
        return signed

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        sid = signed_in(request)
        form = await form_of(request)
        if sid is None or not sessions.csrf_ok(sid, form.get("csrf", "")):
            return html(pages.page("Refused", "<p>Not signed out: the form was not ours.</p>"),
                         403)
        response = redirect("/console/sign-in")
        response.delete_cookie(SESSION_COOKIE, path="/console")
        return response


def console_router(store: SettingsStore, sender: SenderApi, sessions: Sessions, *,
                   editor: SettingsEditor, audit: AuditLog, own: OwnParts,
                   default_key_for: DefaultKeyFor, default_api_key: str,
                   sender_ids: SenderIdCheck, throttle: Throttle | None = None,
                   clock: Callable[[], datetime] = utcnow) -> APIRouter:
    router = APIRouter(prefix="/console", include_in_schema=False)
    console = Console(sessions)
    _sign_in_routes(router, sessions, throttle or Throttle())
    ops_routes(router, console, sender, own, store=store, audit=audit,
               default_key_for=default_key_for, default_api_key=default_api_key, clock=clock)

    @router.get("/installations")
    async def installations(request: Request, state: str | None = None) -> Response:
        sid = console.signed_in(request)
        if sid is None:
            return redirect("/console/sign-in")
        wanted = state if state in pages.STATES else None
        today = clock().astimezone(MANILA).date()
        week: dict[str, list[dict[str, Any]]] = defaultdict(list)
        try:
            usage = await sender.usage((today - timedelta(days=6)).isoformat(),
                                       today.isoformat())
        except BridgeError as error:
            problem = f"Usage not shown: {error.detail}"
        else:
            problem = ""
            for row in usage["days"]:
                week[row["location_id"]].append(row)
        rows: list[dict[str, Any]] = []
        for inst in await store.all(5000):
            shown = view(inst, default_key_for, sender_ids)
            if inst.location_id is None or (wanted and shown["state"] != wanted):
                continue  # an agency's own install, or another state
            counted = totals(week[inst.location_id])
            rows.append({
                "location_id": inst.location_id, "company_id": inst.company_id,
                "state": shown["state"], "sender_id": shown["settings"]["sender_id"],
                "own_key": shown["settings"]["cast_api_key"] or "no",
                **({"delivered": "—", "failed": "—", "parts": "—"} if problem else {
                    "delivered": counted["delivered"], "failed": counted["failed"],
                    "parts": counted["parts_sent"]})})
        return html(pages.installations(rows, wanted, sessions.csrf(sid), problem=problem))

    async def detail(location_id: str, sid: str, *, error: str = "", saved: bool = False,
                     status: int = 200) -> Response:
        try:
            inst = await editor.installed(location_id)
        except BridgeError:
            return html(pages.page("Not found", "<p>No installation for this location.</p>",
                                   csrf=sessions.csrf(sid)), 404)
        trail = await audit.recent(location_id, 10)
        return html(pages.installation(view(inst, default_key_for, sender_ids), trail,
                                       sessions.csrf(sid), error=error, saved=saved), status)

    @router.get("/installations/{location_id}")
    async def installation(request: Request, location_id: str) -> Response:
        sid = console.signed_in(request)
        if sid is None:
            return redirect("/console/sign-in")
        return await detail(location_id, sid)

    @router.post("/installations/{location_id}")
    async def save(request: Request, location_id: str) -> Response:
        if (sid := await console.checked_post(request)) is None:
            return console.refused("Not saved")
        try:
            current = view(await editor.installed(location_id), default_key_for,
                           sender_ids)["settings"]
            update = update_from(await form_of(request), current)
            if update.model_fields_set:  # a form saved unchanged is no change to record
                await editor.apply(location_id, update, actor=CONSOLE_ACTOR)
        except ValidationError as exc:
            return await detail(location_id, sid, error=fields(exc), status=422)
        except BridgeError as error:  # a sender ID the account lacks, a number taken, …
            return await detail(location_id, sid, error=error.detail,
                                status=error.http_status)
        return await detail(location_id, sid, saved=True)

    return router
