"""The intake's ASGI front, driven directly: the body cap, who answers what, and how."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from castghl.common.errors import BridgeError, InvalidRequest
from castghl.gateway.intake import ACCEPTED, Headers, NotStored, WebhookApp

PATH = "/webhooks/test"
CAP = 1024


class Recorder:
    """A route that records what it got, and answers or refuses as told."""

    def __init__(self, refuse: BridgeError | None = None) -> None:
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.refuse = refuse

    async def __call__(self, headers: Headers, body: bytes) -> bytes:
        self.calls.append((dict(headers), body))
        if self.refuse is not None:
            raise self.refuse
        return ACCEPTED


def webhooks(route: Recorder, max_concurrent: int = 8) -> WebhookApp:
    return WebhookApp({PATH: route}, rest, max_body_bytes=CAP, max_concurrent=max_concurrent)


async def rest(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 299, "headers": []})
    await send({"type": "http.response.body", "body": b"rest"})


async def call(app: WebhookApp, chunks: Iterable[bytes], *, method: str = "POST",
               path: str = PATH, headers: list[tuple[bytes, bytes]] | None = None,
               disconnect: bool = False) -> list[Message]:
    scope = {"type": "http", "method": method, "path": path,
             "headers": headers or [(b"content-type", b"application/json")]}
    parts = list(chunks)
    inbox: list[Message] = [{"type": "http.request", "body": chunk,
                             "more_body": i < len(parts) - 1 or disconnect}
                            for i, chunk in enumerate(parts)]
    if disconnect:
        inbox.append({"type": "http.disconnect"})
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def answer(sent: list[Message]) -> tuple[int, Any]:
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, json.loads(body) if body and body != b"rest" else body


async def test_a_body_in_chunks_reaches_the_route_whole_with_its_headers() -> None:
    route = Recorder()
    app = webhooks(route)
    sent = await call(app, [b'{"a":', b'1}'], headers=[(b"x-ghl-signature", b"first"),
                                                      (b"x-ghl-signature", b"second")])
    assert answer(sent) == (200, {"status": "accepted"})
    assert route.calls == [({"x-ghl-signature": "first"}, b'{"a":1}')]


@pytest.mark.parametrize(
    ("chunks", "headers"),
    [
        pytest.param([b"x" * 600, b"x" * 600], None, id="chunked-no-length"),
        pytest.param([b"{}"], [(b"content-length", str(CAP + 1).encode())],
                     id="declared-length"),
    ],
)
async def test_an_oversized_body_is_refused_before_the_route(
        chunks: list[bytes], headers: list[tuple[bytes, bytes]] | None) -> None:
    route = Recorder()
    sent = await call(webhooks(route), chunks, headers=headers)
    assert answer(sent) == (413, {"code": "body_too_large",
                                  "detail": f"body larger than {CAP} bytes"})
    assert route.calls == []


async def test_a_client_gone_mid_body_gets_no_answer_and_reaches_no_route() -> None:
    route = Recorder()
    assert await call(webhooks(route), [b'{"a":'],
                      disconnect=True) == []
    assert route.calls == []


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        pytest.param(InvalidRequest("messageId is missing"), 400, "invalid_request",
                     id="bad-body"),
        pytest.param(NotStored("temporarily unable to accept webhooks"), 503, "not_stored",
                     id="not-stored"),
    ],
)
async def test_a_refusal_is_answered_by_the_error_family(error: BridgeError, status: int,
                                                         code: str) -> None:
    sent = await call(webhooks(Recorder(refuse=error)), [b"{}"])
    assert answer(sent) == (status, {"code": code, "detail": error.detail})


async def test_only_post_reaches_a_route_and_other_paths_go_to_the_rest() -> None:
    route = Recorder()
    app = webhooks(route)
    assert answer(await call(app, [b""], method="GET"))[0] == 405
    assert answer(await call(app, [b""], path="/healthz")) == (299, b"rest")
    assert route.calls == []


class Held(Recorder):
    """A route that holds every webhook until released."""

    def __init__(self, expect: int) -> None:
        super().__init__()
        self.expect, self.waiting = expect, 0
        self.all_in, self.release = asyncio.Event(), asyncio.Event()

    async def __call__(self, headers: Headers, body: bytes) -> bytes:
        self.waiting += 1
        if self.waiting == self.expect:
            self.all_in.set()
        await self.release.wait()
        return await super().__call__(headers, body)


async def test_beyond_the_cap_a_webhook_gets_503_with_retry_after_and_then_room_again(
        ) -> None:
    route = Held(expect=2)
    app = webhooks(route, max_concurrent=2)
    held = [asyncio.create_task(call(app, [b"{}"])) for _ in range(2)]
    await route.all_in.wait()
    sent = await call(app, [b"{}"])
    assert answer(sent)[0] == 503
    assert answer(sent)[1]["code"] == "gateway_busy"
    assert (b"retry-after", b"1") in sent[0]["headers"]
    route.release.set()
    assert [answer(await task)[0] for task in held] == [200, 200]
    assert app.in_hand == 0
    assert answer(await call(app, [b"{}"]))[0] == 200


async def test_a_body_that_does_not_arrive_in_time_gets_408(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("castghl.gateway.intake.BODY_TIMEOUT_SECONDS", 0.05)
    route = Recorder()
    stalled = asyncio.Event()  # never set: the rest of the body never comes

    async def receive() -> Message:
        if not stalled.is_set():
            stalled.set()
            return {"type": "http.request", "body": b'{"a":', "more_body": True}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": PATH, "headers": []}
    await webhooks(route)(scope, receive, send)
    assert answer(sent)[0] == 408
    assert answer(sent)[1]["code"] == "body_too_slow"
    assert route.calls == []
