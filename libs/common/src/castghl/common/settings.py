"""Settings: one pydantic-settings base, groups shared by several services, a fail-fast loader.

Each environment variable is declared exactly once, in the group that owns it; a service's
settings class is the union of the groups it needs. `load_settings` turns any validation
failure into one line on stderr naming every bad variable — never its value, which may be a
secret — and exits with status 2.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Final, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AnyUrl,
    BeforeValidator,
    Field,
    SecretStr,
    UrlConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from castghl.common.topology import Topology
from castghl.common.validation import fields

AmqpUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["amqp", "amqps"])]
MongoUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["mongodb", "mongodb+srv"])]
HttpUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["http", "https"])]
Port = Annotated[int, Field(ge=1, le=65535)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ServiceSettings(BaseSettings):
    """Base of every settings group: environment only, unknown variables ignored."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore",
                                      validate_default=True)

    log_level: LogLevel = "INFO"


def _parse_delays(value: object) -> object:
    """'5,30,120' → (5.0, 30.0, 120.0): env lists are comma-separated, not JSON."""
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",") if item.strip()]
        return tuple(float(item) for item in items) if items else ()
    return value


Delays = Annotated[tuple[Annotated[float, Field(gt=0, le=86_400)], ...],
                   NoDecode, BeforeValidator(_parse_delays), Field(min_length=1)]


class BrokerSettings(ServiceSettings):
    """RabbitMQ and the queue layout; every service reads the same variables, so every
    service declares the same queues."""

    rabbitmq_url: AmqpUrl = AmqpUrl("amqp://guest:guest@localhost:5672/")
    queue_prefix: str = Field("", pattern=r"^[A-Za-z0-9_.-]*$", max_length=64)
    ghl_status_delay_seconds: float = Field(5.0, ge=0, le=300)
    outbound_retry_delays: Delays = (5, 30, 120, 600)
    status_retry_delays: Delays = (10, 30, 60, 300, 900, 3600)
    inbound_retry_delays: Delays = (5, 30, 120, 600, 3600)
    lifecycle_retry_delays: Delays = (5, 30, 300)
    # When Cast is asked for an accepted message's delivery receipts (seconds after the
    # send, then after each check); declared as tiers by every service, like the delays.
    cast_receipt_check_delays: Delays = (10, 30, 60, 120, 300, 900, 1800)

    def topology(self) -> Topology:
        return Topology(
            prefix=self.queue_prefix,
            status_first_delay=self.ghl_status_delay_seconds,
            outbound_backoff=self.outbound_retry_delays,
            status_backoff=self.status_retry_delays,
            inbound_backoff=self.inbound_retry_delays,
            lifecycle_backoff=self.lifecycle_retry_delays,
            receipt_checks=self.cast_receipt_check_delays,
        )


class MongoSettings(ServiceSettings):
    mongo_uri: MongoUrl = MongoUrl("mongodb://localhost:27017/cast-ghl")

    @property
    def mongo_database(self) -> str:
        # The database is the URI's path, as MongoDB drivers read it; a bare host gets ours.
        name = (self.mongo_uri.path or "").lstrip("/")
        return name or "cast-ghl"


class GhlApiSettings(ServiceSettings):
    ghl_api_url: HttpUrl = HttpUrl("https://services.leadconnectorhq.com")
    ghl_http_timeout_seconds: float = Field(15.0, gt=0, le=120)


class CastApiSettings(ServiceSettings):
    """Cast's API and the operator's default key: the sender sends with it, the OAuth
    service checks sender IDs with it when the admin API sets one."""

    cast_api_url: HttpUrl = HttpUrl("https://api.cast.ph")
    cast_api_key: SecretStr
    cast_http_timeout_seconds: float = Field(10.0, gt=0, le=120)

    @field_validator("cast_api_key")
    @classmethod
    def _looks_like_a_cast_key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("cast_"):
            raise ValueError("must be a Cast API key (starts with cast_)")
        return value


S = TypeVar("S", bound=ServiceSettings)


def _variable(settings_cls: type[ServiceSettings], error: ErrorDetails) -> str:
    """The environment variable an error is about (field alias or upper-cased name)."""
    if not error["loc"]:
        return "settings"
    name = str(error["loc"][0])
    field = settings_cls.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    return (alias if isinstance(alias, str) else name).upper()


def describe_errors(settings_cls: type[ServiceSettings], exc: ValidationError) -> str:
    """'A is missing; B: Input should be a valid integer' — values are never echoed."""
    return fields(exc, name=lambda error: _variable(settings_cls, error))


# The real hosts: anything else is a simulator or a test double.
LIVE_HOSTS: Final = {"ghl_api_url": "services.leadconnectorhq.com", "cast_api_url": "api.cast.ph"}


def startup_facts(settings: ServiceSettings) -> dict[str, str]:
    """What an operator wants to read first in a service's log: live or sandbox, which
    upstream hosts, which broker and database hosts. Hosts only, never a credential."""
    facts: dict[str, str] = {}
    for name in ("ghl_api_url", "cast_api_url", "oauth_url", "base_url", "rabbitmq_url",
                 "mongo_uri"):
        value = getattr(settings, name, None)
        if value is not None:
            where = urlsplit(str(value))
            facts[name.removesuffix("_url").removesuffix("_uri")] = (
                f"{where.hostname}:{where.port}" if where.port else str(where.hostname))
    upstreams = [name for name in LIVE_HOSTS if hasattr(settings, name)]
    live = all(urlsplit(str(getattr(settings, name))).hostname == LIVE_HOSTS[name]
               for name in upstreams)
    key = getattr(settings, "cast_api_key", None)
    test_key = isinstance(key, SecretStr) and key.get_secret_value().startswith("cast_test_")
    facts["mode"] = ("live" if live and not test_key else
                     "sandbox (simulators or a Cast test key)") if upstreams else "n/a"
    return facts


def announce(settings: ServiceSettings) -> None:
    """Log `startup_facts` once, as the process starts serving."""
    logging.getLogger("castghl.start").info("starting", extra=startup_facts(settings))


def load_settings(settings_cls: type[S], service: str) -> S:
    """Build `settings_cls` from the environment, or exit 2 with one line naming the problems."""
    try:
        return settings_cls()
    except ValidationError as exc:
        print(f"{service}: cannot start, bad settings: {describe_errors(settings_cls, exc)}",
              file=sys.stderr, flush=True)
        raise SystemExit(2) from None
