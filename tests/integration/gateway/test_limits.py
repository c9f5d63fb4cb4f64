"""The gateway's HTTP limits on a real socket: a crowd of clients trickling bytes
(slow-loris) is cut off in time, and healthy webhooks are answered meanwhile."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import pytest

from castghl.sandbox.slowloris import cut_off, trickle

from .conftest import RunningGateway
from .test_provider_outbound import PATH, webhook

TRICKLERS = 200
# Seconds, for the head and body timeouts where a test waits for them to strike. Where
# an answer must come before them (413), they stay as deployed: a crowd of 200 on a
# loaded machine can hold the event loop longer than a short limit, and the timer would
# answer first.
SHORT_LIMIT = 3.0


def short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("castghl.common.serve.HEAD_TIMEOUT_SECONDS", SHORT_LIMIT)
    monkeypatch.setattr("castghl.gateway.intake.BODY_TIMEOUT_SECONDS", SHORT_LIMIT)


async def crowd(url: str, start: bytes, stop: asyncio.Event) -> list[asyncio.Task[bytes]]:
    where = urlsplit(url)
    return [asyncio.create_task(trickle(where.hostname or "127.0.0.1", where.port or 80,
                                        start, stop)) for _ in range(TRICKLERS)]


async def healthy_webhooks(gateway: RunningGateway, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        codes = []
        for i in range(n):
            body = gateway.body(**webhook(messageId=f"healthy-{i}"))
            answer = await client.post(PATH, content=body, headers=gateway.signer.headers(body))
            codes.append(answer.status_code)
        return codes


@pytest.mark.parametrize(("start", "answer"), [
    (b"POST " + PATH.encode() + b" HTTP/1.1\r\nhost: gw\r\nx-slow: ", b"408"),
    (b"POST " + PATH.encode() + b" HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
     b"content-length: 100000\r\n\r\n{", b"413"),
    (b"POST " + PATH.encode() + b" HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
     b"content-length: 60000\r\n\r\n{", b"408"),
], ids=["trickled-head", "declared-too-large", "trickled-body"])
async def test_tricklers_are_cut_off_and_healthy_webhooks_answered_meanwhile(
        gateway: RunningGateway, start: bytes, answer: bytes,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if answer == b"408":
        short_limits(monkeypatch)
    stop = asyncio.Event()
    slow = await crowd(gateway.url, start, stop)
    try:
        assert await healthy_webhooks(gateway, 20) == [200] * 20
        answers = await asyncio.wait_for(asyncio.gather(*slow), 60)
    finally:
        stop.set()
    assert cut_off(answers, answer), {got[:40] for got in answers}


async def test_an_oversized_request_head_gets_431(gateway: RunningGateway) -> None:
    stop = asyncio.Event()
    head = b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-big: " + b"a" * 20_000
    where = urlsplit(gateway.url)
    got = await asyncio.wait_for(trickle(where.hostname or "127.0.0.1", where.port or 80, head,
                                         stop), 60)
    assert got.startswith(b"HTTP/1.1 431")
