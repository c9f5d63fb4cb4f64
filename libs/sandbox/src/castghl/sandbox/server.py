"""Run an ASGI app on a real socket: in the foreground (CLI) or in a thread (tests, demo)."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

# Ports handed to processes that bind them later are drawn from here, below the kernel's
# ephemeral range: a port picked by `bind(0)` comes from that range, and in the second
# before its process binds it an outgoing connection may take it as its own local port
# (seen in CI: a service's port held by some client for the whole test).
PORTS_FROM = 10_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing is bound to now, which no outgoing connection will take."""
    first_ephemeral = _first_ephemeral()
    for _ in range(200):
        port = PORTS_FROM + secrets.randbelow(max(1, first_ephemeral - PORTS_FROM))
        if port < first_ephemeral and _bindable(host, port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def _first_ephemeral() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    # One process, explicit loop and parser: see reference/stack.md on uvicorn defaults.
    return uvicorn.Config(app, host=host, port=port, loop="asyncio", http="h11",
                          log_config=None, access_log=False, lifespan="on")


def run(app: ASGIApp, host: str, port: int) -> None:
    uvicorn.Server(_config(app, host, port)).run()


Configure = Callable[[ASGIApp, str, int], uvicorn.Config]


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", port: int | None = None, *,
                    configure: Configure = _config) -> Iterator[str]:
    """Serve `app` on a free port in a daemon thread; yield its base URL. `configure`
    gives the server's settings (a service's own, say); its loop is the thread's asyncio
    loop whatever it names."""
    config = configure(app, host, port or free_port(host))
    config.loop = "asyncio"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="sandbox-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a loaded CI machine can be slow to start an app
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("sandbox server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
