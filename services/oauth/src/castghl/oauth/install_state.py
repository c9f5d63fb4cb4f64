"""The OAuth `state` parameter: signed and expiring, so a callback we did not start (or
started long ago) is refused without keeping any server-side session.

`state` = `<issued-at>.<nonce>.<L|C>.<HMAC-SHA256>`: the last field before the MAC says
which token type to ask GHL for (a location, or an agency's company token). The HMAC key is
derived from the GHL client secret (never the secret itself), and compared in constant
time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Final, Literal

from castghl.common.ghl.oauth import UserType

_CONTEXT: Final = b"castghl-oauth-state-v1"
# A state from slightly in the future is clock skew between replicas, not an attack.
_SKEW_SECONDS: Final = 60
_MAX_LENGTH: Final = 200

StateProblem = Literal["forged", "expired"]
_TYPES: Final[dict[str, UserType]] = {"L": "Location", "C": "Company"}


class BadState(Exception):
    def __init__(self, problem: StateProblem) -> None:
        super().__init__(problem)
        self.problem: StateProblem = problem


class StateSigner:
    def __init__(self, client_secret: str, ttl_seconds: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(client_secret.encode(), _CONTEXT, hashlib.sha256).digest()
        self.ttl = ttl_seconds
        self.clock = clock

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def issue(self, user_type: UserType = "Location") -> str:
        payload = f"{int(self.clock())}.{secrets.token_urlsafe(12)}.{user_type[0]}"
        return f"{payload}.{self._mac(payload)}"

    def check(self, state: str) -> UserType:
        """The user type `state` was issued for; raises `BadState` unless `state` is ours
        and younger than the TTL."""
        payload, _, mac = state.rpartition(".")
        if len(state) > _MAX_LENGTH or not payload or not hmac.compare_digest(
                mac.encode(), self._mac(payload).encode()):
            raise BadState("forged")
        issued_at, _, rest = payload.partition(".")
        kind = rest.rpartition(".")[2]
        if not issued_at.isdigit() or kind not in _TYPES:
            raise BadState("forged")
        age = self.clock() - int(issued_at)
        if age > self.ttl or age < -_SKEW_SECONDS:
            raise BadState("expired")
        return _TYPES[kind]
