"""`/ghl/settings`: a location's Cast SMS settings inside GHL, as the app's Custom Page
(docs/oauth.md, "Settings inside GHL").

The page asks GHL for the signed-in user (`settings.js`) and sends GHL's encrypted context
with every request; nothing else identifies the caller, and no cookie is set (a cookie
in a third-party frame is blocked by many browsers). The location is the one the user
has open in GHL (`activeLocation`), never one named by the request, so a location never
sees another. Everyone on the location sees its state; only GHL admins change its
sender ID and Cast key, through the same `SettingsEditor` as the admin API (checked
against Cast, audited as `ghl-user:<userId>`, announced to the senders).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from importlib import resources
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from castghl.common.errors import BridgeError, Forbidden, InvalidRequest, NotFound
from castghl.common.usage import MANILA, totals
from castghl.common.validation import describe
from castghl.oauth.admin import SenderIdCheck, SettingsEditor, SettingsUpdate, view
from castghl.oauth.console.pages import STATE_NAMES
from castghl.oauth.ghl_page.sso import GhlUser, user_of
from castghl.oauth.installation import Installation
from castghl.oauth.refresh import utcnow
from castghl.oauth.sender_api import SenderApi
from castghl.oauth.tenancy import DefaultKeyFor

log = logging.getLogger(__name__)
SCRIPT: Final = resources.files(__package__).joinpath("settings.js").read_text()
MAX_BODY_BYTES: Final = 16_384
CAST_ACCOUNTS: Final = {"own": "this location's own Cast account",
                        "default": "the agency's Cast account",
                        "none": "none yet: add this location's Cast API key"}


class Ask(BaseModel):
    """What the page posts: GHL's encrypted context, and for a save the new settings."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: str = Field(min_length=1, max_length=8192)
    sender_id: str | None = None
    cast_api_key: str | None = None


def _headers(frame_ancestors: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            f"form-action 'none'; base-uri 'none'; frame-ancestors {frame_ancestors}"),
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer"}


def _page() -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Cast SMS</title>"
        '<link rel="stylesheet" href="/console/console.css"></head><body><main>'
        "<h1>Cast SMS</h1>"
        '<p id="loading">Asking GoHighLevel who you are…</p>'
        '<p id="message" role="status" aria-live="polite"></p>'
        '<div id="facts" hidden><table><caption>This location</caption><tbody>'
        '<tr><th scope="row">Location</th><td id="location"></td></tr>'
        '<tr><th scope="row">State</th><td id="state"></td></tr>'
        '<tr><th scope="row">Sender ID</th><td id="sender"></td></tr>'
        '<tr><th scope="row">Cast account</th><td id="account"></td></tr>'
        '<tr><th scope="row">Delivered (7 days)</th><td id="delivered"></td></tr>'
        '<tr><th scope="row">Failed (7 days)</th><td id="failed"></td></tr>'
        '<tr><th scope="row">SMS parts (7 days)</th><td id="parts"></td></tr>'
        "</tbody></table>"
        '<p id="read-only" hidden>Only an admin of this location can change these.</p>'
        '<form id="edit" hidden><h2>Change</h2>'
        '<label for="sender_id">Sender ID</label>'
        '<input id="sender_id" name="sender_id" maxlength="20" aria-describedby="sender_help">'
        '<p id="sender_help">Checked against your Cast account; empty for its default.</p>'
        '<label for="cast_api_key">Your Cast API key</label>'
        '<input id="cast_api_key" name="cast_api_key" type="password" autocomplete="off"'
        ' aria-describedby="key_help">'
        "<p id=\"key_help\">Leave empty to keep the current one. It is never shown back.</p>"
        '<p><button type="submit">Save</button></p></form></div>'
        '<script src="/ghl/settings.js"></script></main></body></html>')


def ghl_page_router(editor: SettingsEditor, sender: SenderApi, *, sso_key: str | None,
                    frame_ancestors: str, default_key_for: DefaultKeyFor,
                    sender_ids: SenderIdCheck,
                    clock: Callable[[], datetime] = utcnow) -> APIRouter:
    router = APIRouter(prefix="/ghl", include_in_schema=False)
    headers = _headers(frame_ancestors)

    @router.get("/settings")
    async def page() -> Response:
        if sso_key is None:
            return HTMLResponse("<p>Cast SMS: GHL_SSO_KEY is not set, so this page cannot "
                                "tell who you are.</p>", 503, headers=headers)
        return HTMLResponse(_page(), headers=headers)

    @router.get("/settings.js")
    async def script() -> Response:
        return Response(SCRIPT, media_type="text/javascript", headers=headers)

    async def asked(request: Request) -> tuple[Ask, GhlUser, Installation]:
        if sso_key is None:
            raise NotFound("GHL_SSO_KEY is not set: this page is off")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise InvalidRequest("too large")
        try:
            ask = Ask.model_validate_json(body)
        except ValidationError as exc:
            raise InvalidRequest(describe(exc)) from None
        user = user_of(ask.key, sso_key)
        if user.location_id is None:
            raise Forbidden("open Cast SMS from a location (sub-account) in GoHighLevel")
        inst = await editor.installed(user.location_id)
        if not inst.installed:
            raise NotFound("Cast SMS is not installed on this location")
        return ask, user, inst

    async def state(user: GhlUser, inst: Installation) -> dict[str, Any]:
        shown = view(inst, default_key_for, sender_ids)
        today = clock().astimezone(MANILA).date()
        try:
            rows = await sender.days(inst.location_id or "",
                                     (today - timedelta(days=6)).isoformat(), today.isoformat())
            week: dict[str, int] | None = totals(rows)
        except BridgeError:
            week = None  # shown as "—": the page still answers
        return {"location_id": inst.location_id, "state": shown["state"],
                "state_name": STATE_NAMES.get(shown["state"], shown["state"]),
                "sender_id": shown["settings"]["sender_id"],
                "cast_account": CAST_ACCOUNTS.get(shown["cast_key"] or "none", ""),
                "last_7_days": week, "can_edit": user.admin}

    @router.post("/settings/state")
    async def read(request: Request) -> dict[str, Any]:
        _, user, inst = await asked(request)
        return await state(user, inst)

    @router.post("/settings/save")
    async def save(request: Request) -> dict[str, Any]:
        ask, user, inst = await asked(request)
        if not user.admin:
            raise Forbidden("only an admin of this location can change its Cast SMS settings")
        changes: dict[str, Any] = {}
        if ask.sender_id != inst.prefs.sender_id:
            changes["sender_id"] = ask.sender_id
        if ask.cast_api_key:
            changes["cast_api_key"] = ask.cast_api_key
        try:
            update = SettingsUpdate.model_validate(changes)
        except ValidationError as exc:
            raise InvalidRequest(describe(exc)) from None
        if update.model_fields_set:
            inst = await editor.apply(inst.location_id or "", update,
                                      actor=f"ghl-user:{user.user_id}")
            log.info("location settings changed inside GHL",
                     extra={"locationId": inst.location_id,
                            "changed": sorted(update.model_fields_set)})
        return await state(user, inst)

    return router
