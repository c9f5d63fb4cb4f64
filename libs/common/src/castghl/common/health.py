"""`/healthz`, `/readyz` and `/metrics`, the same on every service.

`/healthz` answers while the process serves HTTP (a liveness probe must not fail because
RabbitMQ is down: restarting us would not fix RabbitMQ). `/readyz` runs the service's
readiness checks — broker connected, Mongo answering — and answers 503 naming the
failing ones, so an orchestrator stops routing webhooks to a replica that cannot publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from faststream.rabbit import RabbitBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo import AsyncMongoClient

ReadinessCheck = Callable[[], Awaitable[bool]]
CHECK_TIMEOUT_SECONDS = 2.0


async def _passes(check: ReadinessCheck) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return await check()
    except Exception:  # a check that raises or hangs is simply "not ready"
        return False


def broker_check(broker: RabbitBroker) -> ReadinessCheck:
    async def connected() -> bool:
        return await broker.ping(timeout=1.0)

    return connected


def mongo_check(client: AsyncMongoClient[Any]) -> ReadinessCheck:
    async def answers() -> bool:
        await client.admin.command("ping")
        return True

    return answers


def health_router(checks: Mapping[str, ReadinessCheck]) -> APIRouter:
    router = APIRouter(tags=["operations"], include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        results = dict(zip(checks, await asyncio.gather(*map(_passes, checks.values())),
                           strict=True))
        ready = all(results.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": results},
                            status_code=200 if ready else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
