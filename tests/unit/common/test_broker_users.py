"""Each service's broker user may do what its code does, and nothing of another's."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from castghl.common.broker_users import definitions, password_hash, permissions
from castghl.common.topology import Topology

PREFIX = "prod.v1-"
TOPOLOGY = Topology(prefix=PREFIX)


def allowed(user: str, kind: str, name: str) -> bool:
    # RabbitMQ matches each permission as an unanchored regular expression.
    return re.search(getattr(permissions(PREFIX)[user], kind), name) is not None


def names(*works: str) -> list[str]:
    chosen = [getattr(TOPOLOGY, work) for work in works]
    return [queue.name for work in chosen for queue in work.all_queues()]


SENDER_QUEUES = names("outbound", "status", "inbound")
OAUTH_QUEUES = names("lifecycle")
CACHE_QUEUE = TOPOLOGY.location_changes_queue("ab12").name


def test_the_gateway_may_only_publish_to_the_intake_exchange() -> None:
    assert allowed("gateway", "write", TOPOLOGY.intake.name)
    for name in ["amq.default", TOPOLOGY.location_changes.name, *SENDER_QUEUES,
                 *OAUTH_QUEUES]:
        assert not allowed("gateway", "write", name), name
    for name in [TOPOLOGY.intake.name, *SENDER_QUEUES, *OAUTH_QUEUES]:
        assert not allowed("gateway", "configure", name), name
        assert not allowed("gateway", "read", name), name


@pytest.mark.parametrize("kind", ["configure", "read"])
def test_the_sender_and_oauth_each_own_their_queues_only(kind: str) -> None:
    for name in [*SENDER_QUEUES, CACHE_QUEUE]:
        assert allowed("sender", kind, name), name
        assert not allowed("oauth", kind, name), name
    for name in OAUTH_QUEUES:
        assert allowed("oauth", kind, name), name
        # The operator's replay of parked lifecycle messages runs as the sender.
        assert allowed("sender", kind, name) == (kind == "read" and name.endswith(".parked"))


def test_workers_publish_through_the_default_exchange_and_the_notices() -> None:
    for user in ("sender", "oauth"):
        assert allowed(user, "write", "amq.default")
        assert not allowed(user, "write", TOPOLOGY.intake.name)
    assert allowed("oauth", "write", TOPOLOGY.location_changes.name)
    assert allowed("sender", "read", TOPOLOGY.location_changes.name)  # to bind its queue
    assert not allowed("sender", "write", TOPOLOGY.location_changes.name)


def test_another_prefix_is_out_of_reach() -> None:
    other = Topology(prefix="staging.")
    for name in [q.name for work in other.work_queues() for q in work.all_queues()]:
        for user in ("sender", "oauth"):
            assert not allowed(user, "configure", name), (user, name)


def test_the_hash_is_rabbitmqs_salted_sha256() -> None:
    salt = b"\x01\x02\x03\x04"
    hashed = base64.b64decode(password_hash("a-long-password-1", salt))
    assert hashed == salt + hashlib.sha256(salt + b"a-long-password-1").digest()
    assert password_hash("same-password-xyz") != password_hash("same-password-xyz")


def test_the_definitions_hold_users_and_the_intake_routes() -> None:
    passwords = {user: f"{user}-password-0123456789" for user in permissions("")}
    made = definitions(TOPOLOGY, passwords)
    assert {u["name"] for u in made["users"]} == {"admin", "gateway", "sender", "oauth"}
    assert all("password" not in u for u in made["users"])
    intake = [work.queue.name for work in TOPOLOGY.intake_queues()]
    assert [b["destination"] for b in made["bindings"]] == intake
    assert {b["source"] for b in made["bindings"]} == {TOPOLOGY.intake.name}
    declared = {q["name"]: q["arguments"] for q in made["queues"]}
    assert declared[TOPOLOGY.outbound.queue.name] == dict(TOPOLOGY.outbound.queue.arguments or {})
