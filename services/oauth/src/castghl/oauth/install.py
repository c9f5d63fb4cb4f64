"""The install flow a person walks through: our link → GHL's chooser → our callback.

`GET /oauth/install` sends the browser to GHL's authorize page with a signed `state`;
`GET /oauth/callback` checks it (installs started from the Marketplace carry none),
exchanges the code, stores the tokens and shows what was connected. A Company (agency)
token is stored too, and a location token is minted from it for each approved location.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Final, Protocol
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from castghl.common.errors import AccountError, BridgeError, RetryableError
from castghl.common.ghl.oauth import SCOPES, InvalidGrant, TokenGrant, UserType
from castghl.common.logging import log_context
from castghl.oauth.changes import Notices
from castghl.oauth.install_state import BadState, StateSigner
from castghl.oauth.installation import Installation, Kind
from castghl.oauth.lifecycle import LocationMinter
from castghl.oauth.pages import connected_page, error_page
from castghl.oauth.refresh import utcnow

log = logging.getLogger(__name__)

# Agency installs mint location tokens (`oauth.write`) and may list the installed
# locations (`oauth.readonly`); GHL refuses both without these scopes.
_MINT_CONCURRENCY: Final = 8
_START_AGAIN: Final = "Start the install again from the GHL Marketplace."


class GrantStore(Protocol):
    async def save_grant(self, grant: TokenGrant, *, kind: Kind, location_id: str | None,
                         company_id: str | None, minted: bool, now: datetime,
                         event_at: datetime | None = None) -> Installation | None: ...

    async def register_agency_location(self, company_id: str, location_id: str,
                                       now: datetime) -> None: ...


class CodeExchange(Protocol):
    """GHL's side of the install (castghl.common.ghl.oauth.GhlOAuth)."""

    async def exchange_code(self, code: str, redirect_uri: str,
                            user_type: UserType = "Location") -> TokenGrant: ...

    async def installed_locations(self, company_token: str, company_id: str,
                                  app_id: str) -> list[str]: ...


