"""Cast's test mode: every answer to a `cast_test_` key carries `"sandbox": true`.

reference/cast.md ("Basics"): sandbox keys get mock results marked this way. Marking in
one middleware rather than in each route keeps every answer marked — successes, refusals,
idempotent replays, injected faults and routes added later alike. Only answers given
after the key was accepted are marked: the per-IP 429 and the 401/403 of authentication
come before Cast knows whose key it is.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from castghl.sandbox.cast.accounts import is_sandbox_key
from castghl.sandbox.cast.errors import API_PREFIX

_STATE_KEY = "cast_sandbox"


def note_caller(request: Request, api_key: str) -> None:
    """Called once the key is accepted: from here on, its answer is marked if it is a
    sandbox key."""
    setattr(request.state, _STATE_KEY, is_sandbox_key(api_key))


class SandboxMarker:
    """Pure ASGI middleware: adds `"sandbox": true` to a marked request's JSON object."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def hold_back(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            # `state` is the dict `request.state` writes to, shared by every layer.
            if scope.get("state", {}).get(_STATE_KEY):
                body = _marked(body)
            await send(_with_length(start, len(body)))
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, hold_back)


def _marked(body: bytes) -> bytes:
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        return body
    if not isinstance(parsed, dict):
        return body
    parsed["sandbox"] = True
    # As Starlette's JSONResponse writes it.
    return json.dumps(parsed, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


def _with_length(start: Message, length: int) -> Message:
    headers = [(name, value) for name, value in start.get("headers", [])
               if name.lower() != b"content-length"]
    headers.append((b"content-length", str(length).encode("latin-1")))
    return {**start, "headers": headers}
