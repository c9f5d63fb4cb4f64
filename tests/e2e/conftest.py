"""The whole bridge as real processes (castghl.sandbox.stack) on real infrastructure."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from castghl.sandbox.infra import Infra
from castghl.sandbox.stack import WAIT_TIMEOUT_SECONDS, Stack

# Fast clocks for tests: the same code paths as production, shorter waits.
FAST_SENDER = {
    "GHL_STATUS_DELAY_SECONDS": "0.3",
    "STATUS_RETRY_DELAYS": "0.5,1,2,4",
    "OUTBOUND_RETRY_DELAYS": "0.5,1,2",
    "INBOUND_RETRY_DELAYS": "0.5,1,2",
    "CAST_RECEIPT_CHECK_DELAYS": "0.5,1,2,4",
    "CAST_HTTP_TIMEOUT_SECONDS": "1.5",
    # Bound how long a killed replica's status lease holds its status back (status.py).
    "GHL_HTTP_TIMEOUT_SECONDS": "5",
    "OAUTH_TIMEOUT_SECONDS": "5",
}
FAST_GHL = {"status_race_seconds": 1.0}
# Waits return as soon as their condition holds; the deadline only ends a run gone wrong.
STATUS_TIMEOUT = WAIT_TIMEOUT_SECONDS


def wait_until(condition: Callable[[], object], what: str,
               timeout: float = WAIT_TIMEOUT_SECONDS) -> None:
    """Poll until `condition()` holds; fail naming `what` if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)  # a poll interval: the loop ends when the condition holds


def make_stack(rabbitmq: Infra, mongo: Infra, workdir: Path, **overrides: object) -> Stack:
    database = f"e2e_{uuid.uuid4().hex[:10]}"
    options: dict[str, object] = {"senders": 1, "sender_env": dict(FAST_SENDER),
                                  "service_env": dict(FAST_SENDER), "ghl_knobs": dict(FAST_GHL)}
    options.update(overrides)
    return Stack(rabbitmq.url, f"{mongo.url.rstrip('/')}/{database}", workdir,
                 **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def stack(rabbitmq: Infra, mongo: Infra, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    """One installed stack per module; tests use their own messages and restore knobs."""
    running = make_stack(rabbitmq, mongo, tmp_path_factory.mktemp("stack"))
    with running.running():
        running.install()
        yield running


@pytest.fixture
def cast_knobs(stack: Stack) -> Iterator[Stack]:
    """For tests that change the Cast simulator: its defaults come back afterwards."""
    yield stack
    stack.configure_cast(credits=None, fail_next=[], hang_next=0, hang_seconds=30.0)
