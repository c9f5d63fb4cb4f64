"""Injected failures, delays and hangs, drawn from the knobs at request time.

Only sends are faulted: status polls and balance look-ups stay reliable so a test of
retry behaviour is not muddied by failures it did not ask for. Deterministic queues
(`fail_next`, `hang_next`) come before random rates; `seed` makes the random ones
reproducible (the sequence restarts on `/_sandbox/reset` and whenever `seed` changes).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from castghl.sandbox.cast.errors import CastError
from castghl.sandbox.cast.knobs import DEFAULT_ERROR_CODES, CastKnobs, FaultSpec

_TEXTS = {
    402: "Insufficient credits",
    403: "API key has been revoked",
    429: "Rate limit exceeded",
    500: "Internal server error",
    502: "SMS provider error",
    503: "SMS service temporarily unavailable",
}


@dataclass(frozen=True)
class Fault:
    status: int
    error_code: str
    after_send: bool  # the message is really sent first: the client cannot know

    def error(self, retry_after: int) -> CastError:
        headers = {"Retry-After": str(retry_after)} if self.status in (429, 503) else {}
        text = _TEXTS.get(self.status, "Request failed")
        return CastError(self.status, self.error_code, f"{text} (injected)", headers)


class FaultInjector:
    def __init__(self, knobs: CastKnobs) -> None:
        self._knobs = knobs
        self._seed = knobs.seed
        self._rng = random.Random(knobs.seed)  # noqa: S311 - simulation, not security

    def reset(self) -> None:
        """Drop pending queued faults and hangs; restart the random sequence."""
        self._knobs.fail_next = []
        self._knobs.hang_next = 0
        self._seed = self._knobs.seed
        self._rng = random.Random(self._seed)  # noqa: S311

    def next_fault(self) -> Fault | None:
        queue = self._knobs.fail_next
        if queue:
            head = queue[0]
            # Replace rather than mutate: the caller may still hold the spec it set.
            rest = queue[1:]
            if head.count > 1:
                rest = [head.model_copy(update={"count": head.count - 1}), *rest]
            self._knobs.fail_next = rest
            return self._fault(head)
        rates = {int(status): rate for status, rate in self._knobs.fault_rates.items()
                 if rate > 0}
        if not rates:
            return None
        draw = self._random()
        for status in sorted(rates):
            if draw < rates[status]:
                return self._fault(FaultSpec(status=status))
            draw -= rates[status]
        return None

    def latency_seconds(self) -> float:
        spec = self._knobs.latency_ms
        if spec.max <= 0:
            return 0.0
        rng = self._rng_now()
        if spec.mode is None:
            return rng.uniform(spec.min, spec.max) / 1000
        return rng.triangular(spec.min, spec.max, spec.mode) / 1000

    def take_hang(self) -> float | None:
        """Seconds to hold a sent message's answer back, or None."""
        if self._knobs.hang_next > 0:
            self._knobs.hang_next -= 1
            return self._knobs.hang_seconds
        if self._knobs.hang_rate > 0 and self._random() < self._knobs.hang_rate:
            return self._knobs.hang_seconds
        return None

    def _fault(self, spec: FaultSpec) -> Fault:
        after_send = spec.after_send
        if after_send is None:
            after_send = spec.status in (500, 502) and self._knobs.fault_after_send
        code = spec.error_code or DEFAULT_ERROR_CODES[spec.status]
        return Fault(spec.status, code, after_send)

    def _random(self) -> float:
        return self._rng_now().random()

    def _rng_now(self) -> random.Random:
        if self._knobs.seed != self._seed:
            self._seed = self._knobs.seed
            self._rng = random.Random(self._seed)  # noqa: S311
        return self._rng
