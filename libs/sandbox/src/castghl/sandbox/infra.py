"""Real RabbitMQ and MongoDB for tests, the demo and benchmarks: found, or started.

Order of choice (DESIGN.md "Tests and runs"): the URL given in the environment (and it
must answer); else containers through testcontainers when a Docker API answers; else what
this machine has — a RabbitMQ on localhost:5672, and the MongoDB-wire emulator nx-27017
started as a subprocess. Each `Infra` says in words what it is, and the emulator is always
called an emulator, so no run can pass itself off as tested against MongoDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from castghl.sandbox.server import free_port

DEFAULT_RABBITMQ_IMAGE = "rabbitmq:4-management"
DEFAULT_MONGO_IMAGE = "mongo:8"
LOCAL_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


class InfraUnavailable(RuntimeError):
    """No way to get this service here; the message says what was tried."""


@dataclass
class Infra:
    url: str
    description: str
    stop: Callable[[], None] = field(default=lambda: None, repr=False)


def _answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    # mongodb URIs may list several hosts; the first is enough to know something listens.
    netloc = parts.netloc.rsplit("@", 1)[-1].split(",")[0]
    host, _, port = netloc.partition(":")
    return host or "localhost", int(port or default_port)


def _wait(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise InfraUnavailable(f"{what} did not become ready within {timeout:.0f} s")
        time.sleep(0.2)


def docker_available() -> bool:
    """True when a Docker-compatible API answers (DOCKER_HOST or the default socket)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        path = host.removeprefix("unix://")
        if not Path(path).exists():
            return False
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b"OK" in sock.recv(1024)
        return False
    host_, port = _host_port(host.replace("tcp://", "http://"), 2375)
    return _answers(host_, port)


def mongo_kind(url: str) -> str:
    """'MongoDB 8.0.4' or 'MongoDB-wire emulator nx-27017', asked of the server itself."""
    from pymongo import MongoClient  # noqa: PLC0415 - only where Mongo is actually used

    client: MongoClient[dict[str, Any]]
    with MongoClient(url, serverSelectionTimeoutMS=3000) as client:
        info = client.admin.command("buildInfo")
    if "nx" in str(info.get("process", "")).lower():
        return "MongoDB-wire emulator nx-27017 (not MongoDB)"
    return f"MongoDB {info.get('version', '?')}"


def _mongo_ping(url: str) -> bool:
    from pymongo import MongoClient  # noqa: PLC0415
    from pymongo.errors import PyMongoError  # noqa: PLC0415

    client: MongoClient[dict[str, Any]]
    try:
        with MongoClient(url, serverSelectionTimeoutMS=500) as client:
            client.admin.command("ping")
    except PyMongoError:
        return False
    return True


T = TypeVar("T")


