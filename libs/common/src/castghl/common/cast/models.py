"""Cast.ph send request and response bodies (reference/cast.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from castghl.common.phone import PhMobile


class CastSendRequest(BaseModel):
    """`POST /api/v1/sms/send`; the client writes `to` in the form Cast takes
    (`castghl.common.cast.client.cast_number`)."""

    model_config = ConfigDict(frozen=True)

    to: PhMobile
    message: str
    sender_id: str | None = None


class CastSendResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    success: bool
    message_id: str
    parts: int = 1


class CastErrorBody(BaseModel):
    """Every Cast error: `error_code` is absent in the old API, so branch on it only if set."""

    model_config = ConfigDict(extra="ignore")

    success: bool = False
    error: str = ""
    error_code: str | None = None
