"""The console in a real browser: Chromium (Debian's, driven by Playwright) against the
OAuth service on real RabbitMQ and the Mongo wire server. Screenshots of every page land in
var/screenshots/ (`make screenshots` copies them into docs/)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from castghl.oauth.console.session import FAILURES
from castghl.sandbox.cast.knobs import DEFAULT_API_KEY
from tests.accessibility import assert_accessible

from .conftest import ADMIN_KEY, Running, install

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[3] / "var" / "screenshots"


async def shot(page: Page, name: str) -> None:
    """Check the page's accessibility basics, then keep its picture."""
    await assert_accessible(page.frames[-1])  # the GHL page: inside the simulated frame
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)


async def sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/console/sign-in")
    await page.get_by_label("Admin key").fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def test_an_operator_signs_in_sees_installations_and_signs_out(
        service: Running, chromium: Browser) -> None:
    await install(service.url)
    page = await chromium.new_page()
    await page.goto(f"{service.url}/console")
    assert page.url.endswith("/console/sign-in")
    await shot(page, "sign-in")
    await sign_in(page, service.url, ADMIN_KEY)
    assert page.url.endswith("/console/installations")
    table = page.get_by_role("table")
    await table.wait_for()
    assert "loc_" in await table.inner_text()
    html = await page.content()
    assert ADMIN_KEY not in html
    await shot(page, "installations")

    await page.get_by_label("State").select_option("uninstalled")
    await page.get_by_role("button", name="Show").click()
    assert "state=uninstalled" in page.url
    assert "No installation in this state" in await page.get_by_role("table").inner_text()

    await page.get_by_role("button", name="Sign out").click()
    assert page.url.endswith("/console/sign-in")
    await page.goto(f"{service.url}/console/installations")
    assert page.url.endswith("/console/sign-in")


async def test_wrong_keys_are_refused_then_throttled(service: Running,
                                                     chromium: Browser) -> None:
    page = await chromium.new_page()
    for _ in range(FAILURES):
        await sign_in(page, service.url, "not-the-admin-key-000")
        assert await page.get_by_role("alert").inner_text() == "Wrong admin key."
    await sign_in(page, service.url, ADMIN_KEY)  # the right key, too soon
    assert "Too many failed sign-ins" in await page.get_by_role("alert").inner_text()
    assert page.url.endswith("/console/sign-in")
    await shot(page, "throttled")


async def test_a_form_posted_without_its_csrf_token_is_refused(service: Running,
                                                               chromium: Browser) -> None:
    page = await chromium.new_page()
    await page.goto(f"{service.url}/console/sign-in")
    # The page's own form with its token removed, as a forged form would lack it.
    await page.eval_on_selector("input[name=csrf]", "e => e.remove()")
    await page.get_by_label("Admin key").fill(ADMIN_KEY)
    await page.get_by_role("button", name="Sign in").click()
    assert "The form expired" in await page.inner_text("main")
    await page.goto(f"{service.url}/console/installations")
    assert page.url.endswith("/console/sign-in")


async def test_an_operator_sets_a_key_and_sender_id_and_a_typo_is_refused(
        service: Running, chromium: Browser, cast_sim: Any) -> None:
    cast_sim.knobs.sender_ids = ["CASTPH"]  # what the location's Cast account lists
    await install(service.url)
    page = await chromium.new_page()
    await sign_in(page, service.url, ADMIN_KEY)
    await page.get_by_role("link", name=re.compile(r"^loc_")).first.click()
    await page.get_by_label("New Cast API key").fill(DEFAULT_API_KEY)
    await page.get_by_label("Sender ID").fill("CASTPH")
    await page.get_by_role("button", name="Save").click()
    assert "Saved" in await page.get_by_role("status").inner_text()
    assert DEFAULT_API_KEY not in await page.content()  # write-only

    await page.get_by_label("Sender ID").fill("CASTPHH")
    await page.get_by_role("button", name="Save").click()
    assert "not a sender ID of this location" in await page.get_by_role("alert").inner_text()
    await shot(page, "installation")
    changes = await page.get_by_role("table").inner_text()
    assert "sender_id: CASTPH" in changes
    assert "cast_api_key: set" in changes


async def test_the_accessibility_check_finds_what_it_looks_for(chromium: Browser) -> None:
    page = await chromium.new_page()
    await page.set_content(
        "<html><head><title>x</title></head><body><h1>a</h1><h1>b</h1>"
        '<input id="q"><a href="/"></a><table><tr><th>h</th></tr></table>'
        '<img src="data:,"><p id="d"></p><p id="d"></p></body></html>')
    with pytest.raises(AssertionError) as found:
        await assert_accessible(page.main_frame)
    for problem in ("html has no lang", "not exactly one h1", "unnamed control",
                    "link without text", "table without caption", "th without scope",
                    "img without alt", "duplicate id: d"):
        assert problem in str(found.value)
