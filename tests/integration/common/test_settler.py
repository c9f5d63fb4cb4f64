"""`Settler` on real RabbitMQ: a handler's outcome or error becomes ack, a retry tier, or the
parking queue — publish first, ack second, so a message is never lost.

Each test reads as one message's journey: what the handler answered on each delivery,
which queue the message passed through (a tier's TTL dead-letters it back, and RabbitMQ
records that tier in `x-death`), and where exactly one copy of it rests at the end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from castghl.common.errors import (
    AccountError,
    BridgeError,
    PermanentError,
    RateLimited,
    RetryableError,
    UncertainError,
)
from castghl.common.topology import ATTEMPT_HEADER, PARKED_REASON_HEADER
from castghl.common.worker import Done, Outcome, Park, Retry

from .conftest import BACKOFF, LONGER, PARKING_LOT, SHORT, Job, Rig, eventually

Step = Outcome | BaseException


class Script:
    """Answers the deliveries of each job in turn (an outcome to return, an exception to
    raise); the last step repeats. Records every call as (job id, attempt)."""

    def __init__(self, *steps: Step, **per_job: list[Step]) -> None:
        self.steps = list(steps)
        self.per_job = per_job
        self.calls: list[tuple[str, int]] = []

    def attempts(self, job_id: str) -> list[int]:
        return [attempt for called, attempt in self.calls if called == job_id]

    async def __call__(self, job: Job, attempt: int) -> Outcome:
        steps = self.per_job.get(job.id, self.steps)
        step = steps[min(len(self.attempts(job.id)), len(steps) - 1)]
        self.calls.append((job.id, attempt))
        if isinstance(step, BaseException):
            raise step
        return step


async def only_copy_rests_in(rig: Rig, name: str) -> None:
    """After the consumer stopped: one copy of the message, in `name`, none anywhere else
    (a lost ack would show a second copy back in the work queue)."""
    await rig.stop()
    await rig.until_depth(name, 1)
    assert await rig.depths() == {q.name: (1 if q.name == name else 0)
                                  for q in rig.work.all_queues()}


async def nothing_is_left_anywhere(rig: Rig) -> None:
    """After the consumer stopped: the message was acked and no copy is left anywhere."""
    await rig.stop()
    assert set((await rig.depths()).values()) == {0}


async def test_a_handled_message_is_acked_and_nothing_is_left(rig: Rig) -> None:
    handle = Script(Done())
    await rig.start(handle)

    await rig.send("a")
    await rig.deliveries("a", 1)
    await eventually(lambda: rig.metric("castghl_in_flight") == 0,
                     "the message to be settled")
    await rig.stop()

    assert handle.attempts("a") == [1]
    assert set((await rig.depths()).values()) == {0}


async def test_a_retryable_error_waits_its_backoff_in_a_tier_and_comes_back_counted(
        rig: Rig) -> None:
    handle = Script(RetryableError("Cast unreachable", code="cast_unreachable"),
                    UncertainError("no answer", code="cast_no_answer"), Done())
    await rig.start(handle, max_attempts=5)

    await rig.send("a")
    seen = await rig.deliveries("a", 3)

    assert handle.attempts("a") == [1, 2, 3]
    assert [s.attempt_header for s in seen] == [None, 2, 3]
    # backoff[0] after the first failure, backoff[1] after the second.
    assert [s.came_back_through for s in seen] == [None, rig.tier[SHORT], rig.tier[LONGER]]
    assert rig.metric("castghl_retried_total", code="cast_unreachable") == 1
    assert rig.metric("castghl_retried_total", code="cast_no_answer") == 1
    await nothing_is_left_anywhere(rig)



async def test_a_retry_after_longer_than_the_backoff_picks_a_tier_that_waits_as_long(
        rig: Rig) -> None:
    handle = Script(RetryableError("SMPP pool down", code="cast_unavailable",
                                   retry_after=(SHORT + LONGER) / 2), Done())
    await rig.start(handle)

    await rig.send("a")
    seen = await rig.deliveries("a", 2)

    assert seen[1].came_back_through == rig.tier[LONGER]
    assert handle.attempts("a") == [1, 2]


@pytest.mark.parametrize("retry_after", [SHORT, None], ids=["retry-after", "no-retry-after"])
async def test_a_rate_limit_waits_without_spending_an_attempt(
        rig: Rig, retry_after: float | None) -> None:
    # One attempt only: a rate limit that counted would park the message at once.
    limited = RateLimited("slow down", retry_after=retry_after, code="cast_rate_limited")
    handle = Script(limited, limited, Done())
    await rig.start(handle, max_attempts=1)

    await rig.send("a")
    seen = await rig.deliveries("a", 3)

    assert handle.attempts("a") == [1, 1, 1]
    assert [s.attempt_header for s in seen] == [None, 1, 1]
    assert [s.came_back_through for s in seen] == [None, rig.tier[SHORT], rig.tier[SHORT]]
    await nothing_is_left_anywhere(rig)


async def test_attempts_running_out_park_the_message_with_the_reason(rig: Rig) -> None:
    handle = Script(RetryableError("Cast unreachable", code="cast_unreachable"))
    await rig.start(handle, max_attempts=3)

    await rig.send("a")
    await rig.until_depth(rig.work.parked.name, 1)
    await only_copy_rests_in(rig, rig.work.parked.name)

    assert handle.attempts("a") == [1, 2, 3]
    [parked] = await rig.take(rig.work.parked.name, 1)
    assert Job.model_validate_json(parked.body) == Job(id="a")
    assert parked.headers[PARKED_REASON_HEADER] == "gave up after 3 attempts (cast_unreachable)"
    assert parked.headers[ATTEMPT_HEADER] == 3
    assert rig.metric("castghl_parked_total", code="cast_unreachable") == 1


async def test_an_exhausted_hook_ends_the_message_instead_of_parking_it(rig: Rig) -> None:
    ended: list[tuple[Job, Retry, int]] = []

    async def exhausted(job: Job, retry: Retry, attempt: int) -> Outcome:
        ended.append((job, retry, attempt))  # the outbound SMS reports `failed` here
        return Done()

    handle = Script(UncertainError("no answer", code="cast_no_answer"))
    await rig.start(handle, max_attempts=2, exhausted=exhausted)

    await rig.send("a")
    await eventually(lambda: ended, "the exhausted hook to be called")
    await nothing_is_left_anywhere(rig)

    assert handle.attempts("a") == [1, 2]
    assert ended == [(Job(id="a"), Retry(LONGER, "cast_no_answer"), 2)]


async def test_an_exhausted_hook_may_park_with_its_own_reason(rig: Rig) -> None:
    async def exhausted(job: Job, retry: Retry, attempt: int) -> Outcome:
        return Park("status_failed", f"{job.id}: no status after {attempt} ({retry.code})")

    await rig.start(Script(RetryableError("down", code="ghl_down")), max_attempts=2,
                    exhausted=exhausted)

    await rig.send("a")
    await rig.until_depth(rig.work.parked.name, 1)
    await only_copy_rests_in(rig, rig.work.parked.name)

    [parked] = await rig.take(rig.work.parked.name, 1)
    assert parked.headers[PARKED_REASON_HEADER] == "a: no status after 2 (ghl_down)"


async def test_a_failing_exhausted_hook_keeps_the_message_and_ends_it_later(
        rig: Rig) -> None:
    calls: list[int] = []

    async def exhausted(job: Job, retry: Retry, attempt: int) -> Outcome:
        calls.append(attempt)
        if len(calls) == 1:
            raise ConnectionError("the store is away")
        return Done()

    handle = Script(RetryableError("Cast unreachable", code="cast_unreachable"))
    await rig.start(handle, max_attempts=2, exhausted=exhausted)

    await rig.send("a")
    seen = await rig.deliveries("a", 3)
    await eventually(lambda: len(calls) == 2, "the hook's second call")
    await nothing_is_left_anywhere(rig)

    # Waiting for the ending again through the longest tier spends no attempt.
    assert calls == [2, 2]
    assert handle.attempts("a") == [1, 2, 2]
    assert [s.attempt_header for s in seen] == [None, 2, 2]
    assert seen[2].came_back_through == rig.tier[BACKOFF[-1]]


@pytest.mark.parametrize(("body", "content_type"), [
    (b'{"id": 5}', "application/json"),
    (b"{}", "application/json"),
    (b"[1, 2]", "application/json"),
    (b"not json at all", None),
    # Marked JSON but not: the subscribers' `undecoded` keeps FastStream from parsing it
    # before the Settler can park it.
    (b"not json at all", "application/json"),
    (b'{"id": "trunc', "application/json"),
    (b"", "application/json"),
], ids=["wrong-type", "missing-field", "not-an-object", "not-json-untyped",
        "not-json", "truncated-json", "empty"])
async def test_an_unreadable_message_is_parked_and_the_consumer_goes_on(
        rig: Rig, body: bytes, content_type: str | None) -> None:
    handle = Script(Done())
    await rig.start(handle)

    await rig.send_raw(body, content_type)
    await rig.send("after")
    await rig.deliveries("after", 1)
    # Once the consumer is gone, where the bad message rests is final: parked, or back
    # in the work queue had nobody settled it.
    await rig.stop()
    await eventually(lambda: rig.holds(rig.work.queue.name, rig.work.parked.name, total=1),
                     "the bad message to rest somewhere")

    assert handle.calls == [("after", 1)]  # the handler never saw the bad one
    assert await rig.depths() == {q.name: (1 if q is rig.work.parked else 0)
                                  for q in rig.work.all_queues()}
    [parked] = await rig.take(rig.work.parked.name, 1)
    assert parked.body == body
    assert parked.headers[PARKED_REASON_HEADER].startswith("not a Job: ")
    assert rig.metric("castghl_parked_total", code="unreadable") == 1


@pytest.mark.parametrize("error", [
    PermanentError("Cast refused the number", code="cast_rejected"),
    AccountError("Cast answered 402 INSUFFICIENT_CREDITS", code="cast_insufficient_credits"),
], ids=["permanent", "account"])
async def test_a_permanent_error_parks_at_once(rig: Rig, error: BridgeError) -> None:
    handle = Script(error)
    await rig.start(handle, max_attempts=5)

    await rig.send("a")
    await rig.until_depth(rig.work.parked.name, 1)
    await only_copy_rests_in(rig, rig.work.parked.name)

    assert handle.attempts("a") == [1]
    [parked] = await rig.take(rig.work.parked.name, 1)
    assert parked.headers[PARKED_REASON_HEADER] == error.detail
    assert rig.metric("castghl_parked_total", code=error.code) == 1


async def test_a_handler_returning_park_parks_with_its_reason(rig: Rig) -> None:
    await rig.start(Script(Park("unroutable", "no location owns 09181234567")))

    await rig.send("a")
    await rig.until_depth(rig.work.parked.name, 1)

    [parked] = await rig.take(rig.work.parked.name, 1)
    assert parked.headers[PARKED_REASON_HEADER] == "no location owns 09181234567"


async def test_an_unexpected_exception_is_retried_then_parked(rig: Rig) -> None:
    handle = Script(KeyError("a bug"), KeyError("a bug"))
    await rig.start(handle, max_attempts=2)

    await rig.send("a")
    await rig.until_depth(rig.work.parked.name, 1)
    seen = rig.seen_of("a")

    assert handle.attempts("a") == [1, 2]
    assert seen[1].came_back_through == rig.tier[SHORT]
    [parked] = await rig.take(rig.work.parked.name, 1)
    assert parked.headers[PARKED_REASON_HEADER] == "gave up after 2 attempts (unexpected)"


async def test_an_unexpected_exception_once_does_not_stop_the_message(rig: Rig) -> None:
    handle = Script(RuntimeError("flaky"), Done())
    await rig.start(handle)

    await rig.send("a")
    await rig.deliveries("a", 2)
    await eventually(lambda: rig.metric("castghl_in_flight") == 0,
                     "the message to be settled")
    await nothing_is_left_anywhere(rig)

    assert handle.attempts("a") == [1, 2]


@pytest.mark.parametrize(("header", "attempt"), [
    (None, 1), (2, 2), ("3", 3), (0, 1), (-4, 1), ("soon", 1),
], ids=["absent", "number", "text-number", "zero", "negative", "garbage"])
async def test_the_attempt_comes_from_the_header_and_is_at_least_one(
        rig: Rig, header: object, attempt: int) -> None:
    handle = Script(Done())
    await rig.start(handle)

    await rig.send("a", headers=None if header is None else {ATTEMPT_HEADER: header})
    await rig.deliveries("a", 1)
    await eventually(lambda: handle.calls, "the handler's call")

    assert handle.attempts("a") == [attempt]


async def test_a_message_arriving_on_its_last_attempt_parks_on_failure(rig: Rig) -> None:
    handle = Script(RetryableError("down", code="cast_unreachable"))
    await rig.start(handle, max_attempts=3)

    await rig.send("a", headers={ATTEMPT_HEADER: 3})
    await rig.until_depth(rig.work.parked.name, 1)

    assert handle.attempts("a") == [3]


# --- publish first, ack second ----------------------------------------------------------

async def test_after_a_retry_exactly_one_copy_waits_in_the_tier(rig: Rig) -> None:
    await rig.start(Script(Retry(PARKING_LOT, "slow_down")))

    await rig.send("a")
    await rig.until_depth(rig.tier[PARKING_LOT], 1)

    await only_copy_rests_in(rig, rig.tier[PARKING_LOT])
    [waiting] = await rig.take(rig.tier[PARKING_LOT], 1)
    assert waiting.headers[ATTEMPT_HEADER] == 2


@pytest.mark.parametrize(("outcome", "destination"), [
    (Park("unroutable", "nobody owns the number"), lambda rig: rig.work.parked.name),
    (Retry(PARKING_LOT, "slow_down"), lambda rig: rig.tier[PARKING_LOT]),
], ids=["park", "retry"])
async def test_a_settle_whose_publish_fails_leaves_the_message_in_its_queue(
        rig: Rig, outcome: Outcome, destination: Callable[[Rig], str]) -> None:
    handle = Script(outcome)
    await rig.start(handle)
    # The destination is gone (deleted by hand, say): the publish cannot be stored.
    await rig.delete(destination(rig))

    await rig.send("a")
    await eventually(lambda: rig.failures, "the settle to fail")
    await rig.stop()
    await rig.until_depth(rig.work.queue.name, 1)  # not acked: back in its queue

    # Once the destination is back, the next delivery settles it, once.
    await rig.declare_all()
    await rig.start(handle)
    await rig.until_depth(destination(rig), 1)
    await only_copy_rests_in(rig, destination(rig))
    assert handle.attempts("a") == [1, 1]


# --- castghl_in_flight ------------------------------------------------------------------

async def test_in_flight_counts_the_messages_being_handled(rig: Rig) -> None:
    release = asyncio.Event()
    entered: list[str] = []

    async def handle(job: Job, attempt: int) -> Outcome:
        entered.append(job.id)
        await release.wait()
        return Done()

    await rig.start(handle)
    await rig.send("a")
    await rig.send("b")
    await eventually(lambda: len(entered) == 2, "both handlers to start")

    assert rig.metric("castghl_in_flight") == 2
    release.set()
    await eventually(lambda: rig.metric("castghl_in_flight") == 0,
                     "both messages to be settled")
    await nothing_is_left_anywhere(rig)


async def test_in_flight_goes_back_down_when_settling_fails(rig: Rig) -> None:
    await rig.start(Script(Park("unroutable", "nobody owns the number")))
    await rig.delete(rig.work.parked.name)

    await rig.send("a")
    await eventually(lambda: rig.failures, "the settle to fail")

    assert rig.metric("castghl_in_flight") == 0
