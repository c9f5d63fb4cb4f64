"""Composition root of the GoHighLevel simulator: knobs in, FastAPI app out.

Every piece of state is built here per call, so two simulators in one process (tests,
the demo) never share tokens, messages or rate windows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from castghl.sandbox.clock import SimClock
from castghl.sandbox.ghl import contacts, controls, conversations, oauth
from castghl.sandbox.ghl.access import Gate
from castghl.sandbox.ghl.custom_page import custom_page_router
from castghl.sandbox.ghl.errors import install_error_handlers
from castghl.sandbox.ghl.faults import FaultInjector
from castghl.sandbox.ghl.knobs import GhlKnobs
from castghl.sandbox.ghl.ratelimit import RateLimiter, RateLimitHeaders
from castghl.sandbox.ghl.state import GhlState
from castghl.sandbox.ghl.tokens import TokenStore
from castghl.sandbox.ghl.webhooks import Signer
from castghl.sandbox.recording import Recorder, install

__all__ = ["GhlKnobs", "GhlSimulator", "create_ghl_app"]


@dataclass
class GhlSimulator:
    """The parts of one running simulator, at `app.state.ghl` for white-box tests."""

    knobs: GhlKnobs
    # The one time every part reads (rate windows, the status race, expiries, dates).
    clock: SimClock
    recorder: Recorder
    state: GhlState
    tokens: TokenStore
    limiter: RateLimiter
    signer: Signer

    def reset(self) -> None:
        # Knobs and signing keys survive a reset; everything GHL "stored" does not, nor
        # a test's steering of the clock, which goes back to real time with it.
        self.clock.resume()
        self.state.reset()
        self.tokens.reset()
        self.limiter.reset()


def create_ghl_app(knobs: GhlKnobs, clock: SimClock | None = None) -> FastAPI:
    """`clock`: the simulator's time (default real time); a test passes one to steer it."""
    clock = clock if clock is not None else SimClock()
    sim = GhlSimulator(knobs, clock, Recorder(), GhlState(clock), TokenStore(clock),
                       RateLimiter(clock), Signer(knobs))
    gate = Gate(knobs, sim.tokens, sim.limiter)
    sandbox = controls.SandboxControls(knobs, sim.state, sim.tokens, sim.signer)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await sandbox.close()

    app = FastAPI(title="GoHighLevel simulator", docs_url="/_sandbox/docs",
                  openapi_url="/_sandbox/openapi.json", redoc_url=None, lifespan=lifespan)
    app.state.ghl = sim
    install_error_handlers(app)
    app.include_router(oauth.OAuthEndpoints(knobs, sim.tokens, gate, clock).router())
    app.include_router(conversations.build_router(knobs, sim.state, gate))
    app.include_router(contacts.build_router(sim.state, gate))
    app.include_router(sandbox.router())
    app.include_router(custom_page_router(knobs))
    # Added first = innermost: recording (added by `install`) sees injected faults, and
    # rate-limit headers land on every answer the routes and error handlers produce.
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(FaultInjector, knobs=knobs)
    install(app, sim.recorder, knobs, clock, on_reset=sim.reset)
    return app
