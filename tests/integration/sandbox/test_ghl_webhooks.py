"""Webhooks the GHL simulator sends: signed bytes, retries, modes, app lifecycle events.

Signatures are checked with `cryptography` directly, never with project code: the
simulator is an independent oracle for our gateway's verifier.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from fastapi import FastAPI, Request, Response

from castghl.sandbox.server import free_port, serve_in_thread

# GHL's real webhook key (ghl.md §2): our simulator's signatures must NOT verify under it.
GHL_ED25519_PEM = b"""-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=
-----END PUBLIC KEY-----
"""
PHONE = "+639171234567"


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """A stand-in for our gateway's Delivery URL: keeps raw bytes and headers."""

    url: str = ""
    status: int = 200
    received: list[Received] = field(default_factory=list)
    on_receive: Callable[[], Awaitable[None]] | None = None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.received.append(Received(await request.body(), dict(request.headers)))
            if self.on_receive is not None:
                await self.on_receive()
            return Response(status_code=self.status)

        return app


@pytest.fixture(scope="module")
def _receiver_server() -> Iterator[Receiver]:
    receiver = Receiver()
    with serve_in_thread(receiver.app()) as url:
        receiver.url = f"{url}/hook"
        yield receiver


@pytest.fixture
def receiver(_receiver_server: Receiver, ghl_sim: Any) -> Receiver:
    _receiver_server.received.clear()
    _receiver_server.status = 200
    _receiver_server.on_receive = None
    ghl_sim.knobs.webhook_url = _receiver_server.url
    ghl_sim.knobs.app_webhook_url = _receiver_server.url
    return _receiver_server


async def _keys(client: httpx.AsyncClient) -> tuple[Ed25519PublicKey, RSAPublicKey]:
    keys = (await client.get("/_sandbox/keys")).json()
    ed = serialization.load_pem_public_key(keys["ed25519_public_pem"].encode())
    rsa = serialization.load_pem_public_key(keys["rsa_public_pem"].encode())
    assert isinstance(ed, Ed25519PublicKey)
    assert isinstance(rsa, RSAPublicKey)
    return ed, rsa


def _ed_verifies(key: Ed25519PublicKey, signature: str, raw: bytes) -> bool:
    try:
        key.verify(base64.b64decode(signature), raw)
    except InvalidSignature:
        return False
    return True


