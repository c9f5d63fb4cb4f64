"""The console's operations pages in Debian's Chromium against the whole bridge as real
processes: what an operator reads there — a message's timeline, queues, accounts, health —
comes from the running sender through its operator API. Screenshots of each page land in
var/screenshots/ (`make screenshots` copies them into docs/)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from castghl.sandbox.stack import Stack

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
