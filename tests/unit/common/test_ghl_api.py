"""GHL API calls as they leave the bridge (httpx.MockTransport stands in for GHL)."""

from __future__ import annotations

import httpx

from castghl.common.ghl.api import GhlApi


async def test_the_message_id_is_one_quoted_path_segment() -> None:
    seen: list[httpx.URL] = []

    def ghl(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"messageId": "x", "status": "delivered"})

    api = GhlApi(httpx.AsyncClient(transport=httpx.MockTransport(ghl)), "https://ghl.test")
    # A webhook's id must never reach another path of GHL's API.
    await api.update_status("token", "../../contacts/abc?x=1#y", "delivered")
    assert seen[0].raw_path == (b"/conversations/messages/..%2F..%2Fcontacts%2Fabc%3Fx%3D1%23y"
                                b"/status")
