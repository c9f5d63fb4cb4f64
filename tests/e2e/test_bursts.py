"""Bursts on several sender replicas, end to end: Cast's and GHL's rate limits hold, and a
replica killed or stopped mid-burst loses nothing and texts nothing twice.

Each test runs its own stack (real processes, RabbitMQ, Mongo wire server); they sit in a
module of their own so that a parallel run spreads them over its workers.
"""

from __future__ import annotations

import bisect
import signal
from pathlib import Path

import httpx

from castghl.sandbox.infra import Infra
from castghl.sandbox.stack import Stack, in_flight

from .conftest import STATUS_TIMEOUT, make_stack, wait_until

PHONE = "+639171234567"
# Cast's per-IP limit as the simulator enforces it by default (reference/cast.md).
CAST_RATE, CAST_BURST = 30, 50
# What a sender may hold at once: the prefetch limits of its lane, status and reply
# consumers (CAST_LANE_CONCURRENCY, STATUS_CONCURRENCY, INBOUND_CONCURRENCY defaults).
PREFETCH_TOTAL = 64 + 16 + 8


def reached_cast(stack: Stack, ids: list[str]) -> int:
    """How many of these messages Cast has sent, found by their texts."""
    return sum(1 for sends in stack.cast_sends_for(ids).values() if sends)


def most_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


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
        # A sender takes at most its prefetch limits' worth of messages, however many wait.
        held = [in_flight(httpx.get(f"{sender.url}/metrics", timeout=10).text)
                for sender in burst.sender_processes[3:] for _ in range(3)]
        assert max(held) <= PREFETCH_TOTAL, held
        statuses = burst.wait_for_statuses(ids, STATUS_TIMEOUT)
        assert all(s and s[0]["status"] == "delivered" for s in statuses.values())
        burst.wait_quiet()
        sends = burst.cast_sends_for(ids)
        assert {i: len(v) for i, v in sends.items() if len(v) != 1} == {}
        calls = httpx.get(f"{burst.cast}/_sandbox/calls", timeout=10).json()
        ghl_calls = httpx.get(f"{burst.ghl}/_sandbox/calls", timeout=10).json()
    # 300 statuses of one location against GHL's 100 calls in 10 s: the senders pace
    # them together, so GHL never has to refuse one.
    assert [c for c in ghl_calls if c["status"] == 429] == []
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
    # A replica killed after GHL took a status and before it recorded that leaves the
    # write to be made again once its lease runs out: GHL may see the same status twice,
    # never a different one (docs/architecture.md, "Statuses after a crash").
    assert all({entry["status"] for entry in s} == {"delivered"} for s in statuses.values())


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


def test_receipts_awaited_when_the_lane_owner_dies_are_decided_by_the_next_owner(
    rabbitmq: Infra, mongo: Infra, tmp_path: Path,
) -> None:
    # No SMS comes after the owner dies: only the desk's tick, waiting in a delay tier of
    # the lane's queue, reaches the other replica and puts its desk on duty.
    handover = make_stack(rabbitmq, mongo, tmp_path, senders=2)
    with handover.running():
        handover.install()
        handover.configure_cast(dlr_delay_seconds=6.0)  # final at the fourth check, 7.5 s
        ids = [handover.send(phone=PHONE, message=f"handover {i}")["messageId"]
               for i in range(5)]
        wait_until(lambda: reached_cast(handover, ids) == len(ids), "the five sent")
        wait_until(lambda: handover.backlog()[1] == 0, "every send settled")
        handover.lane_owner().kill()
        statuses = handover.wait_for_statuses(ids, STATUS_TIMEOUT)
        handover.wait_quiet()
        statuses = handover.wait_for_statuses(ids, STATUS_TIMEOUT)
    assert {i: [s["status"] for s in v] for i, v in statuses.items()} == {
        i: ["delivered"] for i in ids}
