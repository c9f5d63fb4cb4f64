"""The console's operations pages over HTTP, reading the sender through its operator API
(faked at the transport): messages, parked messages and replay, accounts and the usage
CSV, health — and a part that does not answer shown as such, never as an error page."""

from __future__ import annotations

import csv
import io
import re

import httpx
from fastapi import FastAPI

from castghl.common.cast.accounts import fingerprint

from .conftest import csrf_of, sign_in
from .fakes import FakeSenderOps
from .test_admin import CAST_KEY, DEFAULT_CAST_KEY


def client_app(client: httpx.AsyncClient) -> FastAPI:
    app: FastAPI = client._transport.app  # type: ignore[attr-defined]
    return app


def sender_of(client: httpx.AsyncClient) -> FakeSenderOps:
    fake: FakeSenderOps = client_app(client).state.sender
    return fake


TIMELINE = {
    "message_id": "msg-1", "location_id": "loc1", "to": "+639171234567", "channel": "sms",
    "cast_key": "own", "status": "failed", "status_written": True, "steps": [
        {"at": "2026-11-25T01:00:00+00:00", "step": "accepted", "detail": "queued"},
        {"at": "2026-11-25T01:00:01+00:00", "step": "part 1 sent",
         "detail": "Cast accepted it as cast-77"},
        {"at": "2026-11-25T01:00:40+00:00", "step": "part 1 receipt",
         "detail": "undelivered (REJECTD)"},
        {"at": "2026-11-25T01:00:41+00:00", "step": "decided",
         "detail": "failed: the carrier rejected it (carrier_rejected)"}]}


async def test_a_message_is_found_by_id_or_by_the_last_digits(console: httpx.AsyncClient
                                                               ) -> None:
    await sign_in(console)
    sender_of(console).messages["msg-1"] = TIMELINE

    by_id = (await console.get("/console/messages", params={"message_id": "msg-1"})).text
    by_phone = (await console.get("/console/messages", params={"phone": "4567"})).text
    unknown = (await console.get("/console/messages", params={"message_id": "nope"})).text

    assert "cast-77" in by_id
    assert "undelivered (REJECTD)" in by_id
    assert "the carrier rejected it" in by_id
    assert 'href="/console/messages?message_id=msg-1"' in by_phone
    assert "no message with this messageId" in unknown
    assert "Message text is never stored" in by_id


async def test_parked_messages_show_their_reasons_and_replay_asks_first(
        console: httpx.AsyncClient) -> None:
    await sign_in(console)
    sender = sender_of(console)
    sender.parked["status"] = [{"reason": "location not installed", "count": 2,
                                "sample": {"message_id": "m9", "attempt": 3}}]

    page = (await console.get("/console/parked")).text
    confirm = (await console.get("/console/parked/status/replay")).text
    forged = await console.post("/console/parked/status/replay", data={"csrf": "forged"})
    done = await console.post("/console/parked/status/replay", data={"csrf": csrf_of(confirm)})

    assert "location not installed" in page
    assert "message_id: m9" in page
    assert "Replay 2 message(s)" in page
    assert "Move the 2 parked message(s) of <strong>GHL statuses</strong>" in confirm
    assert forged.status_code == 403
    assert done.status_code == 200
    assert "Replayed 2 message(s); 0 left parked." in done.text
    assert sender.replayed == ["status"]
    audited = client_app(console).state.audit.entries[-1]
    assert (audited["actor"], audited["action"], audited["changes"]) == (
        "console", "replay", {"queue": "status", "moved": 2})
    # This service's own lifecycle queue could not be read (no broker here): said so.
    assert "Installs and uninstalls" in page
    assert "Not read" in page


async def test_accounts_show_credits_usage_per_account_and_a_csv(console: httpx.AsyncClient
                                                                ) -> None:
    await sign_in(console)
    sender = sender_of(console)
    # loc1 sends on its own key; loc2 on the default key.
    sender.accounts = [
        {"fingerprint": fingerprint(CAST_KEY), "label": "Client (abc)", "credits": 120.0,
         "low": True, "sandbox": False, "balance_at": "2026-11-25T00:00:00+00:00"},
        {"fingerprint": fingerprint(DEFAULT_CAST_KEY), "label": "Operator", "credits": 9000.0,
         "low": False, "sandbox": False, "balance_at": None}]
    sender.usage.append({"location_id": "loc2", "day": "2026-11-20", "parts_sent": 4,
                         "delivered": 4, "failed": 0})

    page = (await console.get("/console/accounts")).text
    answer = await console.get("/console/usage.csv",
                               params={"since": "2026-11-01", "until": "2026-11-30"})

    assert re.search(r"<td>Client \(abc\)</td>.*?<span class=\"warn\">low</span>", page)
    assert re.search(r"<tr><td>2026-11-20</td><td>7</td><td>4</td></tr>", page)
    assert CAST_KEY not in page
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(r["day"], r["location_id"], r["parts_sent"]) for r in rows] == [
        ("2026-11-18", "loc1", "100"), ("2026-11-20", "loc1", "7"), ("2026-11-20", "loc2", "4")]


async def test_health_shows_each_part_and_says_which_did_not_answer(
        console: httpx.AsyncClient) -> None:
    await sign_in(console)
    page = await console.get("/console/health")

    assert page.status_code == 200
    assert "2026-11-25 01:02:03" in page.text  # the last send
    assert "<td>sms.outbound</td><td>3</td><td>1</td>" in page.text
    assert re.search(r"<td>gateway</td><td>NOT READY</td><td>no answer", page.text)

    sender_of(console).down = True
    down = await console.get("/console/health")
    assert down.status_code == 200
    assert "no answer from the sender (ConnectError)" in down.text


async def test_the_pages_work_and_say_so_while_the_sender_is_down(
        console: httpx.AsyncClient) -> None:
    await sign_in(console)
    sender_of(console).down = True
    for path in ("/console/installations", "/console/messages?message_id=m1",
                 "/console/parked", "/console/accounts"):
        answer = await console.get(path)
        assert answer.status_code == 200, path
        assert "no answer from the sender" in answer.text, path


async def test_every_operations_page_needs_a_session(console: httpx.AsyncClient) -> None:
    for path in ("/console/messages", "/console/parked", "/console/parked/status/replay",
                 "/console/accounts", "/console/usage.csv", "/console/health"):
        answer = await console.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/console/sign-in"
    refused = await console.post("/console/parked/status/replay", data={})
    assert refused.status_code == 403
