"""`POST /_sandbox/inbound`: play Cast's SIM gateway delivering a reply to the bridge.

No Cast document defines this hop (reference/cast.md, "Inbound"): the payload and the
`X-API-Key` shared secret are the bridge's own contract, so this is where a test makes
"a customer replied" happen, including the gateway's retries (`times`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from castghl.sandbox.cast.knobs import CastKnobs
from castghl.sandbox.cast.messages import new_message_id
from castghl.sandbox.recording import SANDBOX_PREFIX


class InboundTrigger(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    url: str
    sender: str = Field(alias="from")
    to: str | None = None  # optional in the contract (docs/inbound.md): then not sent
    message: str
    message_id: str | None = None
    received_at: str | None = None
    api_key: str | None = None  # default: the `inbound_api_key` knob
    times: int = Field(default=1, ge=1, le=100)


def _answer_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def inbound_router(knobs: CastKnobs, clock: Callable[[], float]) -> APIRouter:
    router = APIRouter(prefix=SANDBOX_PREFIX, tags=["sandbox"])

    @router.post("/inbound")
    async def inbound(trigger: InboundTrigger) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "from": trigger.sender,
            "message": trigger.message,
            "message_id": trigger.message_id or new_message_id("CASTIN"),
            "received_at": trigger.received_at or datetime.fromtimestamp(
                clock(), UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        if trigger.to is not None:
            payload["to"] = trigger.to
        headers = {"X-API-Key": trigger.api_key or knobs.inbound_api_key}
        attempts: list[dict[str, Any]] = []
        async with httpx.AsyncClient(timeout=knobs.inbound_timeout_seconds) as client:
            for _ in range(trigger.times):
                try:
                    response = await client.post(trigger.url, json=payload, headers=headers)
                except httpx.HTTPError as exc:
                    attempts.append({"status_code": None, "body": None,
                                     "error": f"{type(exc).__name__}: {exc}"})
                else:
                    attempts.append({"status_code": response.status_code,
                                     "body": _answer_body(response)})
        return {**attempts[-1], "sent": payload, "attempts": attempts}

    return router
