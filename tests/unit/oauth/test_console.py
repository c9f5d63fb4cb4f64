"""The console over HTTP: sign-in (throttled, CSRF-checked), the session cookie, and the
installations page, which shows no secret. The `console` fixture is in conftest.py."""

from __future__ import annotations

import re

import httpx

from castghl.oauth.console.session import FAILURES, SESSION_COOKIE, Sessions

from .conftest import KEY, csrf_of, sign_in
from .test_admin import CAST_KEY


async def test_signing_in_sets_a_strict_session_cookie_and_shows_installations(
        console: httpx.AsyncClient) -> None:
    answer = await sign_in(console)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"]
    for flag in ("HttpOnly", "SameSite=strict", "Secure", "Path=/console"):
        assert flag.lower() in cookie.lower(), cookie
    page = await console.get("/console/installations")
    assert page.status_code == 200
    assert "loc1" in page.text
    assert "CASTPH" in page.text
    assert "cast_…cdef" in page.text  # masked
    assert CAST_KEY not in page.text
    assert KEY not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


async def test_the_filter_shows_one_state_with_the_last_seven_days(
        console: httpx.AsyncClient) -> None:
    await sign_in(console)
    page = (await console.get("/console/installations?state=active")).text
    row = re.search(r"<tr><td><a [^>]*>loc1</a></td>.*?</tr>", page)
    assert row is not None
    assert "<td>5</td><td>1</td><td>7</td>" in row.group(0)
    assert "gone" not in page
    uninstalled = (await console.get("/console/installations?state=uninstalled")).text
    assert "gone" in uninstalled
    assert "loc1" not in uninstalled


async def test_without_a_session_every_page_sends_to_the_sign_in(
        console: httpx.AsyncClient) -> None:
    for path in ("/console", "/console/installations"):
        answer = await console.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/sign-in"
    console.cookies.set(SESSION_COOKIE, "abc.9999999999.0000", path="/console")
    answer = await console.get("/console/installations")
    assert answer.headers["location"] == "/console/sign-in"


async def test_a_wrong_key_is_refused_and_repeated_failures_are_throttled(
        console: httpx.AsyncClient) -> None:
    for _ in range(FAILURES):
        answer = await sign_in(console, "wrong-key-0123456789")
        assert answer.status_code == 401
        assert "Wrong admin key" in answer.text
    throttled = await sign_in(console)  # even the right key waits now
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    assert SESSION_COOKIE not in throttled.headers.get("set-cookie", "")


async def test_a_form_without_its_csrf_token_is_refused(console: httpx.AsyncClient) -> None:
    await console.get("/console/sign-in")
    answer = await console.post("/console/sign-in", data={"password": KEY})
    assert answer.status_code == 403
    await sign_in(console)
    refused = await console.post("/console/sign-out", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert (await console.get("/console/installations")).status_code == 200


async def test_signing_out_ends_the_session(console: httpx.AsyncClient) -> None:
    await sign_in(console)
    page = (await console.get("/console/installations")).text
    answer = await console.post("/console/sign-out", data={"csrf": csrf_of(page)})
    assert answer.status_code == 303
    assert (await console.get("/console/installations")).status_code == 303


def test_a_session_expires_and_a_changed_admin_key_ends_it() -> None:
    now = [1_000_000.0]
    sessions = Sessions(KEY, clock=lambda: now[0])
    cookie = sessions.issue()
    assert sessions.session_of(cookie) is not None
    assert Sessions("another-admin-key-0123", clock=lambda: now[0]).session_of(cookie) is None
    now[0] += 8 * 3600 + 1
    assert sessions.session_of(cookie) is None


async def settings_form(console: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    page = (await console.get("/console/installations/loc1")).text
    values = dict(re.findall(r'name="(sender_id|rate_limit_per_second)" [^>]*?value="([^"]*)"',
                             page))
    return page, {"csrf": csrf_of(page), "sender_id": values.get("sender_id", ""),
                  "inbound_numbers": "", "rate_limit_per_second": ""}


async def test_a_location_page_shows_its_settings_with_the_key_write_only(
        console: httpx.AsyncClient) -> None:
    await sign_in(console)
    page, _ = await settings_form(console)
    assert 'value="CASTPH"' in page
    assert "cast_…cdef" in page
    assert CAST_KEY not in page
    assert 'name="cast_api_key" type="password"' in page
    assert (await console.get("/console/installations/nowhere")).status_code == 404


async def test_saving_a_sender_id_the_account_has_is_audited_as_the_console(
        console: httpx.AsyncClient) -> None:
    await sign_in(console)
    _, form = await settings_form(console)
    answer = await console.post("/console/installations/loc1",
                                data={**form, "sender_id": "CASTSIM"})
    assert answer.status_code == 200
    assert "Saved" in answer.text
    assert 'value="CASTSIM"' in answer.text
    assert re.search(r"<td>console</td><td>[^<]*sender_id: CASTSIM", answer.text)


async def test_an_unknown_sender_id_is_refused_with_the_reason_and_nothing_changes(
        console: httpx.AsyncClient) -> None:
    await sign_in(console)
    _, form = await settings_form(console)
    answer = await console.post("/console/installations/loc1",
                                data={**form, "sender_id": "TYPO"})
    assert answer.status_code == 422
    assert "not a sender ID of this location" in answer.text
    assert 'value="CASTPH"' in answer.text  # as it was
    bad_rate = await console.post("/console/installations/loc1",
                                  data={**form, "rate_limit_per_second": "fast"})
    assert bad_rate.status_code == 422
    assert "rate_limit_per_second" in bad_rate.text


async def test_a_new_key_is_never_shown_and_a_settings_post_needs_its_csrf_token(
        console: httpx.AsyncClient) -> None:
    await sign_in(console)
    _, form = await settings_form(console)
    new_key = "cast_" + "fedcba9876543210" * 4
    forged = await console.post("/console/installations/loc1",
                                data={**form, "csrf": "forged", "cast_api_key": new_key})
    assert forged.status_code == 403
    answer = await console.post("/console/installations/loc1",
                                data={**form, "sender_id": "", "cast_api_key": new_key})
    assert answer.status_code == 200
    assert new_key not in answer.text
    assert "cast_…3210" in answer.text
    assert "cast_api_key: set" in answer.text


async def test_the_operator_stops_and_allows_a_location_and_both_are_audited(
        console: httpx.AsyncClient) -> None:
    await sign_in(console)
    page = (await console.get("/console/installations/loc1")).text
    assert "Stop sending" in page
    stopped = await console.post("/console/installations/loc1",
                                 data={"csrf": csrf_of(page), "sending": "stopped"})
    assert stopped.status_code == 200
    assert "Stopped: every SMS of this location fails at once" in stopped.text
    assert "Allow sending" in stopped.text
    listed = (await console.get("/console/installations?state=stopped")).text
    assert ">loc1</a>" in listed
    allowed = await console.post("/console/installations/loc1",
                                 data={"csrf": csrf_of(stopped.text), "sending": "allowed"})
    assert "Stop sending" in allowed.text
    assert re.search(r"<td>console</td><td>[^<]*sending: stopped", allowed.text)
    assert re.search(r"<td>console</td><td>[^<]*sending: allowed", allowed.text)
    forged = await console.post("/console/installations/loc1",
                                data={"csrf": "forged", "sending": "stopped"})
    assert forged.status_code == 403

