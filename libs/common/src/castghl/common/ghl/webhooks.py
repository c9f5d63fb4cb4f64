"""Payloads GoHighLevel posts to us (reference/ghl.md §1, §6).

GHL adds fields without notice, so every model ignores unknown ones. Only what we cannot
work without is required: a provider webhook without `messageId`/`locationId` cannot even
be answered with a status, so it is rejected; everything else that is wrong with it
(no phone, empty text) becomes a `failed` status the GHL user can read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

GhlId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


def _none_to_empty(value: object) -> object:
    return [] if value is None else value


class GhlPayload(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore",
                              frozen=True)


class ProviderOutboundMessage(GhlPayload):
    """The Delivery URL webhook: a GHL user sent an SMS through our provider."""

    message_id: GhlId
    location_id: GhlId
    type: str = "SMS"
    contact_id: str | None = None
    phone: str | None = None
    message: str = ""
    attachments: Annotated[list[str], BeforeValidator(_none_to_empty)] = Field(
        default_factory=list)
    user_id: str | None = None
    conversation_id: str | None = None
    conversation_provider_id: str | None = None
    timestamp: datetime | None = None
    webhook_id: str | None = None

    @property
    def is_sms(self) -> bool:
        return self.type.upper() == "SMS"


class AppInstall(GhlPayload):
    type: Literal["INSTALL"]
    app_id: str | None = None
    company_id: str | None = None
    location_id: str | None = None
    user_id: str | None = None
    plan_id: str | None = None
    company_name: str | None = None
    install_type: str | None = None
    timestamp: datetime | None = None
    webhook_id: str | None = None


class AppUninstall(GhlPayload):
    type: Literal["UNINSTALL"]
    app_id: str | None = None
    company_id: str | None = None
    location_id: str | None = None
    timestamp: datetime | None = None
    webhook_id: str | None = None


AppEvent = Annotated[AppInstall | AppUninstall, Field(discriminator="type")]
