"""Cast.ph send request and response bodies (reference/cast.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

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


Channel = Literal["sms", "sim"]
# Receipt statuses (reference/cast.md, "Delivery status"): `sent` and `pending` are not
# final; `delivered`, `undelivered` and `failed` are. Any other word is not final either.
FINAL_RECEIPTS: frozenset[str] = frozenset({"delivered", "undelivered", "failed"})


class CastReceipt(BaseModel):
    """`GET /api/v1/{sms|sim}/status/{id}`, or one row of `/api/v1/sms/logs`."""

    model_config = ConfigDict(extra="ignore")

    message_id: str
    status: str
    dlr_status: str | None = None
    error_message: str | None = None
    # Kept as text: a form this bridge cannot read must not cost the receipt itself.
    sent_at: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL_RECEIPTS

    @property
    def sent_ts(self) -> float | None:
        """`sent_at` as a Unix time, or None when absent or unreadable."""
        try:
            at = datetime.fromisoformat(self.sent_at or "")
        except ValueError:
            return None
        return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


class CastLogs(BaseModel):
    model_config = ConfigDict(extra="ignore")

    total: int = 0
    logs: list[CastReceipt] = []


class CastSenderId(BaseModel):
    """One of `GET /api/v1/account/sender-ids`; `channel` is `sms` or `sim` today, kept as
    given so that a channel this bridge does not know is refused with its name."""

    model_config = ConfigDict(extra="ignore")

    sender_id: str
    label: str | None = None
    channel: str = "sms"


class CastSenderIds(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sender_ids: list[CastSenderId] = []


class CastBalance(BaseModel):
    """`GET /api/v1/account/balance`: credits are SMS parts. `sandbox` marks a test key,
    whose sends go nowhere (reference/cast.md, "Basics")."""

    model_config = ConfigDict(extra="ignore")

    credits: float
    currency: str = "PHP"
    sandbox: bool = False


class CastProfile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    sandbox: bool = False


class CastOptOut(BaseModel):
    """One number that unsubscribed through Cast's opt-out link: from one sender ID, or
    (`sender_id` null) from every sender ID of the account."""

    model_config = ConfigDict(extra="ignore")

    number: str
    sender_id: str | None = None


class CastUnsubscribed(BaseModel):
    """`GET /api/v1/account/unsubscribed?limit&offset`, one page."""

    model_config = ConfigDict(extra="ignore")

    total: int = 0
    unsubscribed: list[CastOptOut] = []


class CastErrorBody(BaseModel):
    """Every Cast error: `error_code` is absent in the old API, so branch on it only if set."""

    model_config = ConfigDict(extra="ignore")

    success: bool = False
    error: str = ""
    error_code: str | None = None
