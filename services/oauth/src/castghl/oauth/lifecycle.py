"""GHL's INSTALL / UNINSTALL events (reference/ghl.md §6), from the `app.lifecycle` queue.

The gateway verified and published them; here they change installations, but only when
they are this app's, new and current:
- GHL signs every app's webhooks with one shared key, so a valid signature does not make
  an event ours: one whose `appId` is not `GHL_APP_ID` changes nothing.
- GHL retries a webhook with the same `webhookId`: one already handled changes nothing.
- Events can arrive late and out of order: one older than the installation's last change
  (a late INSTALL after an UNINSTALL, an UNINSTALL after a reinstall) changes nothing.
Each of those is acknowledged and counted (`castghl_lifecycle_ignored_total{reason}`).
Failures go through the shared `Settler`: retry tiers for what may pass, the parking
queue for what cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, Protocol

from faststream.middlewares import AckPolicy
from faststream.rabbit import Channel, RabbitBroker
from prometheus_client import Counter
from pydantic import RootModel

from castghl.common.errors import PermanentError
from castghl.common.ghl.webhooks import AppEvent, AppInstall, AppUninstall
from castghl.common.logging import log_context
from castghl.common.messages import InstallStatus
from castghl.common.topology import Topology
from castghl.common.worker import Delivery, Done, Outcome, Settler, undecoded
from castghl.oauth.changes import Notices
from castghl.oauth.installation import Installation, company_key, location_key
from castghl.oauth.refresh import utcnow
from castghl.oauth.store import Uninstalled

log = logging.getLogger(__name__)

IGNORED = Counter("castghl_lifecycle_ignored_total",
                  "App events acknowledged without a change", ["reason"])
Ignored = Literal["other_app", "duplicate", "stale"]


class LifecycleEvent(RootModel[AppEvent]):
    """The queue's message: one INSTALL or UNINSTALL, as the gateway published it."""


class LifecycleStore(Protocol):
    async def get(self, key: str) -> Installation | None: ...

    async def uninstall(self, key: str, event_at: datetime, now: datetime) -> Uninstalled: ...

    async def uninstall_company(self, company_id: str, event_at: datetime,
                                now: datetime) -> int: ...


class EventLog(Protocol):
    async def seen(self, webhook_id: str) -> bool: ...

    async def remember(self, webhook_id: str, now: datetime) -> None: ...


class LocationMinter(Protocol):
    async def mint_location(self, company_id: str, location_id: str,
                            event_at: datetime | None = None) -> Installation | None: ...


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class Lifecycle:
    def __init__(self, store: LifecycleStore, minter: LocationMinter, events: EventLog,
                 notices: Notices, *, app_id: str, clock: Callable[[], datetime] = utcnow
                 ) -> None:
        self.store = store
        self.minter = minter
        self.events = events
        self.notices = notices
        self.app_id = app_id
        self.clock = clock

    async def process(self, message: LifecycleEvent, attempt: int) -> Outcome:
        """Raises the error family on failure; the Settler maps it to retry or park."""
        event = message.root
        with log_context(locationId=event.location_id):
            if event.app_id != self.app_id:
                return self._ignore("other_app", event)
            if event.webhook_id and await self.events.seen(event.webhook_id):
                return self._ignore("duplicate", event)
            # GHL stamps its events; one without a stamp is as new as its handling.
            at = _aware(event.timestamp) if event.timestamp is not None else self.clock()
            if isinstance(event, AppInstall):
                applied = await self.install(event, at)
            else:
                applied = await self.uninstall(event, at)
            if not applied:
                self._ignore("stale", event)
            if event.webhook_id:
                await self.events.remember(event.webhook_id, self.clock())
        return Done()

    @staticmethod
    def _ignore(reason: Ignored, event: AppInstall | AppUninstall) -> Outcome:
        IGNORED.labels(reason).inc()
        log.info("app event ignored", extra={"reason": reason, "type": event.type,
                                             "companyId": event.company_id,
                                             "appId": event.app_id})
        return Done()

    async def install(self, event: AppInstall, at: datetime) -> bool:
        """False when the event is older than what the installation already knows."""
        location_id, company_id = event.location_id, event.company_id
        if not location_id:
            # An agency-level install: its company token arrives through the OAuth callback.
            log.info("agency install event: nothing to mint", extra={"companyId": company_id})
            return True
        current = await self.store.get(location_key(location_id))
        if current is not None and current.changed_at is not None and at <= current.changed_at:
            return False
        if current is not None and current.status is InstallStatus.ACTIVE:
            log.info("install event for a location already stored")
            return True
        company = await self.store.get(company_key(company_id)) if company_id else None
        if company_id is None or company is None or not company.installed:
            # A location install: the OAuth callback brings (or brought) its token.
            log.info("install event without a company token: waiting for the OAuth callback",
                     extra={"companyId": company_id})
            return True
        minted = await self.minter.mint_location(company_id, location_id, at)
        if minted is None:
            return False  # an uninstall newer than this event landed meanwhile
        await self.notices.location(location_id)
        log.info("location token minted from the company token",
                 extra={"companyId": company_id})
        return True

    async def uninstall(self, event: AppUninstall, at: datetime) -> bool:
        now = self.clock()
        if event.location_id:
            done = await self.store.uninstall(location_key(event.location_id), at, now)
            if done == "uninstalled":
                await self.notices.location(event.location_id)
            if done == "unknown":
                log.info("uninstall event for an unknown location")
            elif done == "uninstalled":
                log.info("location uninstalled: secrets deleted")
            return done != "stale"
        if event.company_id:
            count = await self.store.uninstall_company(event.company_id, at, now)
            await self.notices.company(event.company_id)
            log.info("company uninstalled: secrets deleted",
                     extra={"companyId": event.company_id, "installations": count})
            return True
        # The gateway refuses these; a hand-published one is unusable.
        raise PermanentError("UNINSTALL names no location or company", code="unusable_event")


def register_lifecycle(broker: RabbitBroker, topology: Topology, lifecycle: Lifecycle,
                       settler: Settler, prefetch: int = 10) -> None:
    @broker.subscriber(topology.lifecycle.queue, ack_policy=AckPolicy.MANUAL, decoder=undecoded,
                       channel=Channel(prefetch_count=prefetch, on_return_raises=True))
    async def on_lifecycle(message: Delivery) -> None:
        await settler.run(message, LifecycleEvent, lifecycle.process)
