"""Issue #4, end to end: signed webhook → RabbitMQ → rate-limited Cast send → GHL status.

Real processes (simulators, gateway, oauth, senders), real RabbitMQ, a real Mongo wire
server, real HTTP. Each test sends its own messages, each with a text of its own, and
checks only those: what Cast sent is found by those texts, not by the bridge's keys.
"""

from __future__ import annotations

import bisect
import signal
from pathlib import Path

import httpx

from castghl.sandbox.demo import cases
from castghl.sandbox.infra import Infra
from castghl.sandbox.scenarios import fire, script_carrier, settle
from castghl.sandbox.stack import Stack

from .conftest import STATUS_TIMEOUT, make_stack, wait_until

PHONE = "+639171234567"
# Cast's per-IP limit as the simulator enforces it by default (reference/cast.md).
CAST_RATE, CAST_BURST = 30, 50


def final(stack: Stack, message_id: str) -> dict[str, object]:
    statuses = stack.wait_for_statuses([message_id], STATUS_TIMEOUT)[message_id]
    assert len(statuses) == 1, statuses
    status: dict[str, object] = statuses[0]
    return status


def texted(stack: Stack, message_id: str) -> int:
    """How many SMS Cast sent for the message, found by its text."""
    return len(stack.cast_sends_for([message_id])[message_id])


def reached_cast(stack: Stack, ids: list[str]) -> int:
    """How many of these messages Cast has sent, found by their texts."""
    return sum(1 for sends in stack.cast_sends_for(ids).values() if sends)


def most_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


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


def test_three_senders_hold_the_cast_rate_limit_in_a_burst(
    rabbitmq: Infra, mongo: Infra, tmp_path: Path,
) -> None:
    burst = make_stack(rabbitmq, mongo, tmp_path, senders=3)
    with burst.running():
        burst.install()
        # Fill the queue while the lane is stopped, then let it drain all at once.
        burst.stop_senders()
        ids = [burst.send(phone=PHONE, message=f"burst {i}")["messageId"] for i in range(300)]
        for _ in range(3):
            burst.add_sender(wait=False)
        for sender in burst.sender_processes[3:]:
            sender.wait_ready()
        statuses = burst.wait_for_statuses(ids, STATUS_TIMEOUT)
        assert all(s and s[0]["status"] == "delivered" for s in statuses.values())
        burst.wait_quiet()
        sends = burst.cast_sends_for(ids)
        assert {i: len(v) for i, v in sends.items() if len(v) != 1} == {}
        calls = httpx.get(f"{burst.cast}/_sandbox/calls", timeout=10).json()
    # Only what Cast itself would refuse, which holds at any machine speed: a lane that
    # stalled and caught up may legitimately put more than 30 calls in one clock second.
    assert [c for c in calls if c["status"] == 429] == []
    times = sorted(entry["at"] for entries in sends.values() for entry in entries)
    assert most_in_any_second(times) <= CAST_BURST
    # Sustained: Cast's bucket admits at most `burst + rate * T` calls in T seconds.
    assert len(times) - CAST_BURST <= CAST_RATE * (times[-1] - times[0])


def test_a_sender_killed_mid_burst_loses_nothing_and_texts_nothing_twice(
    rabbitmq: Infra, mongo: Infra, tmp_path: Path,
) -> None:
    crash = make_stack(rabbitmq, mongo, tmp_path, senders=2)
    with crash.running():
        crash.install()
        ids = [crash.send(phone=PHONE, message=f"crash {i}")["messageId"] for i in range(120)]
        wait_until(lambda: reached_cast(crash, ids) >= 30, "30 of the burst sent")
        for sender in crash.sender_processes:
            sender.kill()  # whichever was active dies mid-burst; the other follows
        crash.add_sender()
        statuses = crash.wait_for_statuses(ids, STATUS_TIMEOUT)
        crash.wait_quiet()
        statuses = crash.wait_for_statuses(ids, STATUS_TIMEOUT)
        sends = crash.cast_sends_for(ids)
    assert all(s and s[0]["status"] == "delivered" for s in statuses.values()), [
        i for i, s in statuses.items() if not s]
    assert {i: len(v) for i, v in sends.items() if len(v) != 1} == {}
    assert all(len(s) == 1 for s in statuses.values())


def test_a_sender_stopped_with_sigterm_mid_burst_drains_and_hands_over(
    rabbitmq: Infra, mongo: Infra, tmp_path: Path,
) -> None:
    graceful = make_stack(rabbitmq, mongo, tmp_path, senders=2)
    with graceful.running():
        graceful.install()
        ids = [graceful.send(phone=PHONE, message=f"term {i}")["messageId"]
               for i in range(90)]
        wait_until(lambda: reached_cast(graceful, ids) >= 20, "20 of the burst sent")
        codes = [graceful.lane_owner().stop()]  # SIGTERM to the replica owning the lane
        graceful.wait_for_statuses(ids, STATUS_TIMEOUT)
        graceful.wait_quiet()
        statuses = graceful.wait_for_statuses(ids, STATUS_TIMEOUT)
        sends = graceful.cast_sends_for(ids)
    # It finished in the grace period on its own (uvicorn re-raises the signal after its
    # graceful shutdown, hence -SIGTERM); a sender that hung would show -SIGKILL.
    assert codes == [-signal.SIGTERM]
    assert all(s and s[0]["status"] == "delivered" for s in statuses.values())
    assert {i: len(v) for i, v in sends.items() if len(v) != 1} == {}
    assert all(len(s) == 1 for s in statuses.values())
