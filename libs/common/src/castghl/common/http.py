"""Pooled HTTP/1.1 calls to the upstreams, on the event loop's own transports.

The sender's calls (Cast, GHL, the OAuth service) go through `Upstream`: httpx's request
and response types, its errors, and any httpx transport below (`httpx.MockTransport` in
unit tests), but not its client. What the client does around a call — merging URLs and
headers, the auth and redirect machinery, hooks, timers — cost ~175 µs of CPU per call on
a 2-core machine, as much as the call itself, and these upstreams need none of it
(bench/README.md, "Cost per message, a slower machine").

Below it, `Http11Transport` replaces httpx's default transport (httpcore's pool and h11).
Measured on a faster machine at the Cast lane's
concurrency, that transport cost about 500 µs of CPU per call against 130 µs for the
whole client layer above it: each time a call starts or ends, its pool checks every
connection against every queued request (337 `is_idle` checks per call with 32 calls in
flight), and h11 validates every header of every event (bench/README.md, "Cost per
message, a faster machine").

What the upstreams need of HTTP/1.1 is small, and it is all here: keep-alive connections
per origin up to a limit, waited for in turn; one write per request; answers framed by
Content-Length, chunked or by close; 1xx interim answers skipped; a connection that was
closed, idle too long, interrupted or told `Connection: close` is never used again; a
request that found its kept-alive connection closed before any answer goes again only
when that cannot act twice (an idempotent method, or an idempotency key).
"""
# The `timeout` arguments follow httpx's transport interface.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from json import dumps
from typing import Any, Final, cast

import httpx

# An idle connection is used again only within this many seconds: common servers close
# theirs after 5 s (uvicorn) or more, and a request written into a connection the server
# is closing is lost with no way to tell whether it arrived.
KEEPALIVE_SECONDS: Final = 4.0
# Answers here are a few kB: anything past these is refused, not buffered.
MAX_HEAD_BYTES: Final = 64 * 1024
MAX_ANSWER_BYTES: Final = 16 * 1024 * 1024
_NO_BODY_STATUSES: Final = frozenset({204, 304})
# Requests that may be sent again when a kept-alive connection turns out closed before any
# answer (RFC 9110 §9.2.2, RFC 9112 §9.3.1): idempotent methods, and any request that
# carries an idempotency key (every Cast send does).
_IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_IDEMPOTENCY_HEADERS: Final = ("idempotency-key", "x-idempotency-key")

Origin = tuple[bytes, str, int]


USER_AGENT: Final = "castghl"


class Upstream:
    """Calls to one upstream. Keeps no cookies: one upstream carries every tenant's calls,
    so a cookie one call was given (a CDN's, say) must never ride along on another
    location's; and follows no redirects (none of these APIs sends one on purpose).
    `timeout` as httpx takes it, for every phase of a call."""

    def __init__(self, transport: httpx.AsyncBaseTransport, *,
                 timeout: httpx.Timeout | float = 5.0) -> None:
        self.transport = transport
        self._timeouts = httpx.Timeout(timeout).as_dict()

    async def request(self, method: str, url: httpx.URL | str, *,
                      headers: Mapping[str, str] | None = None, json: Any = None,
                      content: bytes | None = None, params: Mapping[str, str] | None = None,
                      timeout: float | None = None) -> httpx.Response:
        """Send one request and read its whole answer; httpx's transport errors as raised.
        `json` is sent as compact UTF-8 JSON; `timeout` overrides the upstream's."""
        fields = {"User-Agent": USER_AGENT, **(headers or {})}
        if json is not None:
            content = dumps(json, ensure_ascii=False, separators=(",", ":"),
                            allow_nan=False).encode()
            fields["Content-Type"] = "application/json"
        if params:
            url = httpx.URL(url).copy_merge_params(params)
        timeouts = self._timeouts if timeout is None else httpx.Timeout(timeout).as_dict()
        request = httpx.Request(method, url, headers=fields, content=content,
                                extensions={"timeout": timeouts})
        response = await self.transport.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        response.request = request
        return response

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> Upstream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