def _in_own_loop(work: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
    """Run `work()` to completion on a new event loop in its own thread: callers may be
    inside an event loop themselves (async tests) or have none (the demo)."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(asyncio.run(work()))
        except Exception as exc:  # re-raised in the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if failure:
        raise failure[0]
    if not outcome:
        raise TimeoutError(f"no answer within {timeout:.0f} s")
    return outcome[0]


def _amqp_ready(url: str) -> bool:
    # A TCP accept is not enough: RabbitMQ opens its port before it accepts logins.
    import aio_pika  # noqa: PLC0415

    async def login() -> bool:
        connection = await aio_pika.connect(url, timeout=3)
        await connection.close()
        return True

    try:
        return _in_own_loop(login, 10)
    except Exception:  # any failure means "not yet"
        return False


async def _delete_queues(url: str, names: list[str]) -> None:
    import aio_pika  # noqa: PLC0415

    connection = await aio_pika.connect(url)
    async with connection:
        for name in names:
            # A fresh channel each time: deleting an absent queue is fine, but a channel
            # error on one must not stop the rest.
            channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.queue_delete(name, if_unused=False, if_empty=False)
            with contextlib.suppress(Exception):
                await channel.close()


def delete_queues(url: str, names: list[str]) -> None:
    """Remove a test run's queues: quorum queues hold file descriptors until deleted."""
    try:
        _in_own_loop(lambda: _delete_queues(url, names), 60)
    except Exception as exc:
        raise InfraUnavailable(f"could not delete queues: {exc}") from exc


async def _queue_depths(url: str, names: list[str]) -> dict[str, int]:
    import aio_pika  # noqa: PLC0415

    depths: dict[str, int] = {}
    connection = await aio_pika.connect(url)
    async with connection:
        for name in names:
            # Passive: asks without declaring. A queue nobody declared is absent, which
            # closes the channel, so each question gets a fresh one.
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                continue
            depths[name] = queue.declaration_result.message_count or 0
            with contextlib.suppress(Exception):
                await channel.close()
    return depths


def queue_depths(url: str, names: list[str]) -> dict[str, int]:
    """Messages ready in each named queue that exists (delayed ones in a retry tier
    count: they are still on their way). Messages a consumer holds are not counted here."""
    return _in_own_loop(lambda: _queue_depths(url, names), 60)


def start_emulator(data_dir: Path, port: int | None = None) -> Infra:
    """Start nx-27017 on a free port with its data (and its chatty log) under `data_dir`."""
    exe = shutil.which("nx-27017") or str(Path(sys.executable).with_name("nx-27017"))
    if not Path(exe).exists():
        raise InfraUnavailable("the MongoDB-wire emulator nx-27017 is not installed")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = (data_dir / "nx-27017.log").open("ab")
    process = subprocess.Popen(  # noqa: S603 - our own venv's executable, fixed arguments
        [exe, "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir),
         "--log-file", str(data_dir / "nx-27017.log"), "--pid-file", str(data_dir / "nx.pid")],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    url = f"mongodb://127.0.0.1:{port}/"

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()

    try:
        _wait(lambda: process.poll() is None and _mongo_ping(url), "nx-27017", 20)
    except InfraUnavailable:
        stop()
        raise
    return Infra(url, f"MongoDB-wire emulator nx-27017 (not MongoDB) at 127.0.0.1:{port}",
                 stop)


def _container(image: str, port: int, ready: Callable[[str], bool], scheme: str,
               path: str) -> Infra:
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415

    container = DockerContainer(image).with_exposed_ports(port)
    container.start()
    try:
        host = container.get_container_host_ip()
        url = f"{scheme}{host}:{container.get_exposed_port(port)}{path}"
        _wait(lambda: ready(url), image, 120)
    except BaseException:
        container.stop()
        raise
    return Infra(url, "", container.stop)


def _mode(env: Mapping[str, str]) -> str:
    """CASTGHL_INFRA: auto (default) | containers (must use Docker) | local (never Docker)."""
    mode = env.get("CASTGHL_INFRA", "auto")
    if mode not in {"auto", "containers", "local"}:
        raise InfraUnavailable(f"CASTGHL_INFRA must be auto, containers or local, not {mode!r}")
    return mode


def _via_containers(env: Mapping[str, str], start: Callable[[], Infra],
                    notes: list[str]) -> Infra | None:
    """Start a container when Docker answers; in auto mode a failure falls back, noted."""
    mode = _mode(env)
    if mode == "local":
        return None
    if not docker_available():
        if mode == "containers":
            raise InfraUnavailable("CASTGHL_INFRA=containers but no Docker API answers")
        return None
    try:
        return start()
    except Exception as exc:
        if mode == "containers":
            raise InfraUnavailable(f"container start failed: {exc}") from exc
        notes.append(f"testcontainers failed ({type(exc).__name__}), fell back")
        return None


def _noted(infra: Infra, notes: list[str]) -> Infra:
    if notes:
        infra.description += f" [{'; '.join(notes)}]"
    return infra


def rabbitmq(env: Mapping[str, str] = os.environ) -> Infra:
    """RABBITMQ_URL; else a testcontainer; else the local broker on 5672."""
    if url := env.get("RABBITMQ_URL"):
        if not _answers(*_host_port(url, 5672)):
            raise InfraUnavailable(f"RABBITMQ_URL is set but nothing answers at "
                                   f"{_host_port(url, 5672)}")
        return Infra(url, f"RabbitMQ from RABBITMQ_URL ({_host_port(url, 5672)[0]})")
    image = env.get("RABBITMQ_IMAGE", DEFAULT_RABBITMQ_IMAGE)
    notes: list[str] = []
    if found := _via_containers(
            env, lambda: _container(image, 5672, _amqp_ready, "amqp://guest:guest@", "/"), notes):
        found.description = f"RabbitMQ container {image} via testcontainers"
        return found
    if _answers("127.0.0.1", 5672):
        return _noted(Infra(LOCAL_RABBITMQ_URL, "local RabbitMQ at 127.0.0.1:5672"), notes)
    raise InfraUnavailable("no RabbitMQ: RABBITMQ_URL unset, no Docker API, nothing on :5672")


def mongo(data_dir: Path, env: Mapping[str, str] = os.environ) -> Infra:
    """MONGO_URI; else a testcontainer; else the nx-27017 emulator under `data_dir`."""
    if url := env.get("MONGO_URI"):
        if not _mongo_ping(url):
            raise InfraUnavailable("MONGO_URI is set but no Mongo server answers there")
        return Infra(url, f"{mongo_kind(url)} from MONGO_URI")
    image = env.get("MONGO_IMAGE", DEFAULT_MONGO_IMAGE)
    notes: list[str] = []
    if found := _via_containers(
            env, lambda: _container(image, 27017, _mongo_ping, "mongodb://", "/"), notes):
        found.description = f"{mongo_kind(found.url)} in container {image} via testcontainers"
        return found
    return _noted(start_emulator(data_dir), notes)
