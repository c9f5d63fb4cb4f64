"""Shared fixtures: layers by folder, simulators on real sockets, real infrastructure."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from playwright.async_api import Browser, async_playwright

from castghl.sandbox import infra
from castghl.sandbox.clock import SimClock
from castghl.sandbox.relay import Relay

LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The folder names the layer, so `-m unit` etc. select a layer without per-file marks.
    root = Path(__file__).parent
    for item in items:
        parts = Path(item.path).relative_to(root).parts
        if parts and parts[0] in LAYERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


@dataclass
class RunningSimulator:
    """A simulator served over real HTTP in this process: its URL, live knobs and clock.

    Tests of time behaviour `clock.freeze()` and `clock.advance(s)` instead of sleeping;
    `_restore` (its reset) puts the clock back on real time for the next test."""

    url: str
    knobs: Any
    app: Any
    clock: SimClock


def _restore(running: RunningSimulator) -> RunningSimulator:
    """Fresh knobs and empty state, without paying for a new server per test."""
    import httpx

    defaults = type(running.knobs)()
    for name in type(running.knobs).model_fields:
        setattr(running.knobs, name, getattr(defaults, name))
    httpx.post(f"{running.url}/_sandbox/reset", timeout=10).raise_for_status()
    return running


@pytest.fixture(scope="session")
def _cast_server() -> Iterator[RunningSimulator]:
    from castghl.sandbox.cast.app import CastKnobs, create_cast_app
    from castghl.sandbox.server import serve_in_thread

    knobs, clock = CastKnobs(), SimClock()
    app = create_cast_app(knobs, clock)
    with serve_in_thread(app) as url:
        yield RunningSimulator(url, knobs, app, clock)


@pytest.fixture(scope="session")
def _ghl_server() -> Iterator[RunningSimulator]:
    from castghl.sandbox.ghl.app import GhlKnobs, create_ghl_app
    from castghl.sandbox.server import serve_in_thread

    knobs, clock = GhlKnobs(), SimClock()
    app = create_ghl_app(knobs, clock)
    with serve_in_thread(app) as url:
        yield RunningSimulator(url, knobs, app, clock)


@pytest.fixture
def cast_sim(_cast_server: RunningSimulator) -> RunningSimulator:
    """The Cast simulator over real HTTP, with default knobs and no history."""
    return _restore(_cast_server)


@pytest.fixture
def ghl_sim(_ghl_server: RunningSimulator) -> RunningSimulator:
    """The GHL simulator over real HTTP, with default knobs and no history."""
    return _restore(_ghl_server)


# --- real infrastructure ------------------------------------------------------------------

_USED = pytest.StashKey[dict[str, str]]()


def _announce(config: pytest.Config, what: str, description: str) -> None:
    config.stash.setdefault(_USED, {})[what] = description
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"[infra] {what}: {description}")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for what, description in config.stash.get(_USED, {}).items():
        terminalreporter.write_line(f"[infra] {what} used: {description}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Under pytest-xdist each worker found its own infrastructure: hand it to the
    # controller, which prints the summary.
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["castghl_infra"] = dict(session.config.stash.get(_USED, {}))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    used = getattr(node, "workeroutput", {}).get("castghl_infra", {})
    node.config.stash.setdefault(_USED, {}).update(used)


def _obtain(config: pytest.Config, what: str, get: Any) -> infra.Infra:
    try:
        found: infra.Infra = get()
    except infra.InfraUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} unavailable under CI=true: {exc}", pytrace=False)
        pytest.skip(f"{what} unavailable: {exc}")
    _announce(config, what, found.description)
    return found


@pytest.fixture(scope="session")
def rabbitmq(pytestconfig: pytest.Config) -> Iterator[infra.Infra]:
    """A real RabbitMQ: RABBITMQ_URL, a testcontainer, or the local broker."""
    found = _obtain(pytestconfig, "RabbitMQ", infra.rabbitmq)
    yield found
    found.stop()


@pytest.fixture
def relay(rabbitmq: infra.Infra) -> Iterator[tuple[Relay, str]]:
    """A cuttable relay to RabbitMQ, and RabbitMQ's URL through it (clients reconnecting
    every second)."""
    url = urlsplit(rabbitmq.url)
    relay = Relay(url.hostname or "127.0.0.1", url.port or 5672)
    credentials = url.netloc.rpartition("@")[0]
    through = urlunsplit((url.scheme, f"{credentials}@127.0.0.1:{relay.port}", url.path,
                          "reconnect_interval=1", ""))
    yield relay, through
    relay.close()


@pytest.fixture(scope="session")
def mongo(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[infra.Infra]:
    """A real Mongo wire server: MONGO_URI, a testcontainer, or the nx-27017 emulator."""
    data_dir = tmp_path_factory.mktemp("mongo")
    found = _obtain(pytestconfig, "Mongo", lambda: infra.mongo(data_dir))
    yield found
    found.stop()


@pytest.fixture
def mongo_uri(mongo: infra.Infra) -> Iterator[str]:
    """A fresh database on the session's Mongo server, dropped after the test."""
    from pymongo import MongoClient

    name = f"test_{uuid.uuid4().hex[:12]}"
    base = mongo.url.split("?", 1)[0].rstrip("/")
    yield f"{base}/{name}"
    client: MongoClient[dict[str, Any]]
    with MongoClient(mongo.url, serverSelectionTimeoutMS=3000) as client:
        client.drop_database(name)


@pytest.fixture
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, driven by Playwright (never a browser Playwright downloads)."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: `make setup` installs it")
    async with async_playwright() as playwright:
        # --no-sandbox: CI runs as root in a container, where Chromium's sandbox cannot.
        browser = await playwright.chromium.launch(executable_path=executable,
                                                   args=["--no-sandbox"])
        yield browser
        await browser.close()
