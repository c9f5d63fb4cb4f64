"""Issue #4, end to end: signed webhook → RabbitMQ → rate-limited Cast send → GHL status.

Real processes (simulators, gateway, oauth, senders), real RabbitMQ, a real Mongo wire
server, real HTTP. Each test sends its own messages, each with a text of its own, and
checks only those: what Cast sent is found by those texts, not by the bridge's keys.
"""

from __future__ import annotations

import httpx

from castghl.sandbox.demo import cases
from castghl.sandbox.scenarios import fire, script_carrier, settle
from castghl.sandbox.stack import Stack

from .conftest import STATUS_TIMEOUT, wait_until

PHONE = "+639171234567"


def final(stack: Stack, message_id: str) -> dict[str, object]:
    statuses = stack.wait_for_statuses([message_id], STATUS_TIMEOUT)[message_id]
    assert len(statuses) == 1, statuses
    status: dict[str, object] = statuses[0]
    return status


def texted(stack: Stack, message_id: str) -> int:
    """How many SMS Cast sent for the message, found by its text."""
    return len(stack.cast_sends_for([message_id])[message_id])


def test_every_demo_case_ends_as_described(stack: Stack) -> None:
    all_cases = cases()
    script_carrier(stack, all_cases)
    for case in all_cases:
        fire(stack, case)
    settle(stack, all_cases)
    assert {case.name: case.problems() for case in all_cases if not case.ok} == {}


def test_a_duplicate_webhook_sends_one_sms_and_writes_one_status(stack: Stack) -> None:
    sent = stack.send(times=3, phone=PHONE, message="once")
    assert [d["status_code"] for d in sent["deliveries"]] == [200, 200, 200]
    assert final(stack, sent["messageId"])["status"] == "delivered"
    stack.wait_quiet()
    assert texted(stack, sent["messageId"]) == 1
    assert len(stack.statuses(sent["messageId"])) == 1


def test_cast_503_then_success_is_delivered(cast_knobs: Stack) -> None:
    cast_knobs.configure_cast(fail_next=[{"status": 503, "count": 1}])
    sent = cast_knobs.send(phone=PHONE, message="after a 503")
    assert final(cast_knobs, sent["messageId"])["status"] == "delivered"
    cast_knobs.wait_quiet()
    assert texted(cast_knobs, sent["messageId"]) == 1


def test_a_read_timeout_then_success_texts_once(cast_knobs: Stack) -> None:
    # Cast sends, then answers after our 1.5 s timeout: the retry must replay, not resend.
    cast_knobs.configure_cast(hang_next=1, hang_seconds=3.0)
    sent = cast_knobs.send(phone=PHONE, message="after a timeout")
    assert final(cast_knobs, sent["messageId"])["status"] == "delivered"
    cast_knobs.wait_quiet()
    assert texted(cast_knobs, sent["messageId"]) == 1


def test_out_of_credit_fails_with_that_message(cast_knobs: Stack) -> None:
    cast_knobs.configure_cast(credits=0)
    sent = cast_knobs.send(phone=PHONE, message="no credit")
    status = final(cast_knobs, sent["messageId"])
    assert status["status"] == "failed"
    assert status["error"] == {"code": "cast_insufficient_credits", "type": "cast_sms",
                               "message": "Cast SMS account is out of credit"}


def test_the_status_lands_despite_ghls_403_window(stack: Stack) -> None:
    # The window stays open until the bridge has met it, whatever the machine's speed.
    stack.configure_ghl(status_race_seconds=3600)
    try:
        sent = stack.send(phone=PHONE, message="race")
        path = f"/conversations/messages/{sent['messageId']}/status"

        def answers() -> list[int]:
            calls = httpx.get(f"{stack.ghl}/_sandbox/calls", params={"path": path},
                              timeout=10).json()
            return [c["status"] for c in calls]

        wait_until(lambda: 403 in answers(), "a status write refused inside the window")
    finally:
        stack.configure_ghl(status_race_seconds=1.0)
    assert final(stack, sent["messageId"])["status"] == "delivered"
    assert answers()[-1] == 200


def test_an_expired_token_is_refreshed_once_and_the_status_lands(stack: Stack) -> None:
    before = httpx.get(f"{stack.ghl}/_sandbox/oauth", timeout=10).json()
    httpx.post(f"{stack.ghl}/_sandbox/tokens/expire", json={}, timeout=10).raise_for_status()
    sent = [stack.send(phone=PHONE, message=f"expired {i}") for i in range(5)]
    for message in sent:
        assert final(stack, message["messageId"])["status"] == "delivered"
    stack.wait_quiet()
    after = httpx.get(f"{stack.ghl}/_sandbox/oauth", timeout=10).json()
    assert after["refreshes"] - before["refreshes"] == 1
    assert after["refresh_reuses"] == before["refresh_reuses"]


def test_forged_and_malformed_webhooks_are_refused_and_send_nothing(stack: Stack) -> None:
    stack.configure_ghl(signature_mode="garbage")
    try:
        forged = stack.send(phone=PHONE, message="forged")
    finally:
        stack.configure_ghl(signature_mode="ed25519")
    assert [d["status_code"] for d in forged["deliveries"]] == [401]
    hook = f"{stack.gateway}/webhooks/ghl/provider-outbound"
    assert httpx.post(hook, content=b"x" * 70_000, timeout=10).status_code == 413
    assert httpx.post(hook, content=b'{"messageId": "m"}', timeout=10).status_code == 401
    stack.wait_quiet()
    assert stack.cast_sends_for([forged["messageId"]]) == {forged["messageId"]: []}
