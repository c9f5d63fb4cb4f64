"""Which form of a number Cast is sent, settled against the Cast simulator over HTTP.

Cast's documented rule (reference/cast.md): both API versions take `09XXXXXXXXX`; the
newer one also takes E.164. DITO's 0895–0898 numbers have no `09` form, so the bridge
sends them as E.164: the newer API delivers them, the older refuses them with a reason
the GHL user can read — never the `08…` form, which neither documents.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from castghl.common.cast.client import CastClient
from castghl.common.cast.models import CastSendRequest
from castghl.common.errors import PermanentError
from castghl.common.http import pooled_upstream
from castghl.common.phone import PhMobile
from castghl.sandbox.cast.knobs import DEFAULT_API_KEY

GLOBE, DITO = PhMobile.parse("0917 123 4567"), PhMobile.parse("0895 123 4567")


@pytest.fixture
async def cast(cast_sim: Any) -> AsyncIterator[CastClient]:
    http = pooled_upstream(4, timeout=10)
    yield CastClient(http, cast_sim.url, idempotency=True)
    await http.aclose()


async def sent_to(cast_sim: Any) -> list[str]:
    async with httpx.AsyncClient() as http:
        return [m["to"] for m in (await http.get(f"{cast_sim.url}/_sandbox/sent")).json()]


@pytest.mark.parametrize("newer_api", [False, True], ids=["older-api", "newer-api"])
async def test_a_09_number_goes_out_in_the_form_both_apis_take(
        cast: CastClient, cast_sim: Any, newer_api: bool) -> None:
    cast_sim.knobs.accept_e164 = newer_api
    await cast.send(CastSendRequest(to=GLOBE, message="Hi"), api_key=DEFAULT_API_KEY,
                    idempotency_key="globe")
    assert await sent_to(cast_sim) == ["09171234567"]


async def test_a_dito_number_goes_out_as_e164_which_the_newer_api_delivers(
        cast: CastClient, cast_sim: Any) -> None:
    cast_sim.knobs.accept_e164 = True
    await cast.send(CastSendRequest(to=DITO, message="Hi"), api_key=DEFAULT_API_KEY,
                    idempotency_key="dito")
    assert await sent_to(cast_sim) == ["+638951234567"]


async def test_the_older_api_refuses_a_dito_number_with_a_readable_reason(
        cast: CastClient, cast_sim: Any) -> None:
    cast_sim.knobs.accept_e164 = False
    with pytest.raises(PermanentError) as refused:
        await cast.send(CastSendRequest(to=DITO, message="Hi"), api_key=DEFAULT_API_KEY,
                        idempotency_key="dito")
    assert refused.value.code == "cast_rejected"
    assert "09XXXXXXXXX" in refused.value.user_message
    assert await sent_to(cast_sim) == []


async def test_the_simulator_refuses_the_undocumented_08_form(cast_sim: Any) -> None:
    cast_sim.knobs.accept_e164 = True
    async with httpx.AsyncClient(base_url=cast_sim.url) as http:
        answer = await http.post("/api/v1/sms/send", headers={"X-API-Key": DEFAULT_API_KEY},
                                 json={"to": DITO.national, "message": "Hi"})
    assert answer.status_code == 400
