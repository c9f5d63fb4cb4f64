"""`X-Idempotency-Key`: the first completed answer per (API key, idempotency key), replayed.

Choices where Cast's doc is silent (the same ones Stripe documents):
- Only answers the send *decided* are kept: 200, 402 (credits), 422 (opted out). A
  refusal before processing — validation 400, 429, a 5xx before sending — is not kept,
  so a corrected or later retry proceeds. A 5xx *after* sending keeps the 200 it hid:
  that is what makes "retry with the same key" safe after an uncertain failure.
- A second request with a key whose first request is still being processed waits for
  it and then replays its answer (or proceeds, if nothing was kept) — it never sends
  twice and never gets an error code Cast does not document.
- Reusing a key for a different request body is refused (400): on the real API it
  would silently replay the other message, a bridge bug we want to fail loudly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from castghl.sandbox.cast.errors import Answer, CastError

Scope = tuple[str, str]  # (API key, idempotency key)


@dataclass
class Stored:
    answer: Answer
    fingerprint: str
    stored_at: float


@dataclass
class Claim:
    """Held by the one request processing a key; others wait on `done`."""

    scope: Scope
    fingerprint: str
    done: asyncio.Event


class IdempotencyStore:
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._stored: dict[Scope, Stored] = {}
        self._claims: dict[Scope, Claim] = {}

    async def begin(self, scope: Scope, fingerprint: str, ttl: float) -> Answer | Claim:
        """The answer to replay, or a claim the caller must `complete` or `release`."""
        while True:
            stored = self._stored.get(scope)
            if stored is not None and self._clock() - stored.stored_at >= ttl:
                del self._stored[scope]
                stored = None
            if stored is not None:
                _same_request(stored.fingerprint, fingerprint)
                return stored.answer
            claim = self._claims.get(scope)
            if claim is None:
                claim = Claim(scope, fingerprint, asyncio.Event())
                self._claims[scope] = claim
                return claim
            _same_request(claim.fingerprint, fingerprint)
            await claim.done.wait()

    def complete(self, claim: Claim, answer: Answer, ttl: float) -> None:
        self._purge(ttl)
        self._stored[claim.scope] = Stored(answer, claim.fingerprint, self._clock())
        self.release(claim)

    def release(self, claim: Claim) -> None:
        """Give the key up without keeping an answer (idempotent: safe in `finally`)."""
        if self._claims.get(claim.scope) is claim:
            del self._claims[claim.scope]
        claim.done.set()

    def counts(self) -> dict[str, int]:
        return {"stored": len(self._stored), "in_flight": len(self._claims)}

    def _purge(self, ttl: float) -> None:
        # Insertion order is storage order, so expired entries sit at the front: a
        # benchmark's millions of keys do not pile up for 24 h of wall time in memory.
        now = self._clock()
        while self._stored:
            oldest = next(iter(self._stored))
            if now - self._stored[oldest].stored_at < ttl:
                break
            del self._stored[oldest]


def _same_request(first: str, this: str) -> None:
    if first != this:
        raise CastError(400, "INVALID_REQUEST", "X-Idempotency-Key was already used with a "
                        "different request body")
