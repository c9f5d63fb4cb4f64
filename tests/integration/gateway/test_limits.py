"""The gateway's HTTP limits on a real socket: a crowd of clients trickling bytes
(slow-loris) is cut off in time, and healthy webhooks are answered meanwhile."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import pytest

from .conftest import RunningGateway
from .test_provider_outbound import PATH, webhook

TRICKLERS = 200
SHORT_LIMIT = 1.0  # seconds, for the head and body timeouts of these tests


@pytest.fixture(autouse=True)
def short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("castghl.common.serve.HEAD_TIMEOUT_SECONDS", SHORT_LIMIT)
    monkeypatch.setattr("castghl.gateway.intake.BODY_TIMEOUT_SECONDS", SHORT_LIMIT)


RESET = b"(reset)"


async def trickle(url: str, start: bytes, stop: asyncio.Event) -> bytes:
    """Send `start`, then a byte every 0.2 s until the server answers and closes (what it
    answered), or `stop` is set (b""). A server closing a socket with bytes unread resets
    it, which can drop its answer on the way: RESET then."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(start)
        while not stop.is_set():
            try:
                answer = await asyncio.wait_for(reader.read(4096), 0.2)
            except TimeoutError:
                writer.write(b"x")
                continue
            return answer + await reader.read()  # the answer, then the close
        return b""
    except ConnectionResetError:
        return RESET
    finally:
        writer.close()


async def healthy_webhooks(gateway: RunningGateway, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        codes = []
        for i in range(n):
            body = gateway.body(**webhook(messageId=f"healthy-{i}"))
            answer = await client.post(PATH, content=body, headers=gateway.signer.headers(body))
            codes.append(answer.status_code)
        return codes


@pytest.mark.parametrize(("start", "answer"), [
    (b"POST " + PATH.encode() + b" HTTP/1.1\r\nhost: gw\r\nx-slow: ", b"HTTP/1.1 408"),
    (b"POST " + PATH.encode() + b" HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
     b"content-length: 100000\r\n\r\n{", b"HTTP/1.1 413"),
    (b"POST " + PATH.encode() + b" HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
     b"content-length: 60000\r\n\r\n{", b"HTTP/1.1 408"),
], ids=["trickled-head", "declared-too-large", "trickled-body"])
async def test_tricklers_are_cut_off_and_healthy_webhooks_answered_meanwhile(
        gateway: RunningGateway, start: bytes, answer: bytes) -> None:
    stop = asyncio.Event()
    crowd = [asyncio.create_task(trickle(gateway.url, start, stop)) for _ in range(TRICKLERS)]
    try:
        assert await healthy_webhooks(gateway, 20) == [200] * 20
        answers = await asyncio.wait_for(asyncio.gather(*crowd), 60)
    finally:
        stop.set()
    assert all(got.startswith(answer) or got == RESET for got in answers), {
        got[:40] for got in answers}
    assert any(got.startswith(answer) for got in answers)


async def test_an_oversized_request_head_gets_431(gateway: RunningGateway) -> None:
    stop = asyncio.Event()
    head = b"GET /healthz HTTP/1.1\r\nhost: gw\r\nx-big: " + b"a" * 20_000
    got = await asyncio.wait_for(trickle(gateway.url, head, stop), 60)
    assert got.startswith(b"HTTP/1.1 431")
