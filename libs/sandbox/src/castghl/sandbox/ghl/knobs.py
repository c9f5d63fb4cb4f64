"""Every live setting of the GoHighLevel simulator, with documented defaults.

Knobs are read at request time, so a test (attribute assignment) or an operator
(`PATCH /_sandbox/config`) changes behaviour without restarting the simulator.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

UserType = Literal["Location", "Company"]
SignatureMode = Literal["ed25519", "rsa", "both", "none", "n/a", "garbage"]

# Published so a deployment can point our gateway and OAuth service at the simulator
# without reading its config first.
DEFAULT_CLIENT_ID = "castghl-sandbox-client"
DEFAULT_CLIENT_SECRET = "castghl-sandbox-secret"  # noqa: S105 - a public sandbox value
DEFAULT_SSO_KEY = "castghl-sandbox-sso-key"
DEFAULT_SIGNING_SEED = "castghl-sandbox-ghl-webhook-signing-seed"
DEFAULT_LOCATION_ID = "loc_sandbox_1"
APP_SCOPES = (
    "conversations/message.readonly conversations/message.write conversations.readonly "
    "conversations.write contacts.readonly contacts.write oauth.readonly oauth.write"
)


class FailRule(BaseModel):
    """Answer the next `count` matching API calls with `status` instead of serving them."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    path_prefix: str
    status: int = Field(ge=400, le=599)
    count: int = Field(default=1, ge=1)
    method: str | None = None
    # None: the GHL-shaped body for `status`; anything else is sent verbatim.
    body: Any = None


class GhlKnobs(BaseModel):
    """Live behaviour of one simulator instance (see the report for the meaning of each)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- the marketplace app and the installation the authorize screen "chooses" -------
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    redirect_uris: list[str] = Field(default_factory=list)  # empty: any http(s) URI
    app_id: str = "app_sandbox_1"
    version_id: str = "version_sandbox_1"
    location_id: str = DEFAULT_LOCATION_ID
    company_id: str = "comp_sandbox_1"
    company_name: str = "Sandbox Agency"
    user_id: str = "user_sandbox_1"
    plan_id: str | None = None
    install_user_type: UserType = "Location"
    approved_locations: list[str] = Field(default_factory=lambda: [DEFAULT_LOCATION_ID])
    # False: an agency's token answer lists no approvedLocations, as GHL's often does.
    token_lists_locations: bool = True
    scopes: str = APP_SCOPES  # granted when the authorize URL carries no scope
    authorize_mode: Literal["redirect", "page"] = "redirect"

    # --- tokens --------------------------------------------------------------------------
    access_token_ttl: int = Field(default=86399, ge=1)
    code_ttl: float = Field(default=600, gt=0)
    location_inactive: list[str] = Field(default_factory=list)
    revoke_old_access_on_refresh: bool = False
    location_token_refresh: bool = False
    enforce_scopes: bool = True
    strict_version: bool = True

    # --- rate limits (per app per location or company) -----------------------------------
    rate_limit_max: int = Field(default=100, ge=1)
    rate_limit_interval_ms: int = Field(default=10_000, ge=1)
    rate_limit_daily: int = Field(default=200_000, ge=1)
    send_retry_after: bool = False

    # --- conversations -------------------------------------------------------------------
    status_race_seconds: float = Field(default=5.0, ge=0)
    inbound_empty_201: bool = False
    inbound_bad_contact_status: int = Field(default=400, ge=400, le=599)
    conversation_provider_id: str = "provider_sandbox_1"

    # --- webhooks GHL sends --------------------------------------------------------------
    webhook_url: str | None = None
    app_webhook_url: str | None = None
    webhook_timeout: float = Field(default=10.0, gt=0)
    signing_seed: str = DEFAULT_SIGNING_SEED
    signature_mode: SignatureMode = "ed25519"
    sign_rsa: bool = False

    # --- the app's Custom Page (/_sandbox/custom-page) -------------------------------------
    custom_page_url: str | None = None
    sso_key: str = DEFAULT_SSO_KEY  # the app's Shared Secret

    # --- injected failures ---------------------------------------------------------------
    fail_next: list[FailRule] = Field(default_factory=list)
