"""`/_sandbox` views and levers of the Cast simulator beyond the shared recording ones.

`/_sandbox/sent` is the ground truth tests assert on: messages Cast really sent — not
replays, not refusals — with their send time, so a benchmark can bin them per second.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from castghl.sandbox.cast.messages import OutcomeOverride
from castghl.sandbox.cast.simulator import CastSimulator
from castghl.sandbox.recording import SANDBOX_PREFIX


def controls_router(sim: CastSimulator) -> APIRouter:
    router = APIRouter(prefix=SANDBOX_PREFIX, tags=["sandbox"])

    @router.get("/sent")
    async def sent() -> list[dict[str, Any]]:
        now = sim.clock()
        return [message.record(now) for message in sim.log.all()]

    @router.get("/state")
    async def state() -> dict[str, Any]:
        sim.settle()
        return sim.state()

    @router.put("/messages/{message_id}/outcome")
    async def set_outcome(message_id: str, override: OutcomeOverride) -> dict[str, Any]:
        now = sim.clock()
        return sim.override_outcome(message_id, override, now).delivery(now)

    return router
