"""What the Cast simulator's own tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from castghl.sandbox.cast.knobs import DEFAULT_API_KEY


@pytest.fixture(scope="module")
async def http(_cast_server: Any) -> AsyncIterator[httpx.AsyncClient]:
    """One client per module: building one (its TLS context) costs more than most tests.
    Idle connections are not reused past 2 s: the simulator's server (uvicorn) closes them
    at 5 s, and a POST written into one it is closing fails with a ReadError (seen on a
    slow machine, between two tests of a module)."""
    async with httpx.AsyncClient(base_url=_cast_server.url,
                                 limits=httpx.Limits(keepalive_expiry=2.0),
                                 headers={"X-API-Key": DEFAULT_API_KEY}) as client:
        yield client
