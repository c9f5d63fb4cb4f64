"""Issue #7, end to end: a recipient's reply reaches the right GHL conversation, once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx

from castghl.sandbox.stack import Stack

from .conftest import STATUS_TIMEOUT

TEXTED = "+639171234567"


def contacts(stack: Stack) -> list[dict[str, object]]:
    found: list[dict[str, object]] = httpx.get(f"{stack.ghl}/_sandbox/contacts",
                                               timeout=10).json()
    return found


def operator(stack: Stack, *args: str) -> str:
    """Run an operator command against the stack's broker, as an operator would."""
    exe = str(Path(sys.executable).with_name("castghl-sender"))
    env = {"RABBITMQ_URL": stack.rabbitmq_url, "QUEUE_PREFIX": stack.queue_prefix,
           "PATH": ""}
    done = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=60,
                          check=True)
    return done.stdout


def parked_replies(stack: Stack) -> int:
    """Replies waiting in the parking queue, as the operator command counts them."""
    match = re.search(r"sms\.inbound\.parked\t(\d+)", operator(stack, "parked"))
    assert match is not None
    return int(match[1])


def unroutable_counted(stack: Stack) -> float:
    """Every sender's count of unroutable replies: the module's tests share one stack, so
    tests compare it before and after rather than expect an absolute value."""
    total = 0.0
    for sender in stack.sender_processes:
        metrics = httpx.get(f"{sender.url}/metrics", timeout=10).text
        total += sum(float(value) for value in re.findall(
            r"^castghl_inbound_unroutable_total\{[^}]*\} ([0-9.e+]+)$", metrics, re.M))
    return total


def test_a_reply_from_a_texted_phone_lands_once_on_its_contact(stack: Stack) -> None:
    sent = stack.send(phone="+63 917 123-4567", message="Are you coming tomorrow?")
    stack.wait_for_statuses([sent["messageId"]], STATUS_TIMEOUT)
    upserts_before = len(httpx.get(f"{stack.ghl}/_sandbox/calls",
                                   params={"path": "/contacts/upsert"}, timeout=10).json())
    posted = stack.reply(sender="0917 123 4567", message="Yes!", message_id="CASTIN-e2e-1",
                         times=3)
    assert [a["status_code"] for a in posted["attempts"]] == [200, 200, 200]
    [message] = stack.wait_for_inbound("CASTIN-e2e-1", STATUS_TIMEOUT)
    stack.wait_quiet()  # the two re-posts must not add anything
    assert len(stack.inbound_messages("CASTIN-e2e-1")) == 1
    assert message["message"] == "Yes!"
    assert message["direction"] == "inbound"
    assert message["conversationId"] == sent["conversationId"]
    [contact] = [c for c in contacts(stack) if c["id"] == message["contactId"]]
    assert contact["phone"] == TEXTED
    upserts = httpx.get(f"{stack.ghl}/_sandbox/calls", params={"path": "/contacts/upsert"},
                        timeout=10).json()
    assert len(upserts) - upserts_before <= 1


def test_unroutable_then_assigned_number_then_replay_delivers(stack: Stack) -> None:
    stranger = "+639285550000"
    parked, unroutable = parked_replies(stack), unroutable_counted(stack)
    posted = stack.reply(sender=stranger, to="0918 555 0101", message="Hello? Who is this?",
                         message_id="CASTIN-e2e-2")
    assert posted["status_code"] == 200
    stack.wait_quiet()
    assert stack.inbound_messages("CASTIN-e2e-2") == []
    assert parked_replies(stack) == parked + 1
    assert unroutable_counted(stack) == unroutable + 1

    location = httpx.get(f"{stack.ghl}/_sandbox/config", timeout=10).json()["location_id"]
    assigned = stack.admin("PUT", f"/installations/{location}",
                           json={"inbound_numbers": ["+63 918 555 0101"]})
    assert assigned.status_code == 200, assigned.text
    assert "replayed 1 message(s)" in operator(stack, "replay", "inbound")
    [message] = stack.wait_for_inbound("CASTIN-e2e-2", STATUS_TIMEOUT)
    assert message["locationId"] == location


