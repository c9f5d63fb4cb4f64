"""What every console page shares: the security headers, the session and CSRF checks of a
request, forms and cookies.

Every answer carries a strict Content-Security-Policy (no script at all, styles from this
service only, no framing) and `Cache-Control: no-store`. Every POST must carry the form's
CSRF token; the session cookie is HttpOnly, SameSite=Strict, and Secure behind https.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from castghl.oauth.console import pages
from castghl.oauth.console.session import SESSION_COOKIE, Sessions

HEADERS: Final = {
    "Content-Security-Policy": ("default-src 'none'; style-src 'self'; img-src 'self'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
MAX_FORM_BYTES: Final = 4096


def html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=HEADERS)


def redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303, headers=HEADERS)


def secure(request: Request) -> bool:
    # Behind the proxy the scheme arrives in X-Forwarded-Proto.
    return "https" in (request.url.scheme, request.headers.get("x-forwarded-proto", ""))


def set_cookie(response: Response, request: Request, name: str, value: str, age: int) -> None:
    response.set_cookie(name, value, max_age=age, path="/console", httponly=True,
                        samesite="strict", secure=secure(request))


async def form_of(request: Request) -> dict[str, str]:
    body = (await request.body())[:MAX_FORM_BYTES]
    return {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}


class Console:
    """A request's session, and the CSRF check of its form."""

    headers: Final = HEADERS

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def signed_in(self, request: Request) -> str | None:
        return self.sessions.session_of(request.cookies.get(SESSION_COOKIE))

    def csrf(self, sid: str) -> str:
        return self.sessions.csrf(sid)

    async def checked_post(self, request: Request) -> str | None:
        """The session of a POST whose form carries its CSRF token; None otherwise."""
        sid, form = self.signed_in(request), await form_of(request)
        if sid is None or not self.sessions.csrf_ok(sid, form.get("csrf", "")):
            return None
        return sid

    @staticmethod
    def refused(what: str) -> HTMLResponse:
        return html(pages.page("Refused", f"<p>{pages.e(what)}: the form was not ours.</p>"),
                    403)
