"""The console's HTML: plain server-rendered pages, every value escaped, no script."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any, Final

from castghl.oauth.tenancy import State

STATE_NAMES: Final[dict[str, str]] = {
    State.ACTIVE.value: "Active", State.NEEDS_REAUTH.value: "Needs re-authorisation",
    State.NOT_SET_UP.value: "Not set up", State.STOPPED.value: "Stopped by the operator",
    State.UNINSTALLED.value: "Uninstalled"}
STATES: Final = tuple(STATE_NAMES)
SECTIONS: Final = (("installations", "Installations"), ("messages", "Messages"),
                   ("parked", "Parked"), ("accounts", "Accounts"), ("health", "Health"))

STYLE: Final = """
:root { color-scheme: light; font-family: system-ui, sans-serif; color: #1a1a1a; }
body { margin: 0; background: #f6f7f9; }
header { background: #123c69; color: #fff; padding: .75rem 1.5rem; display: flex;
         align-items: center; justify-content: space-between; }
header a, header button { color: #fff; }
nav { display: flex; gap: 1rem; margin-left: 2rem; flex: 1; }
.warn { color: #8a1111; font-weight: 600; }
.quiet { color: #4a4f57; }
main { padding: 1.5rem; max-width: 72rem; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
table { border-collapse: collapse; background: #fff; width: 100%; }
caption { text-align: left; padding: .5rem 0; color: #333; }
th, td { border: 1px solid #c9ced6; padding: .4rem .6rem; text-align: left; }
th { background: #e9edf2; }
label { display: block; margin: .75rem 0 .25rem; font-weight: 600; }
label.inline { display: inline; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
textarea { font: inherit; width: 20rem; }
input, select, button { font: inherit; padding: .4rem .6rem; }
button { background: #123c69; color: #fff; border: 0; border-radius: 3px; cursor: pointer; }
header button { background: transparent; border: 1px solid #fff; }
.error { color: #8a1111; font-weight: 600; }
a:focus, button:focus, input:focus, select:focus { outline: 3px solid #f0b400; }
"""


def e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def page(title: str, body: str, *, csrf: str | None = None) -> str:
    """A whole page; with `csrf` (signed in) the header carries the sign-out form."""
    signout = "" if csrf is None else (
        '<nav aria-label="Console">' + "".join(
            f'<a href="/console/{path}">{name}</a>' for path, name in SECTIONS) + "</nav>"
        '<form method="post" action="/console/sign-out">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<button type="submit">Sign out</button></form>')
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{e(title)} · Cast SMS console</title>"
            "<link rel=\"stylesheet\" href=\"/console/console.css\"></head><body>"
            f"<header><span>Cast SMS console</span>{signout}</header>"
            f"<main><h1>{e(title)}</h1>{body}</main></body></html>")


def sign_in(csrf: str, error: str = "") -> str:
    problem = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    return page("Sign in", problem + (
        '<form method="post" action="/console/sign-in">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<label for="password">Admin key</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password"'
        ' required autofocus>'
        '<p><button type="submit">Sign in</button></p></form>'))


def installations(rows: Sequence[Mapping[str, Any]], state: str | None, csrf: str, *,
                  problem: str = "") -> str:
    options = "".join(
        f'<option value="{s}"{" selected" if s == state else ""}>{STATE_NAMES[s]}</option>'
        for s in STATES)
    chooser = ('<form method="get" action="/console/installations">'
               '<label for="state">State</label>'
               f'<select id="state" name="state"><option value="">All</option>{options}</select>'
               ' <button type="submit">Show</button></form>')
    head = ("<tr><th scope=\"col\">Location</th><th scope=\"col\">Agency</th>"
            "<th scope=\"col\">State</th><th scope=\"col\">Sender ID</th>"
            "<th scope=\"col\">Own Cast key</th><th scope=\"col\">Delivered (7 days)</th>"
            "<th scope=\"col\">Failed (7 days)</th><th scope=\"col\">Parts (7 days)</th></tr>")
    body = "".join(_row(row) for row in rows) or (
        '<tr><td colspan="8">No installation in this state.</td></tr>')
    shown = STATE_NAMES.get(state or "", "all states")
    warning = f'<p class="warn" role="alert">{e(problem)}</p>' if problem else ""
    return page("Installations", chooser + warning + (
        f"<table><caption>{len(rows)} installation(s), {e(shown)}</caption>"
        f"<thead>{head}</thead><tbody>{body}</tbody></table>"), csrf=csrf)


def _row(row: Mapping[str, Any]) -> str:
    link = (f'<a href="/console/installations/{e(row["location_id"])}">'
            f'{e(row["location_id"])}</a>')
    cells: Iterable[Any] = (
        row["company_id"], STATE_NAMES.get(row["state"], row["state"]),
        row["sender_id"] or "—", row["own_key"], row["delivered"], row["failed"],
        row["parts"])
    return (f"<tr><td>{link}</td>" + "".join(f"<td>{e(cell)}</td>" for cell in cells)
            + "</tr>")


def installation(shown: Mapping[str, Any], trail: Sequence[Mapping[str, Any]], csrf: str,
                 *, error: str = "", saved: bool = False) -> str:
    """One location: its state, its settings as a form (the Cast key write-only), and the
    last changes made to them."""
    settings = shown["settings"]
    status = (f'<p class="error" role="alert">{e(error)}</p>' if error else
              '<p role="status">Saved. The next message uses it.</p>' if saved else "")
    numbers = "\n".join(settings["inbound_numbers"])
    rate = "" if settings["rate_limit_per_second"] is None else settings["rate_limit_per_second"]
    key = settings["cast_api_key"] or "none (the default account, where allowed)"
    form = (
        f'<form method="post" action="/console/installations/{e(shown["location_id"])}">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<label for="sender_id">Sender ID</label>'
        f'<input id="sender_id" name="sender_id" value="{e(settings["sender_id"])}"'
        ' maxlength="20" aria-describedby="sender_help">'
        '<p id="sender_help">Checked against the location\'s Cast account; empty for the '
        "account's default.</p>"
        '<label for="cast_api_key">New Cast API key</label>'
        '<input id="cast_api_key" name="cast_api_key" type="password" autocomplete="off"'
        ' aria-describedby="key_help">'
        f'<p id="key_help">Now: {e(key)}. Leave empty to keep it.</p>'
        '<p><input id="remove_key" name="remove_key" type="checkbox" value="1">'
        ' <label for="remove_key" class="inline">Remove the location\'s own key</label></p>'
        '<label for="rate">Rate (messages per second)</label>'
        f'<input id="rate" name="rate_limit_per_second" inputmode="decimal" value="{e(rate)}">'
        '<label for="numbers">Inbound numbers, one per line</label>'
        f'<textarea id="numbers" name="inbound_numbers" rows="3">{e(numbers)}</textarea>'
        '<p><button type="submit">Save</button></p></form>')
    changes = "".join(
        f"<tr><td>{e(entry['at'])}</td><td>{e(entry['actor'])}</td>"
        f"<td>{e(', '.join(f'{k}: {v}' for k, v in entry['changes'].items()))}</td></tr>"
        for entry in trail) or '<tr><td colspan="3">No change yet.</td></tr>'
    facts = (f"<p>Agency {e(shown['company_id'])} · "
             f"{e(STATE_NAMES.get(shown['state'], shown['state']))}</p>")
    stopped = settings["sending"] == "stopped"
    switch = (
        "<h2>Sending</h2>"
        + ('<p class="warn">Stopped: every SMS of this location fails at once, and GHL '
           "shows why. Replies still arrive.</p>" if stopped else
           "<p>Allowed. Stopping makes every new SMS of this location fail at once, with "
           "the reason shown in GHL (no Cast call); replies still arrive.</p>")
        + f'<form method="post" action="/console/installations/{e(shown["location_id"])}">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        f'<input type="hidden" name="sending" value="{"allowed" if stopped else "stopped"}">'
        f'<button type="submit">{"Allow sending" if stopped else "Stop sending"}</button>'
        "</form>")
    return page(f"Location {shown['location_id']}", facts + status + form + switch + (
        "<h2>Changes</h2><table><caption>The last changes to these settings</caption>"
        "<thead><tr><th scope=\"col\">When</th><th scope=\"col\">By</th>"
        f"<th scope=\"col\">What</th></tr></thead><tbody>{changes}</tbody></table>"),
        csrf=csrf)
