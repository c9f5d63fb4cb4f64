"""The console's operations pages (docs/deploy.md, "Console"): messages, parked messages,
Cast accounts and usage, health.

What belongs to the sender is read through its operator API (`SenderApi`); this
service's own parts — the lifecycle queue, its readiness — directly. A part that does not
answer is shown as such on the page, never as an error page: the console is what an
operator opens when something is down.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import Response

from castghl.common.cast.accounts import fingerprint
from castghl.common.errors import BridgeError
from castghl.common.health import ReadinessCheck, queue_depths, readiness
from castghl.common.parking import replay, survey
from castghl.common.topology import WorkQueue
from castghl.common.usage import MANILA, period
from castghl.oauth.admin import CONSOLE_ACTOR, AuditLog, SettingsStore
from castghl.oauth.console import ops_pages, pages
from castghl.oauth.console.web import Console, html, redirect
from castghl.oauth.refresh import utcnow
from castghl.oauth.sender_api import SenderApi
from castghl.oauth.tenancy import DefaultKeyFor

log = logging.getLogger(__name__)
T = TypeVar("T")
SENDER_QUEUES: Final = ("outbound", "status", "inbound")
USAGE_DAYS: Final = 7


@dataclass(frozen=True)
class OwnParts:
    """What the OAuth service shows of itself: its queue and its readiness checks."""

    broker_url: str
    lifecycle: WorkQueue
    checks: Mapping[str, ReadinessCheck]
    gateway_url: str
    http: httpx.AsyncClient


async def _answer(work: Awaitable[T]) -> T | str:
    """The result, or what to show instead when the part asked did not answer."""
    try:
        return await work
    except BridgeError as error:
        return error.detail
    except Exception as exc:  # the broker away, say: shown, logged, never a 500
        log.warning("console: a part did not answer", extra={"error": type(exc).__name__})
        return f"no answer ({type(exc).__name__})"


def _period(since: str | None, until: str | None, clock: Callable[[], datetime]
            ) -> tuple[str, str]:
    """The days asked for; days that make no sense show the last week instead."""
    today = clock().astimezone(MANILA).date()
    try:
        first, last = period(since, until, today, days=USAGE_DAYS)
    except ValueError:
        first, last = period(None, None, today, days=USAGE_DAYS)
    return first.isoformat(), last.isoformat()


def ops_routes(router: APIRouter, console: Console, sender: SenderApi, own: OwnParts, *,
               store: SettingsStore, audit: AuditLog, default_key_for: DefaultKeyFor,
               default_api_key: str, clock: Callable[[], datetime] = utcnow) -> None:
    _message_routes(router, console, sender)
    _parked_routes(router, console, sender, own, audit=audit, clock=clock)
    _account_routes(router, console, sender, store=store, default_key_for=default_key_for,
                    default_api_key=default_api_key, clock=clock)
    _health_route(router, console, sender, own)


def _message_routes(router: APIRouter, console: Console, sender: SenderApi) -> None:
    @router.get("/messages")
    async def messages(request: Request, message_id: str = "", phone: str = "") -> Response:
        if (sid := console.signed_in(request)) is None:
            return redirect("/console/sign-in")
        message_id, phone = message_id.strip(), phone.strip()
        found = ""
        if message_id:
            shown = await _answer(sender.message(message_id))
            found = (ops_pages.unavailable("Not found", shown) if isinstance(shown, str)
                     else ops_pages.timeline(shown))
        elif phone:
            listed = await _answer(sender.messages_to(phone))
            found = (ops_pages.unavailable("Not found", listed) if isinstance(listed, str)
                     else ops_pages.message_list(listed, phone))
        return html(ops_pages.messages(console.csrf(sid), message_id=message_id,
                                       phone=phone, found=found))


def _parked_routes(router: APIRouter, console: Console, sender: SenderApi, own: OwnParts, *,
                   audit: AuditLog, clock: Callable[[], datetime]) -> None:
    async def all_parked() -> list[dict[str, Any]]:
        queues = await _answer(sender.parked())
        if isinstance(queues, str):
            queues = [{"name": name, "error": queues} for name in SENDER_QUEUES]
        own_queue = await _answer(survey(own.broker_url, own.lifecycle))
        return [*queues, {"name": "lifecycle", "error": own_queue} if isinstance(own_queue, str)
                else {"name": "lifecycle", **asdict(own_queue)}]

    @router.get("/parked")
    async def parked(request: Request) -> Response:
        if (sid := console.signed_in(request)) is None:
            return redirect("/console/sign-in")
        return html(ops_pages.parked(await all_parked(), console.csrf(sid)))

    @router.get("/parked/{name}/replay")
    async def confirm(request: Request, name: str) -> Response:
        if (sid := console.signed_in(request)) is None:
            return redirect("/console/sign-in")
        queues = {q["name"]: q for q in await all_parked()}
        if name not in queues:
            return html(pages.page("Not found", "<p>No such queue.</p>",
                                       csrf=console.csrf(sid)), 404)
        return html(ops_pages.confirm_replay(name, int(queues[name].get("count", 0)),
                                             console.csrf(sid)))

    @router.post("/parked/{name}/replay")
    async def replay_queue(request: Request, name: str) -> Response:
        if (sid := await console.checked_post(request)) is None:
            return console.refused("Not replayed")
        if name == "lifecycle":
            done = await _answer(replay(own.broker_url, own.lifecycle))
            moved = done if isinstance(done, str) else asdict(done)
        elif name in SENDER_QUEUES:
            moved = await _answer(sender.replay(name))
        else:
            return html(pages.page("Not found", "<p>No such queue.</p>",
                                       csrf=console.csrf(sid)), 404)
        note = (f"Not replayed: {moved}" if isinstance(moved, str) else
                f"Replayed {moved['moved']} message(s); {moved['left']} left parked.")
        log.info("console: parked messages replayed", extra={"queue": name, "note": note})
        if not isinstance(moved, str):  # an operator action, kept with the settings changes
            await audit.record({"at": clock(), "actor": CONSOLE_ACTOR, "location_id": None,
                                "action": "replay",
                                "changes": {"queue": name, "moved": moved["moved"]}})
        return html(ops_pages.parked(await all_parked(), console.csrf(sid), note=note))


def _account_routes(router: APIRouter, console: Console, sender: SenderApi, *,
                    store: SettingsStore, default_key_for: DefaultKeyFor,
                    default_api_key: str, clock: Callable[[], datetime]) -> None:
    async def per_account(first: str, last: str) -> tuple[list[dict[str, Any]], list[str],
                                                         list[dict[str, Any]]] | str:
        """Accounts with their locations' usage per day, the days, and the usage rows."""
        known = await _answer(sender.accounts())
        usage = await _answer(sender.usage(first, last))
        if isinstance(known, str) or isinstance(usage, str):
            return known if isinstance(known, str) else str(usage)
        account_of: dict[str, str] = {}
        for inst in await store.all(5000):
            if inst.location_id is None:
                continue
            key = inst.prefs.cast_api_key or (
                default_api_key if default_key_for.allows(inst.company_id) else None)
            if key:
                account_of[inst.location_id] = fingerprint(key)
        shown = [{**account, "days": defaultdict(int), "locations": sum(
            1 for print_ in account_of.values() if print_ == account["fingerprint"])}
            for account in known["accounts"]]
        by_print = {account["fingerprint"]: account for account in shown}
        for row in usage["days"]:
            if (account := by_print.get(account_of.get(row["location_id"], ""))) is not None:
                account["days"][row["day"]] += row["parts_sent"]
        days = sorted({row["day"] for row in usage["days"]})
        return shown, days, usage["days"]

    @router.get("/accounts")
    async def accounts(request: Request, since: str | None = None,
                       until: str | None = None) -> Response:
        if (sid := console.signed_in(request)) is None:
            return redirect("/console/sign-in")
        first, last = _period(since, until, clock)
        found = await per_account(first, last)
        if isinstance(found, str):
            return html(pages.page("Accounts", ops_pages.unavailable(
                "The sender did not answer", found), csrf=console.csrf(sid)))
        shown, days, _ = found
        return html(ops_pages.accounts(shown, days, console.csrf(sid), since=first,
                                       until=last))

    @router.get("/usage.csv")
    async def usage_csv(request: Request, since: str | None = None,
                        until: str | None = None) -> Response:
        if console.signed_in(request) is None:
            return redirect("/console/sign-in")
        first, last = _period(since, until, clock)
        usage = await _answer(sender.usage(first, last))
        if isinstance(usage, str):
            return html(pages.page("Usage", ops_pages.unavailable(
                "The sender did not answer", usage)), 503)
        companies = {inst.location_id: inst.company_id for inst in await store.all(5000)}
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["day", "location_id", "company_id", "parts_sent", "delivered",
                         "failed"])
        for row in usage["days"]:
            writer.writerow([row["day"], row["location_id"],
                             companies.get(row["location_id"]) or "", row["parts_sent"],
                             row["delivered"], row["failed"]])
        return Response(out.getvalue(), media_type="text/csv", headers={
            **console.headers,
            "Content-Disposition": f'attachment; filename="castghl-usage-{first}-{last}.csv"'})