def test_a_401_mid_run_refreshes_once_and_5xx_twice_still_delivers_once(stack: Stack) -> None:
    sent = stack.send(phone=TEXTED, message="ping")
    stack.wait_for_statuses([sent["messageId"]], STATUS_TIMEOUT)
    before = httpx.get(f"{stack.ghl}/_sandbox/oauth", timeout=10).json()["refreshes"]
    stack.configure_ghl(fail_next=[
        {"path_prefix": "/conversations/messages/inbound", "status": 401, "count": 1},
        {"path_prefix": "/conversations/messages/inbound", "status": 502, "count": 2}])
    try:
        stack.reply(sender=TEXTED, message="pong", message_id="CASTIN-e2e-3")
        stack.wait_for_inbound("CASTIN-e2e-3", STATUS_TIMEOUT)
        stack.wait_quiet()
        found = stack.inbound_messages("CASTIN-e2e-3")
    finally:
        stack.configure_ghl(fail_next=[])
    assert len(found) == 1
    after = httpx.get(f"{stack.ghl}/_sandbox/oauth", timeout=10).json()["refreshes"]
    assert after - before == 1


def test_bad_reply_posts_are_refused_and_reach_nobody(stack: Stack) -> None:
    url = f"{stack.gateway}/webhooks/cast/inbound"
    good = {"from": TEXTED, "message": "hi", "message_id": "CASTIN-e2e-bad"}
    key = {"X-API-Key": stack.inbound_api_key}
    answers = [
        httpx.post(url, json=good, timeout=10).status_code,
        httpx.post(url, json=good, headers={"X-API-Key": "wrong-key-1234567890"},
                   timeout=10).status_code,
        httpx.post(url, content=b"junk", headers=key, timeout=10).status_code,
        httpx.post(url, json={"message": "hi"}, headers=key, timeout=10).status_code,
        httpx.post(url, content=b"{" + b" " * 70_000 + b"}", headers=key,
                   timeout=10).status_code,
    ]
    assert answers == [401, 401, 400, 400, 413]
    stack.wait_quiet()
    assert stack.inbound_messages("CASTIN-e2e-bad") == []


def final_status(stack: Stack, message_id: str) -> dict[str, object]:
    stack.wait_for_statuses([message_id], STATUS_TIMEOUT)
    stack.wait_quiet()
    [status] = stack.statuses(message_id)
    return status


def test_stop_then_start_sets_dnd_refuses_then_allows_sends(stack: Stack) -> None:
    person = "+639175550123"
    first = stack.send(phone=person, message="Promo: 20% off this week (opt-out e2e)")
    assert final_status(stack, first["messageId"])["status"] == "delivered"

    stack.reply(sender=person, message=" Stop ", message_id="CASTIN-e2e-stop")
    [shown] = stack.wait_for_inbound("CASTIN-e2e-stop", STATUS_TIMEOUT)
    assert shown["message"] == " Stop "  # the reply is still in the conversation
    assert stack.sms_dnd(person) == "active"

    refused = stack.send(phone=person, message="Last chance for 20% off (opt-out e2e)")
    status = final_status(stack, refused["messageId"])
    assert status["status"] == "failed"
    assert "replied STOP" in str(status["error"])
    assert stack.cast_sends_for([refused["messageId"]]) == {refused["messageId"]: []}

    stack.reply(sender=person, message="START", message_id="CASTIN-e2e-start")
    stack.wait_for_inbound("CASTIN-e2e-start", STATUS_TIMEOUT)
    assert stack.sms_dnd(person) == "inactive"
    again = stack.send(phone=person, message="Welcome back (opt-out e2e)")
    assert final_status(stack, again["messageId"])["status"] == "delivered"
    assert len(stack.cast_sends_for([again["messageId"]])[again["messageId"]]) == 1