def pooled_upstream(connections: int, *, timeout: httpx.Timeout | float = 5.0,
                    verify: ssl.SSLContext | bool = True) -> Upstream:
    """An `Upstream` keeping alive up to `connections` connections per origin (httpx
    keeps 20 by default and closes the rest after each call: a new TCP or TLS handshake
    per call once more are in flight). `verify` as httpx takes it."""
    return Upstream(Http11Transport(connections, verify=verify), timeout=timeout)


class Http11Transport(httpx.AsyncBaseTransport):
    def __init__(self, connections: int, *, verify: ssl.SSLContext | bool = True,
                 keepalive_seconds: float = KEEPALIVE_SECONDS) -> None:
        if connections < 1:
            raise ValueError("a pool needs at least one connection")
        self._limit = connections
        self._keepalive = keepalive_seconds
        self._tls = verify if isinstance(verify, ssl.SSLContext) else (
            httpx.create_ssl_context(verify=verify))
        self._pools: dict[Origin, _Pool] = {}

    def idle_connections(self) -> list[_Connection]:
        """The connections kept alive for the next calls, every origin's."""
        return [connection for pool in self._pools.values() for connection in pool.idle]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(f"not an HTTP URL: {url}", request=request)
        origin = (scheme, url.host, url.port or (443 if scheme == b"https" else 80))
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(self._limit, self._keepalive)
        timeouts = request.extensions.get("timeout", {})
        head = _head(request)
        body = await request.aread()
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        replayable = request.method in _IDEMPOTENT_METHODS or any(
            name in request.headers for name in _IDEMPOTENCY_HEADERS)
        while True:
            connection = await pool.acquire(
                lambda: self._connect(origin, timeouts.get("connect"), request),
                timeouts.get("pool"), request)
            reused = connection.answered > 0
            reusable = False
            try:
                answer = await connection.exchange(head + body, request, timeouts)
                reusable = answer.reusable
                break
            except _Unanswered:
                # The server closed a kept-alive connection as this request went out (the
                # keep-alive race): nothing was answered, so a replayable request goes
                # again, on another connection. A new connection's failure is the server's.
                if not (reused and replayable):
                    raise
            finally:
                pool.release(connection, reusable)
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body,
                              extensions={"http_version": answer.version,
                                          "reason_phrase": answer.reason},
                              request=request)

    async def _connect(self, origin: Origin, timeout: float | None,
                       request: httpx.Request) -> _Connection:
        scheme, host, port = origin
        tls = self._tls if scheme == b"https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, protocol = await loop.create_connection(
                    _Connection, host, port, ssl=tls, server_hostname=host if tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout("no connection in time", request=request) from None
        except OSError as exc:  # refused, unreachable, TLS refused (ssl.SSLError)
            raise httpx.ConnectError(str(exc) or type(exc).__name__,
                                     request=request) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in {socket.AF_INET, socket.AF_INET6}:
            # Requests go in one write each; never hold one back for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return protocol

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close()


def _head(request: httpx.Request) -> bytes:
    """The request line and headers, refusing a header that would split the request."""
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), request.url.raw_path)]
    for name, value in request.headers.raw:
        if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
            raise httpx.LocalProtocolError(
                f"header {name.decode(errors='replace')!r} holds a line break", request=request)
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    return b"".join(lines)


class _Unanswered(httpx.RemoteProtocolError):
    """The connection ended before a byte of the answer arrived."""


class _Answer:
    __slots__ = ("body", "headers", "reason", "reusable", "status", "version")

    def __init__(self, version: bytes, status: int, reason: bytes,
                 headers: list[tuple[bytes, bytes]]) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = b""
        self.reusable = False


def _parse_head(head: bytes) -> _Answer:
    """An answer's status line and headers; ValueError if they are not HTTP/1.x."""
    lines = head.split(b"\r\n")
    version, status_text, *reason = lines[0].split(b" ", 2)
    if not version.startswith(b"HTTP/1.") or len(status_text) != 3:
        raise ValueError(lines[0])
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise ValueError(line)
        headers.append((name, value.strip(b" \t")))
    return _Answer(version, int(status_text), reason[0] if reason else b"", headers)


