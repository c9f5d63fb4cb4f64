"""Announcing that a location changed, so the next message any sender handles sees it.

Senders cache location settings for a while (castghl.common.oauth_client); an install,
an uninstall or an operator's edit must not wait for that cache to expire. A notice is a
best-effort broadcast: one lost (broker away, a sender reconnecting) is covered by the
cache's expiry, so publishing never fails the change it announces.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol

from faststream.rabbit import RabbitBroker

from castghl.common.messages import LocationChanged
from castghl.common.topology import Topology

log = logging.getLogger(__name__)

NOTICE_TIMEOUT_SECONDS: Final = 5.0


class Notices(Protocol):
    async def location(self, location_id: str) -> None: ...

    async def company(self, company_id: str) -> None: ...


class ChangeNotices:
    def __init__(self, broker: RabbitBroker, topology: Topology) -> None:
        self.broker = broker
        self.exchange = topology.location_changes

    async def location(self, location_id: str) -> None:
        await self._announce(LocationChanged(location_id=location_id))

    async def company(self, company_id: str) -> None:
        await self._announce(LocationChanged(company_id=company_id))

    async def _announce(self, notice: LocationChanged) -> None:
        try:
            async with asyncio.timeout(NOTICE_TIMEOUT_SECONDS):
                # Not mandatory: with no sender running, nobody needs to hear it.
                await self.broker.publish(notice.model_dump_json().encode(),
                                          exchange=self.exchange, persist=False,
                                          mandatory=False, content_type="application/json")
        except Exception:
            log.warning("could not announce a location change; senders see it when their "
                        "cached settings expire", exc_info=True)
