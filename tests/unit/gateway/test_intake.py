"""The intake's ASGI front, driven directly: the body cap, who answers what, and how."""

from __future__ import annotations

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
    app = WebhookApp({PATH: route}, rest, CAP)
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
    sent = await call(WebhookApp({PATH: route}, rest, CAP), chunks, headers=headers)
    assert answer(sent) == (413, {"code": "body_too_large",
                                  "detail": f"body larger than {CAP} bytes"})
    assert route.calls == []


async def test_a_client_gone_mid_body_gets_no_answer_and_reaches_no_route() -> None:
    route = Recorder()
    assert await call(WebhookApp({PATH: route}, rest, CAP), [b'{"a":'],
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
    sent = await call(WebhookApp({PATH: Recorder(refuse=error)}, rest, CAP), [b"{}"])
    assert answer(sent) == (status, {"code": code, "detail": error.detail})


async def test_only_post_reaches_a_route_and_other_paths_go_to_the_rest() -> None:
    route = Recorder()
    app = WebhookApp({PATH: route}, rest, CAP)
    assert answer(await call(app, [b""], method="GET"))[0] == 405
    assert answer(await call(app, [b""], path="/healthz")) == (299, b"rest")
    assert route.calls == []
