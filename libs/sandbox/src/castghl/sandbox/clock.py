"""The simulators' one notion of time, which a test can stop and move forward.

Each simulator reads every time it cares about from one `SimClock`: Cast's token bucket
and rolling second, idempotency expiry, delivery-receipt delays and send times; GHL's
rate windows, the status-update race, code and token expiry and its timestamps; the
calls the recorder logs. One clock for all of them because they move together on the
real services: advancing it one second refills Cast's bucket, clears its rolling window
*and* lets a one-second receipt arrive, as a real second would, so a test asserts an
exact outcome instead of sleeping and hoping the machine was fast enough.

Injected latency and hangs are not read from here: they stand for the network, which a
client really waits on, so they stay real time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


def steady_epoch() -> Callable[[], float]:
    """Epoch seconds that never step back: the wall clock at start, then monotonic time.

    An NTP step of the wall clock would otherwise run a rate window backwards."""
    anchor = time.time() - time.monotonic()
    return lambda: anchor + time.monotonic()


class SimClock:
    """Epoch seconds (float); call it to read. Real time unless a test steers it.

    Thread-safe: the simulator serves on its own thread and loop while a test, or the
    `/_sandbox/clock` and `/_sandbox/reset` routes, steer it from another.
    """

    def __init__(self, real: Callable[[], float] | None = None) -> None:
        self._real = real if real is not None else steady_epoch()
        self._lock = threading.Lock()
        self._offset = 0.0
        self._frozen_at: float | None = None

    def __call__(self) -> float:
        with self._lock:
            return self._read()

    @property
    def frozen(self) -> bool:
        with self._lock:
            return self._frozen_at is not None

    def freeze(self) -> float:
        """Stop time at the current reading (a no-op if already frozen); return it."""
        with self._lock:
            if self._frozen_at is None:
                self._frozen_at = self._read()
            return self._frozen_at

    def advance(self, seconds: float) -> float:
        """Move time forward, frozen or running; return the new reading.

        Never backwards: rate windows and expiries assume time only grows."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a clock only advances by a finite, non-negative amount, "
                             f"not {seconds!r}")
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += seconds
            else:
                self._offset += seconds
            return self._read()

    def resume(self) -> None:
        """Back to real time, dropping every advance.

        Time can step back here, so the simulators call it from their reset, which also
        forgets everything stamped with the moved time."""
        with self._lock:
            self._offset = 0.0
            self._frozen_at = None

    def _read(self) -> float:
        if self._frozen_at is not None:
            return self._frozen_at
        return self._real() + self._offset
