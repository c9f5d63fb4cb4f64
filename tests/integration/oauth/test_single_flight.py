"""One refresher per installation across replicas (DESIGN.md invariant 5), proven with two
real `castghl-oauth` processes sharing RabbitMQ, MongoDB and a (slow) GHL simulator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from castghl.common.oauth_client import NeedsReauth, OAuthClient

from .conftest import (
    Brokers,
    Running,
    Stack,
    install,
    queue_counts,
    start_process,
    stop_process,
    wait_ready,
)

LOCATION = "loc_sandbox_1"
KEY = f"location:{LOCATION}"


async def test_two_processes_and_100_concurrent_gets_make_exactly_one_refresh(
        stack: Stack, brokers: Brokers, tmp_path: Path) -> None:
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
        # Both replicas consume the token queue, so the requests are spread over both.
        assert (await queue_counts(stack.rabbitmq_url, stack.topology.token_rpc.name))[1] == 2
        before = stack.ghl.counters()

        # 100 callers on 20 connections, as 20 sender processes would ask.
        shared = [await brokers.connect() for _ in range(20)]
        callers = [OAuthClient(shared[n % 20], stack.topology, timeout=30) for n in range(100)]
        # Every call runs to its end before anything is asserted: no request left in flight.
        answers = await asyncio.gather(*(caller.token(LOCATION) for caller in callers),
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
        late = OAuthClient(shared[0], stack.topology, timeout=30)
        assert await late.refresh(LOCATION, old) == new
        assert stack.ghl.counters()["refreshes"] == after["refreshes"]
    finally:
        for replica in replicas:
            stop_process(replica)


async def test_a_refused_refresh_token_means_needs_reauth_and_ghl_is_not_asked_again(
        stack: Stack, service: Running, oauth: OAuthClient, brokers: Brokers) -> None:
    assert (await install(service.url)).status_code == 200
    token = await oauth.token(LOCATION)
    stack.ghl.sandbox("POST", "/tokens/revoke", json={"locationId": LOCATION})

    with pytest.raises(NeedsReauth):
        await oauth.refresh(LOCATION, token)

    assert stack.docs()[KEY]["status"] == "needs_reauth"
    asked = stack.ghl.counters()["refreshes"]
    fresh = OAuthClient(await brokers.connect(), stack.topology, timeout=15)
    with pytest.raises(NeedsReauth):
        await fresh.token(LOCATION)
    with pytest.raises(NeedsReauth):
        await fresh.refresh(LOCATION, token)
    assert stack.ghl.counters()["refreshes"] == asked