class InstallFailed(Exception):
    """Ends the callback with an error page; the text is for the person installing."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(title)
        self.page = error_page(status, title, message)


class Installer:
    def __init__(self, store: GrantStore, ghl: CodeExchange, minter: LocationMinter,
                 signer: StateSigner, notices: Notices, *, authorize_url: str,
                 callback_url: str,
                 client_id: str, app_id: str,
                 marketplace_user_type: UserType = "Location",
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.ghl = ghl
        self.minter = minter
        self.signer = signer
        self.notices = notices
        self.authorize_url = authorize_url
        self.callback_url = callback_url
        self.client_id = client_id
        self.app_id = app_id
        # Installs started from the Marketplace carry no state of ours: the app's
        # distribution (sub-account or agency) decides how their code is exchanged.
        self.marketplace_user_type = marketplace_user_type
        self.clock = clock

    def authorize_redirect(self, user_type: UserType) -> str:
        query = urlencode({"response_type": "code", "client_id": self.client_id,
                           "redirect_uri": self.callback_url, "scope": SCOPES,
                           "state": self.signer.issue(user_type)})
        return f"{self.authorize_url}?{query}"

    async def callback(self, code: str | None, state: str | None,
                       error: str | None) -> HTMLResponse:
        try:
            user_type = self._check(code, state, error)
            assert code is not None
            grant = await self._exchange(code, user_type)
            if grant.user_type == "Company":
                return await self._agency(grant)
            return await self._location(grant)
        except InstallFailed as failed:
            return failed.page

    def _check(self, code: str | None, state: str | None, error: str | None) -> UserType:
        if error:
            raise InstallFailed(400, "The install was not approved",
                                f"GoHighLevel did not approve the install. {_START_AGAIN}")
        user_type = self.marketplace_user_type
        if state is not None:
            try:
                user_type = self.signer.check(state)
            except BadState as bad:
                log.warning("install callback with a bad state", extra={"reason": bad.problem})
                raise InstallFailed(400, "This install link is not valid",
                                    "This install link is invalid or has expired. "
                                    f"{_START_AGAIN}") from None
        if not code:
            raise InstallFailed(400, "This install link is incomplete",
                                f"The link GoHighLevel sent back has no authorization code. "
                                f"{_START_AGAIN}")
        return user_type

    async def _exchange(self, code: str, user_type: UserType) -> TokenGrant:
        try:
            return await self.ghl.exchange_code(code, self.callback_url, user_type)
        except (InvalidGrant, AccountError) as exc:
            # GHL answers alike for a spent code and for wrong app credentials: say both.
            log.warning("GHL refused the install code", extra={"error_code": exc.code})
            raise InstallFailed(400, "This install link has expired",
                                "This install link has expired or was already used: start "
                                "the install again from the Marketplace. If it keeps "
                                "happening, the app's operator should check the client ID "
                                "and secret.") from None
        except RetryableError as exc:
            log.warning("GHL unreachable during an install",
                        extra={"error_code": exc.code, "detail": exc.detail})
            raise InstallFailed(502, "GoHighLevel could not be reached",
                                "GoHighLevel did not answer. Try the install again in a "
                                "minute.") from None
        except BridgeError as exc:
            log.warning("GHL refused an install", extra={"error_code": exc.code})
            raise InstallFailed(400, "GoHighLevel refused the install",
                                f"GoHighLevel refused the install ({exc.code}). "
                                f"{_START_AGAIN}") from None

    async def _save(self, grant: TokenGrant, kind: Kind, location_id: str | None) -> None:
        try:
            await self.store.save_grant(grant, kind=kind, location_id=location_id,
                                        company_id=grant.company_id, minted=False,
                                        now=self.clock())
        except Exception:
            # The code is spent: only a new install can bring the tokens back.
            log.exception("could not store an installation")
            raise InstallFailed(503, "The install could not be saved",
                                "Cast SMS could not save this install. Start the install "
                                "again in a minute.") from None

    async def _location(self, grant: TokenGrant) -> HTMLResponse:
        if not grant.location_id:
            raise InstallFailed(502, "GoHighLevel's answer was incomplete",
                                f"GoHighLevel did not say which location was installed. "
                                f"{_START_AGAIN}")
        with log_context(locationId=grant.location_id):
            await self._save(grant, "location", grant.location_id)
            await self.notices.location(grant.location_id)
            log.info("location installed", extra={"companyId": grant.company_id})
        return connected_page([grant.location_id])

    async def _agency(self, grant: TokenGrant) -> HTMLResponse:
        company_id = grant.company_id
        if not company_id:
            raise InstallFailed(502, "GoHighLevel's answer was incomplete",
                                f"GoHighLevel did not say which agency was installed. "
                                f"{_START_AGAIN}")
        await self._save(grant, "company", None)
        locations = list(grant.approved_locations) or await self._installed(grant, company_id)
        log.info("agency installed", extra={"companyId": company_id,
                                            "locations": len(locations)})
        limit = asyncio.Semaphore(_MINT_CONCURRENCY)

        async def mint(location_id: str) -> bool:
            async with limit:
                with log_context(locationId=location_id):
                    try:
                        # Recorded first: a location whose token cannot be minted now
                        # still sends, and gets its token minted on first need.
                        await self.store.register_agency_location(company_id, location_id,
                                                                  self.clock())
                        await self.minter.mint_location(company_id, location_id)
                    except BridgeError as exc:
                        log.warning("could not mint a location token during an agency install",
                                    extra={"companyId": company_id, "reason": str(exc)[:200]})
                        return False
                    return True

        results = await asyncio.gather(*(mint(location) for location in locations))
        await self.notices.company(company_id)
        done = [loc for loc, ok in zip(locations, results, strict=True) if ok]
        failed = [loc for loc, ok in zip(locations, results, strict=True) if not ok]
        return connected_page(done, failed)

    async def _installed(self, grant: TokenGrant, company_id: str) -> list[str]:
        """The agency's installed locations, when the token answer listed none."""
        try:
            return await self.ghl.installed_locations(grant.access_token, company_id,
                                                      self.app_id)
        except BridgeError as exc:
            log.warning("could not list the agency's installed locations",
                        extra={"companyId": company_id, "error_code": exc.code})
            return []


def install_router(installer: Installer) -> APIRouter:
    router = APIRouter(prefix="/oauth", include_in_schema=False)

    # HEAD too: `curl -I`, link checkers and proxies probing the route get the redirect.
    @router.api_route("/install", methods=["GET", "HEAD"])
    async def install(agency: bool = False) -> RedirectResponse:
        return RedirectResponse(installer.authorize_redirect("Company" if agency
                                                             else "Location"), 302)

    @router.get("/callback")
    async def callback(code: str | None = None, state: str | None = None,
                       error: str | None = None) -> HTMLResponse:
        return await installer.callback(code, state, error)

    return router
