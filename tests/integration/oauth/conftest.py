"""The real OAuth service against real RabbitMQ, a real Mongo wire server and the GHL
simulator over real HTTP: in a thread (most tests) or as `castghl-oauth` processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from faststream.rabbit import RabbitBroker
from pymongo import MongoClient
from starlette.types import ASGIApp, Receive, Scope, Send

from castghl.common.broker import make_broker
from castghl.common.crypto import generate_key
from castghl.common.http import pooled_upstream
from castghl.common.oauth_client import OAuthClient, OAuthTimings
from castghl.common.settings import BrokerSettings
from castghl.common.topology import Topology
from castghl.oauth.app import create_app
from castghl.oauth.settings import OAuthSettings
from castghl.oauth.store import COLLECTION
from castghl.sandbox.cast.knobs import DEFAULT_API_KEY
from castghl.sandbox.ghl.app import GhlKnobs, create_ghl_app
from castghl.sandbox.ghl.knobs import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from castghl.sandbox.infra import Infra
from castghl.sandbox.server import free_port, serve_in_thread

ADMIN_KEY = "admin-test-key-0123456789"
SENDER_KEY = "sender-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
Doc = dict[str, Any]


class SlowTokenEndpoint:
    """GHL taking its time on POST /oauth/token: widens the window in which replicas race
    for the refresh lease (the simulator itself answers in about a millisecond)."""

    def __init__(self, app: ASGIApp, delay: float) -> None:
        self.app = app
        self.delay = delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/oauth/token":
            await asyncio.sleep(self.delay)  # widens the race; holds at any speed
        await self.app(scope, receive, send)


@dataclass
class Ghl:
    """The GHL simulator: its URL, live knobs and a client for its `/_sandbox` views."""

    url: str
    knobs: GhlKnobs

    def sandbox(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(method, f"{self.url}/_sandbox{path}", timeout=10, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def counters(self) -> dict[str, Any]:
        view: dict[str, Any] = self.sandbox("GET", "/oauth")
        return view

    def token_works(self, token: str, location_id: str) -> bool:
        answer = httpx.post(f"{self.url}/contacts/upsert", timeout=10,
                            headers={"Authorization": f"Bearer {token}", "Version": "2021-07-28"},
                            json={"locationId": location_id, "phone": "+639171234567"})
        return answer.is_success


@pytest.fixture
def ghl() -> Iterator[Ghl]:
    knobs = GhlKnobs()
    with serve_in_thread(SlowTokenEndpoint(create_ghl_app(knobs), 0.3)) as url:
        yield Ghl(url, knobs)


@dataclass
class Stack:
    """Everything one test's OAuth service talks to, and the environment that names it."""

    ghl: Ghl
    rabbitmq_url: str
    mongo_uri: str
    topology: Topology
    keys: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> OAuthSettings:
        values: dict[str, Any] = {k.lower(): v for k, v in self.env.items()}
        values.update(overrides)
        return OAuthSettings(**values)

    def docs(self) -> dict[str, Doc]:
        """The raw `installations` documents, as MongoDB holds them."""
        client: MongoClient[Doc]
        with MongoClient(self.mongo_uri, serverSelectionTimeoutMS=3000) as client:
            found: list[Doc] = list(client.get_default_database()[COLLECTION].find())
        return {d["_id"]: d for d in found}


@pytest.fixture
async def stack(rabbitmq: Infra, mongo_uri: str, ghl: Ghl, cast_sim: Any
                ) -> AsyncIterator[Stack]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    keys = [generate_key(), generate_key()]
    env = {
        "RABBITMQ_URL": rabbitmq.url, "MONGO_URI": mongo_uri, "GHL_API_URL": ghl.url,
        "GHL_MARKETPLACE_URL": ghl.url, "GHL_CLIENT_ID": DEFAULT_CLIENT_ID,
        "GHL_APP_ID": ghl.knobs.app_id,
        "GHL_CLIENT_SECRET": DEFAULT_CLIENT_SECRET, "TOKEN_ENCRYPTION_KEYS": keys[0],
        "ADMIN_API_KEY": ADMIN_KEY, "SENDER_API_KEY": SENDER_KEY, "QUEUE_PREFIX": prefix,
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING", "GHL_HTTP_TIMEOUT_SECONDS": "5",
        "REFRESH_LEASE_SECONDS": "15", "REFRESH_POLL_SECONDS": "0.02",
        # Sender IDs set through the admin API are checked with Cast.
        "CAST_API_URL": cast_sim.url, "CAST_API_KEY": DEFAULT_API_KEY,
    }
    yield Stack(ghl, rabbitmq.url, mongo_uri, Topology(prefix=prefix), keys, env)
    await delete_queues(rabbitmq.url, Topology(prefix=prefix))


