"""The Cast.ph simulator: `create_cast_app(knobs)` is its composition root.

Public API, each path under `/api/v1` and the legacy `/api` (reference/cast.md):
- `POST /sms/send`, `POST /sim/send`: the same body; the sender ID must be one of the
  account's on that channel, else 403 CHANNEL_NOT_ALLOWED (`accounts.py`).
- `GET /sms/status/{id}`, `GET /sim/status/{id}`: the receipt (`messages.py`); each
  path finds its own channel's messages, others are 404 NOT_FOUND.
- `GET /sms/logs?limit&offset&search`: the caller's messages (`logs.py`).
- `GET /account/balance`, `/account/sender-ids`, `/account/profile`,
  `/account/unsubscribed?limit&offset`: the caller's account (`accounts.py`).
Every call passes the per-IP rate limit, then the key; sends also pass the per-key
message limit. Answers to `cast_test_` keys carry `"sandbox": true` (`testmode.py`).
Sandbox controls live under `/_sandbox` (see `controls.py`, `inbound.py`, and
`castghl.sandbox.recording` for calls, config and reset).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response

from castghl.sandbox.cast.controls import controls_router
from castghl.sandbox.cast.errors import install_error_handlers
from castghl.sandbox.cast.inbound import inbound_router
from castghl.sandbox.cast.knobs import CastKnobs
from castghl.sandbox.cast.simulator import CastSimulator
from castghl.sandbox.cast.testmode import SandboxMarker, note_caller
from castghl.sandbox.cast.validation import parse_page
from castghl.sandbox.clock import SimClock
from castghl.sandbox.recording import Recorder, install

__all__ = ["CastKnobs", "create_cast_app"]

API_PREFIXES = ("/api/v1", "/api")


def _api_router(sim: CastSimulator, prefix: str) -> APIRouter:
    async def caller(request: Request) -> str:
        """Every API call: the per-IP limit, then the key. Returns the caller's key."""
        sim.admit(request.client.host if request.client else "unknown")
        api_key = sim.authenticate(request.headers.get("x-api-key"))
        note_caller(request, api_key)
        sim.settle()
        return api_key

    router = APIRouter(prefix=prefix)

    @router.post("/sms/send")
    async def send(request: Request, api_key: str = Depends(caller)) -> Response:
        return await sim.send(request, api_key, "sms")

    @router.post("/sim/send")
    async def sim_send(request: Request, api_key: str = Depends(caller)) -> Response:
        return await sim.send(request, api_key, "sim")

    @router.get("/sms/status/{message_id}")
    async def status(message_id: str, api_key: str = Depends(caller)) -> dict[str, Any]:
        await sim.pause()
        return sim.message_for(api_key, message_id, "sms").delivery(sim.clock())

    @router.get("/sim/status/{message_id}")
    async def sim_status(message_id: str, api_key: str = Depends(caller)) -> dict[str, Any]:
        await sim.pause()
        return sim.message_for(api_key, message_id, "sim").delivery(sim.clock())

    @router.get("/sms/logs")
    async def logs(request: Request, api_key: str = Depends(caller)) -> dict[str, Any]:
        page = parse_page(request.query_params.multi_items(), searchable=True)
        await sim.pause()
        return sim.logs(api_key, page)

    @router.get("/account/balance")
    async def balance(api_key: str = Depends(caller)) -> dict[str, Any]:
        await sim.pause()
        return sim.account(api_key).balance()

    @router.get("/account/sender-ids")
    async def sender_ids(api_key: str = Depends(caller)) -> dict[str, Any]:
        await sim.pause()
        return sim.account(api_key).sender_ids_body()

    @router.get("/account/profile")
    async def profile(api_key: str = Depends(caller)) -> dict[str, Any]:
        await sim.pause()
        return sim.account(api_key).profile_body()

    @router.get("/account/unsubscribed")
    async def unsubscribed(request: Request, api_key: str = Depends(caller)
                           ) -> dict[str, Any]:
        page = parse_page(request.query_params.multi_items(), searchable=False)
        await sim.pause()
        return sim.account(api_key).unsubscribed_body(page)

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
    # Added before `install`, so inside the recorder: recorded answers carry the mark.
    app.add_middleware(SandboxMarker)
    install(app, recorder, knobs, sim.clock, on_reset=sim.reset)
    return app
