"""Request bodies as GHL's OpenAPI specs define them (ghl-openapi/*.json, commit 0af86a4).

`extra="forbid"` where the spec lists every property: GHL's validators answer
"property X should not exist", so a misspelt field from our bridge fails loudly here too.
JSON bodies are strict (no "true" for true, no 1 for "1"), as class-validator is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from castghl.sandbox.ghl.knobs import UserType

MessageStatus = Literal["delivered", "failed", "pending", "read"]
# ProcessMessageBodyDto.type
MessageType = Literal[
    "SMS", "RCS", "Email", "WhatsApp", "GMB", "IG", "FB", "Custom", "WebChat", "Live_Chat",
    "Call", "IVR_Call", "Campaign_Call", "Campaign_VoiceMail", "TIKTOK", "ALL_IN_ONE_CHAT",
    "FORM_SUBMISSION",
]


class _Json(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Form(BaseModel):
    # Form values are strings by nature: no strict mode, but still no unknown fields.
    model_config = ConfigDict(extra="forbid")


# --- oauth.json -----------------------------------------------------------------------------

class TokenForm(_Form):
    """GetAccessCodebodyDto (application/x-www-form-urlencoded)."""

    client_id: str
    client_secret: str
    grant_type: Literal["authorization_code", "refresh_token", "client_credentials"]
    code: str | None = None
    refresh_token: str | None = None
    user_type: UserType | None = None
    redirect_uri: str | None = None


class LocationTokenForm(_Form):
    """GetLocationAccessCodeBodyDto (application/x-www-form-urlencoded)."""

    companyId: str
    locationId: str


# --- conversations.json ---------------------------------------------------------------------

class ErrorDto(_Json):
    code: str
    type: str
    message: str


class UpdateMessageStatusDto(_Json):
    status: MessageStatus
    error: ErrorDto | None = None
    emailMessageId: str | None = None
    recipients: list[str] | None = None


class CallDataDto(_Json):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)

    to: str | None = None
    from_: str | None = Field(default=None, alias="from")
    status: Literal["pending", "completed", "answered", "busy", "no-answer", "failed",
                    "canceled", "voicemail"] | None = None


class ProcessMessageBodyDto(_Json):
    """The spec marks conversationId, contactId and conversationProviderId required; GHL
    accepts either id and no provider id for a default SMS provider (ghl.md §4), so the
    simulator follows the observed behaviour."""

    type: MessageType
    attachments: list[str] | None = None
    message: str | None = None
    conversationId: str | None = None
    contactId: str | None = None
    conversationProviderId: str | None = None
    html: str | None = None
    subject: str | None = None
    emailFrom: str | None = None
    emailTo: str | None = None
    emailCc: list[str] | None = None
    emailBcc: list[str] | None = None
    emailMessageId: str | None = None
    altId: str | None = None
    # The spec types it as an object with example ["outbound", "inbound"]; GHL takes the
    # string. Default outbound is GHL's documented trap: an inbound SMS left without it
    # shows as sent by the business.
    direction: Literal["outbound", "inbound"] = "outbound"
    date: datetime | None = None
    call: CallDataDto | None = None

    @model_validator(mode="after")
    def _one_target(self) -> ProcessMessageBodyDto:
        if self.contactId is None and self.conversationId is None:
            raise ValueError("contactId should not be empty when conversationId is not given")
        return self


# --- contacts.json --------------------------------------------------------------------------

class DndSettingSchema(_Json):
    status: Literal["active", "inactive", "permanent"]
    message: str | None = None
    code: str | None = None


class DndSettingsSchema(_Json):
    """One setting per channel; the spec names these six and no others."""

    Call: DndSettingSchema | None = None
    Email: DndSettingSchema | None = None
    SMS: DndSettingSchema | None = None
    WhatsApp: DndSettingSchema | None = None
    GMB: DndSettingSchema | None = None
    FB: DndSettingSchema | None = None


class InboundDndSettingSchema(_Json):
    status: Literal["active", "inactive"]
    message: str | None = None


class InboundDndSettingsSchema(_Json):
    all: InboundDndSettingSchema | None = None


class UpsertContactDto(_Json):
    firstName: str | None = None
    lastName: str | None = None
    name: str | None = None
    email: str | None = None
    locationId: str
    gender: str | None = None
    phone: str | None = None
    address1: str | None = None
    city: str | None = None
    state: str | None = None
    postalCode: str | None = None
    website: str | None = None
    timezone: str | None = None
    dnd: bool | None = None
    dndSettings: DndSettingsSchema | None = None
    inboundDndSettings: InboundDndSettingsSchema | None = None
    tags: list[str] | None = None
    customFields: list[dict[str, Any]] | None = None
    source: str | None = None
    dateOfBirth: str | None = None
    country: str | None = None
    companyName: str | None = None
    assignedTo: str | None = None
    createNewIfDuplicateAllowed: bool | None = None


class UpdateContactDto(_Json):
    """`PUT /contacts/{contactId}`. No `locationId`, `gender` or `companyName`: the spec's
    update DTO lacks them, and GHL answers 422 "property gender should not exist"
    (GoHighLevel/highlevel-api-docs#313)."""

    firstName: str | None = None
    lastName: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    address1: str | None = None
    city: str | None = None
    state: str | None = None
    postalCode: str | None = None
    website: str | None = None
    timezone: str | None = None
    dnd: bool | None = None
    dndSettings: DndSettingsSchema | None = None
    inboundDndSettings: InboundDndSettingsSchema | None = None
    tags: list[str] | None = None
    customFields: list[dict[str, Any]] | None = None
    source: str | None = None
    dateOfBirth: str | None = None
    country: str | None = None
    assignedTo: str | None = None


# --- the simulator's own control API --------------------------------------------------------

class _Control(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutboundRequest(_Control):
    """A user sends an SMS in GHL: create the message and fire ProviderOutboundMessage."""

    phone: str
    message: str = ""
    attachments: list[str] = Field(default_factory=list)
    type: str = "SMS"
    contactId: str | None = None
    locationId: str | None = None
    userId: str | None = None
    conversationId: str | None = None
    deliver: bool = True
    times: int = Field(default=1, ge=1, le=50)
    extra: dict[str, Any] = Field(default_factory=dict)


class RedeliverRequest(_Control):
    times: int = Field(default=1, ge=1, le=50)


class AppEventRequest(BaseModel):
    """INSTALL / UNINSTALL; any other field overrides the generated body."""

    model_config = ConfigDict(extra="allow")

    type: Literal["INSTALL", "UNINSTALL"]
    locationId: str | None = None
    companyId: str | None = None


class TokenScope(_Control):
    """Which installation a token operation applies to; neither field means all."""

    locationId: str | None = None
    companyId: str | None = None
    access: bool = False  # revoke: also kill the access tokens


class IssueRequest(_Control):
    userType: UserType = "Location"
    locationId: str | None = None
    companyId: str | None = None
    scope: str | None = None
    approvedLocations: list[str] | None = None
