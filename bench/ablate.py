"""Diagnostics only: `castghl-gateway` with one stage changed, to price that stage.

Run as `python -m bench.ablate` with the gateway's environment plus `ABLATE`, a
comma-separated list of changes. Never a production configuration: `noverify` accepts
any signature and `nopublish` stores nothing. The breakdown (bench/breakdown.py) runs
the gateway once per set of changes and reads the server CPU per request each one adds
or saves. Three changes put back what the gateway did before its hot path was trimmed
(bench/README.md, "Gateway stages"), so the old way of each stage is priced in the same
run as the new one.

    infolog    the per-webhook "accepted" line at INFO, as before (now DEBUG)
    fastapi    the webhook routes as FastAPI routes, as before (now a small ASGI app)
    faststream publishes through FastStream's broker, as before (now aio-pika directly)
    nofreeze   no gc.freeze() after start-up
    noverify   the signature check always passes
    nopublish  the publish returns at once (connected and declared all the same)

With `GC_STATS=<path>` every collection is timed, and a daemon thread writes the totals
there twice a second, so the breakdown can show what garbage collection costs.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from fastapi import FastAPI, Request, Response
from faststream.rabbit import RabbitBroker, RabbitExchange, RabbitQueue
from starlette.types import ASGIApp

from castghl.common import serve as common_serve
from castghl.common.broker import Publisher, declare, make_broker, publish
from castghl.common.settings import BrokerSettings
from castghl.common.signatures import PublicKey, WebhookVerifier
from castghl.common.topology import WorkQueue
from castghl.gateway import app as gateway_app
from castghl.gateway import inbound, webhooks
from castghl.gateway import main as gateway_main
from castghl.gateway.intake import BodyTooLarge, Route

CHANGES = ("infolog", "fastapi", "faststream", "nofreeze", "noverify", "nopublish")


class TrustingVerifier(WebhookVerifier):
    def __init__(self, keys: Sequence[PublicKey]) -> None:
        super().__init__(keys)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return True


class NoPublisher(Publisher):
    async def publish(self, queue: RabbitQueue, body: bytes, *, message_id: str | None,
                      headers: Mapping[str, Any] | None = None) -> None:
        return None


class FastStreamPublisher(Publisher):
    """The publish as it was: `castghl.common.broker.publish` on a FastStream broker."""

    broker: RabbitBroker

    async def connect(self) -> None:
        self.broker = make_broker(BrokerSettings(rabbitmq_url=self.url), self.service)
        await self.broker.connect()

    async def close(self) -> None:
        await self.broker.stop()

    async def declare_routes(self, exchange: RabbitExchange, works: Iterable[WorkQueue]
                             ) -> bool:
        # FastStream's publish goes through the default exchange: the queues suffice.
        await declare(self.broker, [q for work in works for q in (work.parked, work.queue)])
        return True

    def connected(self) -> bool:
        return True

    async def publish(self, queue: RabbitQueue, body: bytes, *, message_id: str | None,
                      headers: Mapping[str, Any] | None = None) -> None:
        await publish(self.broker, queue, body, headers=headers, message_id=message_id)


def fastapi_webhooks(routes: Mapping[str, Route], rest: FastAPI, *, max_body_bytes: int,
                     max_concurrent: int) -> ASGIApp:
    """The webhook routes as FastAPI routes on the same app, as they were: the body read
    from `request.stream()` under the cap, a dict answer serialised by FastAPI, refusals
    through the exception handler."""
    for path, route in routes.items():
        rest.post(path)(_endpoint(route, max_body_bytes))
    return rest


def _endpoint(route: Route, max_body_bytes: int) -> Any:
    async def endpoint(request: Request) -> Any:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            raise BodyTooLarge(f"body larger than {max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise BodyTooLarge(f"body larger than {max_body_bytes} bytes")
        answer = await route(request.headers, bytes(body))
        return json.loads(answer) if answer else Response()

    return endpoint


class GcStats:
    """Collections per generation, their total time, and each full (gen-2) pause."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.counts = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.full_pauses_ms: list[float] = []
        self._started = 0.0

    def callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.counts[generation] += 1
        self.seconds[generation] += took
        if generation == 2:
            self.full_pauses_ms.append(round(took * 1000, 2))

    def write_forever(self) -> None:
        while True:
            time.sleep(0.5)
            snapshot = {"counts": self.counts, "seconds": self.seconds,
                        "full_pauses_ms": self.full_pauses_ms}
            Path(self.path + ".tmp").write_text(json.dumps(snapshot))
            os.replace(self.path + ".tmp", self.path)

    def start(self) -> None:
        gc.callbacks.append(self.callback)
        threading.Thread(target=self.write_forever, name="gc-stats", daemon=True).start()


def _patch(module: ModuleType, name: str, value: object) -> None:
    # Loud if the gateway renames what we replace: a silent no-op would price nothing.
    if name not in vars(module):
        raise SystemExit(f"bench.ablate: {module.__name__}.{name} no longer exists")
    vars(module)[name] = value


def _log_accepted_at_info(module: ModuleType) -> None:
    logger = logging.getLogger(module.__name__)
    logger.debug = logger.info  # type: ignore[method-assign]


def apply(changes: set[str]) -> None:
    unknown = changes - set(CHANGES)
    if unknown:
        raise SystemExit(f"ABLATE: unknown change(s) {sorted(unknown)}; known: {CHANGES}")
    if "infolog" in changes:
        _log_accepted_at_info(webhooks)
        _log_accepted_at_info(inbound)
    if "fastapi" in changes:
        # create_app already installed the error family's handler on the FastAPI app.
        _patch(gateway_app, "WebhookApp", fastapi_webhooks)
    if "faststream" in changes:
        _patch(gateway_app, "Publisher", FastStreamPublisher)
    if "nofreeze" in changes:
        _patch(common_serve, "freeze_survivors", lambda: None)
    if "noverify" in changes:
        _patch(gateway_app, "WebhookVerifier", TrustingVerifier)
    if "nopublish" in changes:
        _patch(gateway_app, "Publisher", NoPublisher)


def main() -> None:
    apply({c.strip() for c in os.environ.get("ABLATE", "").split(",") if c.strip()})
    if path := os.environ.get("GC_STATS"):
        GcStats(path).start()
    gateway_main.main()


if __name__ == "__main__":
    main()
