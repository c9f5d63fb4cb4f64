"""The shared `cast_sim` fixture (tests/conftest.py) serves this simulator, knobs live."""

from __future__ import annotations

from typing import Any

import httpx

from castghl.sandbox.cast.knobs import DEFAULT_API_KEY


async def test_conftest_cast_sim_sends_and_its_knobs_are_live(cast_sim: Any) -> None:
    async with httpx.AsyncClient(base_url=cast_sim.url,
                                 headers={"X-API-Key": DEFAULT_API_KEY}) as client:
        cast_sim.knobs.credits = 1
        ok = await client.post("/api/v1/sms/send", json={"to": "09171234567", "message": "hi"})
        broke = await client.post("/api/v1/sms/send",
                                  json={"to": "09171234567", "message": "hi"})
        recorded = (await client.get("/_sandbox/calls")).json()

    assert ok.status_code == 200
    assert broke.json()["error_code"] == "INSUFFICIENT_CREDITS"
    assert [call["status"] for call in recorded] == [200, 402]
    assert cast_sim.app.state.simulator.knobs is cast_sim.knobs
