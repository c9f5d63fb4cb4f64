"""What every simulator shares: a record of the calls it received, live knobs, its clock.

Tests, the demo and benchmarks read `/_sandbox/calls` to see exactly what our services
sent, change behaviour while a simulator runs through `/_sandbox/config`, and stop or move
the simulator's time through `/_sandbox/clock` (see `castghl.sandbox.clock`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Body, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from castghl.sandbox.clock import SimClock

SANDBOX_PREFIX = "/_sandbox"
# Keeps a reading within what a datetime can format (year 9999), however often it is sent.
MAX_ADVANCE_SECONDS = 10 * 366 * 86_400


class Call(BaseModel):
    """One request as the simulator received it, and what it answered."""

    seq: int
    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int
    response: Any = None


class Recorder:
    """Thread-safe, append-only list of calls; cleared by `/_sandbox/reset`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[Call] = []
        self._seq = 0

    def add(self, **fields: Any) -> None:
        with self._lock:
            self._seq += 1
            self._calls.append(Call(seq=self._seq, **fields))

    def calls(self, path: str | None = None, method: str | None = None) -> list[Call]:
        with self._lock:
            found = list(self._calls)
        if path is not None:
            # "/api/sms/*" selects by prefix; anything else must match exactly.
            prefix = path.removesuffix("*")
            found = [c for c in found
                     if c.path == path or (path.endswith("*") and c.path.startswith(prefix))]
        if method is not None:
            found = [c for c in found if c.method == method.upper()]
        return found

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    if "application/x-www-form-urlencoded" in content_type:
        return dict(parse_qsl(text, keep_blank_values=True))
    try:
        return json.loads(text)
    except ValueError:
        return text


class RecordingMiddleware:
    """Pure ASGI middleware: records method, path, headers, body, status and answer."""

    def __init__(self, app: ASGIApp, recorder: Recorder, clock: Callable[[], float]) -> None:
        self.app = app
        self.recorder = recorder
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(SANDBOX_PREFIX):
            await self.app(scope, receive, send)
            return
        body_parts: list[bytes] = []
        answer_parts: list[bytes] = []
        status = 0

        async def recv() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body_parts.append(message.get("body", b""))
            return message

        async def snd(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                answer_parts.append(message.get("body", b""))
            await send(message)

        started = self.clock()
        try:
            await self.app(scope, recv, snd)
        finally:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope.get("headers", [])}
            content_type = headers.get("content-type", "")
            self.recorder.add(
                at=started,
                method=scope["method"],
                path=scope["path"],
                query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
                headers=headers,
                body=_decode(b"".join(body_parts), content_type),
                status=status,
                response=_decode(b"".join(answer_parts), "application/json"),
            )


class ClockChange(BaseModel):
    """`POST /_sandbox/clock`: freeze or resume first, then advance."""

    model_config = ConfigDict(extra="forbid")

    # True stops time; false goes back to real time and drops every advance, as a reset.
    freeze: StrictBool | None = None
    advance: float = Field(default=0.0, ge=0, le=MAX_ADVANCE_SECONDS, allow_inf_nan=False)


class ClockReading(BaseModel):
    now: float
    frozen: bool


def sandbox_router(
    recorder: Recorder,
    knobs: BaseModel,
    clock: SimClock,
    on_reset: Callable[[], None] | None = None,
) -> APIRouter:
    """`/_sandbox/calls`, `/_sandbox/config` (GET, PATCH), `/_sandbox/clock` (GET, POST)
    and `/_sandbox/reset`."""
    router = APIRouter(prefix=SANDBOX_PREFIX, tags=["sandbox"])

    @router.get("/calls")
    def list_calls(path: str | None = Query(None), method: str | None = Query(None)
                   ) -> list[Call]:
        return recorder.calls(path, method)

    @router.get("/config")
    def get_config() -> dict[str, Any]:
        return knobs.model_dump(mode="json")

    @router.patch("/config")
    def set_config(changes: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        merged = {**knobs.model_dump(), **changes}
        try:
            checked = type(knobs).model_validate(merged)
        except ValidationError as exc:
            raise HTTPException(422, exc.errors(include_url=False, include_context=False)) from exc
        unknown = set(changes) - set(type(knobs).model_fields)
        if unknown:
            raise HTTPException(422, f"unknown knobs: {sorted(unknown)}")
        for name in changes:
            setattr(knobs, name, getattr(checked, name))
        return knobs.model_dump(mode="json")

    @router.get("/clock")
    def read_clock() -> ClockReading:
        return ClockReading(now=clock(), frozen=clock.frozen)

    @router.post("/clock")
    def steer_clock(change: ClockChange | None = Body(None)  # noqa: B008
                    ) -> ClockReading:
        change = change or ClockChange()
        if change.freeze is True:
            clock.freeze()
        elif change.freeze is False:
            clock.resume()
        if change.advance:
            clock.advance(change.advance)
        return read_clock()

    @router.post("/reset")
    async def reset() -> dict[str, str]:  # async: state is reset on the event loop's thread
        recorder.clear()
        # One test's frozen or advanced time must never leak into the next test.
        clock.resume()
        if on_reset is not None:
            on_reset()
        return {"status": "reset"}

    return router


def install(app: FastAPI, recorder: Recorder, knobs: BaseModel, clock: SimClock,
            on_reset: Callable[[], None] | None = None) -> None:
    """Wire recording and the `/_sandbox` routes into a simulator app."""
    app.add_middleware(RecordingMiddleware, recorder=recorder, clock=clock)
    app.include_router(sandbox_router(recorder, knobs, clock, on_reset))
