"""The HTML pages a person sees during an install: self-contained, every value escaped.

No external assets (nothing to leak the callback URL's `code` through a Referer), no
caching, no framing, and never a token or a stack trace — only what the person can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final

from fastapi.responses import HTMLResponse

NEXT_STEP: Final = ("In GoHighLevel, open Settings → Phone Numbers → Advanced Settings → "
                    "SMS Provider, choose “Cast SMS” and save.")

_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_STYLE: Final = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f5f6f8;
color:#1f2933;margin:0;padding:3rem 1rem}
main{max-width:34rem;margin:0 auto;background:#fff;border-radius:12px;padding:2rem 2.25rem;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
h1{font-size:1.4rem;margin:0 0 1rem}h1.ok{color:#17663a}h1.bad{color:#a61b1b}
p{line-height:1.5}ul{padding-left:1.25rem}code{background:#eef0f3;padding:.1rem .35rem;
border-radius:4px}.next{background:#eef6ff;border-radius:8px;padding:.75rem 1rem}
"""


def _page(title: str, tone: str, body: str, status: int) -> HTMLResponse:
    html = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{escape(title)} · Cast SMS</title><style>{_STYLE}</style></head><body><main>"
        f"<h1 class=\"{tone}\">{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _ids(ids: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li><code>{escape(i)}</code></li>" for i in ids) + "</ul>"


def connected_page(locations: Sequence[str], failed: Sequence[str] = ()) -> HTMLResponse:
    if locations:
        noun = "location" if len(locations) == 1 else "locations"
        body = f"<p>Cast SMS is connected to this GoHighLevel {noun}:</p>{_ids(locations)}"
    else:
        body = ("<p>Cast SMS is installed for your agency. No location is connected yet: "
                "each one is connected when Cast SMS is installed on it.</p>")
    if failed:
        body += ("<p>These locations are installed, but GoHighLevel did not hand out their "
                 "access yet; Cast SMS asks again when each one first sends:</p>"
                 f"{_ids(failed)}")
    body += f"<p class=\"next\"><strong>Next step:</strong> {escape(NEXT_STEP)}</p>"
    body += ("<p>Each location's sender ID and Cast API key can be changed inside "
             "GoHighLevel by its admins: open “Cast SMS” in the location's menu "
             "(<a href=\"/ghl/settings\">the settings page</a>).</p>")
    return _page("Cast SMS is installed", "ok", body, 200)


def error_page(status: int, title: str, message: str) -> HTMLResponse:
    return _page(title, "bad", f"<p>{escape(message)}</p>", status)
