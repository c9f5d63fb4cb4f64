"""CryptoJS's passphrase format, as GHL encrypts a Custom Page's user context: read back
what an independent implementation (OpenSSL) wrote, and refuse what is not it."""

from __future__ import annotations

import json

import pytest

from castghl.common.cryptojs import NotDecrypted, decrypt, encrypt

# Written by `openssl enc -aes-256-cbc -md md5 -salt -a -A -k shared-secret-xyz`, the
# format CryptoJS.AES.encrypt(text, passphrase) writes.
OPENSSL = ("U2FsdGVkX18M5KiqKl/p/Q1dfOWKCcYnwlsJfI1F1ce3wNBb1bMH9LNuZfoqQ9CRjDDlDZiIbzMI1RScyl"
           "hiQLBOctnGnE5o0/rf4+iTYWbGXHp6uY+EfrciCTPI0+hk5dyW3PRJiqJdszHdobEHIcdIgMk5LugHUKS4"
           "bkKfsR0=")
CONTEXT = {"userId": "u1", "companyId": "c1", "role": "admin", "type": "location",
           "activeLocation": "loc1", "userName": "Ana"}


def test_what_openssl_wrote_decrypts_to_the_json_it_was_given() -> None:
    assert json.loads(decrypt(OPENSSL, "shared-secret-xyz")) == CONTEXT


def test_what_we_write_reads_back_and_starts_like_cryptojs_output() -> None:
    text = encrypt(b'{"a": 1}', "k", salt=b"12345678")
    assert text.startswith("U2FsdGVkX1")  # base64 of "Salted__"
    assert decrypt(text, "k") == b'{"a": 1}'
    assert encrypt(b"x", "k") != encrypt(b"x", "k")  # a fresh salt each time


@pytest.mark.parametrize("text", [
    "", "not base64!", "aGVsbG8=", OPENSSL[:-8] + "AAAAAAA=", OPENSSL[:40]])
def test_anything_else_is_refused_without_detail(text: str) -> None:
    with pytest.raises(NotDecrypted):
        decrypt(text, "shared-secret-xyz")


def test_another_passphrase_is_refused() -> None:
    with pytest.raises(NotDecrypted):
        # PKCS#7 can pass by chance (about 1 in 256); this fixed case does not.
        decrypt(OPENSSL, "another-secret")
