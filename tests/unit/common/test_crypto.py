"""Secrets at rest: round trips, key rotation, and errors that never leak a secret."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.fernet import Fernet

from castghl.common.crypto import DecryptionError, TokenCipher, generate_key
from castghl.common.errors import AccountError

SECRET = "ghl-refresh-token-9f8e7d6c5b4a"


@pytest.fixture
def old_key() -> str:
    return generate_key()


@pytest.fixture
def new_key() -> str:
    return generate_key()


@pytest.mark.parametrize(
    "plain",
    [
        pytest.param(SECRET, id="token"),
        pytest.param("", id="empty"),
        pytest.param("cast_" + "ab" * 32, id="cast-api-key"),
        pytest.param("ñ€😀 unicode", id="unicode"),
        pytest.param("x" * 5000, id="long"),
    ],
)
def test_round_trip(old_key: str, plain: str) -> None:
    cipher = TokenCipher([old_key])
    token = cipher.encrypt(plain)
    assert token.isascii()
    assert cipher.decrypt(token) == plain


def test_ciphertext_does_not_contain_the_plaintext(old_key: str) -> None:
    cipher = TokenCipher([old_key])
    token = cipher.encrypt(SECRET)
    assert SECRET not in token
    assert cipher.encrypt(SECRET) != token  # fresh IV each time


def test_older_key_in_the_list_still_decrypts(old_key: str, new_key: str) -> None:
    token = TokenCipher([old_key]).encrypt(SECRET)
    cipher = TokenCipher([new_key, old_key])
    assert cipher.decrypt(token) == SECRET
    assert cipher.needs_rotation(token) is True


def test_newest_key_encrypts(old_key: str, new_key: str) -> None:
    token = TokenCipher([new_key, old_key]).encrypt(SECRET)
    assert TokenCipher([new_key]).decrypt(token) == SECRET
    with pytest.raises(DecryptionError):
        TokenCipher([old_key]).decrypt(token)


def test_rotation_then_dropping_the_old_key(old_key: str, new_key: str) -> None:
    stored = TokenCipher([old_key]).encrypt(SECRET)
    during = TokenCipher([new_key, old_key])
    rotated = during.rotate(stored)
    assert during.needs_rotation(rotated) is False
    after = TokenCipher([new_key])
    assert after.decrypt(rotated) == SECRET
    with pytest.raises(DecryptionError):
        after.decrypt(stored)


def test_rotate_keeps_the_original_timestamp(old_key: str, new_key: str) -> None:
    stored = TokenCipher([old_key]).encrypt(SECRET)
    rotated = TokenCipher([new_key, old_key]).rotate(stored)
    assert (Fernet(new_key).extract_timestamp(rotated.encode())
            == Fernet(old_key).extract_timestamp(stored.encode()))


@pytest.mark.parametrize(
    "token_of",
    [
        pytest.param(lambda key: TokenCipher([generate_key()]).encrypt(SECRET), id="other-key"),
        pytest.param(lambda key: TokenCipher([key]).encrypt(SECRET)[:-4], id="truncated"),
        pytest.param(lambda key: "not a token", id="garbage"),
        pytest.param(lambda key: "", id="empty"),
        pytest.param(lambda key: "gAAAAé", id="non-ascii"),
        pytest.param(lambda key: SECRET, id="plaintext-stored-by-mistake"),
    ],
)
def test_undecryptable_values_raise_decryption_error_without_secrets(
    old_key: str, token_of: Callable[[str], str]
) -> None:
    token = token_of(old_key)
    cipher = TokenCipher([old_key])
    for operation in (cipher.decrypt, cipher.rotate, cipher.needs_rotation):
        with pytest.raises(DecryptionError) as caught:
            operation(token)
        error = caught.value
        assert isinstance(error, AccountError)
        assert error.code == "decryption_failed"
        assert str(error) == (
            "no key in TOKEN_ENCRYPTION_KEYS decrypts this value; "
            "a key may have been removed from TOKEN_ENCRYPTION_KEYS"
        )
        assert error.__cause__ is None
        assert error.__suppress_context__ is True
        for leak in (token, SECRET, old_key):
            if leak:
                assert leak not in str(error)
                assert leak not in error.user_message


def test_from_setting_parses_newest_first(old_key: str, new_key: str) -> None:
    cipher = TokenCipher.from_setting(f" {new_key} ,, {old_key},\n")
    assert TokenCipher([new_key]).decrypt(cipher.encrypt(SECRET)) == SECRET
    assert cipher.decrypt(TokenCipher([old_key]).encrypt(SECRET)) == SECRET


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        pytest.param("", "TOKEN_ENCRYPTION_KEYS holds no keys", id="empty"),
        pytest.param(" , ,, ", "TOKEN_ENCRYPTION_KEYS holds no keys", id="only-commas"),
        pytest.param("{good},not-a-key", "TOKEN_ENCRYPTION_KEYS entry 2 is not a valid Fernet key",
                     id="second-bad"),
        pytest.param("{good},,,short", "TOKEN_ENCRYPTION_KEYS entry 4 is not a valid Fernet key",
                     id="position-as-written"),
        pytest.param("{good_truncated}", "TOKEN_ENCRYPTION_KEYS entry 1 is not a valid Fernet key",
                     id="truncated-key"),
        pytest.param("cl\u00e9-secr\u00e8te", "entry 1 is not a valid Fernet key",
                     id="non-ascii"),
    ],
)
def test_from_setting_names_bad_entries_by_position_only(setting: str, message: str) -> None:
    good = generate_key()
    value = setting.format(good=good, good_truncated=good[:-2])
    with pytest.raises(ValueError, match=message) as caught:
        TokenCipher.from_setting(value)
    for entry in value.split(","):
        if entry.strip():
            assert entry.strip() not in str(caught.value)
    assert caught.value.__cause__ is None


def test_constructor_names_bad_key_by_position() -> None:
    with pytest.raises(ValueError, match="entry 2 is not a valid Fernet key"):
        TokenCipher([generate_key(), "nope"])
    with pytest.raises(ValueError, match="holds no keys"):
        TokenCipher([])


def test_generate_key_makes_distinct_usable_keys() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert len(first) == 44
    assert TokenCipher([first]).decrypt(TokenCipher([first]).encrypt("x")) == "x"


def test_cipher_repr_shows_no_key(old_key: str) -> None:
    cipher = TokenCipher([old_key])
    assert old_key not in repr(cipher)
    assert old_key not in str(vars(cipher))
