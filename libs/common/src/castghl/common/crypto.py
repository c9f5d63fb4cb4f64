"""Encryption of secrets at rest: OAuth tokens and per-location Cast API keys.

Fernet (AES-128-CBC + HMAC-SHA256) behind MultiFernet, with the key list taken from
`TOKEN_ENCRYPTION_KEYS`, newest first: the first key encrypts, every key decrypts. To
rotate, put a new key in front, re-encrypt stored values with `rotate` (or lazily where
`needs_rotation` says so), then drop the old key.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from castghl.common.errors import AccountError

__all__ = ["DecryptionError", "TokenCipher", "generate_key"]

_SETTING = "TOKEN_ENCRYPTION_KEYS"


class DecryptionError(AccountError):
    """No configured key decrypts a stored secret.

    Every message of the installation fails the same way until the operator restores
    the key or the location reinstalls, hence an account problem. The message never
    carries the ciphertext or the plaintext.
    """

    code = "decryption_failed"
    user_message = (
        "Cast SMS cannot read this location's stored credentials; "
        "ask the app's operator to check its encryption keys, or reinstall the app."
    )

    def __init__(self) -> None:
        super().__init__(
            f"no key in {_SETTING} decrypts this value; a key may have been removed "
            f"from {_SETTING}"
        )


def generate_key() -> str:
    """A fresh Fernet key (url-safe base64 of 32 random bytes) for `TOKEN_ENCRYPTION_KEYS`."""
    return Fernet.generate_key().decode("ascii")


class TokenCipher:
    """Encrypts and decrypts short secrets with a newest-first list of Fernet keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        """`keys` newest first. Raises `ValueError` naming the bad entry by position only."""
        if not keys:
            raise ValueError(f"{_SETTING} holds no keys")
        fernets = [_fernet(key, position) for position, key in enumerate(keys, start=1)]
        self._newest = fernets[0]
        self._all = MultiFernet(fernets)

    @classmethod
    def from_setting(cls, value: str) -> TokenCipher:
        """Build from the `TOKEN_ENCRYPTION_KEYS` text: comma-separated, newest first.

        Whitespace around entries and empty entries are ignored; a bad entry is named by
        its position in the comma-separated list as written, never by its value.
        """
        entries = [(position, entry.strip())
                   for position, entry in enumerate(value.split(","), start=1)]
        present = [(position, entry) for position, entry in entries if entry]
        if not present:
            raise ValueError(f"{_SETTING} holds no keys")
        for position, entry in present:
            _fernet(entry, position)
        return cls([entry for _, entry in present])

    def encrypt(self, plain: str) -> str:
        """Encrypt under the newest key; the result is ASCII, safe to store as a string."""
        return self._all.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Decrypt with whichever configured key fits; `DecryptionError` when none does."""
        try:
            return self._all.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise DecryptionError from None

    def rotate(self, token: str) -> str:
        """Re-encrypt under the newest key, keeping the original timestamp."""
        try:
            return self._all.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise DecryptionError from None

    def needs_rotation(self, token: str) -> bool:
        """Whether `token` was encrypted under an older key than the newest.

        Fernet tokens carry no key id, so this costs one decryption attempt with the
        newest key (an HMAC check, microseconds). Raises `DecryptionError` when no
        configured key decrypts it at all, since it cannot be rotated either.
        """
        try:
            self._newest.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeError):
            self.decrypt(token)  # raises DecryptionError when no key fits at all
            return True
        return False


def _fernet(key: str, position: int) -> Fernet:
    try:
        return Fernet(key.strip())
    except (ValueError, TypeError):
        # `from None`: the underlying error could echo part of the key.
        raise ValueError(
            f"{_SETTING} entry {position} is not a valid Fernet key "
            "(expected 32 url-safe base64-encoded bytes; make one with generate_key())"
        ) from None