async def delete_queues(url: str, topology: Topology) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        # Every queue of the prefix: the gateway some tests run declares more than ours.
        names = [q.name for work in topology.work_queues() for q in work.all_queues()]
        for name in names:
            await channel.queue_delete(name, if_unused=False, if_empty=False)


async def take_one(url: str, queue: str, within: float = 120.0
                   ) -> aio_pika.abc.AbstractIncomingMessage:
    """The first message to arrive in `queue` (acked), or fail after `within` seconds."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        async with declared.iterator() as messages:
            async with asyncio.timeout(within):
                async for message in messages:
                    await message.ack()
                    return message
    pytest.fail(f"nothing arrived in {queue}")


async def queue_counts(url: str, queue: str) -> tuple[int, int]:
    """(messages ready, consumers) of `queue`, as RabbitMQ reports them."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        result = (await channel.declare_queue(queue, passive=True)).declaration_result
        return result.message_count or 0, result.consumer_count or 0


@dataclass
class Running:
    url: str
    settings: OAuthSettings


@contextmanager
def serve(stack: Stack, **overrides: Any) -> Iterator[Running]:
    """The OAuth service in this process (its own thread and event loop)."""
    port = free_port()
    settings = stack.settings(base_url=f"http://127.0.0.1:{port}", port=port, **overrides)
    with serve_in_thread(create_app(settings), port=port) as url:
        yield Running(url, settings)


@pytest.fixture
def service(stack: Stack) -> Iterator[Running]:
    with serve(stack) as running:
        yield running


class Brokers:
    """Caller-side brokers, connected as the sender builds its own; stopped afterwards."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[RabbitBroker] = []

    async def connect(self) -> RabbitBroker:
        broker = make_broker(BrokerSettings(rabbitmq_url=self.url), "test-caller")
        await broker.connect()
        self.made.append(broker)
        return broker

    async def close(self) -> None:
        for broker in self.made:
            await broker.stop()


@pytest.fixture
async def brokers(stack: Stack) -> AsyncIterator[Brokers]:
    made = Brokers(stack.rabbitmq_url)
    yield made
    await made.close()


class Callers:
    """The sender's side of the internal API, as the sender builds it; closed afterwards."""

    def __init__(self) -> None:
        self.http = pooled_upstream(256, timeout=60)

    def to(self, url: str) -> OAuthClient:
        return OAuthClient(self.http, url, SENDER_KEY, OAuthTimings(timeout=60))


@pytest.fixture
async def callers() -> AsyncIterator[Callers]:
    made = Callers()
    yield made
    await made.http.aclose()


@pytest.fixture
async def oauth(service: Running, callers: Callers) -> OAuthClient:
    return callers.to(service.url)


def browser() -> httpx.AsyncClient:
    return httpx.AsyncClient(follow_redirects=True, timeout=15)


async def install(base_url: str, agency: bool = False) -> httpx.Response:
    """What a person's browser does: our link → GHL's chooser → our callback."""
    async with browser() as client:
        return await client.get(f"{base_url}/oauth/install",
                                params={"agency": "true"} if agency else None)


def wait_for(check: Any, what: str, timeout: float = 120.0) -> Any:
    """Poll until `check()` is truthy (an asynchronous effect to appear), or fail. The
    deadline only ends a run gone wrong: generous, so a slow machine never reaches it."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)  # a poll interval: the loop ends when the check holds


@dataclass
class Process:
    url: str
    popen: subprocess.Popen[bytes]
    log: Path


def start_process(stack: Stack, tmp_path: Path, name: str, **env: str) -> Process:
    """`castghl-oauth` as an operator runs it: the console script, settings from env."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / f"{name}.log"
    exe = str(Path(sys.executable).with_name("castghl-oauth"))
    popen = subprocess.Popen(
        [exe], stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={"PATH": os.environ.get("PATH", ""), **stack.env, "PORT": str(port),
             "BASE_URL": url, **env})
    return Process(url, popen, log)


def wait_ready(process: Process, timeout: float = 120.0) -> None:
    def ready() -> bool:
        if process.popen.poll() is not None:
            pytest.fail(f"castghl-oauth exited: {process.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{process.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, f"castghl-oauth at {process.url} to be ready", timeout)


def stop_process(process: Process) -> None:
    process.popen.terminate()
    try:
        process.popen.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.popen.kill()
        process.popen.wait(timeout=5)
