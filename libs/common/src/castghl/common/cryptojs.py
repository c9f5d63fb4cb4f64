"""CryptoJS's passphrase encryption (`CryptoJS.AES.encrypt(text, passphrase)`), which GHL
uses for a Custom Page's user context: the format `openssl enc -aes-256-cbc -md md5`
writes. Base64 of `Salted__`, an 8-byte salt and the ciphertext; key and IV from
OpenSSL's EVP_BytesToKey (MD5, one round) over the passphrase and the salt; AES-256-CBC
with PKCS#7 padding. The OAuth service decrypts it; the GHL simulator encrypts it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Final

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MAGIC: Final = b"Salted__"


class NotDecrypted(ValueError):
    """Not this format, or not this passphrase (deliberately without detail)."""


def _key_and_iv(passphrase: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """EVP_BytesToKey with MD5 and one round: 32 bytes of key, then 16 of IV."""
    derived, block = b"", b""
    while len(derived) < 48:
        block = hashlib.md5(block + passphrase + salt).digest()  # noqa: S324 - the format's KDF
        derived += block
    return derived[:32], derived[32:48]


def decrypt(text: str, passphrase: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise NotDecrypted from None
    if len(raw) < 32 or not raw.startswith(MAGIC) or len(raw) % 16:
        raise NotDecrypted
    key, iv = _key_and_iv(passphrase.encode(), raw[8:16])
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(decryptor.update(raw[16:]) + decryptor.finalize())
        return plain + unpadder.finalize()
    except ValueError:  # bad padding: another passphrase
        raise NotDecrypted from None


def encrypt(plain: bytes, passphrase: str, salt: bytes | None = None) -> str:
    salt = os.urandom(8) if salt is None else salt
    key, iv = _key_and_iv(passphrase.encode(), salt)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(MAGIC + salt + encryptor.update(padded) + encryptor.finalize()
                            ).decode()
