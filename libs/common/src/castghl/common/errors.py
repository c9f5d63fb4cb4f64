"""One error family for the whole bridge, ordered by what the caller does next.

Adapters (the Cast and GHL clients, phone and text rules, the token service) raise these;
each is mapped once — to an HTTP answer by `castghl.common.answers` (gateway and oauth),
to ack / retry tier / park by `castghl.common.worker.Settler` — so no handler re-decides
what a failure means. An error that crosses between services travels as its `code` and
comes back as the same class (`BridgeError.from_code`).
"""

from __future__ import annotations

from typing import ClassVar


class BridgeError(Exception):
    """Base of every expected failure.

    `code` is stable and machine-readable (logs, metrics, GHL `error.code`, the wire);
    `user_message` is plain English a GHL user understands, shown in the conversation;
    `http_status` is the answer when this error ends a request to one of our services.
    """

    code: str = "bridge_error"
    user_message: str = "Cast SMS could not send this message."
    http_status: int = 500
    _by_code: ClassVar[dict[str, type[BridgeError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # The first class to name a code owns it: subclasses that keep their parent's
        # code (a more specific user message, say) come back as the parent.
        BridgeError._by_code.setdefault(cls.code, cls)

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

    @staticmethod
    def from_code(code: str, detail: str) -> BridgeError:
        """The family member another service answered with, as the same class. A code
        this side does not know is that service failing in a way it named: retry, and
        count the attempt (it may never stop failing, unlike an outage)."""
        known = BridgeError._by_code.get(code)
        if known is None:
            return RetryableError(detail, code=code)
        return known(detail)


class RetryableError(BridgeError):
    """Nothing happened on the other side: retrying cannot duplicate anything."""

    code = "retryable"
    http_status = 503

    def __init__(self, detail: str = "", *, retry_after: float | None = None,
                 code: str | None = None, user_message: str | None = None) -> None:
        super().__init__(detail, code=code, user_message=user_message)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """The other side asked us to slow down; waiting is not a failed attempt."""

    code = "rate_limited"
    http_status = 429


class UncertainError(BridgeError):
    """The request may have taken effect (timeout, 5xx after sending).

    Retry only with the same idempotency key; where that is impossible, give up with a
    message saying the SMS may have been delivered.
    """

    code = "uncertain"
    http_status = 502
    user_message = (
        "Cast SMS lost contact with Cast.ph while sending; the SMS may have been delivered."
    )


class PermanentError(BridgeError):
    """Retrying cannot help: the message ends `failed` with `user_message`."""

    code = "permanent"
    http_status = 422


class AccountError(PermanentError):
    """The operator's Cast or GHL account needs attention (credit, key, whitelist).

    Permanent for this message, and worth an operator alert: every message will fail the
    same way until someone acts.
    """

    code = "account"
    http_status = 409


# --- our own services ----------------------------------------------------------------------

class ServiceUnavailable(RetryableError):
    """An outage of the bridge's own infrastructure: another of its services did not
    answer (down, overloaded, restarting), or a store is away. It says nothing about the
    message in hand, so it is waited out and never counted as an attempt (Settler)."""

    code = "service_unavailable"
    user_message = "Cast SMS could not reach one of its own services; it will try again."


class BrokerUnavailable(ServiceUnavailable):
    """This service's channel to RabbitMQ is closed (a broker restart, a lost link): it
    reopens by itself."""

    code = "broker_unavailable"


class StoreUnavailable(ServiceUnavailable):
    """This service's MongoDB did not answer (a restart, a failover, a network cut)."""

    code = "store_unavailable"


class InvalidRequest(PermanentError):
    """A request to one of our services that cannot be read or breaks its contract."""

    code = "invalid_request"
    http_status = 400


class Unauthorized(PermanentError):
    """A caller of one of our APIs presented no key, or the wrong one."""

    code = "unauthorized"
    http_status = 401


class Forbidden(PermanentError):
    """The caller is known, and may not do this (a GHL user who is not an admin)."""

    code = "forbidden"
    http_status = 403


class NotFound(PermanentError):
    code = "not_found"
    http_status = 404


class Conflict(PermanentError):
    """The request is well formed, but the state of things refuses it (a number another
    location owns, a location uninstalled meanwhile)."""

    code = "conflict"
    http_status = 409


# --- installations (the OAuth service's answers) -------------------------------------------

class NotInstalled(PermanentError):
    code = "not_installed"
    http_status = 404
    user_message = ("Cast SMS is not installed on this GHL location (or was uninstalled): "
                    "install Cast SMS from the GHL Marketplace again.")


class NeedsReauth(AccountError):
    """GHL refused the stored refresh token: only a reinstall brings the location back."""

    code = "needs_reauth"
    user_message = ("Cast SMS lost its GHL authorisation for this location: reinstall "
                    "Cast SMS from the GHL Marketplace to reconnect it.")


class LocationInactive(RetryableError):
    """GHL paused the location; the same refresh token works again later."""

    code = "location_inactive"
    user_message = "GHL reports this location as inactive; Cast SMS will try again."


class UpstreamUnavailable(RetryableError):
    """GHL could not renew a token just now (unreachable, slow, or another replica's
    refresh did not finish in time)."""

    code = "upstream_unavailable"
    user_message = "Cast SMS could not reach GHL to renew its access; it will try again."
