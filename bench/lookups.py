"""Token and settings look-ups: 200 asked at once, against one at a time.

A real `castghl-oauth` process (its console script, a real Mongo wire server holding the
installations, valid tokens) and the sender's real `OAuthClient` over HTTP. First one
look-up at a time (the round trip), then 200 different locations asked at once. With a
client that allowed one request in flight (FastStream's RPC did), the 200 took 200
round trips; gathered into one call, they take about one.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench import report
from castghl.common.crypto import TokenCipher, generate_key
from castghl.common.ghl.oauth import TokenGrant
from castghl.common.http import pooled_upstream
from castghl.common.oauth_client import OAuthClient, OAuthTimings
from castghl.oauth.store import COLLECTION, MongoInstallations
from castghl.sandbox.server import free_port
from castghl.sender.app import OAUTH_CONNECTIONS

LOCATIONS = 200
SENDER_KEY = "bench-sender-key-0123456789"


async def _seed(mongo_uri: str, key: str) -> list[str]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    store = MongoInstallations(client.get_default_database()[COLLECTION],
                               TokenCipher.from_setting(key))
    await store.ensure_indexes()
    ids = [f"bench-loc-{n:03d}" for n in range(LOCATIONS * 3)]
    now = datetime.now(UTC)
    for location_id in ids:
        await store.save_grant(TokenGrant(access_token=f"tok-{location_id}",
                                          refresh_token=f"ref-{location_id}"),
                               kind="location", location_id=location_id, company_id="bench-co",
                               minted=False, now=now)
    await client.close()
    return ids


def _start(rabbitmq_url: str, mongo_uri: str, key: str, port: int, log: Path
           ) -> subprocess.Popen[bytes]:
    exe = str(Path(sys.executable).with_name("castghl-oauth"))
    env = {"PATH": os.environ.get("PATH", ""), "RABBITMQ_URL": rabbitmq_url,
           "MONGO_URI": mongo_uri, "QUEUE_PREFIX": f"bench{port}.", "PORT": str(port),
           "HOST": "127.0.0.1", "BASE_URL": f"http://127.0.0.1:{port}",
           "GHL_CLIENT_ID": "bench", "GHL_CLIENT_SECRET": "bench", "GHL_APP_ID": "bench",
           "GHL_API_URL": "http://127.0.0.1:9", "TOKEN_ENCRYPTION_KEYS": key,
           "ADMIN_API_KEY": "bench-admin-key-0123456789", "SENDER_API_KEY": SENDER_KEY,
           "LOG_LEVEL": "WARNING"}
    return subprocess.Popen([exe], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)


async def _measure(url: str, ids: list[str]) -> dict[str, Any]:
    # The sender's own pool size (castghl.sender.app.OAUTH_CONNECTIONS).
    http = pooled_upstream(OAUTH_CONNECTIONS, timeout=60)
    try:
        def fresh() -> OAuthClient:  # no cache between the runs
            return OAuthClient(http, url, SENDER_KEY, OAuthTimings(timeout=60))

        # Connections (HTTP to the service, the service's to Mongo) opened beforehand, as
        # in a sender that has been running.
        warm = fresh()
        await asyncio.gather(*(warm.location(i) for i in ids[2 * LOCATIONS:]))
        one = fresh()
        singles = []
        for location_id in ids[:40]:
            started = time.perf_counter()
            await one.location(location_id)
            singles.append(time.perf_counter() - started)
        figures: dict[str, Any] = {"one look-up (median ms)": statistics.median(singles) * 1000}
        for kind in ("settings", "tokens"):
            burst = fresh()
            batch = ids[LOCATIONS:2 * LOCATIONS] if kind == "tokens" else ids[:LOCATIONS]
            started = time.perf_counter()
            if kind == "tokens":
                await asyncio.gather(*(burst.token(i) for i in batch))
            else:
                await asyncio.gather(*(burst.location(i) for i in batch))
            figures[f"{LOCATIONS} {kind} look-ups at once (ms)"] = (
                (time.perf_counter() - started) * 1000)
    finally:
        await http.aclose()
    round_trip = figures["one look-up (median ms)"]
    for kind in ("settings", "tokens"):
        took = figures[f"{LOCATIONS} {kind} look-ups at once (ms)"]
        figures[f"{kind}: round trips for {LOCATIONS}"] = took / round_trip
    return figures


def run(rabbitmq_url: str, mongo_url: str, workdir: Path) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    mongo_uri = f"{mongo_url.split('?', maxsplit=1)[0].rstrip('/')}/bench_lookups_{os.getpid()}"
    key = generate_key()
    ids = asyncio.run(_seed(mongo_uri, key))
    port = free_port()
    process = _start(rabbitmq_url, mongo_uri, key, port, workdir / "oauth.log")
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"castghl-oauth did not start (log: {workdir})")
            time.sleep(0.1)
        return asyncio.run(_measure(url, ids))
    finally:
        process.terminate()
        process.wait(20)


def render(figures: dict[str, Any]) -> str:
    rows = [(name, f"{value:,.1f}") for name, value in figures.items() if name != "at"]
    return report.heading("Look-ups: the sender asking the OAuth service") + "\n" + \
        report.table(["figure", "value"], rows)
