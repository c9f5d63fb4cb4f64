"""The web pages in Debian's Chromium against the whole bridge as real processes: the
console's operations pages, whose message timelines, queues, accounts and health come
from the running sender through its operator API; and the location settings page
inside (simulated) GHL, trusting only the user context GHL encrypted. Screenshots of each
page land in var/screenshots/ (`make screenshots` copies them into docs/)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from castghl.sandbox.stack import Stack
from tests.accessibility import assert_accessible

from .conftest import STATUS_TIMEOUT

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PHONE = "+639171239876"


async def signed_in(chromium: Browser, stack: Stack) -> Page:
    page = await chromium.new_page()
    await page.goto(f"{stack.oauth}/console/sign-in")
    await page.get_by_label("Admin key").fill(stack.admin_api_key)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("navigation", name="Console").wait_for()
    return page


async def shot(page: Page, name: str) -> None:
    """Check the page's accessibility basics, then keep its picture."""
    await assert_accessible(page.frames[-1])  # the GHL page: inside the simulated frame
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)


async def test_an_operator_follows_a_message_from_webhook_to_ghl_status(
        stack: Stack, chromium: Browser) -> None:
    sent = stack.send(phone=PHONE, message="where is my order")
    message_id = sent["messageId"]
    await asyncio.to_thread(stack.wait_for_statuses, [message_id], STATUS_TIMEOUT)
    page = await signed_in(chromium, stack)

    await page.get_by_role("link", name="Messages").click()
    await page.get_by_label("GHL messageId").fill(message_id)
    await page.get_by_role("button", name="Find").click()
    steps = await page.get_by_role("table").inner_text()
    for step in ("accepted", "part 1 sent", "Cast accepted it as", "decided", "GHL status"):
        assert step in steps, steps
    assert "where is my order" not in await page.content()
    await shot(page, "message")

    await page.get_by_label("GHL messageId").fill("")
    await page.get_by_label("or the last digits of the phone number").fill("9876")
    await page.get_by_role("button", name="Find").click()
    listed = page.get_by_role("link", name=message_id)
    await listed.click()
    assert f"message_id={message_id}" in page.url


async def test_health_accounts_and_parked_show_the_running_bridge(
        stack: Stack, chromium: Browser) -> None:
    sent = stack.send(phone=PHONE, message="hello")
    await asyncio.to_thread(stack.wait_for_statuses, [sent["messageId"]], STATUS_TIMEOUT)
    page = await signed_in(chromium, stack)

    await page.get_by_role("link", name="Health").click()
    services = await page.get_by_role("table").nth(0).inner_text()
    assert "NOT READY" not in services, services
    for name in ("oauth", "gateway", "sender"):
        assert name in services
    work = await page.get_by_role("table").nth(1).inner_text()
    assert "Last SMS sent to Cast" in work
    assert "—" not in work.split("Last SMS sent to Cast", 1)[1].splitlines()[0]
    queues = await page.get_by_role("table").nth(2).inner_text()
    assert f"{stack.queue_prefix}sms.outbound" in queues
    assert f"{stack.queue_prefix}app.lifecycle" in queues
    await shot(page, "health")

    await page.get_by_role("link", name="Accounts").click()
    accounts = await page.get_by_role("table").nth(0).inner_text()
    assert "Locations" in accounts
    await page.get_by_role("link", name="Per-location usage of these days (CSV)").wait_for()
    await shot(page, "accounts")

    await page.get_by_role("link", name="Parked").click()
    for title in ("Outbound SMS", "GHL statuses", "Replies", "Installs and uninstalls"):
        await page.get_by_role("heading", name=title).wait_for()
    assert "Not read" not in await page.content()
    await shot(page, "parked")


async def test_a_location_admin_sets_its_sender_id_inside_ghl_and_a_user_only_reads(
        stack: Stack, chromium: Browser) -> None:
    page = await chromium.new_page()
    await page.goto(f"{stack.ghl}/_sandbox/custom-page?role=admin")
    frame = page.frame_locator('iframe[title="Cast SMS"]')
    await frame.get_by_role("table").wait_for()
    facts = await frame.get_by_role("table").inner_text()
    assert "loc_sandbox_1" in facts
    assert "Active" in facts
    await frame.get_by_label("Sender ID").fill("CASTDEMO")
    await frame.get_by_role("button", name="Save").click()
    await frame.get_by_text("Saved. The next message uses it.").wait_for()
    assert "CASTDEMO" in await frame.get_by_role("table").inner_text()
    await shot(page, "ghl-settings")
    shown = stack.admin("GET", "/installations/loc_sandbox_1").json()
    assert shown["settings"]["sender_id"] == "CASTDEMO"
    [entry] = stack.admin("GET", "/audit", params={"location_id": "loc_sandbox_1",
                                                   "limit": 1}).json()["entries"]
    assert entry["actor"] == "ghl-user:user_sandbox_1"

    # The next SMS goes out with it (the change is announced to the senders at once).
    sent = stack.send(phone=PHONE, message="from the new sender ID")
    await asyncio.to_thread(stack.wait_for_statuses, [sent["messageId"]], STATUS_TIMEOUT)
    assert [s["sender_id"] for s in stack.cast_sends_for([sent["messageId"]])[
        sent["messageId"]]] == ["CASTDEMO"]

    reader = await chromium.new_page()
    await reader.goto(f"{stack.ghl}/_sandbox/custom-page?role=user")
    framed = reader.frame_locator('iframe[title="Cast SMS"]')
    await framed.get_by_text("Only an admin of this location can change these.").wait_for()
    assert not await framed.get_by_role("button", name="Save").is_visible()
    stack.admin("PUT", "/installations/loc_sandbox_1", json={"sender_id": None})
