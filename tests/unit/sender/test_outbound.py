"""The outbound pipeline, on in-memory fakes of its ports: every path ends in one status
(`delivered` once the fake carrier's receipts say so; test_receipts.py covers the rest)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from castghl.common.cast.accounts import fingerprint
from castghl.common.errors import (
    AccountError,
    RateLimited,
    RetryableError,
    UncertainError,
)
from castghl.common.messages import CastKey, InstallStatus, LocationSettings
from castghl.common.phone import PhMobile
from castghl.common.worker import Done, Retry
from castghl.sender.optouts import CAST_UNSUBSCRIBED, OPTED_OUT
from castghl.sender.outbound import (
    MAX_RATE_LIMITED_IN_A_ROW,
    RATE_LIMITED_RUNS,
    REFUSED,
    idempotency_key,
)
from castghl.sender.store import Sent

from .fakes import FakeLocations, installed
from .harness import DEFAULT_KEY, Harness, sms

SENT = Sent(PhMobile.parse("09171234567"))


async def test_a_plain_text_is_sent_once_and_reported_delivered() -> None:
    h = Harness()
    assert await h.process(sms(), attempt=1) == Done()
    [sent] = h.cast.sent
    assert (sent.request.to, sent.request.message, sent.request.sender_id) == (
        PhMobile.parse("09171234567"), "Hello", "CASTDEMO")
    assert sent.api_key == DEFAULT_KEY
    assert sent.idempotency_key == idempotency_key("m1", 0)
    assert h.status() == ("delivered", None, None)


async def test_a_duplicate_webhook_sends_one_sms_and_one_status() -> None:
    h = Harness()
    for _ in range(3):
        assert await h.process(sms(), attempt=1) == Done()
    assert len(h.cast.sent) == 1
    assert len(h.statuses.queued) == 1


async def test_attachments_go_out_as_urls_on_their_own_lines() -> None:
    h = Harness()
    await h.process(sms(attachments=["https://x.test/a.png"]), attempt=1)
    assert h.cast.sent[0].request.message == "Hello\nhttps://x.test/a.png"


async def test_a_long_text_is_split_into_ordered_parts_with_their_own_keys() -> None:
    h = Harness()
    words = " ".join(f"word{i:03d}" for i in range(75))  # 599 characters
    await h.process(sms(message=words), attempt=1)
    assert [s.idempotency_key for s in h.cast.sent] == [idempotency_key("m1", 0),
                                                        idempotency_key("m1", 1)]
    assert " ".join(s.request.message for s in h.cast.sent) == words
    assert all(len(s.request.message) <= 450 for s in h.cast.sent)
    assert h.status() == ("delivered", None, None)


@pytest.mark.parametrize(
    ("overrides", "code", "text"),
    [
        pytest.param({"phone": "+1 555 123 4567"}, "invalid_number",
                     "is not a Philippine mobile number", id="us-number"),
        pytest.param({"phone": None}, "invalid_number", "empty", id="no-phone"),
        pytest.param({"message": "", "attachments": []}, "empty_message", "empty",
                     id="empty"),
        pytest.param({"message": "word " * 400}, "message_too_long", "too long",
                     id="beyond-the-part-cap"),
    ],
)
async def test_bad_messages_fail_with_a_clear_reason_and_text_nobody(
    overrides: dict[str, object], code: str, text: str,
) -> None:
    h = Harness()
    assert await h.process(sms(**overrides), attempt=1) == Done()
    assert h.cast.sent == []
    status, error_code, message = h.status()
    assert (status, error_code) == ("failed", code)
    assert message is not None
    assert text in message
    assert message.startswith("Cast SMS")


async def test_cast_unavailable_is_retried_then_delivered() -> None:
    h = Harness(RetryableError("503", code="cast_unavailable"))
    outcome = await h.process(sms(), attempt=1)
    assert isinstance(outcome, Retry)
    assert outcome.counts
    assert h.statuses.queued == []
    assert await h.process(sms(), attempt=2) == Done()
    assert h.status() == ("delivered", None, None)


async def test_retries_run_out_into_a_failed_status() -> None:
    h = Harness(*[RetryableError("503", code="cast_unavailable")] * 3, max_attempts=3)
    for attempt in (1, 2):
        assert isinstance(await h.process(sms(), attempt=attempt), Retry)
    assert await h.process(sms(), attempt=3) == Done()
    status, code, message = h.status()
    assert (status, code) == ("failed", "cast_unavailable")
    assert message is not None
    assert "after 3 attempts" in message


async def test_an_uncertain_send_is_retried_with_the_same_key() -> None:
    h = Harness(UncertainError("timeout", code="cast_no_answer"))
    assert isinstance(await h.process(sms(), attempt=1), Retry)
    assert await h.process(sms(), attempt=2) == Done()
    assert [s.idempotency_key for s in h.cast.sent] == [idempotency_key("m1", 0)] * 2
    assert h.status() == ("delivered", None, None)


async def test_without_idempotency_an_uncertain_send_fails_as_maybe_delivered() -> None:
    h = Harness(UncertainError("timeout", code="cast_no_answer"), idempotency=False)
    assert await h.process(sms(), attempt=1) == Done()
    assert len(h.cast.sent) == 1
    status, code, message = h.status()
    assert (status, code) == ("failed", "uncertain_delivery")
    assert message is not None
    assert "may have been delivered" in message


async def test_without_idempotency_a_part_in_flight_at_a_crash_is_not_resent() -> None:
    h = Harness(idempotency=False)
    await h.store.claim(sms())
    await h.store.part_sending("m1", 0, Sent(PhMobile.parse("09171234567")))  # the crash was here
    assert await h.process(sms(), attempt=1) == Done()
    assert h.cast.sent == []
    assert h.status()[1] == "uncertain_delivery"


async def test_resuming_skips_parts_cast_already_accepted() -> None:
    h = Harness(None, UncertainError("timeout", code="cast_no_answer"))
    words = " ".join(f"word{i:03d}" for i in range(75))
    assert isinstance(await h.process(sms(message=words), attempt=1), Retry)
    await h.process(sms(message=words), attempt=2)
    assert [s.idempotency_key for s in h.cast.sent] == [
        idempotency_key("m1", 0), idempotency_key("m1", 1), idempotency_key("m1", 1)]


async def test_out_of_credit_fails_with_that_message() -> None:
    h = Harness(AccountError("402", code="cast_insufficient_credits",
                             user_message="Cast SMS account is out of credit"))
    assert await h.process(sms(), attempt=1) == Done()
    assert h.status() == ("failed", "cast_insufficient_credits",
                          "Cast SMS account is out of credit")


async def test_a_429_pauses_the_lane_and_the_same_part_goes_out_after_it() -> None:
    h = Harness(RateLimited("429", retry_after=0.05))
    assert await h.process(sms(), attempt=1) == Done()
    assert len(h.cast.sent) == 2
    assert h.lane.ip.paused_until > 0
    assert h.status() == ("delivered", None, None)


async def test_a_long_run_of_429s_goes_back_through_a_tier_and_is_counted() -> None:
    h = Harness(*[RateLimited("429", retry_after=0.001)] * MAX_RATE_LIMITED_IN_A_ROW)
    before = RATE_LIMITED_RUNS._value.get()
    outcome = await h.process(sms(), attempt=1)
    assert isinstance(outcome, Retry)
    assert not outcome.counts  # waiting out Cast's limit is not a failed attempt
    assert RATE_LIMITED_RUNS._value.get() == before + 1
    assert h.statuses.queued == []


async def test_the_locations_own_key_and_sender_id_are_used() -> None:
    own = installed("loc1", sender_id="MYBRAND", cast_key=CastKey.OWN,
                    cast_api_key="cast_own", rate_limit_per_second=5)
    h = Harness(locations=FakeLocations({"loc1": own}))
    await h.process(sms(), attempt=1)
    [sent] = h.cast.sent
    assert (sent.api_key, sent.request.sender_id) == ("cast_own", "MYBRAND")
    assert h.lane.keys["cast_own"].rate == 5


@pytest.mark.parametrize(("settings", "reason"), [
    (LocationSettings(location_id="loc1"), "not_installed"),
    (LocationSettings(location_id="loc1", status=InstallStatus.UNINSTALLED), "uninstalled"),
], ids=["never-installed", "uninstalled"])
async def test_a_location_without_an_active_installation_texts_nobody(
        settings: LocationSettings, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(locations=FakeLocations({"loc1": settings}))
    before = REFUSED.labels(reason)._value.get()
    with caplog.at_level(logging.WARNING):
        assert await h.process(sms(), attempt=1) == Done()
    assert h.cast.sent == []
    assert h.statuses.queued == []  # nobody to report to, and no retry loop
    assert h.store.records == {}
    assert REFUSED.labels(reason)._value.get() == before + 1
    assert any(r.levelno == logging.WARNING and getattr(r, "reason", "") == reason
               for r in caplog.records)


async def test_a_location_not_set_up_fails_with_what_to_do_and_texts_nobody() -> None:
    h = Harness(locations=FakeLocations({"loc1": installed("loc1", cast_key=CastKey.NONE)}))
    assert await h.process(sms(), attempt=1) == Done()
    assert h.cast.sent == []
    assert h.status() == ("failed", "not_set_up",
                          "Cast SMS is not set up for this location yet: ask your agency to "
                          "add a Cast API key")


async def test_a_stopped_location_fails_with_the_reason_and_texts_nobody() -> None:
    h = Harness(locations=FakeLocations({"loc1": installed("loc1").model_copy(
        update={"stopped": True})}))
    assert await h.process(sms(), attempt=1) == Done()
    assert h.cast.sent == []
    assert h.status() == ("failed", "location_stopped",
                          "Cast SMS sending is stopped for this location: ask your agency")


async def test_a_location_awaiting_reauthorisation_still_sends() -> None:
    waiting = installed("loc1", status=InstallStatus.NEEDS_REAUTH)
    h = Harness(locations=FakeLocations({"loc1": waiting}))
    await h.process(sms(), attempt=1)
    assert len(h.cast.sent) == 1


async def test_a_status_decided_but_not_queued_before_a_crash_is_queued_on_redelivery(
) -> None:
    h = Harness()
    await h.store.claim(sms())
    await h.store.decide("m1", "delivered", None)  # crash before the hand-over
    assert await h.process(sms(), attempt=1) == Done()
    assert h.cast.sent == []
    assert h.status() == ("delivered", None, None)


async def test_concurrent_copies_of_one_webhook_send_once_and_queue_one_status() -> None:
    h = Harness()
    outcomes = await asyncio.gather(*(h.process(sms(), attempt=1) for _ in range(5)))
    assert outcomes == [Done()] * 5
    assert len(h.cast.sent) == 1
    assert len(h.statuses.queued) == 1
    assert h.pipeline.in_progress._locks == {}


async def test_a_number_that_replied_stop_gets_no_cast_call_and_a_plain_reason() -> None:
    h = Harness()
    person = PhMobile.parse("09171234567")
    await h.suppressions.record("loc1", person, "opted_out", at=1.0, word="STOP")
    assert await h.process(sms(), attempt=1) == Done()
    assert h.cast.sent == []
    assert h.status() == ("failed", "opted_out", OPTED_OUT)
    # Another location the person never opted out of still texts them.
    assert await h.process(sms(message_id="m2", location_id="loc2"), attempt=1) == Done()
    assert len(h.cast.sent) == 1


async def test_after_start_the_number_is_texted_again() -> None:
    h = Harness()
    person = PhMobile.parse("09171234567")
    await h.suppressions.record("loc1", person, "opted_out", at=1.0, word="STOP")
    await h.suppressions.record("loc1", person, "opted_in", at=2.0, word="START")
    await h.process(sms(), attempt=1)
    assert len(h.cast.sent) == 1
    assert h.status() == ("delivered", None, None)


# --- channels ------------------------------------------------------------------------------

async def test_a_sim_sender_id_sends_on_the_sim_channel_and_is_remembered() -> None:
    h = Harness()
    h.cast.senders = [("CASTDEMO", "sim"), ("PROMO", "sms")]
    assert await h.process(sms(), attempt=1) == Done()
    await h.process(sms(message_id="m2", message="again"), attempt=1)
    assert [s.channel for s in h.cast.sent] == ["sim", "sim"]
    assert h.cast.sender_id_reads == 1  # cached per Cast key
    assert [u.status for u in h.statuses.queued] == ["delivered", "delivered"]


async def test_an_sms_sender_id_and_an_api_without_the_list_send_on_sms() -> None:
    for senders in ([("CASTDEMO", "sms")], None, []):
        h = Harness()
        h.cast.senders = senders
        await h.process(sms(), attempt=1)
        assert [s.channel for s in h.cast.sent] == ["sms"]


async def test_a_sender_id_the_account_lacks_fails_with_no_send() -> None:
    h = Harness()
    h.cast.senders = [("OTHER", "sms")]
    assert await h.process(sms(), attempt=1) == Done()
    assert h.cast.sent == []
    status, code, text = h.status()
    assert (status, code) == ("failed", "sender_id_unknown")
    assert text is not None
    assert "'CASTDEMO' is not one of this location's Cast account" in text


async def test_a_channel_this_bridge_does_not_know_fails_with_its_name() -> None:
    h = Harness()
    h.cast.senders = [("CASTDEMO", "rcs")]
    await h.process(sms(), attempt=1)
    assert h.cast.sent == []
    status, code, text = h.status()
    assert (status, code) == ("failed", "channel_unknown")
    assert text is not None
    assert "'rcs'" in text


async def test_channel_not_allowed_fails_plainly_and_reads_the_list_again() -> None:
    h = Harness(AccountError("403 CHANNEL_NOT_ALLOWED", code="cast_channel_not_allowed",
                             user_message="Cast SMS: this location's Cast account may not "
                                          "send on the channel of its sender ID"))
    h.cast.senders = [("CASTDEMO", "sim")]
    await h.process(sms(), attempt=1)
    assert h.status()[:2] == ("failed", "cast_channel_not_allowed")
    await h.process(sms(message_id="m2", message="again"), attempt=1)
    assert h.cast.sender_id_reads == 2


# --- usage ---------------------------------------------------------------------------------

async def test_usage_counts_parts_and_final_statuses_once_per_message() -> None:
    h = Harness()
    words = " ".join(f"word{i:03d}" for i in range(75))  # two parts
    for _ in range(3):  # the webhook delivered three times
        await h.process(sms(message=words), attempt=1)
    await h.process(sms(message_id="m2", phone="+1 555 123 4567"), attempt=1)
    assert h.usage.total("loc1") == {"parts_sent": 2, "delivered": 1, "failed": 1}


async def test_a_part_accepted_again_after_a_lost_answer_counts_once() -> None:
    h = Harness()
    await h.store.claim(sms())
    await h.store.part_sending("m1", 0, Sent(PhMobile.parse("09171234567")))
    await h.store.part_accepted("m1", 0, "CAST1", SENT)
    await h.store.part_accepted("m1", 0, "CAST2", SENT)  # a replay changes nothing
    assert (await h.store.claim(sms())).parts[0].cast_message_id == "CAST1"


async def test_a_number_on_casts_opt_out_list_gets_no_cast_call() -> None:
    h = Harness()
    person = PhMobile.parse("09171234567")
    await h.suppressions.replace_cast_opt_outs(fingerprint(DEFAULT_KEY), {(person, None)},
                                               now=1.0)
    await h.process(sms(), attempt=1)
    assert h.cast.sent == []
    assert h.status() == ("failed", "cast_unsubscribed", CAST_UNSUBSCRIBED)


async def test_an_opt_out_from_one_sender_id_spares_the_others() -> None:
    h = Harness()
    person = PhMobile.parse("09171234567")
    await h.suppressions.replace_cast_opt_outs(fingerprint(DEFAULT_KEY), {(person, "PROMO")},
                                               now=1.0)
    await h.process(sms(), attempt=1)  # sent as CASTDEMO
    assert len(h.cast.sent) == 1
