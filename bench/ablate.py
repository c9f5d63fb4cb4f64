"""Diagnostics only: `castghl-gateway` with stages taken out, to price each stage.

Run as `python -m bench.ablate` with the gateway's environment plus `ABLATE`, a
comma-separated list of changes. Never a production configuration: `noverify` accepts
any signature and `nopublish` stores nothing. The breakdown (bench/breakdown.py) removes
them one after another and reads the server CPU per request that each removal saves.

    freeze     gc.freeze() after start-up (a candidate fix, not a removal)
    nolog      no per-webhook INFO line
    noverify   the signature check always passes
    nopublish  the publish returns at once

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from faststream.rabbit import RabbitBroker, RabbitQueue
from pydantic import BaseModel
from starlette.types import ASGIApp

from castghl.common.serve import serve
from castghl.common.signatures import PublicKey, WebhookVerifier
from castghl.gateway import app as gateway_app
from castghl.gateway import main as gateway_main
from castghl.gateway import webhooks

CHANGES = ("freeze", "nolog", "noverify", "nopublish")


class TrustingVerifier(WebhookVerifier):
    def __init__(self, keys: Sequence[PublicKey]) -> None:
        super().__init__(keys)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> bool:
        return True


async def no_publish(broker: RabbitBroker, queue: RabbitQueue, message: BaseModel | bytes, *,
                     headers: Mapping[str, Any] | None = None,
                     message_id: str | None = None) -> None:
    return None


def frozen_serve(app: ASGIApp, host: str, port: int) -> None:
    # Everything imported and built so far (FastAPI, pydantic, FastStream, the app) moves
    # out of the collector's reach, so a full collection no longer walks it.
    gc.collect()
    gc.freeze()
    serve(app, host, port)


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


def apply(changes: set[str]) -> None:
    unknown = changes - set(CHANGES)
    if unknown:
        raise SystemExit(f"ABLATE: unknown change(s) {sorted(unknown)}; known: {CHANGES}")
    if "freeze" in changes:
        _patch(gateway_main, "serve", frozen_serve)
    if "nolog" in changes:
        logging.getLogger(webhooks.__name__).setLevel(logging.WARNING)
    if "noverify" in changes:
        _patch(gateway_app, "WebhookVerifier", TrustingVerifier)
    if "nopublish" in changes:
        _patch(webhooks, "publish", no_publish)


def main() -> None:
    apply({c.strip() for c in os.environ.get("ABLATE", "").split(",") if c.strip()})
    if path := os.environ.get("GC_STATS"):
        GcStats(path).start()
    gateway_main.main()


if __name__ == "__main__":
    main()
