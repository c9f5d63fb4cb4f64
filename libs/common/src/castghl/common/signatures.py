"""GHL webhook signatures, verified over the raw request body (reference/ghl.md §2).

GHL has moved signatures between headers and algorithms without notice (`X-GHL-Signature`
Ed25519, legacy `X-WH-Signature` RSA-SHA256), so the rule is deliberately loose about
*where* and strict about *what*: a request is authentic when the signature in either
header verifies under any configured key, each key used with its own algorithm.
Replay checks (`timestamp`, `webhookId`) need the parsed body and live with the gateway.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import (
    dsa,
    ec,
    ed448,
    ed25519,
    padding,
    rsa,
    x448,
    x25519,
)

__all__ = [
    "GHL_ED25519_PUBLIC_KEY_PEM",
    "GHL_RSA_PUBLIC_KEY_PEM",
    "SIGNATURE_HEADERS",
    "PublicKey",
    "WebhookVerifier",
    "load_public_key",
]

GHL_ED25519_PUBLIC_KEY_PEM = """\
-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=
-----END PUBLIC KEY-----
"""

GHL_RSA_PUBLIC_KEY_PEM = """\
-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----
"""

# Lower-case, the way Starlette and HTTP/2 spell header names; GHL's order of preference.
SIGNATURE_HEADERS = ("x-ghl-signature", "x-wh-signature")

PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey

_MIN_RSA_BITS = 2048
_ED25519_SIGNATURE_BYTES = 64
# Longest base64 worth decoding: an 8192-bit RSA signature. Anything longer is noise,
# refused before it costs a decode.
_MAX_SIGNATURE_CHARS = 1368


def load_public_key(pem: str) -> PublicKey:
    """Parse a PEM `PUBLIC KEY` block into an Ed25519 or RSA (≥ 2048-bit) public key.

    Tolerates surrounding whitespace and literal `\\n` escapes, as keys arrive from
    environment variables. Raises `ValueError` saying what is wrong otherwise.
    """
    text = pem.strip().replace("\\n", "\n")
    if not text:
        raise ValueError("public key is empty")
    try:
        key = serialization.load_pem_public_key(text.encode("ascii"))
    except (ValueError, UnsupportedAlgorithm):
        # UnicodeEncodeError (non-ASCII text) is a ValueError too.
        raise ValueError("public key is not a valid PEM 'BEGIN PUBLIC KEY' block") from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ValueError(
                f"RSA public key has {key.key_size} bits; at least {_MIN_RSA_BITS} required"
            )
        return key
    raise ValueError(f"{_kind(key)} public keys are not supported; expected Ed25519 or RSA")


class WebhookVerifier:
    """Checks GHL webhook signatures against a fixed set of public keys.

    Keys are parsed once, at construction; `verify` does no parsing beyond the header.
    Several keys of the same type are how a rotation is rolled out: configure old and new
    together, drop the old one later.
    """

    def __init__(self, keys: Sequence[PublicKey]) -> None:
        if not keys:
            raise ValueError("a webhook verifier needs at least one public key")
        self._ed25519: list[ed25519.Ed25519PublicKey] = []
        # PKCS#1 v1.5 signatures are exactly as long as the modulus, so other lengths are
        # skipped without a call into OpenSSL.
        self._rsa: list[tuple[rsa.RSAPublicKey, int]] = []
        for key in keys:
            if isinstance(key, ed25519.Ed25519PublicKey):
                self._ed25519.append(key)
            elif isinstance(key, rsa.RSAPublicKey):
                self._rsa.append((key, (key.key_size + 7) // 8))
            else:
                raise TypeError(f"{_kind(key)} public keys are not supported")

    @classmethod
    def from_pems(cls, pems: Iterable[str]) -> WebhookVerifier:
        """Build from PEM texts (settings). Blank entries are keys switched off, skipped."""
        return cls([load_public_key(pem) for pem in pems if pem.strip()])

    def verify(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """True iff a signature in `X-GHL-Signature` or `X-WH-Signature` verifies `body`.

        `body` must be the raw request bytes. Header names match case-insensitively for
        any Mapping (Starlette's `Headers` already is case-insensitive; a plain dict works
        too). Never raises for bad input: a malformed signature simply does not verify.
        """
        for signature in _signatures(headers):
            if len(signature) == _ED25519_SIGNATURE_BYTES:
                for ed_key in self._ed25519:
                    try:
                        ed_key.verify(signature, body)
                    except InvalidSignature:
                        continue
                    return True
            for rsa_key, length in self._rsa:
                if len(signature) != length:
                    continue
                try:
                    rsa_key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
                except InvalidSignature:
                    continue
                return True
        return False

    @staticmethod
    def has_signature(headers: Mapping[str, str]) -> bool:
        """Whether any signature header holds something `verify` would try.

        Missing, empty, `N/A` and non-base64 values count as absent, so the gateway can
        tell "missing signature" from "invalid signature" exactly as `verify` sees it.
        """
        return any(True for _ in _signatures(headers))


_KINDS: tuple[tuple[type, str], ...] = (
    (ec.EllipticCurvePublicKey, "EC"),
    (dsa.DSAPublicKey, "DSA"),
    (ed448.Ed448PublicKey, "Ed448"),
    (x25519.X25519PublicKey, "X25519"),
    (x448.X448PublicKey, "X448"),
)


def _kind(key: object) -> str:
    # cryptography's concrete classes have Rust-side names (ECPublicKey); say the family.
    return next((name for cls, name in _KINDS if isinstance(key, cls)), type(key).__name__)


def _signatures(headers: Mapping[str, str]) -> list[bytes]:
    """Decoded signatures from the signature headers, in `SIGNATURE_HEADERS` order."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in SIGNATURE_HEADERS and lowered not in found:
            found[lowered] = value
    decoded = (_decode(found[name]) for name in SIGNATURE_HEADERS if name in found)
    return [signature for signature in decoded if signature is not None]


def _decode(value: str) -> bytes | None:
    text = value.strip()
    if not text or text.upper() == "N/A" or len(text) > _MAX_SIGNATURE_CHARS:
        return None
    try:
        # Strict alphabet, but some senders drop the `=` padding.
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True) or None
    except (binascii.Error, ValueError):
        return None