def _rsa_verifies(key: RSAPublicKey, signature: str, raw: bytes) -> bool:
    try:
        key.verify(base64.b64decode(signature), raw, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


async def test_outbound_webhook_carries_ghls_fields_signed_over_the_raw_bytes(
        ghl_sim: Any, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        answer = await client.post("/_sandbox/outbound", json={
            "phone": PHONE, "message": "Kumusta, Señora 👋",
            "attachments": ["https://cdn.example/a.png"]})
        ed_key, _ = await _keys(client)
    assert answer.status_code == 200
    sent = answer.json()
    assert [d["status_code"] for d in sent["deliveries"]] == [200]
    [got] = receiver.received
    assert got.body == sent["body"].encode("utf-8")
    # Compact, unescaped UTF-8 as JSON.stringify writes it.
    assert "Señora 👋".encode() in got.body
    assert b'":"' in got.body
    assert got.headers["content-type"] == "application/json"
    assert "x-wh-signature" not in got.headers
    assert _ed_verifies(ed_key, got.headers["x-ghl-signature"], got.body)

    payload = json.loads(got.body)
    assert payload["messageId"] == sent["messageId"]
    assert payload["contactId"] == sent["contactId"]
    assert payload["conversationId"] == sent["conversationId"]
    assert payload["webhookId"] == sent["webhookId"]
    assert payload["locationId"] == "loc_sandbox_1"
    assert payload["type"] == "SMS"
    assert payload["phone"] == PHONE
    assert payload["attachments"] == ["https://cdn.example/a.png"]
    assert payload["userId"] == "user_sandbox_1"
    assert payload["conversationProviderId"] == ghl_sim.knobs.conversation_provider_id
    stamped = datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 5


async def test_signature_fails_under_ghls_real_key_and_after_reserialising(
        ghl_sim: Any, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        await client.post("/_sandbox/outbound", json={"phone": PHONE, "message": "ñ"})
        ed_key, _ = await _keys(client)
    [got] = receiver.received
    signature = got.headers["x-ghl-signature"]
    ghl_key = serialization.load_pem_public_key(GHL_ED25519_PEM)
    assert isinstance(ghl_key, Ed25519PublicKey)
    assert not _ed_verifies(ghl_key, signature, got.body)
    reserialised = json.dumps(json.loads(got.body)).encode()
    assert reserialised != got.body
    assert not _ed_verifies(ed_key, signature, reserialised)


async def test_ed25519_key_is_sha256_of_the_signing_seed(ghl_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        for seed in ((await client.get("/_sandbox/config")).json()["signing_seed"],
                     "staging-seed"):
            await client.patch("/_sandbox/config", json={"signing_seed": seed})
            served, _ = await _keys(client)
            expected = Ed25519PrivateKey.from_private_bytes(
                hashlib.sha256(seed.encode()).digest()).public_key()
            raw = serialization.Encoding.Raw
            assert served.public_bytes(raw, serialization.PublicFormat.Raw) == \
                expected.public_bytes(raw, serialization.PublicFormat.Raw)


async def test_rsa_signatures_verify_with_the_simulators_rsa_key(ghl_sim: Any,
                                                                 receiver: Receiver) -> None:
    expected_headers = {"rsa": {"x-wh-signature"},
                        "both": {"x-wh-signature", "x-ghl-signature"}}
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        ed_key, rsa_key = await _keys(client)
        for mode, headers in expected_headers.items():
            ghl_sim.knobs.signature_mode = mode
            await client.post("/_sandbox/outbound", json={"phone": PHONE, "message": mode})
            got = receiver.received[-1]
            assert {h for h in got.headers if h.startswith("x-")} == headers, mode
            assert _rsa_verifies(rsa_key, got.headers["x-wh-signature"], got.body)
            if "x-ghl-signature" in headers:
                assert _ed_verifies(ed_key, got.headers["x-ghl-signature"], got.body)


async def test_broken_signature_modes_exercise_the_gateways_rejection_paths(
        ghl_sim: Any, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        ed_key, rsa_key = await _keys(client)
        for mode in ("none", "n/a", "garbage"):
            ghl_sim.knobs.signature_mode = mode
            await client.post("/_sandbox/outbound", json={"phone": PHONE, "message": mode})
    none, not_applicable, garbage = receiver.received
    assert "x-ghl-signature" not in none.headers
    assert "x-wh-signature" not in none.headers
    assert not_applicable.headers["x-ghl-signature"] == "N/A"
    assert not _ed_verifies(ed_key, garbage.headers["x-ghl-signature"], garbage.body)
    assert not _rsa_verifies(rsa_key, garbage.headers["x-wh-signature"], garbage.body)


async def test_retries_resend_identical_bytes_and_signatures(ghl_sim: Any,
                                                             receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        sent = (await client.post("/_sandbox/outbound", json={
            "phone": PHONE, "message": "again", "times": 3,
            "extra": {"undocumentedField": True}})).json()
        later = await client.post(f"/_sandbox/outbound/{sent['messageId']}/redeliver")
        messages = (await client.get("/_sandbox/messages")).json()
        [hook] = (await client.get("/_sandbox/webhooks")).json()
    assert len(hook["deliveries"]) == 4
    assert len(sent["deliveries"]) == 3
    assert later.status_code == 200
    assert len(receiver.received) == 4
    assert len({r.body for r in receiver.received}) == 1
    assert len({r.headers["x-ghl-signature"] for r in receiver.received}) == 1
    assert json.loads(receiver.received[0].body)["undocumentedField"] is True
    assert len(messages) == 1  # one message, delivered four times


async def test_delivery_outcomes_are_reported_not_raised(ghl_sim: Any, receiver: Receiver
                                                         ) -> None:
    receiver.status = 503
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        failing = (await client.post("/_sandbox/outbound", json={"phone": PHONE})).json()
        ghl_sim.knobs.webhook_url = f"http://127.0.0.1:{free_port()}/nobody-home"
        unreachable = (await client.post("/_sandbox/outbound", json={"phone": PHONE})).json()
        quiet = await client.post("/_sandbox/outbound", json={"phone": PHONE, "deliver": False})
        ghl_sim.knobs.webhook_url = None
        unset = await client.post("/_sandbox/outbound", json={"phone": PHONE})
    assert failing["deliveries"][0]["status_code"] == 503
    assert unreachable["deliveries"][0]["status_code"] is None
    assert unreachable["deliveries"][0]["error"]
    assert quiet.json()["deliveries"] == []
    assert unset.status_code == 409
    assert len(receiver.received) == 1


async def test_status_update_sent_while_handling_the_webhook_meets_the_race(
        ghl_sim: Any, receiver: Receiver) -> None:
    """The real flow: the gateway reports back at once and GHL says 403, not 401."""
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        token = (await client.post("/_sandbox/tokens/issue")).json()["access_token"]

        async def report() -> None:
            message_id = json.loads(receiver.received[-1].body)["messageId"]
            async with httpx.AsyncClient(base_url=ghl_sim.url) as reporter:
                answers.append(await reporter.put(
                    f"/conversations/messages/{message_id}/status",
                    headers={"Authorization": f"Bearer {token}", "Version": "2021-04-15"},
                    json={"status": "delivered"}))

        receiver.on_receive = report
        sent = await client.post("/_sandbox/outbound", json={"phone": PHONE})
    assert sent.json()["deliveries"][0]["status_code"] == 200
    [answer] = answers
    assert answer.status_code == 403
    assert answer.json()["message"] == "No conversation provider found for this message"


async def test_install_and_uninstall_events_carry_ghls_fields(ghl_sim: Any,
                                                              receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=ghl_sim.url) as client:
        ed_key, _ = await _keys(client)
        grant = (await client.post("/_sandbox/tokens/issue")).json()
        install = await client.post("/_sandbox/app-event", json={"type": "INSTALL"})
        agency = await client.post("/_sandbox/app-event", json={
            "type": "INSTALL", "locationId": None, "companyName": "Other Agency"})
        uninstall = await client.post("/_sandbox/app-event", json={"type": "UNINSTALL"})
        refresh = await client.post("/oauth/token", data={
            "client_id": ghl_sim.knobs.client_id, "client_secret": ghl_sim.knobs.client_secret,
            "grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})
    assert [a.status_code for a in (install, agency, uninstall)] == [200, 200, 200]
    bodies = [json.loads(r.body) for r in receiver.received]
    assert all(_ed_verifies(ed_key, r.headers["x-ghl-signature"], r.body)
               for r in receiver.received)
    installed, agency_wide, removed = bodies
    assert installed["type"] == "INSTALL"
    assert installed["appId"] == ghl_sim.knobs.app_id
    assert installed["locationId"] == "loc_sandbox_1"
    assert installed["companyId"] == "comp_sandbox_1"
    assert installed["installType"] == "Location"
    for name in ("userId", "companyName", "versionId", "trial", "timestamp", "webhookId"):
        assert name in installed, name
    assert "locationId" not in agency_wide
    assert agency_wide["installType"] == "Company"
    assert agency_wide["companyName"] == "Other Agency"
    assert removed["type"] == "UNINSTALL"
    assert removed["locationId"] == "loc_sandbox_1"
    assert removed["appId"] == ghl_sim.knobs.app_id
    # Uninstalling ends the installation's tokens.
    assert refresh.status_code == 400
    assert refresh.json()["error"] == "invalid_grant"
