"""Shared fixtures: layers by folder, simulators on real sockets, real infrastructure."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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
    """A simulator served over real HTTP in this process: its URL and live knobs."""

    url: str
    knobs: Any
    app: Any


@pytest.fixture
def cast_sim() -> Iterator[RunningSimulator]:
    from castghl.sandbox.cast.app import CastKnobs, create_cast_app
    from castghl.sandbox.server import serve_in_thread

    knobs = CastKnobs()
    app = create_cast_app(knobs)
    with serve_in_thread(app) as url:
        yield RunningSimulator(url, knobs, app)


@pytest.fixture
def ghl_sim() -> Iterator[RunningSimulator]:
    from castghl.sandbox.ghl.app import GhlKnobs, create_ghl_app
    from castghl.sandbox.server import serve_in_thread

    knobs = GhlKnobs()
    app = create_ghl_app(knobs)
    with serve_in_thread(app) as url:
        yield RunningSimulator(url, knobs, app)
