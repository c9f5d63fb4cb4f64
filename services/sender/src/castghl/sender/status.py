"""Writing final statuses back into the GHL conversation.

GHL answers 403 "No conversation provider found" for several seconds after its webhook
(reference/ghl.md §3), which is why the first attempt waits GHL_STATUS_DELAY_SECONDS and
that 403 is retried, never treated as a token problem. A 401 is: the token is refreshed
once through the OAuth service (which refreshes only if nobody already did) and the call
repeated. A status that can never be written (location uninstalled, GHL rejects it) is
parked with its reason, to be replayed by an operator. A status queued twice (a crash
between queueing it and recording that) is written once: a writer holds a lease on it.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from prometheus_client import Counter

from castghl.common.broker import Publisher
from castghl.common.errors import BridgeError
from castghl.common.ghl.api import GhlApi
from castghl.common.messages import StatusUpdate
from castghl.common.outages import outlast
from castghl.common.topology import ATTEMPT_HEADER, WorkQueue
from castghl.common.worker import Done, Outcome, Retry
from castghl.sender.ghl_rate import MAX_WAIT_SECONDS
from castghl.sender.store import MessageStore
from castghl.sender.tokens import Tokens, with_token

log = logging.getLogger(__name__)

WRITTEN = Counter("castghl_status_written_total", "Statuses GHL accepted", ["status"])
BUSY_RETRY_SECONDS = 5.0


def write_lease(ghl_timeout: float, oauth_timeout: float) -> float:
    """Longer than a write can take — a token look-up and a rate-limit permit, GHL's
    timeout twice around a refresh — so a live writer never loses its lease; a writer
    that died holds its status back no longer than this."""
    return 2 * ghl_timeout + 2 * oauth_timeout + 2 * MAX_WAIT_SECONDS + 5.0


class DelayedStatusQueue:
    """Hands a decided status to `ghl.status` through its first tier, so GHL is first
    asked after the delay, not inside its race window. The window opens with GHL's
    webhook (`since`): a status decided after it closed (from a receipt) goes at once.

    One publish per SMS: through `Publisher` (aio-pika's channel directly, the same
    guarantees as every publish) rather than the FastStream broker, at half its CPU
    (bench/publish.py)."""

    def __init__(self, publisher: Publisher, work: WorkQueue, first_delay: float) -> None:
        self.publisher = publisher
        self.work = work
        self.first_delay = first_delay

    async def queue(self, update: StatusUpdate, since: float) -> None:
        window_open = time.time() - since < self.first_delay
        queue = self.work.tier_for(self.first_delay) if window_open else self.work.queue
        await self.publisher.publish(queue, update.model_dump_json().encode(),
                                     headers={ATTEMPT_HEADER: 1},
                                     message_id=update.message_id)


class StatusReporter:
    def __init__(self, store: MessageStore, tokens: Tokens, ghl: GhlApi, *,
                 lease_seconds: float) -> None:
        self.store = store
        self.tokens = tokens
        self.ghl = ghl
        self.lease_seconds = lease_seconds

    async def process(self, update: StatusUpdate, attempt: int) -> Outcome:
        """Raises the error family when GHL did not take it; the Settler retries or parks."""
        claim = await self.store.claim_status_write(update.message_id, self.lease_seconds)
        if claim == "done":
            return Done()
        if claim == "busy":
            # Another copy of this status is being written right now: look again later,
            # and write it then only if that one failed.
            return Retry(BUSY_RETRY_SECONDS, "status_being_written", counts=False)
        try:
            await self._write(update)
        except Exception as error:
            await self.store.release_status_write(update.message_id)
            if isinstance(error, BridgeError):
                log.info("status not written yet", extra={"error_code": error.code,
                                                          "attempt": attempt,
                                                          "detail": error.detail})
            raise
        # GHL took it: a retry now would write it twice, so the record waits out the store.
        await outlast(partial(self.store.mark_status_written, update.message_id),
                      what="status_written")
        WRITTEN.labels(update.status).inc()
        # DEBUG: a message has its two INFO lines, accepted and decided; a written status
        # shows in castghl_status_written_total and in the message's record.
        log.debug("status written to GHL", extra={"status": update.status})
        return Done()

    async def _write(self, update: StatusUpdate) -> None:
        await with_token(self.tokens, update.location_id, lambda token: self.ghl.update_status(
            token, update.message_id, update.status, update.error))
