"""`/_sandbox/custom-page`: GHL's frame around an app's Custom Page, as a signed-in GHL user
sees it. It embeds `custom_page_url` and answers the page's `REQUEST_USER_DATA` with the
user context encrypted with `sso_key`, the app's Shared Secret, as GHL does (CryptoJS's
format). Query: `location_id` (empty: an agency view with no location open), `role`
(`admin` or `user`), `user_id`, `type` (`location` or `agency`)."""

from __future__ import annotations

import json
from html import escape
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from castghl.common.cryptojs import encrypt
from castghl.sandbox.ghl.knobs import GhlKnobs


def custom_page_router(knobs: GhlKnobs) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/_sandbox/custom-page")
    async def frame(location_id: str | None = None, role: Literal["admin", "user"] = "admin",
                    user_id: str | None = None,
                    type: Literal["location", "agency"] = "location") -> HTMLResponse:
        if not knobs.custom_page_url:
            return HTMLResponse("<p>Set the custom_page_url knob first.</p>", 409)
        context = {"userId": user_id or knobs.user_id, "companyId": knobs.company_id,
                   "role": role, "type": type,
                   "activeLocation": knobs.location_id if location_id is None else location_id,
                   "userName": "Sandbox User", "email": "user@sandbox.test",
                   "isAgencyOwner": False}
        payload = encrypt(json.dumps(context).encode(), knobs.sso_key)
        return HTMLResponse(
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            "<title>GoHighLevel (simulated)</title></head><body>"
            "<p>GoHighLevel (simulated): the app's Custom Page below.</p>"
            f'<iframe title="Cast SMS" src="{escape(knobs.custom_page_url)}" '
            'width="900" height="700"></iframe><script>'
            "window.addEventListener('message', function (event) {"
            " if (event.data && event.data.message === 'REQUEST_USER_DATA') {"
            "  event.source.postMessage({message: 'REQUEST_USER_DATA_RESPONSE',"
            f"   payload: {json.dumps(payload)}}}, '*');"
            " }});</script></body></html>")

    return router
