"""The console's operations pages: messages, parked messages, accounts, health. Plain
HTML, every value escaped (`pages.e`), no script."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from castghl.oauth.console.pages import e, page

QUEUE_NAMES: Final = {"outbound": "Outbound SMS", "status": "GHL statuses",
                      "inbound": "Replies", "lifecycle": "Installs and uninstalls"}


def _table(caption: str, head: Sequence[str], rows: Iterable[Sequence[Any]],
           empty: str) -> str:
    heads = "".join(f'<th scope="col">{e(h)}</th>' for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows) or f'<tr><td colspan="{len(head)}">{e(empty)}</td></tr>'
    return (f"<table><caption>{e(caption)}</caption><thead><tr>{heads}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def when(iso: str | None) -> str:
    """An ISO time from the sender as people read it: to the second, in UTC."""
    return "—" if not iso else iso[:19].replace("T", " ")


def unavailable(what: str, detail: str) -> str:
    return f'<p class="warn" role="alert">{e(what)}: {e(detail)}</p>'


def messages(csrf: str, *, message_id: str = "", phone: str = "", found: str = "") -> str:
    form = ('<form method="get" action="/console/messages">'
            '<label for="message_id">GHL messageId</label>'
            f'<input id="message_id" name="message_id" value="{e(message_id)}" maxlength="128">'
            '<label for="phone">or the last digits of the phone number</label>'
            f'<input id="phone" name="phone" value="{e(phone)}" inputmode="numeric"'
            ' maxlength="12" aria-describedby="phone_help">'
            '<p id="phone_help" class="quiet">3 to 12 digits; the latest 50 messages to '
            "numbers ending in them. Message text is never stored, so it is never shown: "
            "the GHL conversation has it.</p>"
            '<p><button type="submit">Find</button></p></form>')
    return page("Messages", form + found, csrf=csrf)


def timeline(shown: Mapping[str, Any]) -> str:
    facts = (f"<p>Location {e(shown['location_id'])} · to {e(shown['to'] or '—')} · "
             f"{e(shown['channel'])} on the {e(shown['cast_key'])} Cast key · "
             f"status {e(shown['status'] or 'open')}</p>")
    rows = ([e(when(step["at"])), e(step["step"]), e(step["detail"])]
            for step in shown["steps"])
    return (f"<h2>Message {e(shown['message_id'])}</h2>" + facts
            + _table("Each step, with its time (UTC) and reason", ["When", "Step", "What"],
                     rows, "No step recorded."))


def message_list(found: Sequence[Mapping[str, Any]], digits: str) -> str:
    rows = ([f'<a href="/console/messages?message_id={e(m["message_id"])}">'
             f'{e(m["message_id"])}</a>', e(m["to"]), e(m["location_id"]),
             e(m["status"] or "open"), e(m["steps"][-1]["step"] if m["steps"] else "—")]
            for m in found)
    return _table(f"{len(found)} message(s) to numbers ending in {digits}",
                  ["messageId", "To", "Location", "Status", "Last step"], rows,
                  "No message to such a number in the last 30 days.")


def parked(queues: Sequence[Mapping[str, Any]], csrf: str, *, note: str = "") -> str:
    parts = [f'<p role="status">{e(note)}</p>'] if note else []
    for queue in queues:
        title = QUEUE_NAMES.get(queue["name"], queue["name"])
        if "error" in queue:
            parts.append(f"<h2>{e(title)}</h2>" + unavailable("Not read", queue["error"]))
            continue
        rows = ([e(r["reason"]), e(r["count"]),
                 e(", ".join(f"{k}: {v}" for k, v in r["sample"].items()))]
                for r in queue["reasons"])
        read = (f" (reasons read from the first {queue['read']})"
                if queue["read"] < queue["count"] else "")
        replay = "" if not queue["count"] else (
            f'<form method="get" action="/console/parked/{e(queue["name"])}/replay">'
            f'<button type="submit">Replay {e(queue["count"])} message(s)…</button></form>')
        parts.append(f"<h2>{e(title)}</h2>" + _table(
            f"{queue['count']} parked in {queue['queue']}{read}",
            ["Reason", "Messages", "Sample (ids only)"], rows, "Nothing parked.") + replay)
    return page("Parked messages", "".join(parts), csrf=csrf)


def confirm_replay(name: str, count: int, csrf: str) -> str:
    title = QUEUE_NAMES.get(name, name)
    return page("Replay parked messages", (
        f"<p>Move the {e(count)} parked message(s) of <strong>{e(title)}</strong> back to "
        "their work queue, each with a fresh attempt count? Do it once the cause is fixed "
        "(a number assigned, a location reinstalled, a fix deployed): otherwise they park "
        "again.</p>"
        f'<form method="post" action="/console/parked/{e(name)}/replay">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        '<button type="submit">Replay them</button> '
        '<a href="/console/parked">Cancel</a></form>'), csrf=csrf)


def accounts(shown: Sequence[Mapping[str, Any]], days: Sequence[str], csrf: str, *,
             since: str, until: str) -> str:
    rows = ([e(a["label"]), e(a["fingerprint"]),
             e("—" if a["credits"] is None else f"{a['credits']:,.0f}"),
             '<span class="warn">low</span>' if a["low"] else "ok",
             "sandbox (sends nothing)" if a["sandbox"] else "live", e(when(a["balance_at"])),
             e(a["locations"])] for a in shown)
    table = _table("Each Cast account: credits as last read", [
        "Account", "Key fingerprint", "Credits", "State", "Kind", "Read at (UTC)",
        "Locations"], rows, "No account read yet.")
    usage_rows = ([e(day)] + [e(a["days"].get(day, 0)) for a in shown] for day in days)
    usage = _table(f"SMS parts sent per Philippine day, {since} to {until}, by the key each "
                   "location uses now", ["Day", *[a["label"] for a in shown]], usage_rows,
                   "No usage in these days.")
    download = (f'<p><a href="/console/usage.csv?since={e(since)}&amp;until={e(until)}" '
                'download>Per-location usage of these days (CSV)</a></p>')
    return page("Accounts", table + "<h2>Usage</h2>" + usage + download, csrf=csrf)


def health(services: Sequence[Mapping[str, Any]], queues: Sequence[Mapping[str, Any]],
           facts: Sequence[tuple[str, str]], csrf: str) -> str:
    service_rows = ([e(s["name"]), e("ready" if s["ready"] else "NOT READY"),
                     e(s["detail"])] for s in services)
    queue_rows = ([e(q["queue"]), e("missing" if q["messages"] is None else q["messages"]),
                   e("—" if q["consumers"] is None else q["consumers"])] for q in queues)
    fact_rows = ([e(name), e(value)] for name, value in facts)
    return page("Health", (
        _table("Readiness of each service", ["Service", "State", "Checks"], service_rows,
               "No service answered.")
        + "<h2>Work</h2>" + _table("Last successful steps (UTC)", ["Step", "When"],
                                   fact_rows, "Nothing yet.")
        + "<h2>Queues</h2>" + _table("Messages waiting and consumers, per queue",
                                     ["Queue", "Messages", "Consumers"], queue_rows,
                                     "No queue read.")), csrf=csrf)
