"""Webhook signatures: either header, either key type, raw bytes only, never a raise."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from castghl.common.signatures import (
    GHL_ED25519_PUBLIC_KEY_PEM,
    GHL_RSA_PUBLIC_KEY_PEM,
    PublicKey,
    WebhookVerifier,
    load_public_key,
)

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

BODY = json.dumps(
    {"type": "SMS", "locationId": "loc1", "messageId": "m1", "phone": "+639171234567",
     "message": "Hello", "attachments": []},
    separators=(",", ":"),
).encode()


def _rsa(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.fixture(scope="module")
def keys() -> dict[str, PrivateKey]:
    return {
        "ed": ed25519.Ed25519PrivateKey.generate(),
        "rsa": _rsa(2048),
        "rsa4096": _rsa(4096),
        "other-ed": ed25519.Ed25519PrivateKey.generate(),
        "other-rsa": _rsa(2048),
    }


@pytest.fixture(scope="module")
def verifier(keys: dict[str, PrivateKey]) -> WebhookVerifier:
    return WebhookVerifier([keys[name].public_key() for name in ("ed", "rsa", "rsa4096")])


def _sign(key: PrivateKey, body: bytes) -> str:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.sign(body)
    else:
        raw = key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode()


def _pem(key: PublicKey | ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _reserialised(body: bytes) -> bytes:
    return json.dumps(json.loads(body), indent=2).encode()


def _one_byte_changed(body: bytes) -> bytes:
    return body.replace(b"Hello", b"Hellp")


def _same(body: bytes) -> bytes:
    return body


def _truncated(signature: str) -> str:
    return signature[:-8]


def _unpadded(signature: str) -> str:
    return signature.rstrip("=")


def _spaced(signature: str) -> str:
    return f"  {signature} \t"


def _as_is(signature: str) -> str:
    return signature


@pytest.mark.parametrize(
    ("signer", "header", "tamper_body", "tamper_signature", "expected"),
    [
        pytest.param("ed", "X-GHL-Signature", _same, _as_is, True, id="ed25519-in-ghl-header"),
        pytest.param("rsa", "X-WH-Signature", _same, _as_is, True, id="rsa-in-wh-header"),
        pytest.param("rsa", "X-GHL-Signature", _same, _as_is, True, id="rsa-in-ghl-header"),
        pytest.param("ed", "X-WH-Signature", _same, _as_is, True, id="ed25519-in-wh-header"),
        pytest.param("rsa4096", "X-WH-Signature", _same, _as_is, True, id="rsa-4096"),
        pytest.param("ed", "x-ghl-signature", _same, _as_is, True, id="lower-case-header"),
        pytest.param("rsa", "X-WH-SIGNATURE", _same, _as_is, True, id="upper-case-header"),
        pytest.param("ed", "X-GHL-Signature", _same, _unpadded, True, id="padding-missing"),
        pytest.param("rsa", "X-WH-Signature", _same, _spaced, True, id="whitespace-around"),
        pytest.param("ed", "X-GHL-Signature", _one_byte_changed, _as_is, False,
                     id="ed25519-body-one-byte-changed"),
        pytest.param("rsa", "X-WH-Signature", _one_byte_changed, _as_is, False,
                     id="rsa-body-one-byte-changed"),
        pytest.param("ed", "X-GHL-Signature", _reserialised, _as_is, False,
                     id="ed25519-json-reserialised"),
        pytest.param("rsa", "X-WH-Signature", _reserialised, _as_is, False,
                     id="rsa-json-reserialised"),
        pytest.param("other-ed", "X-GHL-Signature", _same, _as_is, False,
                     id="ed25519-unknown-key"),
        pytest.param("other-rsa", "X-WH-Signature", _same, _as_is, False,
                     id="rsa-unknown-key"),
        pytest.param("ed", "X-GHL-Signature", _same, _truncated, False,
                     id="ed25519-truncated"),
        pytest.param("rsa", "X-WH-Signature", _same, _truncated, False, id="rsa-truncated"),
        pytest.param("ed", "X-Signature", _same, _as_is, False, id="wrong-header-name"),
    ],
)
def test_verify_signed_bodies(
    keys: dict[str, PrivateKey],
    verifier: WebhookVerifier,
    *,
    signer: str,
    header: str,
    tamper_body: Callable[[bytes], bytes],
    tamper_signature: Callable[[str], str],
    expected: bool,
) -> None:
    headers = {header: tamper_signature(_sign(keys[signer], BODY)),
               "content-type": "application/json"}
    assert verifier.verify(tamper_body(BODY), headers) is expected


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"X-GHL-Signature": ""}, id="empty"),
        pytest.param({"X-GHL-Signature": "N/A"}, id="n-a"),
        pytest.param({"X-GHL-Signature": "n/a", "X-WH-Signature": " N/A "}, id="n-a-both"),
        pytest.param({"X-GHL-Signature": "not base64 at all!"}, id="garbage"),
        pytest.param({"X-GHL-Signature": "QUJD*REVG"}, id="bad-alphabet"),
        pytest.param({"X-GHL-Signature": "QUJDRA="}, id="bad-padding"),
        pytest.param({"X-GHL-Signature": "A"}, id="one-char"),
        pytest.param({"X-GHL-Signature": "é" * 88}, id="non-ascii"),
        pytest.param({"X-GHL-Signature": "A" * 100_000}, id="huge"),
        pytest.param({"X-GHL-Signature": base64.b64encode(b"\0" * 64).decode()},
                     id="zero-bytes-ed25519-length"),
        pytest.param({"X-WH-Signature": base64.b64encode(b"\xff" * 256).decode()},
                     id="ff-bytes-rsa-length"),
    ],
)
def test_verify_rejects_absent_and_malformed_signatures_without_raising(
    verifier: WebhookVerifier, headers: Mapping[str, str]
) -> None:
    assert verifier.verify(BODY, headers) is False


@pytest.mark.parametrize(
    ("ghl", "wh", "expected"),
    [
        pytest.param("N/A", "rsa", True, id="ghl-n-a-wh-valid"),
        pytest.param("garbage!", "rsa", True, id="ghl-garbage-wh-valid"),
        pytest.param("other-ed", "rsa", True, id="ghl-wrong-key-wh-valid"),
        pytest.param("ed", "other-rsa", True, id="ghl-valid-wh-wrong-key"),
        pytest.param("other-ed", "other-rsa", False, id="both-wrong-keys"),
    ],
)
def test_either_header_may_carry_the_valid_signature(
    keys: dict[str, PrivateKey], verifier: WebhookVerifier, ghl: str, wh: str, expected: bool
) -> None:
    def value(spec: str) -> str:
        return _sign(keys[spec], BODY) if spec in keys else spec

    headers = {"X-GHL-Signature": value(ghl), "X-WH-Signature": value(wh)}
    assert verifier.verify(BODY, headers) is expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, False, id="missing"),
        pytest.param({"X-GHL-Signature": ""}, False, id="empty"),
        pytest.param({"x-ghl-signature": "N/a"}, False, id="n-a"),
        pytest.param({"X-WH-Signature": "%%%"}, False, id="non-base64"),
        pytest.param({"X-GHL-Signature": "N/A", "X-WH-Signature": "QUJD"}, True,
                     id="one-decodable"),
        pytest.param({"x-wh-signature": "QUJDRA"}, True, id="unpadded-decodable"),
    ],
)
def test_has_signature(headers: Mapping[str, str], expected: bool) -> None:
    assert WebhookVerifier.has_signature(headers) is expected


def test_ghl_real_keys_reject_a_body_signed_by_a_test_key(keys: dict[str, PrivateKey]) -> None:
    verifier = WebhookVerifier.from_pems([GHL_ED25519_PUBLIC_KEY_PEM, GHL_RSA_PUBLIC_KEY_PEM])
    headers = {"X-GHL-Signature": _sign(keys["ed"], BODY),
               "X-WH-Signature": _sign(keys["rsa4096"], BODY)}
    assert WebhookVerifier.has_signature(headers) is True
    assert verifier.verify(BODY, headers) is False


def test_rotation_old_and_new_keys_both_accepted(keys: dict[str, PrivateKey]) -> None:
    old, new = keys["ed"], keys["other-ed"]
    both = WebhookVerifier([new.public_key(), old.public_key()])
    only_new = WebhookVerifier([new.public_key()])
    for signer in (old, new):
        assert both.verify(BODY, {"X-GHL-Signature": _sign(signer, BODY)}) is True
    assert only_new.verify(BODY, {"X-GHL-Signature": _sign(old, BODY)}) is False


def test_verify_accepts_case_insensitive_mappings(
    keys: dict[str, PrivateKey], verifier: WebhookVerifier
) -> None:
    from starlette.datastructures import Headers

    headers = Headers(raw=[(b"x-ghl-signature", _sign(keys["ed"], BODY).encode())])
    assert verifier.verify(BODY, headers) is True
    assert WebhookVerifier.has_signature(headers) is True


# --- loading keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pem", "key_type", "bits"),
    [
        pytest.param(GHL_ED25519_PUBLIC_KEY_PEM, ed25519.Ed25519PublicKey, None,
                     id="ghl-ed25519"),
        pytest.param(GHL_RSA_PUBLIC_KEY_PEM, rsa.RSAPublicKey, 4096, id="ghl-rsa-4096"),
        pytest.param(GHL_ED25519_PUBLIC_KEY_PEM.replace("\n", "\\n"),
                     ed25519.Ed25519PublicKey, None, id="escaped-newlines"),
        pytest.param("\n\n  " + GHL_RSA_PUBLIC_KEY_PEM + "  \n", rsa.RSAPublicKey, 4096,
                     id="surrounding-whitespace"),
        pytest.param("  " + GHL_RSA_PUBLIC_KEY_PEM.strip().replace("\n", "\\n") + "\\n ",
                     rsa.RSAPublicKey, 4096, id="escaped-and-padded"),
    ],
)
def test_load_public_key(pem: str, key_type: type, bits: int | None) -> None:
    key = load_public_key(pem)
    assert isinstance(key, key_type)
    if bits is not None:
        assert isinstance(key, rsa.RSAPublicKey)
        assert key.key_size == bits


def test_loaded_ghl_ed25519_key_is_the_documented_one() -> None:
    key = load_public_key(GHL_ED25519_PUBLIC_KEY_PEM)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64encode(raw).decode() == "i2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg="


@pytest.mark.parametrize(
    ("make_pem", "message"),
    [
        pytest.param(lambda: "", "public key is empty", id="empty"),
        pytest.param(lambda: "  \n ", "public key is empty", id="whitespace"),
        pytest.param(lambda: "hello", "not a valid PEM", id="not-pem"),
        pytest.param(lambda: GHL_RSA_PUBLIC_KEY_PEM.replace("MIIC", "MIID"), "not a valid PEM",
                     id="corrupted-pem"),
        pytest.param(lambda: GHL_ED25519_PUBLIC_KEY_PEM.replace("MCow", "MCöw"),
                     "not a valid PEM", id="non-ascii"),
        pytest.param(
            lambda: ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()).decode(),
            "not a valid PEM", id="private-key"),
        pytest.param(lambda: _pem(ec.generate_private_key(ec.SECP256R1()).public_key()),
                     "EC public keys are not supported; expected Ed25519 or RSA",
                     id="ec-key"),
        pytest.param(lambda: _pem(_rsa(1024).public_key()),
                     "RSA public key has 1024 bits; at least 2048 required", id="rsa-1024"),
    ],
)
def test_load_public_key_names_the_problem(make_pem: Callable[[], str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_public_key(make_pem())


def test_verifier_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one public key"):
        WebhookVerifier([])
    with pytest.raises(ValueError, match="at least one public key"):
        WebhookVerifier.from_pems(["", "  "])


def test_verifier_refuses_unsupported_key_objects() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(TypeError, match="EC public keys are not supported"):
        WebhookVerifier([ec_key])  # type: ignore[list-item]


def test_from_pems_skips_switched_off_keys(keys: dict[str, PrivateKey]) -> None:
    verifier = WebhookVerifier.from_pems([_pem(keys["ed"].public_key()), ""])
    assert verifier.verify(BODY, {"X-GHL-Signature": _sign(keys["ed"], BODY)}) is True
    assert verifier.verify(BODY, {"X-WH-Signature": _sign(keys["rsa"], BODY)}) is False
