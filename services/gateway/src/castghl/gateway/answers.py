"""How the gateway says no: one exception, mapped to HTTP in one handler.

GHL retries any non-2xx up to 12 times and flags endpoints that answer too few 2xx, so
the distinction matters: 4xx for input no retry can fix, 503 only for our own outage.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter

log = logging.getLogger(__name__)

REJECTED = Counter("castghl_webhooks_rejected_total", "Webhooks answered with an error",
                   ["route", "status"])


class Rejected(Exception):
    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


def install(app: FastAPI) -> None:
    @app.exception_handler(Rejected)
    async def _rejected(request: Request, exc: Rejected) -> JSONResponse:
        REJECTED.labels(request.url.path, str(exc.status)).inc()
        log.info("webhook rejected", extra={"route": request.url.path, "status": exc.status,
                                            "reason": exc.error})
        return JSONResponse({"error": exc.error}, status_code=exc.status)
