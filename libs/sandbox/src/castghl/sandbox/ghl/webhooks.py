"""Webhooks GHL sends: ProviderOutboundMessage and INSTALL/UNINSTALL, signed as in ghl.md §2.

The body is serialised once, compactly and without ASCII escapes (as JavaScript's
JSON.stringify writes it); those exact bytes are signed, stored and re-sent on every
retry, so a receiver that re-serialises parsed JSON fails verification, as with GHL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from castghl.sandbox.ghl.knobs import GhlKnobs
from castghl.sandbox.ghl.state import Delivery, Message, iso_time

ED25519_HEADER = "X-GHL-Signature"
RSA_HEADER = "X-WH-Signature"
# GHL's real key is 4096 bits; 2048 keeps simulator start-up fast and verifies the same way.
RSA_BITS = 2048


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def ed25519_key(seed: str) -> Ed25519PrivateKey:
    """The same seed always gives the same key, so a gateway can be configured ahead."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode("utf-8")).digest())


def _pem(key: Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo,
    ).decode("ascii")


class Signer:
    def __init__(self, knobs: GhlKnobs) -> None:
        self.knobs = knobs
        self._lock = threading.Lock()
        self._rsa: rsa.RSAPrivateKey | None = None

    def rsa_key(self) -> rsa.RSAPrivateKey:
        # Made on first use: most simulator instances never sign with RSA.
        with self._lock:
            if self._rsa is None:
                self._rsa = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
            return self._rsa

    def public_keys(self) -> dict[str, str]:
        return {"ed25519_public_pem": _pem(ed25519_key(self.knobs.signing_seed)),
                "rsa_public_pem": _pem(self.rsa_key())}

    def headers(self, raw: bytes) -> dict[str, str]:
        mode = self.knobs.signature_mode
        if mode == "none":
            return {}
        if mode == "n/a":
            return {ED25519_HEADER: "N/A", RSA_HEADER: "N/A"}
        if mode == "garbage":
            return {ED25519_HEADER: base64.b64encode(secrets.token_bytes(64)).decode(),
                    RSA_HEADER: base64.b64encode(secrets.token_bytes(RSA_BITS // 8)).decode()}
        found: dict[str, str] = {}
        if mode in ("ed25519", "both"):
            signature = ed25519_key(self.knobs.signing_seed).sign(raw)
            found[ED25519_HEADER] = base64.b64encode(signature).decode("ascii")
        if mode in ("rsa", "both") or (mode == "ed25519" and self.knobs.sign_rsa):
            signature = self.rsa_key().sign(raw, padding.PKCS1v15(), hashes.SHA256())
            found[RSA_HEADER] = base64.b64encode(signature).decode("ascii")
        return found


def outbound_payload(message: Message, knobs: GhlKnobs, webhook_id: str,
                     extra: dict[str, Any], *, timestamp: str) -> dict[str, Any]:
    """ProviderOutboundMessage: the documented fields first, then the observed extras."""
    return {
        "contactId": message.contact_id,
        "locationId": message.location_id,
        "messageId": message.id,
        "type": message.type,
        "phone": message.phone,
        "message": message.body,
        "attachments": message.attachments,
        "userId": message.user_id,
        "conversationId": message.conversation_id,
        "conversationProviderId": knobs.conversation_provider_id,
        "timestamp": timestamp,
        "webhookId": webhook_id,
        **extra,
    }


def app_event_payload(kind: str, knobs: GhlKnobs, *, location_id: str | None,
                      company_id: str | None, webhook_id: str, timestamp: str,
                      overrides: dict[str, Any]) -> dict[str, Any]:
    """INSTALL / UNINSTALL as ghl.md §6 describes; `locationId` is absent for agency ones."""
    body: dict[str, Any] = {"type": kind, "appId": knobs.app_id}
    if kind == "INSTALL":
        body.update({"versionId": knobs.version_id,
                     "installType": "Location" if location_id is not None else "Company"})
    if location_id is not None:
        body["locationId"] = location_id
    if company_id is not None:
        body["companyId"] = company_id
    if kind == "INSTALL":
        body.update({"userId": knobs.user_id, "companyName": knobs.company_name,
                     "trial": {"onTrial": False}})
        if knobs.plan_id is not None:
            body["planId"] = knobs.plan_id
    body.update({"timestamp": timestamp, "webhookId": webhook_id})
    body.update(overrides)
    return body


async def deliver(client: httpx.AsyncClient, url: str, raw: bytes, headers: dict[str, str],
                  *, times: int, timeout_s: float, clock: Callable[[], float]
                  ) -> list[Delivery]:
    """POST the same bytes `times` times, one after another, as GHL's retries would.

    The client is the simulator's shared one: a new client per webhook costs ~20 ms.
    `elapsed_ms` is real time (the receiver's answer time); `at` is simulator time."""
    results: list[Delivery] = []
    for _ in range(times):
        started = time.perf_counter()
        try:
            answer = await client.post(
                url, content=raw, timeout=timeout_s,
                headers={"Content-Type": "application/json", **headers})
        except httpx.HTTPError as exc:
            elapsed = round((time.perf_counter() - started) * 1000, 2)
            results.append(Delivery(None, None, elapsed, iso_time(clock()),
                                    f"{type(exc).__name__}: {exc}"))
            continue
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        results.append(Delivery(answer.status_code, answer.text, elapsed, iso_time(clock())))
    return results
