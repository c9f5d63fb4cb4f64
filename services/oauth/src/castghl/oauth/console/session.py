"""The console's sign-in: a signed, expiring session cookie, a CSRF token on every form,
and a throttle on failed sign-ins.

The one credential is `ADMIN_API_KEY`, typed into the sign-in form, never put in a URL.
A session is `<id>.<expiry>.<HMAC>` under a key derived from it, so changing the admin key
ends every session. The CSRF token of a form is an HMAC of the session id (of a
pre-sign-in nonce, for the sign-in form itself), so it needs no storage.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

SESSION_COOKIE: Final = "castghl_console"
NONCE_COOKIE: Final = "castghl_console_signin"
SESSION_SECONDS: Final = 8 * 3600
# Failed sign-ins allowed per client within the window; clients remembered at most.
FAILURES: Final = 5
WINDOW_SECONDS: Final = 300.0
REMEMBERED: Final = 10_000


class Sessions:
    def __init__(self, admin_key: str, *, clock: Callable[[], float] = time.time) -> None:
        self._admin = admin_key.encode()
        self._key = hmac.new(self._admin, b"castghl console v1", hashlib.sha256).digest()
        self._clock = clock

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def password_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._admin)

    def issue(self) -> str:
        payload = f"{secrets.token_urlsafe(16)}.{int(self._clock()) + SESSION_SECONDS}"
        return f"{payload}.{self._mac(payload)}"

    def session_of(self, cookie: str | None) -> str | None:
        """The session id a cookie carries, if it is ours and not expired."""
        sid, _, rest = (cookie or "").partition(".")
        expiry, _, mac = rest.partition(".")
        if not (sid and expiry.isdigit() and mac):
            return None
        if not hmac.compare_digest(mac, self._mac(f"{sid}.{expiry}")):
            return None
        return sid if int(expiry) > self._clock() else None

    def csrf(self, sid: str) -> str:
        return self._mac(f"csrf:{sid}")

    def csrf_ok(self, sid: str, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.csrf(sid).encode())


class Throttle:
    """At most FAILURES failed sign-ins per client within WINDOW_SECONDS; memory bounded."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, client: str) -> list[float]:
        since = self._clock() - WINDOW_SECONDS
        recent = [at for at in self._failures.get(client, []) if at > since]
        if recent:
            self._failures[client] = recent
        else:
            self._failures.pop(client, None)
        return recent

    def wait(self, client: str) -> float:
        """Seconds before `client` may try again; 0 when it may now."""
        recent = self._recent(client)
        if len(recent) < FAILURES:
            return 0.0
        return max(1.0, recent[-FAILURES] + WINDOW_SECONDS - self._clock())

    def failed(self, client: str) -> None:
        self._failures[client] = [*self._recent(client), self._clock()]
        self._failures.move_to_end(client)
        while len(self._failures) > REMEMBERED:
            self._failures.popitem(last=False)
