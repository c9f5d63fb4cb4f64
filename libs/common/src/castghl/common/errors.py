"""One error family for the whole bridge, ordered by what the caller does next.

Adapters (the Cast and GHL clients, phone and text rules) raise these; each service maps
them once — the gateway to HTTP answers, the workers to ack / retry tier / park — so no
handler re-decides what a failure means.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every expected failure.

    `code` is stable and machine-readable (logs, metrics, GHL `error.code`);
    `user_message` is plain English a GHL user understands, shown in the conversation.
    """

    code: str = "bridge_error"
    user_message: str = "Cast SMS could not send this message."

    def __init__(self, detail: str = "", *, code: str | None = None,
                 user_message: str | None = None) -> None:
        super().__init__(detail or user_message or self.user_message)
        if code is not None:
            self.code = code
        if user_message is not None:
            self.user_message = user_message

    @property
    def detail(self) -> str:
        return str(self)


class RetryableError(BridgeError):
    """Nothing happened on the other side: retrying cannot duplicate anything."""

    code = "retryable"

    def __init__(self, detail: str = "", *, retry_after: float | None = None,
                 code: str | None = None, user_message: str | None = None) -> None:
        super().__init__(detail, code=code, user_message=user_message)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """The other side asked us to slow down; waiting is not a failed attempt."""

    code = "rate_limited"


class UncertainError(BridgeError):
    """The request may have taken effect (timeout, 5xx after sending).

    Retry only with the same idempotency key; where that is impossible, give up with a
    message saying the SMS may have been delivered.
    """

    code = "uncertain"
    user_message = (
        "Cast SMS lost contact with Cast.ph while sending; the SMS may have been delivered."
    )


class PermanentError(BridgeError):
    """Retrying cannot help: the message ends `failed` with `user_message`."""

    code = "permanent"


class AccountError(PermanentError):
    """The operator's Cast or GHL account needs attention (credit, key, whitelist).

    Permanent for this message, and worth an operator alert: every message will fail the
    same way until someone acts.
    """

    code = "account"
