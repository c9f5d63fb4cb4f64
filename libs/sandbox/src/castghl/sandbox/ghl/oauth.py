"""OAuth 2.0 as GHL's marketplace runs it (ghl.md §5, oauth.json).

`/oauth/token` speaks OAuth2 errors (`{"error", "error_description"}`, the wording of the
node oauth2-server GHL's messages come from); the helper endpoints are ordinary API
routes with bearer, scope and Version checks.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from castghl.sandbox.ghl.access import CONTACTS_VERSION, Gate
from castghl.sandbox.ghl.errors import (
    NO_COMPANY_ACCESS,
    api_error,
    oauth_error,
    parse_fields,
)
from castghl.sandbox.ghl.knobs import GhlKnobs, UserType
from castghl.sandbox.ghl.schemas import LocationTokenForm, TokenForm
from castghl.sandbox.ghl.state import iso_time
from castghl.sandbox.ghl.tokens import Grant, Issued, TokenStore

FORM = "application/x-www-form-urlencoded"


def installation_grant(knobs: GhlKnobs, scope: str, *, user_type: UserType | None = None,
                       location_id: str | None = None, company_id: str | None = None,
                       approved: list[str] | None = None) -> Grant:
    """The installation the authorize screen (or a test) creates, from the knobs."""
    kind = user_type or knobs.install_user_type
    return Grant(
        user_type=kind,
        company_id=company_id or knobs.company_id,
        location_id=(location_id or knobs.location_id) if kind == "Location" else None,
        user_id=knobs.user_id,
        scope=scope,
        approved_locations=tuple(approved if approved is not None
                                 else knobs.approved_locations) if kind == "Company" else (),
        plan_id=knobs.plan_id,
    )


def token_response(issued: Issued, knobs: GhlKnobs) -> dict[str, Any]:
    """GetAccessCodeSuccessfulResponseDto. An agency's answer may list no locations (knob
    `token_lists_locations`): a client must then ask installedLocations, page by page."""
    grant = issued.access.grant
    body: dict[str, Any] = {
        "access_token": issued.access.token, "token_type": "Bearer",
        "expires_in": issued.expires_in,
    }
    if issued.refresh is not None:
        body["refresh_token"] = issued.refresh.token
    body.update({"scope": grant.scope, "userType": grant.user_type,
                 "companyId": grant.company_id})
    if grant.location_id is not None:
        body["locationId"] = grant.location_id
        body["isBulkInstallation"] = False
    else:
        listed = list(grant.approved_locations) if knobs.token_lists_locations else []
        body.update({"approvedLocations": listed,
                     "isBulkInstallation": True, "installToFutureLocations": False,
                     "approveAllLocations": False})
    body["userId"] = grant.user_id
    if grant.plan_id is not None:
        body["planId"] = grant.plan_id
    return body


def _page(title: str, text: str, link: str | None = None) -> str:
    action = f'<p><a id="approve" href="{html.escape(link)}">Approve</a></p>' if link else ""
    return (f"<!doctype html><html><head><title>{html.escape(title)}</title></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{action}</body></html>")


def _authorize_problem(query: dict[str, str], knobs: GhlKnobs) -> str | None:
    redirect_uri = query.get("redirect_uri", "")
    unknown = set(query.get("scope", "").split()) - set(knobs.scopes.split())
    problems = [
        (query.get("client_id") != knobs.client_id, "Unknown client_id"),
        (query.get("response_type") != "code", "response_type must be code"),
        (not redirect_uri, "redirect_uri is required"),
        (urlsplit(redirect_uri).scheme not in ("http", "https"),
         "redirect_uri must be an http(s) URL"),
        (bool(knobs.redirect_uris) and redirect_uri not in knobs.redirect_uris,
         "redirect_uri is not registered for this app"),
        (bool(unknown), f"Invalid scope: {' '.join(sorted(unknown))}"),
    ]
    return next((text for failed, text in problems if failed), None)


class OAuthEndpoints:
    """The marketplace's OAuth routes over one simulator's knobs and token store."""

    def __init__(self, knobs: GhlKnobs, tokens: TokenStore, gate: Gate,
                 clock: Callable[[], float]) -> None:
        self.knobs = knobs
        self.tokens = tokens
        self.gate = gate
        self.clock = clock

    def router(self) -> APIRouter:
        router = APIRouter(tags=["oauth"])
        # The marketplace serves both; the one without /v2 is the older address.
        router.add_api_route("/v2/oauth/chooselocation", self.choose_location,
                             methods=["GET"])
        router.add_api_route("/oauth/chooselocation", self.choose_location, methods=["GET"])
        router.add_api_route("/oauth/token", self.token, methods=["POST"])
        router.add_api_route("/oauth/locationToken", self.location_token, methods=["POST"])
        router.add_api_route("/oauth/installedLocations", self.installed_locations,
                             methods=["GET"])
        return router

    async def choose_location(self, request: Request) -> Response:
        """Auto-approves (no UI): 302 to redirect_uri with a one-time code and the state."""
        knobs = self.knobs
        query = dict(request.query_params)
        problem = _authorize_problem(query, knobs)
        if problem is not None:
            return HTMLResponse(_page("Invalid request", problem), 400)
        scope = " ".join(query.get("scope", "").split()) or knobs.scopes
        grant = installation_grant(knobs, scope)
        redirect_uri = query["redirect_uri"]
        code = self.tokens.new_code(knobs.client_id, redirect_uri, grant, knobs.code_ttl)
        params = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        target = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{urlencode(params)}"
        if knobs.authorize_mode == "page":
            where = grant.location_id or grant.company_id
            return HTMLResponse(_page("Install app", f"Install on {where}?", target))
        return RedirectResponse(target, 302)

    async def token(self, request: Request) -> dict[str, Any]:
        knobs, tokens = self.knobs, self.tokens
        if not request.headers.get("content-type", "").lower().startswith(FORM):
            raise oauth_error(400, "invalid_request",
                              "Invalid request: content must be application/x-www-form-urlencoded")
        body = parse_fields(TokenForm, dict((await request.form()).multi_items()))
        if body.client_id != knobs.client_id or body.client_secret != knobs.client_secret:
            raise oauth_error(401, "invalid_client", "Invalid client: client is invalid")

        if body.grant_type == "authorization_code":
            if not body.code:
                raise oauth_error(400, "invalid_request", "Missing parameter: `code`")
            grant = tokens.redeem(body.code, body.client_id, body.redirect_uri)
            _check_user_type(body.user_type, grant)
            return token_response(tokens.issue(grant, knobs.access_token_ttl), knobs)

        if body.grant_type == "refresh_token":
            if not body.refresh_token:
                raise oauth_error(400, "invalid_request", "Missing parameter: `refresh_token`")
            known = tokens.grant_of_refresh(body.refresh_token)
            if known is not None:
                _check_user_type(body.user_type, known)
            issued = tokens.rotate(body.refresh_token, knobs.access_token_ttl,
                                   knobs.location_inactive, knobs.revoke_old_access_on_refresh)
            return token_response(issued, knobs)

        # Listed in the spec, but not granted to marketplace apps.
        raise oauth_error(400, "unsupported_grant_type",
                          "Unsupported grant type: `grant_type` is invalid")

    async def location_token(self, request: Request) -> dict[str, Any]:
        knobs = self.knobs
        caller = self.gate.check(request, user_type="Company", version=CONTACTS_VERSION,
                                 scope="oauth.write")
        # Like NestJS, a body in another content type is simply not read.
        is_form = request.headers.get("content-type", "").lower().startswith(FORM)
        form = dict((await request.form()).multi_items()) if is_form else {}
        body = parse_fields(LocationTokenForm, form)
        if body.companyId != caller.grant.company_id:
            raise api_error(403, NO_COMPANY_ACCESS)
        if body.locationId not in caller.grant.approved_locations:
            raise api_error(400, "The app is not installed on this location")
        grant = Grant("Location", caller.grant.company_id, body.locationId,
                      caller.grant.user_id, caller.grant.scope, (), caller.grant.plan_id)
        issued = self.tokens.issue(grant, knobs.access_token_ttl,
                                   with_refresh=knobs.location_token_refresh)
        self.tokens.count_location_token()
        # GetLocationAccessTokenSuccessfulResponseDto: no refresh token in the spec, so a
        # client re-mints from the agency token (knob `location_token_refresh` adds one).
        answer: dict[str, Any] = {
            "access_token": issued.access.token, "token_type": "Bearer",
            "expires_in": issued.expires_in, "scope": grant.scope,
            "locationId": body.locationId, "userId": grant.user_id,
            "appId": knobs.app_id, "versionId": knobs.version_id,
        }
        if issued.refresh is not None:
            answer["refresh_token"] = issued.refresh.token
        if grant.plan_id is not None:
            answer["planId"] = grant.plan_id
        return answer

    async def installed_locations(self, request: Request) -> dict[str, Any]:
        knobs = self.knobs
        caller = self.gate.check(request, user_type="Company", version=CONTACTS_VERSION,
                                 scope="oauth.readonly")
        query = request.query_params
        installed_at = iso_time(self.clock())
        missing = [f"{name} must be a string" for name in ("companyId", "appId")
                   if not query.get(name)]
        if missing:
            raise api_error(422, missing)
        if query["companyId"] != caller.grant.company_id:
            raise api_error(403, NO_COMPANY_ACCESS)
        found = list(caller.grant.approved_locations) if query["appId"] == knobs.app_id else []
        if query.get("isInstalled") == "false":
            found = []
        if query.get("locationId"):
            found = [loc for loc in found if loc == query["locationId"]]
        try:
            skip, limit = int(query.get("skip", "0")), int(query.get("limit", "20"))
        except ValueError:
            raise api_error(422, ["skip and limit must be numbers"]) from None
        return {
            "locations": [{"_id": loc, "name": f"Sandbox location {loc}", "address": "",
                           "isInstalled": True, "versionId": knobs.version_id,
                           "installedAt": installed_at} for loc in found[skip:skip + limit]],
            "count": len(found),
            "installToFutureLocations": False,
        }


def _check_user_type(requested: UserType | None, grant: Grant) -> None:
    # Stricter than anything documented: asking a Location install for a Company token
    # (or the reverse) is a bridge bug we want to see, not a silent conversion.
    if requested is not None and requested != grant.user_type:
        raise oauth_error(400, "invalid_request",
                          f"Invalid request: `user_type` {requested} does not match the "
                          f"{grant.user_type} installation")
