"""Every queue, retry tier and header of the bridge — declared here and nowhere else.

Work queues are durable quorum queues. A failed attempt is retried by publishing the
message to a *tier*: a quorum queue whose fixed TTL dead-letters it back to its work
queue (no delayed-message plugin needed; a fixed TTL per queue keeps expiry FIFO-exact).
Dead-lettering is at-least-once, so a message in a tier survives a broker restart.
A message that keeps crashing its consumer is dead-lettered to `<queue>.parked` after
`DELIVERY_LIMIT` redeliveries, as are messages a worker gives up on: nothing is lost,
and an operator can replay what is parked.

Both producers and consumers declare what they use, with identical arguments, so either
can start first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final, cast

from faststream.rabbit import ExchangeType, QueueType, RabbitExchange, RabbitQueue

if TYPE_CHECKING:
    from faststream.rabbit.schemas.queue import QuorumQueueArgs

ATTEMPT_HEADER: Final = "x-castghl-attempt"
# What a message on the Cast lane's queue is: absent for an outbound SMS, RECEIPT_CHECK for
# a delivery-receipt check (both must be served by the one process owning the lane).
KIND_HEADER: Final = "x-castghl-kind"
RECEIPT_CHECK: Final = "receipt-check"
PARKED_REASON_HEADER: Final = "x-castghl-parked-reason"
# RabbitMQ drops a redelivered message into `.parked` after this many crashes mid-handling.
DELIVERY_LIMIT: Final = 20


def _quorum(name: str, **arguments: Any) -> RabbitQueue:
    return RabbitQueue(name, queue_type=QueueType.QUORUM, durable=True,
                       arguments=cast("QuorumQueueArgs", arguments))


def _label(seconds: float) -> str:
    return f"{seconds:g}s"


@dataclass(frozen=True)
class WorkQueue:
    """A work queue, its retry tiers (delay → TTL queue) and its parking queue."""

    name: str
    tier_delays: tuple[float, ...]
    single_active_consumer: bool = False
    queue: RabbitQueue = field(init=False)
    parked: RabbitQueue = field(init=False)
    tiers: dict[float, RabbitQueue] = field(init=False)

    def __post_init__(self) -> None:
        parked = _quorum(f"{self.name}.parked")
        arguments: dict[str, Any] = {
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": parked.name,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # required by at-least-once dead-lettering
        }
        if self.single_active_consumer:
            arguments["x-single-active-consumer"] = True
        tiers = {
            delay: _quorum(
                f"{self.name}.retry.{_label(delay)}",
                **{
                    "x-message-ttl": round(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.name,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
            for delay in sorted(set(self.tier_delays))
        }
        object.__setattr__(self, "queue", _quorum(self.name, **arguments))
        object.__setattr__(self, "parked", parked)
        object.__setattr__(self, "tiers", tiers)

    def tier_for(self, delay: float) -> RabbitQueue:
        """The shortest tier that waits at least `delay` (the longest if none does)."""
        return self.tiers[self.tier_delay(delay)]

    def tier_delay(self, delay: float) -> float:
        """How long `tier_for(delay)` waits."""
        return next((tier for tier in self.tiers if tier >= delay), max(self.tiers))

    def all_queues(self) -> list[RabbitQueue]:
        return [self.parked, self.queue, *self.tiers.values()]

    def side_queues(self) -> list[RabbitQueue]:
        """The retry tiers and the parking queue: what a consumer of `queue` publishes to.
        A service declares these before it starts, never the queue it consumes: FastStream
        keeps the first channel a queue was declared on, and a consumer on that channel
        would run without its own prefetch limit."""
        return [self.parked, *self.tiers.values()]


Delays = tuple[float, ...]


@dataclass(frozen=True)
class Topology:
    """The bridge's queues, optionally prefixed (several stacks sharing one vhost, tests).

    Retry delays are settings, so tests and demos can run the same topology fast; a
    tier's queue is named by its delay, so changing a delay declares a new queue instead
    of clashing with the old one's arguments.
    """

    prefix: str = ""
    status_first_delay: float = 5.0
    outbound_backoff: Delays = (5, 30, 120, 600)
    status_backoff: Delays = (10, 30, 60, 300, 900, 3600)
    inbound_backoff: Delays = (5, 30, 120, 600, 3600)
    lifecycle_backoff: Delays = (5, 30, 300)
    receipt_checks: Delays = (10, 30, 60, 120, 300, 900, 1800)

    @cached_property
    def outbound(self) -> WorkQueue:
        """Verified outbound webhooks → the rate-limited Cast stage.

        Single active consumer: one replica at a time owns the Cast lane, so the rate
        limit holds for any number of replicas; RabbitMQ fails over when it dies. Its
        delivery-receipt checks (KIND_HEADER) come back through the same queue, so the
        same process makes them, behind the sends.
        """
        # Receipt checks wait in tiers of this queue too: the lane's owner makes every
        # Cast call, sends first.
        return WorkQueue(f"{self.prefix}sms.outbound",
                         (*self.outbound_backoff, *self.receipt_checks),
                         single_active_consumer=True)

    @cached_property
    def status(self) -> WorkQueue:
        """Status reports to GHL; one tier is the delay before the first attempt."""
        first = (self.status_first_delay,) if self.status_first_delay > 0 else ()
        return WorkQueue(f"{self.prefix}ghl.status", (*first, *self.status_backoff))

    @cached_property
    def inbound(self) -> WorkQueue:
        return WorkQueue(f"{self.prefix}sms.inbound", self.inbound_backoff)

    @cached_property
    def lifecycle(self) -> WorkQueue:
        return WorkQueue(f"{self.prefix}app.lifecycle", self.lifecycle_backoff)

    @cached_property
    def intake(self) -> RabbitExchange:
        """Where the gateway publishes, and all it may write to: a direct exchange bound
        to the intake queues by their names. Publishing through the default exchange
        would need a permission that reaches every queue (RabbitMQ checks `write` on the
        exchange, not on the queue)."""
        return RabbitExchange(f"{self.prefix}castghl.intake", type=ExchangeType.DIRECT,
                              durable=True)

    def intake_queues(self) -> list[WorkQueue]:
        """The queues webhooks go to, each routed from `intake` by its own name."""
        return [self.outbound, self.inbound, self.lifecycle]

    @cached_property
    def location_changes(self) -> RabbitExchange:
        """Fanout of `LocationChanged` notices: every sender drops what it cached of a
        location the moment the OAuth service changes it (install, uninstall, settings)."""
        return RabbitExchange(f"{self.prefix}castghl.location-changes",
                              type=ExchangeType.FANOUT, durable=True)

    def location_changes_queue(self, instance: str) -> RabbitQueue:
        # One per process, gone with it: a notice matters only to whoever holds a cache.
        return RabbitQueue(f"{self.prefix}location-changes.{instance}", exclusive=True,
                           auto_delete=True)

    def work_queues(self) -> list[WorkQueue]:
        return [self.outbound, self.status, self.inbound, self.lifecycle]

    def queue_names(self) -> list[str]:
        """Every queue of this topology (for tearing down a prefixed test stack)."""
        return [q.name for work in self.work_queues() for q in work.all_queues()]
