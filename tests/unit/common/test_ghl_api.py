"""GHL API calls as they leave the bridge (httpx.MockTransport stands in for GHL)."""

from __future__ import annotations

import httpx
import pytest

from castghl.common.errors import RetryableError
from castghl.common.ghl.api import GhlApi
from castghl.common.ghl.oauth import GhlOAuth
from castghl.common.http import Upstream


async def test_the_message_id_is_one_quoted_path_segment() -> None:
    seen: list[httpx.URL] = []

    def ghl(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"messageId": "x", "status": "delivered"})

    api = GhlApi(Upstream(httpx.MockTransport(ghl)), "https://ghl.test")
    # A webhook's id must never reach another path of GHL's API.
    await api.update_status("token", "../../contacts/abc?x=1#y", "delivered")
    assert seen[0].raw_path == (b"/conversations/messages/..%2F..%2Fcontacts%2Fabc%3Fx%3D1%23y"
                                b"/status")


@pytest.mark.parametrize(("failure", "calls"), [
    (httpx.ConnectError("refused"), 3),  # never sent: tried again, twice
    (httpx.ReadTimeout("slow"), 1),  # may have been spent: never again
], ids=["connect-error", "read-timeout"])
async def test_a_token_call_is_repeated_only_when_it_never_left(
        monkeypatch: pytest.MonkeyPatch, failure: httpx.TransportError, calls: int) -> None:
    monkeypatch.setattr("castghl.common.ghl.oauth.CONNECT_RETRY_PAUSES", (0.0, 0.0))
    made: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        made.append(request)
        raise failure

    oauth = GhlOAuth(httpx.AsyncClient(transport=httpx.MockTransport(refuse)),
                     "https://ghl.test", "client", "secret")
    with pytest.raises(RetryableError) as raised:
        await oauth.exchange_code("code-1", "https://bridge.test/oauth/callback")
    assert raised.value.code == "ghl_unreachable"
    assert len(made) == calls
