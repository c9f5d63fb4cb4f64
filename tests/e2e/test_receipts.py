"""Issue #13, receipts end to end: `delivered` only when the carrier said so.

The Cast simulator's `carrier_rules` script a receipt for every message whose text holds
a marker, before it is sent; the bridge finds it by asking Cast, through the lane's
delay tiers (CAST_RECEIPT_CHECK_DELAYS 0.5,1,2,4 s here). GHL's simulator keeps every
status it was sent, so "never `delivered` first" is read from its history.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from castghl.sandbox.stack import Stack

from .conftest import STATUS_TIMEOUT

PHONE = "+639171234567"
REJECTED = ("Cast SMS: the carrier rejected this message; the sender ID may not be "
            "registered with this network")


@pytest.fixture
def carrier(stack: Stack) -> Iterator[Stack]:
    """For tests that script the carrier: no rules and instant receipts afterwards."""
    yield stack
    stack.configure_cast(carrier_rules=[], dlr_delay_seconds=0.0)


def marker() -> str:
    return f"mark{uuid.uuid4().hex[:10]}"


def history(stack: Stack, message_id: str) -> list[dict[str, object]]:
    """Every status GHL got for the message, once the bridge is done with it."""
    stack.wait_for_statuses([message_id], STATUS_TIMEOUT)
    stack.wait_quiet()
    return stack.statuses(message_id)


def test_a_carrier_rejection_ends_failed_with_its_reason_never_delivered_first(
        carrier: Stack) -> None:
    mark = marker()
    carrier.configure_cast(carrier_rules=[{
        "contains": mark, "status": "undelivered", "dlr_status": "REJECTD",
        "delay_seconds": 1.5}])  # after the first check: the bridge must wait for it

    sent = carrier.send(phone=PHONE, message=f"trial sender {mark}")

    [status] = history(carrier, sent["messageId"])
    assert status["status"] == "failed"
    assert status["error"] == {"code": "carrier_rejected", "type": "cast_sms",
                               "message": REJECTED}


def test_a_two_part_message_with_one_part_rejected_fails(carrier: Stack) -> None:
    mark = marker()
    carrier.configure_cast(carrier_rules=[{
        "contains": mark, "status": "undelivered", "dlr_status": "REJECTD"}])
    words = " ".join(f"word{i:03d}" for i in range(60))  # 479 characters: the first part
    sent = carrier.send(phone=PHONE, message=f"{words} {mark}")

    [status] = history(carrier, sent["messageId"])

    sends = carrier.cast_sends_for([sent["messageId"]])[sent["messageId"]]
    assert len(sends) == 2
    assert [mark in str(s["message"]) for s in sends] == [False, True]
    assert status["status"] == "failed"
    assert status["error"]["code"] == "carrier_rejected"  # type: ignore[index]


def test_a_late_receipt_is_waited_for_then_delivered(carrier: Stack) -> None:
    carrier.configure_cast(dlr_delay_seconds=2.5)  # past the first two checks

    sent = carrier.send(phone=PHONE, message=f"slow carrier {marker()}")

    assert [s["status"] for s in history(carrier, sent["messageId"])] == ["delivered"]


@pytest.fixture
def sim_account(stack: Stack) -> Iterator[Stack]:
    """The default Cast account has an SMS and a SIM sender ID; afterwards, none listed
    and the location back on the default sender ID."""
    stack.configure_cast(sender_ids=["CASTDEMO", {"sender_id": "CAST REPLY",
                                                  "channel": "sim"}])
    yield stack
    stack.admin("PUT", "/installations/loc_sandbox_1", json={"sender_id": None})
    stack.configure_cast(sender_ids=[])


def test_a_sim_sender_id_sends_through_sim_and_a_typo_is_refused_at_admin_time(
        sim_account: Stack) -> None:
    stack = sim_account
    typo = stack.admin("PUT", "/installations/loc_sandbox_1", json={"sender_id": "CAST REPLYY"})
    assert typo.status_code == 422
    assert "'CAST REPLYY' is not a sender ID of this location's Cast account" in typo.text
    chosen = stack.admin("PUT", "/installations/loc_sandbox_1", json={"sender_id": "CAST REPLY"})
    assert chosen.status_code == 200, chosen.text

    mark = marker()
    sent = stack.send(phone=PHONE, message=f"Reply YES to confirm {mark}")
    assert [s["status"] for s in history(stack, sent["messageId"])] == ["delivered"]
    [send] = stack.cast_sends_for([sent["messageId"]])[sent["messageId"]]
    assert (send["channel"], send["sender_id"]) == ("sim", "CAST REPLY")
    asked = httpx.get(f"{stack.cast}/_sandbox/calls",
                      params={"path": "/api/v1/sim/status/*"}, timeout=10).json()
    assert [c["path"] for c in asked] == [f"/api/v1/sim/status/{send['message_id']}"]
