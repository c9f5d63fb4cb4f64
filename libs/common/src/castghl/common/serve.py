"""Run a service's ASGI app the way every service runs: one uvicorn process, explicit stack.

One process per container, scaled with replicas (uvicorn `--workers` on the asyncio loop
is ~10x slower: its listener never sets TCP_NODELAY); uvloop and httptools named
explicitly, because an implicit default changes silently with what happens to be
installed. The HTTP limits are set on purpose; docs/deploy.md, "Gateway limits", gives
the numbers and why.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import socket
from typing import Final

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

STARTUP_FAILURE = 3  # uvicorn's own exit status when the app did not start
# A request head (request line and headers) must arrive whole within this, and be no
# larger than this; GHL's and Cast's are well under 4 KiB.
HEAD_TIMEOUT_SECONDS: Final = 10.0
MAX_HEAD_BYTES: Final = 16 * 1024
# Idle keep-alive: longer than the reverse proxy's own (deploy/Caddyfile: 60 s), so the
# proxy, not us, closes an idle upstream connection and never reuses one we just closed.
KEEP_ALIVE_SECONDS: Final = 75


def freeze_survivors() -> None:
    """Move every object alive now out of the garbage collector's reach.

    Called once start-up is over: what exists then (modules, the app, its broker and
    database connections) lives as long as the process, and a full collection that
    rescans it stops every request in flight. Measured (make bench): gateway p99 at
    concurrency 50 fell from ~71 ms to ~43 ms, every request having waited out 55-60 ms
    pauses; bench/README.md has the current figures.
    """
    gc.collect()
    gc.freeze()


class BoundedHeads(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, with every request head bounded in time and size.

    uvicorn arms no timer until after a first response and bounds no request head, so a
    client trickling a head a byte at a time (slow-loris) holds its connection for ever.
    Here a connection whose head is not whole within HEAD_TIMEOUT_SECONDS is answered 408
    and closed; a head over MAX_HEAD_BYTES, 431. Bodies are the app's to time (the
    gateway's webhooks: `WebhookApp`), except the rest of one answered before it was all
    in (a 413): uvicorn reads it to throw it away, for at most HEAD_TIMEOUT_SECONDS."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._rest_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._body_done = True
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        self._rest_done()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        waiting = self._head_timer is not None
        super().data_received(data)
        if waiting and self._head_timer is not None:  # still no whole head
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(b"431 Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._await_head()

    def on_headers_complete(self) -> None:
        self._head_done()
        self._body_done = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._body_done = True
        self._rest_done()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._body_done and not self.transport.is_closing():
            self._rest_timer = self.loop.call_later(HEAD_TIMEOUT_SECONDS, self.transport.close)

    def _rest_done(self) -> None:
        if self._rest_timer is not None:
            self._rest_timer.cancel()
            self._rest_timer = None

    def _await_head(self) -> None:
        self._head_done()
        self._head_timer = self.loop.call_later(
            HEAD_TIMEOUT_SECONDS, self._refuse, b"408 Request Timeout")

    def _head_done(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer, self._head_bytes = None, 0

    def _refuse(self, status: bytes) -> None:
        self._head_done()
        if self.transport.is_closing() or (self.cycle and not self.cycle.response_complete):
            return  # a response is on its way on this connection: let it finish
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nconnection: close\r\n"
                             b"content-length: 0\r\n\r\n")
        self.transport.close()


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # After the lifespan start-up, so the connections it opened are frozen too.
        freeze_survivors()


def config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    fast = importlib.util.find_spec("uvloop") is not None
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if fast else "asyncio",
        http=BoundedHeads,
        log_config=None,  # our JSON logging is already configured
        access_log=False,  # our own lines, with messageId, where they are worth their cost
        timeout_graceful_shutdown=30,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        server_header=False,
    )


def serve(app: ASGIApp, host: str, port: int) -> None:
    server = _Server(config(app, host, port))
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
