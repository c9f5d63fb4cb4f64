"""Issue #13, credits end to end: each Cast account's balance is a gauge on the sender,
and a balance falling below CAST_LOW_CREDITS logs one warning, however often it is read;
usage per day; Cast's own opt-out list.

This stack reads each Cast account every second, so the Cast simulator is never quiet:
tests here wait for the outcome they check, never for `Stack.wait_quiet`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from castghl.sandbox.infra import Infra
from castghl.sandbox.stack import Stack

from .conftest import FAST_SENDER, STATUS_TIMEOUT, make_stack, wait_until

LOW = "Cast credits are running low"


@pytest.fixture(scope="module")
def stack(rabbitmq: Infra, mongo: Infra, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    running = make_stack(rabbitmq, mongo, tmp_path_factory.mktemp("credits"),
                         sender_env={**FAST_SENDER, "CAST_BALANCE_CHECK_SECONDS": "1",
                                     "CAST_LOW_CREDITS": "500"},
                         cast_knobs={"credits": 1000})
    with running.running():
        running.install()
        yield running


def credits_shown(stack: Stack) -> dict[str, float]:
    [sender] = stack.sender_processes
    metrics = httpx.get(f"{sender.url}/metrics", timeout=10).text
    return {label: float(value) for label, value in re.findall(
        r'^castghl_cast_credits\{account="([^"]*)"\} ([0-9.e+]+)$', metrics, re.M)}


def warnings(stack: Stack) -> int:
    [sender] = stack.sender_processes
    return Path(sender.log_path).read_text().count(LOW)


def test_credits_below_the_threshold_show_on_the_gauge_with_one_warning(stack: Stack) -> None:
    wait_until(lambda: 1000 in credits_shown(stack).values(), "the balance on the gauge")
    [account] = credits_shown(stack)
    assert account.startswith("Cast Sandbox (")  # the account's name, never its key
    assert "cast_" not in account
    assert warnings(stack) == 0

    stack.configure_cast(credits=400)
    wait_until(lambda: credits_shown(stack) == {account: 400}, "the lower balance")
    assert warnings(stack) == 1
    # Still below on the next reads (a text costs one credit): no second warning.
    sent = stack.send(phone="+639171234567", message="costs one credit")
    stack.wait_for_statuses([sent["messageId"]], STATUS_TIMEOUT)
    wait_until(lambda: credits_shown(stack) == {account: 399}, "the balance after a send")
    assert warnings(stack) == 1


def test_usage_per_day_counts_what_the_location_sent(stack: Stack) -> None:
    before = stack.admin("GET", "/installations/loc_sandbox_1/usage").json()["totals"]
    ids = [stack.send(phone="+639171234567", message=f"billable {n}")["messageId"]
           for n in range(3)]
    ids.append(stack.send(phone="+1 555 123 4567", message="not a PH number")["messageId"])
    # Usage is counted before a status is queued, so every status in GHL means every
    # count is in. (No wait_quiet here: this stack reads Cast's balance every second.)
    stack.wait_for_statuses(ids, STATUS_TIMEOUT)
    answer = stack.admin("GET", "/installations/loc_sandbox_1/usage")
    assert answer.status_code == 200, answer.text
    after = answer.json()["totals"]
    assert {k: after[k] - before[k] for k in after} == {
        "parts_sent": 3, "delivered": 3, "failed": 1}


def test_a_number_on_casts_opt_out_list_is_refused_without_a_cast_call(stack: Stack) -> None:
    [sender] = stack.sender_processes
    stack.configure_cast(opted_out=["09175550999"])
    try:
        wait_until(lambda: '"numbers": 1' in Path(sender.log_path).read_text(),
                   "Cast's opt-out list copied")
        sent = stack.send(phone="+63 917 555 0999", message="after the opt-out link")
        [status] = stack.wait_for_statuses([sent["messageId"]], STATUS_TIMEOUT)[
            sent["messageId"]]
        assert status["status"] == "failed"
        assert "Cast's opt-out link" in str(status["error"])
        # Failed before any Cast call: nothing can follow the status.
        assert stack.cast_sends_for([sent["messageId"]]) == {sent["messageId"]: []}
    finally:
        stack.configure_cast(opted_out=[])