class _Pool:
    """One origin's connections: idle ones most recent last; callers past the limit wait
    in turn and are handed a connection, or the right to open one."""

    def __init__(self, limit: int, keepalive: float) -> None:
        self.limit = limit
        self.keepalive = keepalive
        self.open = 0
        self.closed = False  # the transport was closed: nothing goes back to idle
        self.idle: deque[_Connection] = deque()
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()

    async def acquire(self, connect: Callable[[], Any], timeout: float | None,
                      request: httpx.Request) -> _Connection:
        now = asyncio.get_running_loop().time()
        while self.idle and now - self.idle[0].idle_since > self.keepalive:
            self._discard(self.idle.popleft())
        while self.idle:
            connection = self.idle.pop()
            if connection.usable():
                return connection
            self._discard(connection)
        if self.open < self.limit:
            self.open += 1
            return await self._open(connect)
        waiter: asyncio.Future[_Connection | None] = (
            asyncio.get_running_loop().create_future())
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                handed = await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._hand_on(waiter.result())  # handed over just as this call gave up
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise httpx.PoolTimeout("no connection free in time", request=request) from None
            raise
        return handed if handed is not None else await self._open(connect)

    async def _open(self, connect: Callable[[], Any]) -> _Connection:
        """Open a connection on a slot already counted in `open`."""
        try:
            return cast(_Connection, await connect())
        except BaseException:
            self._hand_on(None)
            raise

    def release(self, connection: _Connection, reusable: bool) -> None:
        if reusable and connection.usable() and not self.closed:
            connection.idle_since = asyncio.get_running_loop().time()
            self._hand_on(connection)
        else:
            connection.close()
            self._hand_on(None)

    def _hand_on(self, connection: _Connection | None) -> None:
        """Give a connection, or its slot (None), to the first caller still waiting."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if connection is not None:
            self.idle.append(connection)
        else:
            self.open -= 1

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self.open -= 1

    def close(self) -> None:
        """Close the idle connections; those in use close when their call ends."""
        self.closed = True
        while self.idle:
            self._discard(self.idle.pop())


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: what arrived on it is kept by the event loop's callbacks,
    so "did the server close it" is a field, not a system call."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = bytearray()
        self.closed = False  # the server closed its side, or the connection is gone
        self.error: Exception | None = None
        self.idle_since = 0.0
        self.answered = 0  # answers read whole on this connection
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # -- the event loop's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are asyncio transports by interface, not by class.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received += data
        if len(self.received) > MAX_ANSWER_BYTES + MAX_HEAD_BYTES:
            self.error = httpx.RemoteProtocolError("the answer is too large")
            self.close()
        _wake(self._waiter)

    def eof_received(self) -> bool:
        self.closed = True
        _wake(self._waiter)
        return False  # close our side too: HTTP/1.1 has nothing to say after the server

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = self.error or exc
        _wake(self._waiter)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        _wake(self._waiter)

    # -- the request's side

    def usable(self) -> bool:
        """Still open, and nothing arrived unasked (which would be read as the next
        request's answer)."""
        return not self.closed and not self.received and self.transport is not None and (
            not self.transport.is_closing())

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request_bytes: bytes, request: httpx.Request,
                       timeouts: dict[str, float | None]) -> _Answer:
        """Send one request and read its whole answer. Raises httpx's transport errors;
        the caller closes the connection unless the answer says it may be reused."""
        if self.transport is None or not self.usable():
            raise httpx.WriteError("the connection is closed", request=request)
        self.transport.write(request_bytes)
        if self._paused:
            try:
                await self._until(lambda: not self._paused or self.closed,
                                  timeouts.get("write"))
            except TimeoutError:
                raise httpx.WriteTimeout("the request could not be sent in time",
                                         request=request) from None
        read = timeouts.get("read")
        while True:
            answer, start = await self._read_head(request, read)
            if not 100 <= answer.status < 200:
                break
            del self.received[:start]  # an interim answer (100 Continue): the real one follows
        await self._read_body(answer, start, request, read)
        self.answered += 1
        return answer

    async def _read_head(self, request: httpx.Request, read: float | None
                         ) -> tuple[_Answer, int]:
        while (end := self.received.find(b"\r\n\r\n")) < 0:
            if len(self.received) > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError("the answer's head is too large",
                                                request=request)
            await self._more(len(self.received), request, read, started=bool(self.received))
        try:
            return _parse_head(bytes(self.received[:end])), end + 4
        except ValueError:
            raise httpx.RemoteProtocolError("the answer is not HTTP/1.1",
                                            request=request) from None

    async def _read_body(self, answer: _Answer, start: int, request: httpx.Request,
                         read: float | None) -> None:
        fields: dict[bytes, bytes] = {}
        for name, value in answer.headers:
            key = name.lower()
            fields[key] = fields[key] + b"," + value if key in fields else value
        tokens = [token.strip() for token in fields.get(b"connection", b"").lower().split(b",")]
        keep_alive = (b"close" not in tokens if answer.version == b"HTTP/1.1"
                      else b"keep-alive" in tokens)
        if request.method == "HEAD" or answer.status in _NO_BODY_STATUSES:
            end = start
        elif b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            end = await self._read_chunked(answer, start, request, read)
        elif (length_text := fields.get(b"content-length")) is not None:
            lengths = {part.strip() for part in length_text.split(b",")}
            if len(lengths) != 1 or not (length := lengths.pop()).isdigit():
                raise httpx.RemoteProtocolError("the answer's Content-Length is not a number",
                                                request=request)
            if int(length) > MAX_ANSWER_BYTES:
                raise httpx.RemoteProtocolError("the answer is too large", request=request)
            end = start + int(length)
            while len(self.received) < end:
                await self._more(len(self.received), request, read, started=True)
            answer.body = bytes(self.received[start:end])
        else:  # framed by the server closing the connection
            while not self.closed:
                await self._more(len(self.received), request, read, started=True,
                                 until_closed=True)
            if self.error is not None:
                raise self._failure(request, started=True)
            end = len(self.received)
            answer.body = bytes(self.received[start:])
            keep_alive = False
        del self.received[:end]
        # Anything more, unasked, would be read as the next request's answer.
        answer.reusable = keep_alive and not self.received and not self.closed

    async def _read_chunked(self, answer: _Answer, start: int, request: httpx.Request,
                            read: float | None) -> int:
        body = bytearray()
        at = start
        while True:
            while (line_end := self.received.find(b"\r\n", at)) < 0:
                await self._more(len(self.received), request, read, started=True)
            size_text = bytes(self.received[at:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpx.RemoteProtocolError("a chunk's size is not a number",
                                                request=request) from None
            at = line_end + 2
            if size == 0:  # trailers, if any, then an empty line
                while (end := self.received.find(b"\r\n\r\n", at - 2)) < 0:
                    await self._more(len(self.received), request, read, started=True)
                answer.body = bytes(body)
                return end + 4
            if len(body) + size > MAX_ANSWER_BYTES:
                raise httpx.RemoteProtocolError("the answer is too large", request=request)
            while len(self.received) < at + size + 2:
                await self._more(len(self.received), request, read, started=True)
            if self.received[at + size:at + size + 2] != b"\r\n":
                raise httpx.RemoteProtocolError("a chunk does not end where its size says",
                                                request=request)
            body += self.received[at:at + size]
            at += size + 2

    async def _more(self, have: int, request: httpx.Request, timeout: float | None, *,
                    started: bool, until_closed: bool = False) -> None:
        """Wait until more than `have` bytes arrived; a close first is an error unless
        `until_closed` (the answer is framed by it)."""
        try:
            await self._until(lambda: len(self.received) > have or self.closed, timeout)
        except TimeoutError:
            raise httpx.ReadTimeout("no answer in time", request=request) from None
        if len(self.received) > have or until_closed:
            return
        raise self._failure(request, started=started)

    def _failure(self, request: httpx.Request, *, started: bool) -> httpx.TransportError:
        """Why the connection ended before the answer did."""
        if isinstance(self.error, httpx.RemoteProtocolError):
            return httpx.RemoteProtocolError(str(self.error), request=request)
        if self.error is not None and started:
            return httpx.ReadError(str(self.error) or type(self.error).__name__,
                                   request=request)
        if started:
            return httpx.RemoteProtocolError("the server closed the connection mid-answer",
                                             request=request)
        return _Unanswered("the server closed the connection without answering",
                           request=request)

    async def _until(self, ready: Callable[[], bool], timeout: float | None) -> None:
        """Wait for `ready()`, woken by whatever the loop delivers (one request at a time
        per connection, so one waiter is enough)."""
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
