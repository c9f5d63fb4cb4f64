"""`castghl.common.http`: httpx's client on our HTTP/1.1 transport, against a real server
on this machine — keep-alive and its race, a server that hangs up, every way an answer is
framed, a bounded pool, timeouts, refusals, TLS, big bodies — on asyncio's loop and on
uvloop, which the services run on."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from castghl.common.http import Http11Transport, Upstream, pooled_upstream

from .conftest import eventually

BIG = 1_000_000


# Answers written as they are, for the paths that test how an answer may be framed.
RAW_ANSWERS = {
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2;note=x\r\nhe\r\n3\r\nllo\r\n0\r\nX-Trailer: 1\r\n\r\n",
    "/continue": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/nocontent": b"HTTP/1.1 204 No Content\r\n\r\n",
    "/close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "/garbage": b"SPDY/3 fine thanks\r\n\r\n",
    "/gzip": b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s"
             % (len(gzip.compress(b'{"ok":true}')), gzip.compress(b'{"ok":true}')),
    "/cookie": b"HTTP/1.1 200 OK\r\nSet-Cookie: tenant=a; Path=/\r\nContent-Length: 2\r\n\r\nok",
}


@dataclass
class Server:
    """Answers `GET /n` with n bytes, `GET /slow` never, `GET /wait` once `go` is set,
    `GET /bye` by closing the
    connection once answered, `/first-only` only as a connection's first request (later
    ones find it closed: the keep-alive race, every time), `/unframed` with no length,
    closing to end it, the paths of RAW_ANSWERS as written there, and `POST /echo` with
    the body's length and last byte; counts the connections it accepted and the requests
    it read."""

    url: str = ""
    connections: int = 0
    requests: int = 0
    heads: list[bytes] = field(default_factory=list)
    go: asyncio.Event = field(default_factory=asyncio.Event)  # `/wait` answers once set
    open: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open.append(writer)
        answered = 0
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                self.heads.append(head)
                path = head.split(b" ", 2)[1].decode()
                if path == "/slow":
                    await asyncio.Event().wait()  # until the test ends
                if path == "/wait":
                    await self.go.wait()
                if path == "/first-only" and answered:
                    break
                answered += 1
                body = b"x" * int(path[1:]) if path[1:].isdigit() else b"ok"
                if path == "/echo":
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    sent = await reader.readexactly(length)
                    body = b"%d %s" % (length, sent[-1:])
                if path in RAW_ANSWERS:
                    writer.write(RAW_ANSWERS[path])
                elif path == "/unframed":
                    writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
                    break
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))
                await writer.drain()
                if path == "/bye":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client hung up, or the test is over
        finally:
            writer.close()

    def hang_up_all(self) -> None:
        for writer in self.open:
            writer.close()


async def _serve(tls: ssl.SSLContext | None = None) -> tuple[Server, asyncio.Server]:
    server = Server()
    listening = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    return server, listening


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    served, listening = await _serve()
    async with listening:
        yield served


async def _until_hung_up(http: Upstream) -> None:
    """Until the client has seen the server close every pooled connection (a condition,
    not a time: on a busy machine the close may take a while to arrive)."""
    transport = http.transport
    assert isinstance(transport, Http11Transport)
    await eventually(lambda: not any(connection.usable()
                                     for connection in transport.idle_connections()),
                     "the client to see the server's hang-up")


async def test_calls_reuse_one_kept_alive_connection(server: Server) -> None:
    async with pooled_upstream(4) as http:
        answers = [await http.request("GET", f"{server.url}/ok") for _ in range(5)]
    assert [answer.text for answer in answers] == ["ok"] * 5
    assert server.connections == 1


async def test_a_connection_the_server_closed_is_not_used_again(server: Server) -> None:
    async with pooled_upstream(4) as http:
        assert (await http.request("GET", f"{server.url}/ok")).text == "ok"
        server.hang_up_all()
        await _until_hung_up(http)
        assert (await http.request("GET", f"{server.url}/ok")).text == "ok"
        assert (await http.request("GET", f"{server.url}/bye")).text == "ok"
        assert (await http.request("GET", f"{server.url}/ok")).text == "ok"
    assert server.connections == 3


async def test_request_bodies_small_and_big_arrive_whole(server: Server) -> None:
    async with pooled_upstream(2) as http:
        small = await http.request("POST", f"{server.url}/echo", content=b"hello")
        big = await http.request("POST", f"{server.url}/echo", content=b"y" * 300_000 + b"z")
        after = await http.request("POST", f"{server.url}/echo", json={"to": "+639171234567"})
    assert (small.text, big.text) == ("5 o", "300001 z")
    assert after.text == "22 }"  # {"to":"+639171234567"}
    assert server.connections == 1


async def test_a_big_body_arrives_whole(server: Server) -> None:
    async with pooled_upstream(2) as http:
        answer = await http.request("GET", f"{server.url}/{BIG}")
    assert len(answer.content) == BIG


async def test_a_slow_answer_is_a_read_timeout(server: Server) -> None:
    async with pooled_upstream(2, timeout=httpx.Timeout(5.0, read=0.2)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.request("GET", f"{server.url}/slow")


async def test_a_refused_connection_is_a_connect_error() -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    async with pooled_upstream(2) as http:
        with pytest.raises(httpx.ConnectError):
            await http.request("GET", f"http://127.0.0.1:{port}/ok")


async def test_https_with_a_certificate_the_client_trusts(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    served, listening = await _serve(tls)
    async with listening:
        trusting = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        async with pooled_upstream(2, verify=trusting) as http:
            answers = [await http.request("GET", f"{served.url}/ok") for _ in range(3)]
        async with pooled_upstream(2) as doubting:  # the system's trust store: refused
            with pytest.raises(httpx.ConnectError):
                await doubting.request("GET", f"{served.url}/ok")
    assert [answer.text for answer in answers] == ["ok"] * 3
    assert served.connections == 1  # kept alive; the refused handshake never got this far


async def test_every_framing_of_an_answer(server: Server) -> None:
    async with pooled_upstream(2) as http:
        chunked = await http.request("GET", f"{server.url}/chunked")
        interim = await http.request("GET", f"{server.url}/continue")
        empty = await http.request("GET", f"{server.url}/nocontent")
        head = await http.request("HEAD", f"{server.url}/5")
        zipped = await http.request("GET", f"{server.url}/gzip")
        unframed = await http.request("GET", f"{server.url}/unframed")
    assert (chunked.text, interim.text, empty.content) == ("hello", "ok", b"")
    assert (empty.status_code, head.status_code, head.content) == (204, 200, b"")
    assert (zipped.json(), unframed.text) == ({"ok": True}, "until the end")
    assert server.connections == 2  # one kept alive throughout; `/unframed` ended its own


async def test_no_cookie_is_kept(server: Server) -> None:
    async with pooled_upstream(2) as http:
        await http.request("GET", f"{server.url}/cookie")
        await http.request("GET", f"{server.url}/ok")
    assert b"cookie" not in server.heads[1].lower()


async def test_connection_close_is_honoured(server: Server) -> None:
    async with pooled_upstream(2) as http:
        assert (await http.request("GET", f"{server.url}/close")).text == "ok"
        assert (await http.request("GET", f"{server.url}/ok")).text == "ok"
    assert server.connections == 2


async def test_what_is_not_http_is_a_protocol_error(server: Server) -> None:
    async with pooled_upstream(2) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.request("GET", f"{server.url}/garbage")
        assert (await http.request("GET", f"{server.url}/ok")).text == "ok"


async def test_a_header_with_a_line_break_is_never_sent(server: Server) -> None:
    async with pooled_upstream(2) as http:
        with pytest.raises(httpx.LocalProtocolError):
            await http.request("GET", f"{server.url}/ok", headers={"X-Token": "a\r\nX-Evil: 1"})
    assert server.requests == 0


async def test_the_keep_alive_race_replays_only_what_may_be_replayed(server: Server) -> None:
    url = f"{server.url}/first-only"
    async with pooled_upstream(1) as http:
        assert (await http.request("GET", url)).text == "ok"
        assert (await http.request("GET", url)).text == "ok"  # found closed unanswered: sent again
        keyed = await http.request("POST", url, content=b"{}", headers={"X-Idempotency-Key": "k-1"})
        assert keyed.text == "ok"
        with pytest.raises(httpx.RemoteProtocolError):  # a POST may have been acted on
            await http.request("POST", url, content=b"{}")
    # GET and keyed POST each found their connection closed and went again on a new one.
    assert (server.connections, server.requests) == (3, 6)


async def test_more_calls_than_connections_wait_their_turn(server: Server) -> None:
    async with pooled_upstream(2) as http:
        answers = await asyncio.gather(*(http.request("GET", f"{server.url}/ok")
                                         for _ in range(20)))
    assert [answer.text for answer in answers] == ["ok"] * 20
    assert server.connections <= 2


async def test_a_full_pool_is_a_pool_timeout_and_a_cancelled_call_frees_its_slot(
        server: Server) -> None:
    async with pooled_upstream(1, timeout=httpx.Timeout(5.0, pool=0.1)) as http:
        slow = asyncio.create_task(http.request("GET", f"{server.url}/slow"))
        await eventually(lambda: server.requests == 1, "the slow call to arrive")
        with pytest.raises(httpx.PoolTimeout):
            await http.request("GET", f"{server.url}/ok")
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert (await http.request("GET", f"{server.url}/ok")).text == "ok"
    assert server.connections == 2  # the interrupted connection was not used again


async def test_a_call_in_flight_when_the_client_closes_keeps_no_connection(
        server: Server) -> None:
    transport = Http11Transport(2)
    http = Upstream(transport)
    call = asyncio.create_task(http.request("GET", f"{server.url}/wait"))
    await eventually(lambda: server.requests == 1, "the call to arrive")
    await http.aclose()
    server.go.set()
    assert (await call).text == "ok"  # it finishes ...
    assert transport.idle_connections() == []  # ... and its connection is not kept


async def test_an_idle_connection_is_not_kept_past_its_time(server: Server) -> None:
    transport = Http11Transport(2, keepalive_seconds=0.0)
    async with Upstream(transport) as http:
        for _ in range(3):
            assert (await http.request("GET", f"{server.url}/ok")).text == "ok"
    assert server.connections == 3


SCENARIOS = [test_every_framing_of_an_answer,
             test_the_keep_alive_race_replays_only_what_may_be_replayed,
             test_more_calls_than_connections_wait_their_turn,
             test_calls_reuse_one_kept_alive_connection,
             test_a_connection_the_server_closed_is_not_used_again,
             test_request_bodies_small_and_big_arrive_whole,
             test_a_big_body_arrives_whole, test_a_slow_answer_is_a_read_timeout]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.__name__[5:])
def test_on_uvloop(scenario: Any) -> None:
    async def run() -> None:
        served, listening = await _serve()
        async with listening:
            await scenario(served)

    uvloop.run(run())


def test_refusals_and_https_on_uvloop(tmp_path: Path) -> None:
    async def run() -> None:
        await test_a_refused_connection_is_a_connect_error()
        await test_https_with_a_certificate_the_client_trusts(tmp_path)

    uvloop.run(run())
