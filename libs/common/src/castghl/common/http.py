"""Pooled HTTP clients for the upstreams, on the event loop's own transports.

httpx runs its connections through httpcore's AnyIO backend, and that backend costs more
than the calls it carries when a pool is large: before every request the pool asks each
idle connection whether the server closed it, which AnyIO answers by building a table of
socket attributes and polling the socket — one `poll` system call per idle connection
per request (64 of them for the Cast lane) — and every read and write opens a cancel
scope. Measured with py-spy over a burst, AnyIO was 14 % of the sender's CPU
(bench/README.md, "Cost per message").

`AsyncioBackend` gives httpcore streams over asyncio transports instead: a protocol
buffers what arrives, so "did the server close it" is a field, not a system call, and
timeouts are the loop's own. Everything above it — httpx's client, httpcore's pool and
HTTP/1.1, their errors — is unchanged.
"""
# The `timeout` arguments are httpcore's network interface, not a choice made here.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

import httpcore
import httpx

# A response body arriving faster than it is read is held up to this much; then the
# socket is paused until it is read (bodies here are a few kB).
READ_BUFFER_LIMIT: Final = 256 * 1024
# A request held back to go in one write, up to this size (JSON bodies here are small).
HELD_WRITE_LIMIT: Final = 64 * 1024


def pooled_client(connections: int, *, verify: ssl.SSLContext | bool = True,
                  **options: Any) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` keeping alive up to `connections` connections (httpx keeps
    20 by default and closes the rest after each call: a new TCP or TLS handshake per call
    once more are in flight), on `AsyncioBackend`. `verify` is the transport's: a client
    given its own transport ignores its own TLS options."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    transport = httpx.AsyncHTTPTransport(limits=limits, verify=verify)
    # httpx builds the pool and does not take a backend: give its pool ours. Checked
    # here so that a release of httpx that renames the field fails at start, loudly.
    pool = transport._pool
    if not isinstance(getattr(pool, "_network_backend", None), httpcore.AsyncNetworkBackend):
        raise TypeError("httpx's connection pool changed: castghl.common.http needs its "
                        "network backend")
    pool._network_backend = AsyncioBackend()
    return httpx.AsyncClient(transport=transport, **options)


class _Connection(asyncio.Protocol):
    """What arrived on one connection and what became of it, kept by the event loop."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.closed = False  # the server closed its side, or the connection is gone
        self.error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are asyncio transports by interface, not by class.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) > READ_BUFFER_LIMIT and self.transport is not None:
            self.transport.pause_reading()
        _wake(self._waiter)

    def eof_received(self) -> bool:
        self.closed = True
        _wake(self._waiter)
        return False  # close our side too: HTTP/1.1 has nothing to say after the server

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        _wake(self._waiter)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        _wake(self._waiter)

    async def readable(self, timeout: float | None) -> None:
        await self._until(lambda: bool(self.received) or self.closed, timeout)

    def take(self, max_bytes: int) -> bytes:
        data = bytes(self.received[:max_bytes])
        del self.received[:max_bytes]
        if self.transport is not None and len(self.received) <= READ_BUFFER_LIMIT:
            self.transport.resume_reading()
        return data

    async def drained(self, timeout: float | None) -> None:
        await self._until(lambda: not self._paused or self.closed, timeout)

    async def _until(self, ready: Callable[[], bool], timeout: float | None) -> None:
        """Wait for `ready()`, woken by whatever the loop delivers (httpcore reads or
        writes one at a time per connection, so one waiter is enough)."""
        if ready():
            return
        async with asyncio.timeout(timeout):
            while not ready():
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """A request's head and body are written as httpcore hands them over, in two writes;
    they are held and sent in one system call when the answer is first read (a send is
    a good share of a small call's cost), or at once past HELD_WRITE_LIMIT."""

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection
        self._held: list[bytes] = []
        self._held_bytes = 0

    @property
    def transport(self) -> asyncio.Transport:
        assert self.connection.transport is not None
        return self.connection.transport

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        connection = self.connection
        if self._held:
            await self._flush(timeout)
        try:
            await connection.readable(timeout)
        except TimeoutError:
            raise httpcore.ReadTimeout("no answer in time") from None
        if connection.received:
            return connection.take(max_bytes)
        if connection.error is not None:
            raise httpcore.ReadError(str(connection.error)) from connection.error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._held.append(buffer)
        self._held_bytes += len(buffer)
        if self._held_bytes > HELD_WRITE_LIMIT:
            await self._flush(timeout)

    async def _flush(self, timeout: float | None) -> None:
        held = b"".join(self._held)
        self._held.clear()
        self._held_bytes = 0
        if self.connection.closed or self.transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self.transport.write(held)
        try:
            await self.connection.drained(timeout)
        except TimeoutError:
            raise httpcore.WriteTimeout("the request could not be sent in time") from None

    async def aclose(self) -> None:
        self.transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                secure = await loop.start_tls(self.transport, self.connection, ssl_context,
                                              server_hostname=server_hostname)
        except TimeoutError:
            self.transport.close()
            raise httpcore.ConnectTimeout("the TLS handshake took too long") from None
        except (OSError, ssl.SSLError) as exc:
            self.transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        if secure is None:  # the connection closed during the handshake
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        self.connection.transport = secure
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # Asked of every idle pooled connection before each request: has the server
            # closed it (or sent something unasked)?
            return bool(self.connection.received) or self.connection.closed
        if info == "client_addr":
            return self.transport.get_extra_info("sockname")
        if info == "server_addr":
            return self.transport.get_extra_info("peername")
        if info in {"ssl_object", "socket"}:
            return self.transport.get_extra_info(info)
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        transport = await self._connect(lambda loop: loop.create_connection(
            _Connection, host, port, local_addr=local), timeout)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if sock.family in {socket.AF_INET, socket.AF_INET6}:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._stream(transport)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        transport = await self._connect(
            lambda loop: loop.create_unix_connection(_Connection, path), timeout)
        return self._stream(transport)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    @staticmethod
    async def _connect(open_connection: Any, timeout: float | None) -> asyncio.BaseTransport:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await open_connection(loop)
        except TimeoutError:
            raise httpcore.ConnectTimeout("no connection in time") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        return transport  # type: ignore[no-any-return]

    @staticmethod
    def _stream(transport: asyncio.BaseTransport) -> AsyncioStream:
        protocol = transport.get_protocol()
        assert isinstance(protocol, _Connection)
        return AsyncioStream(protocol)
