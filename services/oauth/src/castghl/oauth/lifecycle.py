"""GHL's INSTALL / UNINSTALL events (reference/ghl.md §6), from the `app.lifecycle` queue.

The gateway verified and published them; here they change installations. Every handling
is idempotent, since the queue delivers at least once: minting again just stores a fresh
token, uninstalling twice leaves the same tombstone. Failures go through the shared
`Settler` — retry tiers for what may pass, the parking queue for what cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from faststream.middlewares import AckPolicy
from faststream.rabbit import Channel, RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from pydantic import RootModel

from castghl.common.errors import PermanentError
from castghl.common.ghl.webhooks import AppEvent, AppInstall, AppUninstall
from castghl.common.logging import log_context
from castghl.common.oauth_client import token_error
from castghl.common.topology import Topology
from castghl.common.worker import Done, Outcome, Settler
from castghl.oauth.installation import Installation, Status, company_key, location_key
from castghl.oauth.refresh import TokenFailure, utcnow

log = logging.getLogger(__name__)


class LifecycleEvent(RootModel[AppEvent]):
    """The queue's message: one INSTALL or UNINSTALL, as the gateway published it."""


class LifecycleStore(Protocol):
    async def get(self, key: str) -> Installation | None: ...

    async def uninstall(self, key: str, now: datetime) -> bool: ...

    async def uninstall_company(self, company_id: str, now: datetime) -> int: ...


class LocationMinter(Protocol):
    async def mint_location(self, company_id: str, location_id: str) -> Installation: ...


class Lifecycle:
    def __init__(self, store: LifecycleStore, minter: LocationMinter,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store = store
        self.minter = minter
        self.clock = clock

    async def process(self, message: LifecycleEvent, attempt: int) -> Outcome:
        """Raises the error family on failure; the Settler maps it to retry or park."""
        event = message.root
        with log_context(locationId=event.location_id):
            if isinstance(event, AppInstall):
                await self.install(event)
            else:
                await self.uninstall(event)
        return Done()

    async def install(self, event: AppInstall) -> None:
        location_id, company_id = event.location_id, event.company_id
        if not location_id:
            # An agency-level install: its company token arrives through the OAuth callback.
            log.info("agency install event: nothing to mint", extra={"companyId": company_id})
            return
        current = await self.store.get(location_key(location_id))
        if current is not None and current.status is Status.ACTIVE:
            log.info("install event for a location already stored")
            return
        company = await self.store.get(company_key(company_id)) if company_id else None
        if company_id is None or company is None or not company.installed:
            # A location install: the OAuth callback brings (or brought) its token.
            log.info("install event without a company token: waiting for the OAuth callback",
                     extra={"companyId": company_id})
            return
        try:
            await self.minter.mint_location(company_id, location_id)
        except TokenFailure as failure:
            raise token_error(failure.error, failure.detail) from None
        log.info("location token minted from the company token",
                 extra={"companyId": company_id})

    async def uninstall(self, event: AppUninstall) -> None:
        now = self.clock()
        if event.location_id:
            found = await self.store.uninstall(location_key(event.location_id), now)
            log.info("location uninstalled: secrets deleted" if found
                     else "uninstall event for an unknown location")
        elif event.company_id:
            count = await self.store.uninstall_company(event.company_id, now)
            log.info("company uninstalled: secrets deleted",
                     extra={"companyId": event.company_id, "installations": count})
        else:  # the gateway refuses these; a hand-published one is unusable
            raise PermanentError("UNINSTALL names no location or company",
                                 code="unusable_event")


def register_lifecycle(broker: RabbitBroker, topology: Topology, lifecycle: Lifecycle,
                       settler: Settler, prefetch: int = 10) -> None:
    @broker.subscriber(topology.lifecycle.queue, ack_policy=AckPolicy.MANUAL,
                       channel=Channel(prefetch_count=prefetch, on_return_raises=True))
    async def on_lifecycle(message: RabbitMessage) -> None:
        await settler.run(message, LifecycleEvent, lifecycle.process)
