"""Replies: routing rules, one GHL message per Cast id, contact caching, GHL failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from castghl.common.cast.models import CastOptOut, CastUnsubscribed
from castghl.common.ghl.api import GhlApi
from castghl.common.http import Upstream
from castghl.common.messages import InboundSms, InstallStatus, LocationSettings, OutboundSms
from castghl.common.phone import PhMobile
from castghl.common.worker import Done, Park, Retry
from castghl.sender.inbound import UNROUTABLE, InboundDelivery
from castghl.sender.optouts import DND_NOT_SET, ConsentWords, sync_cast_opt_outs
from castghl.sender.store import Sent

from .fakes import (
    FakeLocations,
    FakeRouter,
    FakeTokens,
    MemoryInboundStore,
    MemoryMessageStore,
    MemorySuppressions,
    Settled,
)

Answer = tuple[int, object]
REPLY = InboundSms.model_validate({"from": "+639171234567", "to": "09181234567",
                                   "message": "Yes, see you!", "cast_message_id": "CASTIN1"})


class FakeGhl:
    """Scripted answers per path; records every request."""

    def __init__(self, **scripts: list[Answer]) -> None:
        self.scripts = scripts
        self.requests: list[httpx.Request] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # a real call yields to other tasks
        self.requests.append(request)
        path = request.url.path
        name = ("upsert" if path == "/contacts/upsert" else
                "dnd" if path.startswith("/contacts/") else "inbound")
        script = self.scripts.get(name) or []
        status, body = script.pop(0) if script else (
            (200, {"new": True, "contact": {"id": "contact1"}}) if name == "upsert" else
            (200, {"succeded": True, "contact": {"id": "contact1"}}) if name == "dnd" else
            (200, {"success": True, "conversationId": "conv1", "messageId": "ghlmsg1",
                   "message": "Message added successfully", "contactId": "contact1"}))
        return httpx.Response(status, json=body)

    def api(self) -> GhlApi:
        return GhlApi(Upstream(httpx.MockTransport(self.handle)),
                      "https://ghl.test")

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


NOW = 1_800_000_000.0
DAY = 86_400.0


def delivery(ghl: FakeGhl, *, numbers: dict[str, str] | None = None,
             tokens: FakeTokens | None = None, locations: FakeLocations | None = None,
             suppressions: MemorySuppressions | None = None,
             words: ConsentWords | None = None,
             ) -> tuple[Settled[InboundSms], MemoryInboundStore, MemoryMessageStore]:
    inbound, messages = MemoryInboundStore(), MemoryMessageStore(clock=lambda: NOW - DAY)
    worker = InboundDelivery(inbound=inbound, messages=messages,
                             router=FakeRouter(numbers or {}),
                             locations=locations or FakeLocations(),
                             tokens=tokens or FakeTokens(), ghl=ghl.api(),
                             suppressions=suppressions or MemorySuppressions(),
                             words=words or ConsentWords.with_extra(),
                             fallback=timedelta(days=30), clock=lambda: NOW)
    return Settled(worker.process), inbound, messages


async def texted(messages: MemoryMessageStore, location_id: str, message_id: str,
                 number: str = "+639171234567") -> None:
    await messages.claim(OutboundSms(message_id=message_id, location_id=location_id))
    await messages.part_sending(message_id, 0, Sent(PhMobile.parse(number)))


async def test_a_reply_to_an_assigned_number_reaches_that_location() -> None:
    ghl = FakeGhl()
    worker, inbound, _ = delivery(ghl, numbers={"+639181234567": "loc1"})
    assert await worker.process(REPLY, attempt=1) == Done()
    upsert, message = ghl.requests
    assert json.loads(upsert.content) == {"locationId": "loc1", "phone": "+639171234567"}
    assert upsert.headers["Version"] == "2021-07-28"
    body = json.loads(message.content)
    assert {k: body[k] for k in ("type", "contactId", "message", "direction", "altId")} == {
        "type": "SMS", "contactId": "contact1", "message": "Yes, see you!",
        "direction": "inbound", "altId": "CASTIN1"}
    assert message.headers["Version"] == "2021-04-15"
    assert inbound.delivered_ids == {"CASTIN1": ("loc1", "ghlmsg1")}


async def test_a_reply_from_a_number_we_texted_goes_to_the_location_that_texted_it() -> None:
    ghl = FakeGhl()
    worker, inbound, messages = delivery(ghl)
    await messages.claim(OutboundSms(message_id="m1", location_id="loc9"))
    await messages.part_sending("m1", 0, Sent(PhMobile.parse("09171234567")))
    assert await worker.process(REPLY, attempt=1) == Done()
    assert inbound.delivered_ids["CASTIN1"][0] == "loc9"


async def test_an_unroutable_reply_is_parked_and_counted() -> None:
    ghl = FakeGhl()
    worker, _, _ = delivery(ghl)
    before = UNROUTABLE.labels("unroutable")._value.get()
    outcome = await worker.process(REPLY, attempt=1)
    assert isinstance(outcome, Park)
    assert outcome.code == "unroutable"
    assert "castghl-sender replay inbound" in outcome.reason
    assert UNROUTABLE.labels("unroutable")._value.get() == before + 1
    assert ghl.requests == []


async def test_a_reply_to_a_person_two_clients_texted_is_parked_not_guessed() -> None:
    ghl = FakeGhl()
    worker, inbound, messages = delivery(ghl)
    await texted(messages, "client-a", "m1")
    await texted(messages, "client-b", "m2")  # the latest: once, this one got the reply
    before = UNROUTABLE.labels("ambiguous")._value.get()
    outcome = await worker.process(REPLY, attempt=1)
    assert isinstance(outcome, Park)
    assert outcome.code == "ambiguous"
    assert "2 locations" in outcome.reason
    assert UNROUTABLE.labels("ambiguous")._value.get() == before + 1
    assert ghl.requests == []
    assert inbound.delivered_ids == {}


async def test_the_receiving_number_decides_even_when_two_clients_texted() -> None:
    ghl = FakeGhl()
    worker, inbound, messages = delivery(ghl, numbers={"+639181234567": "client-a"})
    await texted(messages, "client-a", "m1")
    await texted(messages, "client-b", "m2")
    assert await worker.process(REPLY, attempt=1) == Done()
    assert inbound.delivered_ids["CASTIN1"][0] == "client-a"


async def test_an_uninstalled_location_never_gets_a_reply() -> None:
    ghl = FakeGhl()
    gone = LocationSettings(location_id="client-b", status=InstallStatus.UNINSTALLED)
    worker, inbound, messages = delivery(ghl, locations=FakeLocations({"client-b": gone}))
    await texted(messages, "client-a", "m1")
    await texted(messages, "client-b", "m2")
    assert await worker.process(REPLY, attempt=1) == Done()  # only client-a is left
    assert inbound.delivered_ids["CASTIN1"][0] == "client-a"
    worker, _, messages = delivery(ghl, locations=FakeLocations({"client-b": gone}))
    await texted(messages, "client-b", "m3")
    outcome = await worker.process(REPLY, attempt=1)
    assert isinstance(outcome, Park)
    assert outcome.code == "unroutable"


async def test_texts_older_than_the_fallback_window_do_not_route() -> None:
    ghl = FakeGhl()
    worker, _, messages = delivery(ghl)
    messages.clock = lambda: NOW - 31 * DAY
    await texted(messages, "client-a", "m1")
    outcome = await worker.process(REPLY, attempt=1)
    assert isinstance(outcome, Park)
    assert outcome.code == "unroutable"


async def test_the_same_reply_twice_makes_one_ghl_message() -> None:
    ghl = FakeGhl()
    worker, _, _ = delivery(ghl, numbers={"+639181234567": "loc1"})
    for _ in range(3):
        assert await worker.process(REPLY, attempt=1) == Done()
    assert ghl.paths().count("/conversations/messages/inbound") == 1


async def test_the_contact_is_looked_up_once_per_phone_and_location() -> None:
    ghl = FakeGhl()
    worker, _, _ = delivery(ghl, numbers={"+639181234567": "loc1"})
    second = REPLY.model_copy(update={"cast_message_id": "CASTIN2"})
    await worker.process(REPLY, attempt=1)
    await worker.process(second, attempt=1)
    assert ghl.paths().count("/contacts/upsert") == 1


async def test_a_refused_cached_contact_is_looked_up_again() -> None:
    ghl = FakeGhl(inbound=[(400, {"message": "Contact not found"})])
    worker, inbound, _ = delivery(ghl, numbers={"+639181234567": "loc1"})
    inbound.contacts[("loc1", PhMobile.parse("+639171234567"))] = "deleted-contact"
    assert await worker.process(REPLY, attempt=1) == Done()
    assert ghl.paths() == ["/conversations/messages/inbound", "/contacts/upsert",
                           "/conversations/messages/inbound"]


async def test_a_401_refreshes_once_then_delivers() -> None:
    tokens = FakeTokens()
    ghl = FakeGhl(upsert=[(401, {"message": "Invalid JWT"})])
    worker, _, _ = delivery(ghl, numbers={"+639181234567": "loc1"}, tokens=tokens)
    assert await worker.process(REPLY, attempt=1) == Done()
    assert tokens.refreshed == ["tok1"]


@pytest.mark.parametrize(
    ("script", "check"),
    [
        pytest.param({"inbound": [(502, {}), (503, {})]}, lambda o: isinstance(o, Retry),
                     id="5xx-retried"),
        pytest.param({"inbound": [(201, {})]}, lambda o: isinstance(o, Retry),
                     id="empty-201-is-not-success"),
        pytest.param({"upsert": [(422, {"message": ["phone must be valid"]})]},
                     lambda o: isinstance(o, Park) and o.code == "ghl_http_422",
                     id="other-4xx-parked"),
    ],
)
async def test_ghl_failures(script: dict[str, list[Answer]],
                            check: Callable[[object], bool]) -> None:
    worker, inbound, _ = delivery(FakeGhl(**script), numbers={"+639181234567": "loc1"})
    assert check(await worker.process(REPLY, attempt=1))
    assert inbound.delivered_ids == {}


async def test_5xx_twice_then_ok_delivers_once() -> None:
    ghl = FakeGhl(inbound=[(500, {}), (502, {})])
    worker, inbound, _ = delivery(ghl, numbers={"+639181234567": "loc1"})
    outcomes = [await worker.process(REPLY, attempt=n) for n in (1, 2, 3)]
    assert [type(o) for o in outcomes] == [Retry, Retry, Done]
    assert list(inbound.delivered_ids) == ["CASTIN1"]


async def test_copies_handled_at_the_same_moment_make_one_ghl_message() -> None:
    ghl = FakeGhl()
    worker, _, _ = delivery(ghl, numbers={"+639181234567": "loc1"})
    outcomes = await asyncio.gather(*(worker.process(REPLY, attempt=1) for _ in range(3)))
    assert sorted(type(o).__name__ for o in outcomes) == ["Done", "Retry", "Retry"]
    assert all(o.counts is False for o in outcomes if isinstance(o, Retry))
    assert ghl.paths().count("/conversations/messages/inbound") == 1
    # The copies that waited find it delivered.
    assert [await worker.process(REPLY, attempt=1) for _ in range(2)] == [Done(), Done()]


# --- opt-outs -------------------------------------------------------------------------------

LOC1 = {"+639181234567": "loc1"}
PERSON = PhMobile.parse("+639171234567")


def reply(text: str, cast_id: str, at_minute: int = 0) -> InboundSms:
    return REPLY.model_copy(update={"message": text, "cast_message_id": cast_id,
                                    "received_at": datetime.fromtimestamp(
                                        NOW + 60 * at_minute, UTC)})


def dnd_bodies(ghl: FakeGhl) -> list[dict[str, object]]:
    return [json.loads(r.content)["dndSettings"]["SMS"] for r in ghl.requests
            if r.method == "PUT"]


@pytest.mark.parametrize("text", ["STOP", "  stop \n", "Unsubscribe", "QUIT", "stopall"])
async def test_an_opt_out_reply_sets_dnd_suppresses_and_is_still_shown(text: str) -> None:
    ghl, suppressions = FakeGhl(), MemorySuppressions()
    worker, _, _ = delivery(ghl, numbers=LOC1, suppressions=suppressions)
    assert await worker.process(reply(text, "CASTSTOP"), attempt=1) == Done()
    assert await suppressions.opted_out("loc1", PERSON)
    assert not await suppressions.opted_out("loc2", PERSON)  # one location's opt-out only
    # DND before the message: setting it twice is harmless, adding the reply twice is not.
    assert ghl.paths() == ["/contacts/upsert", "/contacts/contact1",
                           "/conversations/messages/inbound"]
    [dnd] = dnd_bodies(ghl)
    assert dnd["status"] == "active"
    assert dnd["code"] == text.strip().upper()
    assert json.loads(ghl.requests[-1].content)["message"] == text


@pytest.mark.parametrize("text", ["STOP please", "Stop by later?", "STOP STOP", "S T O P"])
async def test_only_a_whole_reply_of_an_opt_out_word_counts(text: str) -> None:
    ghl, suppressions = FakeGhl(), MemorySuppressions()
    worker, _, _ = delivery(ghl, numbers=LOC1, suppressions=suppressions)
    assert await worker.process(reply(text, "CASTX"), attempt=1) == Done()
    assert not await suppressions.opted_out("loc1", PERSON)
    assert dnd_bodies(ghl) == []


async def test_start_undoes_stop() -> None:
    ghl, suppressions = FakeGhl(), MemorySuppressions()
    worker, _, _ = delivery(ghl, numbers=LOC1, suppressions=suppressions)
    await worker.process(reply("STOP", "CASTSTOP"), attempt=1)
    await worker.process(reply("start", "CASTSTART", at_minute=1), attempt=1)
    assert not await suppressions.opted_out("loc1", PERSON)
    assert [d["status"] for d in dnd_bodies(ghl)] == ["active", "inactive"]


async def test_replies_handled_out_of_order_leave_the_latest_change_in_force() -> None:
    ghl, suppressions = FakeGhl(), MemorySuppressions()
    worker, _, _ = delivery(ghl, numbers=LOC1, suppressions=suppressions)
    await worker.process(reply("START", "CASTSTART", at_minute=1), attempt=1)
    await worker.process(reply("STOP", "CASTSTOP", at_minute=0), attempt=1)
    assert not await suppressions.opted_out("loc1", PERSON)
    # The DND written is the state in force, not the word of the late reply.
    assert [d["status"] for d in dnd_bodies(ghl)] == ["inactive", "inactive"]


async def test_the_operator_adds_words_in_their_language() -> None:
    ghl, suppressions = FakeGhl(), MemorySuppressions()
    words = ConsentWords.with_extra(opt_out=["HINTO"], opt_in=["Simula"])
    worker, _, _ = delivery(ghl, numbers=LOC1, suppressions=suppressions, words=words)
    await worker.process(reply("hinto", "CASTH"), attempt=1)
    assert await suppressions.opted_out("loc1", PERSON)
    await worker.process(reply("SIMULA", "CASTS", at_minute=1), attempt=1)
    assert not await suppressions.opted_out("loc1", PERSON)


def test_a_word_cannot_both_opt_out_and_opt_in() -> None:
    with pytest.raises(ValueError, match="both opt out and opt in: start"):
        ConsentWords.with_extra(opt_out=["Start"])


async def test_a_refused_dnd_still_suppresses_and_shows_the_reply() -> None:
    ghl = FakeGhl(dnd=[(422, {"message": ["dndSettings.SMS.status must be one of …"]})])
    suppressions = MemorySuppressions()
    worker, _, _ = delivery(ghl, numbers=LOC1, suppressions=suppressions)
    before = DND_NOT_SET._value.get()
    assert await worker.process(reply("STOP", "CASTSTOP"), attempt=1) == Done()
    assert await suppressions.opted_out("loc1", PERSON)
    assert ghl.paths()[-1] == "/conversations/messages/inbound"
    assert DND_NOT_SET._value.get() == before + 1


async def test_a_dnd_that_fails_for_now_is_retried_before_the_reply_is_added() -> None:
    ghl = FakeGhl(dnd=[(503, {"message": "unavailable"})])
    suppressions = MemorySuppressions()
    worker, _, _ = delivery(ghl, numbers=LOC1, suppressions=suppressions)
    assert isinstance(await worker.process(reply("STOP", "CASTSTOP"), attempt=1), Retry)
    assert "/conversations/messages/inbound" not in ghl.paths()
    assert await worker.process(reply("STOP", "CASTSTOP"), attempt=2) == Done()
    assert ghl.paths().count("/conversations/messages/inbound") == 1


# --- Cast's own opt-out list ----------------------------------------------------------------

class CastOptOutPages:
    """`GET /api/v1/account/unsubscribed`, paged as Cast pages it."""

    def __init__(self, numbers: list[tuple[str, str | None]] | None) -> None:
        self.numbers = numbers
        self.offsets: list[int] = []

    async def unsubscribed(self, *, api_key: str, offset: int = 0,
                           limit: int = 500) -> CastUnsubscribed | None:
        self.offsets.append(offset)
        if self.numbers is None:
            return None
        page = self.numbers[offset:offset + 2]  # small pages, to read several
        return CastUnsubscribed(total=len(self.numbers), unsubscribed=[
            CastOptOut(number=n, sender_id=s) for n, s in page])


async def test_casts_opt_out_list_is_copied_page_by_page_and_lifted_when_gone() -> None:
    suppressions = MemorySuppressions()
    cast = CastOptOutPages([("09171234567", None), ("09181234567", "PROMO"),
                            ("not a number", None)])
    assert await sync_cast_opt_outs(cast, suppressions, "cast_key", "acct1", 10.0) == 2
    assert cast.offsets == [0, 2]
    person = PhMobile.parse("09171234567")
    assert await suppressions.why_suppressed("loc1", person, account="acct1",
                                             sender_id="ANY") == "cast"
    assert await suppressions.why_suppressed("loc1", person, account="acct2",
                                             sender_id="ANY") is None
    cast.numbers = [("09181234567", "PROMO")]
    await sync_cast_opt_outs(cast, suppressions, "cast_key", "acct1", 20.0)
    assert await suppressions.why_suppressed("loc1", person, account="acct1",
                                             sender_id="ANY") is None


async def test_an_api_without_the_list_copies_nothing() -> None:
    suppressions = MemorySuppressions()
    assert await sync_cast_opt_outs(CastOptOutPages(None), suppressions, "k", "a", 1.0) == 0
