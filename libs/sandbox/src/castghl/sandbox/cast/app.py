"""The Cast.ph simulator: `create_cast_app(knobs)` is its composition root.

Public API (both path families, reference/cast.md): send, delivery status, balance and
sender IDs. Sandbox controls live under `/_sandbox` (see `controls.py`, `inbound.py`,
and `castghl.sandbox.recording` for calls, config and reset).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from castghl.sandbox.cast.controls import controls_router
from castghl.sandbox.cast.errors import install_error_handlers
from castghl.sandbox.cast.inbound import inbound_router
from castghl.sandbox.cast.knobs import CastKnobs
from castghl.sandbox.cast.simulator import CastSimulator
from castghl.sandbox.clock import SimClock
from castghl.sandbox.recording import Recorder, install

__all__ = ["CastKnobs", "create_cast_app"]

API_PREFIXES = ("/api/v1", "/api")


def _api_router(sim: CastSimulator, prefix: str) -> APIRouter:
    async def caller(request: Request) -> str:
        """Every API call: the per-IP limit, then the key. Returns the caller's key."""
        sim.admit(request.client.host if request.client else "unknown")
        return sim.authenticate(request.headers.get("x-api-key"))

    router = APIRouter(prefix=prefix)

    @router.post("/sms/send")
    async def send(request: Request, api_key: str = Depends(caller)) -> Response:
        return await sim.send(request, api_key)

    @router.get("/sms/status/{message_id}")
    async def status(message_id: str, api_key: str = Depends(caller)) -> dict[str, Any]:
        await sim.pause()
        return sim.message_for(api_key, message_id).delivery(sim.clock())

    @router.get("/account/balance")
    async def balance(_: str = Depends(caller)) -> dict[str, Any]:
        await sim.pause()
        return sim.balance()

    @router.get("/account/sender-ids")
    async def sender_ids(_: str = Depends(caller)) -> dict[str, Any]:
        await sim.pause()
        return sim.sender_ids()

    return router


def create_cast_app(knobs: CastKnobs, clock: SimClock | None = None) -> FastAPI:
    """`clock`: the simulator's time (default real time); a test passes one to steer it."""
    sim = CastSimulator(knobs, clock)
    app = FastAPI(title="Cast.ph simulator", docs_url="/_sandbox/docs",
                  openapi_url="/_sandbox/openapi.json", redoc_url=None)
    app.state.simulator = sim
    recorder = Recorder()
    app.state.recorder = recorder
    install_error_handlers(app)
    for prefix in API_PREFIXES:
        app.include_router(_api_router(sim, prefix))
    app.include_router(controls_router(sim))
    app.include_router(inbound_router(knobs, sim.clock))
    install(app, recorder, knobs, sim.clock, on_reset=sim.reset)
    return app
