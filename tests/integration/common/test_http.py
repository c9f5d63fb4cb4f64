"""`castghl.common.http`: httpx on asyncio transports, against a real HTTP/1.1 server on
this machine — keep-alive, a server that hangs up, timeouts, refusals, TLS, big bodies —
on asyncio's loop and on uvloop, which the services run on."""

from __future__ import annotations

import asyncio
import datetime
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

from castghl.common.http import pooled_client

from .conftest import eventually

BIG = 1_000_000


@dataclass
class Server:
    """Answers `GET /n` with n bytes, `GET /slow` never, `GET /bye` by closing the
    connection once answered, and `POST /echo` with the body's length and last byte;
    counts the connections it accepted."""

    url: str = ""
    connections: int = 0
    open: list[asyncio.StreamWriter] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open.append(writer)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                path = head.split(b" ", 2)[1].decode()
                if path == "/slow":
                    await asyncio.Event().wait()  # until the test ends
                body = b"x" * int(path[1:]) if path[1:].isdigit() else b"ok"
                if path == "/echo":
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    sent = await reader.readexactly(length)
                    body = b"%d %s" % (length, sent[-1:])
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


async def _until_hung_up(http: httpx.AsyncClient) -> None:
    """Until the client has seen the server close every pooled connection (a condition,
    not a time: on a busy machine the close may take a while to arrive)."""
    pool = http._transport._pool  # type: ignore[attr-defined]
    await eventually(lambda: all(connection.has_expired() for connection in pool.connections),
                     "the client to see the server's hang-up")


async def test_calls_reuse_one_kept_alive_connection(server: Server) -> None:
    async with pooled_client(4) as http:
        answers = [await http.get(f"{server.url}/ok") for _ in range(5)]
    assert [answer.text for answer in answers] == ["ok"] * 5
    assert server.connections == 1


async def test_a_connection_the_server_closed_is_not_used_again(server: Server) -> None:
    async with pooled_client(4) as http:
        assert (await http.get(f"{server.url}/ok")).text == "ok"
        server.hang_up_all()
        await _until_hung_up(http)
        assert (await http.get(f"{server.url}/ok")).text == "ok"
        assert (await http.get(f"{server.url}/bye")).text == "ok"
        assert (await http.get(f"{server.url}/ok")).text == "ok"
    assert server.connections == 3


async def test_request_bodies_small_and_big_arrive_whole(server: Server) -> None:
    async with pooled_client(2) as http:
        small = await http.post(f"{server.url}/echo", content=b"hello")
        big = await http.post(f"{server.url}/echo", content=b"y" * 300_000 + b"z")
        after = await http.post(f"{server.url}/echo", json={"to": "+639171234567"})
    assert (small.text, big.text) == ("5 o", "300001 z")
    assert after.text == "22 }"  # {"to":"+639171234567"}
    assert server.connections == 1


async def test_a_big_body_arrives_whole(server: Server) -> None:
    async with pooled_client(2) as http:
        answer = await http.get(f"{server.url}/{BIG}")
    assert len(answer.content) == BIG


async def test_a_slow_answer_is_a_read_timeout(server: Server) -> None:
    async with pooled_client(2, timeout=httpx.Timeout(5.0, read=0.2)) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"{server.url}/slow")


async def test_a_refused_connection_is_a_connect_error() -> None:
    listening = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    listening.close()
    await listening.wait_closed()
    async with pooled_client(2) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/ok")


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
        async with pooled_client(2, verify=trusting) as http:
            answers = [await http.get(f"{served.url}/ok") for _ in range(3)]
            assert answers[0].extensions["network_stream"].get_extra_info("ssl_object")
        async with pooled_client(2) as doubting:  # the system's trust store: refused
            with pytest.raises(httpx.ConnectError):
                await doubting.get(f"{served.url}/ok")
    assert [answer.text for answer in answers] == ["ok"] * 3
    assert served.connections == 1  # kept alive; the refused handshake never got this far


SCENARIOS = [test_calls_reuse_one_kept_alive_connection,
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
