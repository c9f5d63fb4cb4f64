"""One refresher per installation across replicas (DESIGN.md invariant 5), proven with two
real `castghl-oauth` processes sharing RabbitMQ, MongoDB and a (slow) GHL simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from castghl.common.errors import NeedsReauth
from castghl.common.oauth_client import OAuthClient

from .conftest import (
    Callers,
    Running,
    Stack,
    install,
    start_process,
    stop_process,
    wait_ready,
)

LOCATION = "loc_sandbox_1"
KEY = f"location:{LOCATION}"


async def test_two_processes_and_100_concurrent_gets_make_exactly_one_refresh(
        stack: Stack, callers: Callers, tmp_path: Path) -> None:
    replicas = [start_process(stack, tmp_path, name, LOG_LEVEL="INFO") for name in "ab"]
    try:
        await asyncio.gather(*(asyncio.to_thread(wait_ready, r) for r in replicas))
        # Installed with tokens that expire inside the service's validity floor (300 s),
        # then killed at GHL as well: the next `get` must refresh.
        stack.ghl.knobs.access_token_ttl = 200
        assert (await install(replicas[0].url)).status_code == 200
        stack.ghl.knobs.access_token_ttl = 86399
        old = stack.ghl.counters()["tokens"][LOCATION]["access_token"]
        stack.ghl.sandbox("POST", "/tokens/expire", json={"locationId": LOCATION})
        assert not stack.ghl.token_works(old, LOCATION)
        before = stack.ghl.counters()

        # 100 callers, as many sender processes would ask, spread over both replicas.
        clients = [callers.to(replicas[n % 2].url) for n in range(100)]
        # Every call runs to its end before anything is asserted: no request left in flight.
        answers = await asyncio.gather(*(client.token(LOCATION) for client in clients),
                                       return_exceptions=True)

        after = stack.ghl.counters()
        assert [a for a in answers if isinstance(a, BaseException)] == []
        tokens = [str(a) for a in answers]
        assert len(set(tokens)) == 1
        new = tokens[0]
        assert new != old
        assert after["refreshes"] - before["refreshes"] == 1
        assert after["refresh_reuses"] == 0
        assert after["refresh_rejections"] == 0
        assert stack.ghl.token_works(new, LOCATION)
        assert stack.docs()[KEY]["version"] == 2
        refreshed = [line for r in replicas for line in r.log.read_text().splitlines()
                     if '"token refreshed"' in line]
        assert len(refreshed) == 1

        # A caller that still holds the old token and saw GHL refuse it: no second refresh.
        late = callers.to(replicas[1].url)
        assert await late.refresh(LOCATION, old) == new
        assert stack.ghl.counters()["refreshes"] == after["refreshes"]
    finally:
        for replica in replicas:
            stop_process(replica)


async def test_a_refused_refresh_token_means_needs_reauth_and_ghl_is_not_asked_again(
        stack: Stack, service: Running, oauth: OAuthClient, callers: Callers) -> None:
    assert (await install(service.url)).status_code == 200
    token = await oauth.token(LOCATION)
    stack.ghl.sandbox("POST", "/tokens/revoke", json={"locationId": LOCATION})

    with pytest.raises(NeedsReauth):
        await oauth.refresh(LOCATION, token)

    assert stack.docs()[KEY]["status"] == "needs_reauth"
    asked = stack.ghl.counters()["refreshes"]
    fresh = callers.to(service.url)
    with pytest.raises(NeedsReauth):
        await fresh.token(LOCATION)
    with pytest.raises(NeedsReauth):
        await fresh.refresh(LOCATION, token)
    assert stack.ghl.counters()["refreshes"] == asked
