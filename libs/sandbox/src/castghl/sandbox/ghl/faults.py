"""Injected failures: knob `fail_next` answers the next matching API calls with an error.

Rules are consumed in order, matched by path prefix (and method when given), before any
other check — as a GHL outage would, whatever the token or body.
"""

from __future__ import annotations

import threading

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from castghl.sandbox.ghl.errors import INVALID_TOKEN, nest_body, phrase
from castghl.sandbox.ghl.knobs import FailRule, GhlKnobs
from castghl.sandbox.recording import SANDBOX_PREFIX


def _default_body(status: int) -> dict[str, object]:
    if status == 401:
        return nest_body(status, INVALID_TOKEN)
    if status >= 500:
        return nest_body(status, "Internal server error")
    return nest_body(status, phrase(status))


class FaultInjector:
    def __init__(self, app: ASGIApp, knobs: GhlKnobs) -> None:
        self.app = app
        self.knobs = knobs
        self._lock = threading.Lock()

    def _take(self, method: str, path: str) -> FailRule | None:
        with self._lock:
            for rule in self.knobs.fail_next:
                if not path.startswith(rule.path_prefix):
                    continue
                if rule.method is not None and rule.method.upper() != method:
                    continue
                # In place, so GET /_sandbox/config shows what is left.
                if rule.count <= 1:
                    self.knobs.fail_next.remove(rule)
                else:
                    rule.count -= 1
                return rule
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(SANDBOX_PREFIX):
            rule = self._take(scope["method"], scope["path"])
            if rule is not None:
                body = rule.body if rule.body is not None else _default_body(rule.status)
                await JSONResponse(body, rule.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)
