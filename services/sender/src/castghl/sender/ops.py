"""The sender's operator API (`/ops`, `Authorization: Bearer ADMIN_API_KEY`): what the
operator console shows of the sender's own data, read here so that only the sender
reads its collections and queues (docs/deploy.md, "Console").

- a message's timeline by GHL `messageId`, or the latest messages to a number by its
  last digits. The text of an SMS is never stored (it travels only on the broker), so
  no answer can show it: the GHL conversation holds it;
- parked messages per queue: the reasons, a sample of each (ids, never a body), and
  replay, as `castghl-sender replay` does;
- each Cast account's credits, and usage per location and day (what clients are billed
  by);
- queue depths and consumers, the time of the last send and status write, and this
  replica's readiness.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeVar

import aio_pika
from fastapi import APIRouter, Depends

from castghl.common.answers import bearer
from castghl.common.errors import InvalidRequest, NotFound, ServiceUnavailable
from castghl.common.health import ReadinessCheck, queue_depths, readiness
from castghl.common.parking import replay, survey
from castghl.common.topology import Topology, WorkQueue
from castghl.common.usage import MANILA, period
from castghl.sender.store import MongoAccounts, MongoMessageStore, MongoUsage

log = logging.getLogger(__name__)
T = TypeVar("T")

QueueName = Literal["outbound", "status", "inbound"]
_MESSAGE_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_DIGITS: Final = re.compile(r"^[0-9]{3,12}$")
FOUND_LIMIT: Final = 50


def _at(ts: Any) -> str | None:
    return datetime.fromtimestamp(float(ts), UTC).isoformat() if ts else None


def timeline(doc: dict[str, Any]) -> dict[str, Any]:
    """A message record as the operator reads it: each step with its time and reason."""
    steps: list[dict[str, Any]] = [
        {"at": _at(doc.get("created_ts")), "step": "accepted",
         "detail": "the webhook was verified and queued"}]
    parts = sorted((doc.get("parts") or {}).items(), key=lambda item: int(item[0]))
    for index, part in parts:
        n = int(index) + 1  # parts are counted from 0 in the record, from 1 for people
        if part.get("state") == "accepted":
            steps.append({"at": _at(part.get("accepted_ts")), "step": f"part {n} sent",
                          "detail": f"Cast accepted it as {part.get('cast_id')}"})
        else:
            steps.append({"at": _at(doc.get("sent_ts")), "step": f"part {n} sending",
                          "detail": f"no answer from Cast recorded after "
                                    f"{part.get('attempts', 0)} attempt(s)"})
        if part.get("receipt"):
            code = f" ({part['dlr']})" if part.get("dlr") else ""
            steps.append({"at": _at(part.get("receipt_ts")), "step": f"part {n} receipt",
                          "detail": f"{part['receipt']}{code}"})
    if doc.get("status"):
        error = doc.get("error") or {}
        reason = f": {error.get('message')} ({error.get('code')})" if error else ""
        steps.append({"at": _at(doc.get("decided_ts")), "step": "decided",
                      "detail": f"{doc['status']}{reason}"})
    if doc.get("status_written"):
        steps.append({"at": _at(doc.get("written_ts")), "step": "GHL status",
                      "detail": "GHL accepted the status"})
    elif doc.get("status_queued"):
        steps.append({"at": None, "step": "GHL status",
                      "detail": "queued for GHL, not written yet"})
    return {"message_id": doc["_id"], "location_id": doc.get("location_id"),
            "to": doc.get("to"), "channel": doc.get("channel"), "cast_key": doc.get("key"),
            "status": doc.get("status"), "status_written": bool(doc.get("status_written")),
            "steps": steps}


async def _broker(work: Awaitable[T]) -> T:
    """Broker work of the operator API; RabbitMQ away or a queue missing is a 503."""
    try:
        return await work
    except (aio_pika.exceptions.AMQPError, OSError) as exc:
        raise ServiceUnavailable(f"RabbitMQ did not answer ({type(exc).__name__})") from exc


def _days(since: str | None, until: str | None) -> tuple[str, str]:
    try:
        first, last = period(since, until, datetime.now(MANILA).date(), days=31)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return first.isoformat(), last.isoformat()


def ops_router(*, admin_api_key: str, broker_url: str, topology: Topology,
               messages: MongoMessageStore, accounts: MongoAccounts, usage: MongoUsage,
               low_credits: float, checks: Mapping[str, ReadinessCheck]) -> APIRouter:
    router = APIRouter(prefix="/ops", include_in_schema=False,
                       dependencies=[Depends(bearer(admin_api_key, "ADMIN_API_KEY"))])
    works: dict[QueueName, WorkQueue] = {"outbound": topology.outbound,
                                         "status": topology.status,
                                         "inbound": topology.inbound}

    @router.get("/messages/{message_id}")
    async def message(message_id: str) -> dict[str, Any]:
        if not _MESSAGE_ID.fullmatch(message_id):
            raise InvalidRequest("messageId: letters, digits, - and _ only")
        doc = await messages.record_of(message_id)
        if doc is None:
            raise NotFound("no message with this messageId in the last 30 days")
        return timeline(doc)

    @router.get("/messages")
    async def to_number(phone: str) -> dict[str, Any]:
        if not _DIGITS.fullmatch(phone):
            raise InvalidRequest("phone: the last 3 to 12 digits of the number")
        found = await messages.sent_to(phone, FOUND_LIMIT)
        return {"messages": [timeline(doc) for doc in found]}

    @router.get("/parked")
    async def parked() -> dict[str, Any]:
        return {"queues": [{"name": name, **asdict(await _broker(survey(broker_url, work)))}
                           for name, work in works.items()]}

    @router.post("/parked/{queue}/replay")
    async def replay_parked(queue: QueueName, limit: int | None = None) -> dict[str, Any]:
        done = await _broker(replay(broker_url, works[queue], limit))
        log.info("parked messages replayed", extra={"queue": done.queue, "moved": done.moved})
        return asdict(done)

    @router.get("/accounts")
    async def cast_accounts() -> dict[str, Any]:
        return {"low_credits": low_credits, "accounts": [
            {"fingerprint": a.fingerprint, "label": a.label, "credits": a.credits,
             "low": a.credits is not None and a.credits < low_credits,
             "sandbox": a.sandbox, "balance_at": _at(a.balance_ts)}
            for a in await accounts.accounts_list()]}

    @router.get("/usage")
    async def usage_days(since: str | None = None, until: str | None = None,
                         location_id: str | None = None) -> dict[str, Any]:
        first, last = _days(since, until)
        return {"since": first, "until": last, "timezone": "Asia/Manila",
                "days": await usage.days(location_id, first, last)}

    @router.get("/health")
    async def health() -> dict[str, Any]:
        names = [q.name for work in works.values() for q in (work.queue, work.parked)]
        return {
            "queues": [asdict(depth)
                       for depth in await _broker(queue_depths(broker_url, names))],
            "last_send_at": _at(await messages.latest("sent_ts")),
            "last_status_written_at": _at(await messages.latest("written_ts")),
            "replica": await readiness(checks),
        }

    return router
