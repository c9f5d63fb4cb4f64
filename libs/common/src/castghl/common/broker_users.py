"""RabbitMQ definitions for a deployment: one user per service, allowed only what it uses.

    python -m castghl.common.broker_users --out /definitions/definitions.json

reads QUEUE_PREFIX and RABBITMQ_{ADMIN,GATEWAY,SENDER,OAUTH}_PASSWORD and writes the
definitions the broker loads at boot (`load_definitions`, deploy/rabbitmq/rabbitmq.conf):
the users with salted password hashes, their permissions, and the intake exchange with
its queues, which the gateway may not declare itself. docs/deploy.md, "RabbitMQ users",
explains each permission.

RabbitMQ checks `write` on the exchange a message is published to, `configure` to declare
or delete, `read` to consume or bind from; a declaration with a dead-letter exchange also
needs `write` on that exchange and `read` on the queue.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple

from faststream.rabbit import RabbitQueue
from pydantic import Field, SecretStr

from castghl.common.settings import ServiceSettings, load_settings
from castghl.common.topology import Topology

VHOST: Final = "/"
HASHING: Final = "rabbit_password_hashing_sha256"
NOTHING: Final = "^$"


class Permission(NamedTuple):
    configure: str
    write: str
    read: str


class BrokerUsersSettings(ServiceSettings):
    queue_prefix: str = Field("", pattern=r"^[A-Za-z0-9_.-]*$", max_length=64)
    rabbitmq_admin_password: SecretStr = Field(min_length=16)
    rabbitmq_gateway_password: SecretStr = Field(min_length=16)
    rabbitmq_sender_password: SecretStr = Field(min_length=16)
    rabbitmq_oauth_password: SecretStr = Field(min_length=16)

    def passwords(self) -> dict[str, str]:
        return {"admin": self.rabbitmq_admin_password.get_secret_value(),
                "gateway": self.rabbitmq_gateway_password.get_secret_value(),
                "sender": self.rabbitmq_sender_password.get_secret_value(),
                "oauth": self.rabbitmq_oauth_password.get_secret_value()}


def _any_of(*patterns: str) -> str:
    return "|".join(f"^{pattern}$" for pattern in patterns)


def permissions(prefix: str) -> dict[str, Permission]:
    """Per user, on the vhost. A work queue's name covers its tiers and parking queue."""
    p = re.escape(prefix)
    sender_queues = rf"{p}(sms\.outbound|ghl\.status|sms\.inbound)(\..+)?"
    own_cache_queue = rf"{p}location-changes\..+"  # one per process, gone with it
    changes = rf"{p}castghl\.location-changes"
    lifecycle = rf"{p}app\.lifecycle(\..+)?"
    return {
        # Publishes to the intake exchange, which routes only to the intake queues; it
        # may not declare, consume or publish anywhere else.
        "gateway": Permission(NOTHING, _any_of(rf"{p}castghl\.intake"), NOTHING),
        # Its queues; the default exchange to retry and park (a tier dead-letters back
        # through it); the settings notices. Parked lifecycle messages are read by the
        # operator's `castghl-sender replay lifecycle`.
        "sender": Permission(
            _any_of(sender_queues, own_cache_queue, changes),
            _any_of("amq\\.default", sender_queues, own_cache_queue),
            _any_of(sender_queues, own_cache_queue, changes, rf"{p}app\.lifecycle\.parked")),
        "oauth": Permission(_any_of(lifecycle, changes),
                            _any_of("amq\\.default", lifecycle, changes),
                            _any_of(lifecycle)),
        # Operators (management UI, rabbitmqctl-free repairs).
        "admin": Permission(".*", ".*", ".*"),
    }


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4) if salt is None else salt
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def _queue(queue: RabbitQueue) -> dict[str, Any]:
    return {"name": queue.name, "vhost": VHOST, "durable": queue.durable,
            "auto_delete": queue.auto_delete, "arguments": dict(queue.arguments or {})}


def definitions(topology: Topology, passwords: Mapping[str, str]) -> dict[str, Any]:
    grants = permissions(topology.prefix)
    intake = topology.intake
    return {
        "vhosts": [{"name": VHOST}],
        "users": [{"name": user, "password_hash": password_hash(passwords[user]),
                   "hashing_algorithm": HASHING,
                   "tags": ["administrator"] if user == "admin" else []}
                  for user in grants],
        "permissions": [{"user": user, "vhost": VHOST, **grant._asdict()}
                        for user, grant in grants.items()],
        "exchanges": [{"name": intake.name, "vhost": VHOST, "type": intake.type.value,
                       "durable": True, "auto_delete": False, "internal": False,
                       "arguments": {}}],
        "queues": [_queue(queue) for work in topology.intake_queues()
                   for queue in (work.parked, work.queue)],
        "bindings": [{"source": intake.name, "vhost": VHOST, "destination": work.queue.name,
                      "destination_type": "queue", "routing_key": work.queue.name,
                      "arguments": {}} for work in topology.intake_queues()],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m castghl.common.broker_users",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write here (default: stdout)")
    args = parser.parse_args(argv)
    settings = load_settings(BrokerUsersSettings, "broker-users")
    text = json.dumps(definitions(Topology(prefix=settings.queue_prefix),
                                  settings.passwords()), indent=2)
    if args.out is None:
        print(text)
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    args.out.chmod(0o644)  # read by the broker's own user in its container
    print(f"broker-users: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