def _health_route(router: APIRouter, console: Console, sender: SenderApi,
                  own: OwnParts) -> None:
    @router.get("/health")
    async def health(request: Request) -> Response:
        if (sid := console.signed_in(request)) is None:
            return redirect("/console/sign-in")
        mine = await readiness(own.checks)
        sender_health = await _answer(sender.health())
        gateway = await _answer(_gateway_ready(own))
        own_queues = await _answer(queue_depths(own.broker_url, [
            own.lifecycle.queue.name, own.lifecycle.parked.name]))
        services = [
            {"name": "oauth (this service)", "ready": all(mine.values()), "detail": _checks(mine)},
            {"name": "gateway", "ready": isinstance(gateway, dict) and gateway["ready"],
             "detail": gateway if isinstance(gateway, str) else _checks(gateway["checks"])},
            {"name": "sender (the replica that answered)",
             "ready": isinstance(sender_health, dict) and all(sender_health["replica"].values()),
             "detail": sender_health if isinstance(sender_health, str)
             else _checks(sender_health["replica"])}]
        queues = ([] if isinstance(sender_health, str) else sender_health["queues"]) + (
            [] if isinstance(own_queues, str) else [asdict(q) for q in own_queues])
        facts = [] if isinstance(sender_health, str) else [
            ("Last SMS sent to Cast", ops_pages.when(sender_health["last_send_at"])),
            ("Last status written to GHL",
             ops_pages.when(sender_health["last_status_written_at"]))]
        return html(ops_pages.health(services, queues, facts, console.csrf(sid)))


def _checks(checks: Mapping[str, bool]) -> str:
    return ", ".join(f"{name} {'ok' if ok else 'FAILING'}" for name, ok in checks.items())


async def _gateway_ready(own: OwnParts) -> dict[str, Any]:
    try:
        response = await own.http.get(own.gateway_url.rstrip("/") + "/readyz", timeout=5.0)
        answer = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return {"ready": False, "checks": {f"no answer ({type(exc).__name__})": False}}
    return {"ready": response.status_code == 200, "checks": dict(answer.get("checks") or {})}
