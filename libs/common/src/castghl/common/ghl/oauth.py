"""GHL's OAuth endpoints (reference/ghl.md §5): code exchange, refresh, location tokens."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from castghl.common.errors import AccountError, LocationInactive, PermanentError, RetryableError
from castghl.common.ghl.errors import GhlUnauthorized, error_for, message_of, transport_error

OAUTH_VERSION: Final = "2021-07-28"
SCOPES: Final = (
    "conversations/message.readonly conversations/message.write conversations.readonly "
    "conversations.write contacts.readonly contacts.write "
    # An agency (Company) token needs these to mint location tokens and list locations.
    "oauth.readonly oauth.write"
)
UserType = Literal["Location", "Company"]
# installedLocations pages (GHL's default is 20); an agency larger than the cap is a bug.
INSTALLED_PAGE: Final = 100
MAX_LOCATIONS: Final = 100_000


class InvalidGrant(PermanentError):
    """The code or refresh token is spent or revoked: the location must reinstall."""

    code = "invalid_grant"


class TokenGrant(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    access_token: str = Field(alias="access_token")
    # /oauth/locationToken answers carry none: such tokens are re-minted from the agency's.
    refresh_token: str | None = Field(None, alias="refresh_token")
    expires_in: int = Field(86399, alias="expires_in")
    scope: str = ""
    user_type: UserType = "Location"
    location_id: str | None = None
    company_id: str | None = None
    user_id: str | None = None
    approved_locations: list[str] = Field(default_factory=list)
    is_bulk_installation: bool = False

    def expires_at(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) + timedelta(seconds=self.expires_in)


class _InstalledLocation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(alias="_id", min_length=1)


class _InstalledPage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    locations: list[_InstalledLocation] = Field(default_factory=list)
    count: int = 0


# Pauses before trying a token call again whose connection could not be made.
CONNECT_RETRY_PAUSES: Final = (0.5, 1.0)


class GhlOAuth:
    def __init__(self, http: httpx.AsyncClient, base_url: str, client_id: str,
                 client_secret: str) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret

    async def _post(self, path: str, form: dict[str, str],
                    bearer: str | None = None) -> httpx.Response:
        headers = {"Accept": "application/json", "Version": OAUTH_VERSION}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        pauses = iter(CONNECT_RETRY_PAUSES)
        while True:
            try:
                return await self.http.post(self.base + path, data=form, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                # The request never left: trying again cannot spend a single-use code
                # twice, and a network blip must not fail a person's install.
                pause = next(pauses, None)
                if pause is None:
                    raise transport_error(exc) from exc
                await asyncio.sleep(pause)
            except httpx.TransportError as exc:
                raise transport_error(exc) from exc

    def _grant(self, response: httpx.Response, *, bearer: bool = False) -> TokenGrant:
        if bearer and response.status_code == 401:
            # The agency token itself was refused (it expired early, or was revoked): a
            # matter for that token, not for the app's credentials.
            raise GhlUnauthorized(f"GHL refused the agency token: {message_of(response)}")
        if response.status_code in (400, 401):
            text = response.text.lower()
            if "invalid_grant" in text or "invalid grant" in text:
                raise InvalidGrant(f"GHL refused the grant ({response.status_code})")
            if "not active" in text:
                raise LocationInactive("GHL says the location is not active")
            if response.status_code == 401:
                raise AccountError(f"GHL answered 401: {message_of(response)}",
                                   code="ghl_unauthorized_client")
        if not response.is_success:
            raise error_for(response)
        try:
            return TokenGrant.model_validate_json(response.content)
        except ValidationError as exc:
            raise RetryableError("GHL token answer is unreadable",
                                 code="ghl_bad_answer") from exc

    def _client(self) -> dict[str, str]:
        return {"client_id": self.client_id, "client_secret": self.client_secret}

    async def exchange_code(self, code: str, redirect_uri: str,
                            user_type: UserType = "Location") -> TokenGrant:
        return self._grant(await self._post("/oauth/token", {
            **self._client(), "grant_type": "authorization_code", "code": code,
            "user_type": user_type, "redirect_uri": redirect_uri}))

    async def refresh(self, refresh_token: str, user_type: UserType) -> TokenGrant:
        return self._grant(await self._post("/oauth/token", {
            **self._client(), "grant_type": "refresh_token", "refresh_token": refresh_token,
            "user_type": user_type}))

    async def location_token(self, company_token: str, company_id: str,
                             location_id: str) -> TokenGrant:
        return self._grant(await self._post(
            "/oauth/locationToken", {"companyId": company_id, "locationId": location_id},
            bearer=company_token), bearer=True)

    async def installed_locations(self, company_token: str, company_id: str,
                                  app_id: str) -> list[str]:
        """Every location of the company with this app installed, page by page: GHL
        answers 20 at a time unless asked, with the total in `count`."""
        found: dict[str, None] = {}  # ordered, and a location listed twice counts once
        skip = 0
        while True:
            page = await self._installed_page(company_token, company_id, app_id, skip=skip)
            found.update(dict.fromkeys(loc.id for loc in page.locations))
            skip += len(page.locations)
            if not page.locations or skip >= page.count or skip >= MAX_LOCATIONS:
                return list(found)

    async def _installed_page(self, company_token: str, company_id: str, app_id: str, *,
                              skip: int) -> _InstalledPage:
        try:
            response = await self.http.get(
                self.base + "/oauth/installedLocations",
                params={"companyId": company_id, "appId": app_id, "isInstalled": "true",
                        "limit": str(INSTALLED_PAGE), "skip": str(skip)},
                headers={"Authorization": f"Bearer {company_token}", "Version": OAUTH_VERSION,
                         "Accept": "application/json"})
        except httpx.TransportError as exc:
            raise transport_error(exc) from exc
        if not response.is_success:
            raise error_for(response)
        try:
            return _InstalledPage.model_validate_json(response.content)
        except ValidationError as exc:
            raise RetryableError("GHL's installed locations answer is unreadable",
                                 code="ghl_bad_answer") from exc
