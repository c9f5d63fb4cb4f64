"""With CAST_IDEMPOTENCY=false an uncertain send is never retried: it fails, saying why."""

from __future__ import annotations

from pathlib import Path

import httpx

from castghl.sandbox.infra import Infra

from .conftest import FAST_SENDER, STATUS_TIMEOUT, make_stack


def test_a_timeout_without_idempotency_fails_as_maybe_delivered(
    rabbitmq: Infra, mongo: Infra, tmp_path: Path,
) -> None:
    stack = make_stack(rabbitmq, mongo, tmp_path,
                       sender_env={**FAST_SENDER, "CAST_IDEMPOTENCY": "false"},
                       cast_knobs={"idempotency": False, "hang_next": 1, "hang_seconds": 3.0})
    with stack.running():
        stack.install()
        sent = stack.send(phone="+639171234567", message="uncertain")
        stack.wait_for_statuses([sent["messageId"]], STATUS_TIMEOUT)
        stack.wait_quiet()
        [status] = stack.statuses(sent["messageId"])
        assert status["status"] == "failed"
        assert "may have been delivered" in status["error"]["message"]
        # No idempotency key to match on: count the texts Cast really sent.
        sent_texts = httpx.get(f"{stack.cast}/_sandbox/sent", timeout=10).json()
        assert [s["message"] for s in sent_texts].count("uncertain") == 1
