"""Composition root of the sender: settings → clients, store, lane, workers, broker.

The sender runs three kinds of work on one broker connection: the Cast lane
(`sms.outbound`, single active consumer across replicas: outbound SMS, and the ticks of
the receipt desk, told apart by KIND_HEADER), status delivery to GHL
(`ghl.status`, competing consumers) and inbound delivery (`sms.inbound`). A small HTTP
app serves health and metrics and owns the lifecycle: uvicorn's SIGTERM handling stops
the broker gracefully, letting in-flight messages finish (or return to the queue).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from aio_pika.abc import AbstractIncomingMessage
from fastapi import APIRouter, FastAPI
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker
from prometheus_client import Counter
from pymongo import AsyncMongoClient

from castghl.common import answers
from castghl.common.background import running
from castghl.common.broker import Publisher, declare, make_broker
from castghl.common.cast.client import CastClient
from castghl.common.consumers import DirectConsumers
from castghl.common.ghl.api import GhlApi
from castghl.common.health import (
    ReadinessCheck,
    broker_check,
    consumers_check,
    health_router,
    mongo_check,
    publisher_check,
    watch_consumers,
)
from castghl.common.http import Upstream, pooled_upstream
from castghl.common.messages import (
    InboundSms,
    LocationChanged,
    OutboundSms,
    ReceiptCheck,
    StatusUpdate,
)
from castghl.common.oauth_client import OAuthClient, OAuthTimings
from castghl.common.topology import KIND_HEADER, RECEIPT_CHECK
from castghl.common.worker import Delivery, Settler, channel_open, undecoded
from castghl.sender.channels import Channels
from castghl.sender.credits import CreditPolicy, CreditWatch
from castghl.sender.final import FinalStatuses
from castghl.sender.ghl_rate import Gcra, LocationRate, PacedTokens
from castghl.sender.inbound import InboundDelivery
from castghl.sender.lane import Lane
from castghl.sender.ops import ops_router
from castghl.sender.optouts import sync_cast_opt_outs
from castghl.sender.outbound import OutboundPipeline, OutboundPolicy
from castghl.sender.receipts import LaneTicks, ReceiptDesk, ReceiptPolicy
from castghl.sender.settings import SenderSettings
from castghl.sender.status import DelayedStatusQueue, StatusReporter, write_lease
from castghl.sender.store import (
    MongoAccounts,
    MongoInboundStore,
    MongoMessageStore,
    MongoSchedules,
    MongoSuppressions,
    MongoUsage,
)

SERVICE = "castghl-sender"
# Pooled connections to the OAuth service's internal API. Few: look-ups asked together
# go out as one request, and httpx's pool gets slower per request as it grows (measured
# in make bench: 8 connections answered a burst 4x faster than 64).
OAUTH_CONNECTIONS = 16
NOTICES = Counter("castghl_location_notices_total",
                  "Location changes announced by the OAuth service (cached settings dropped)")


def _cast_lane(settings: SenderSettings, broker: RabbitBroker, publisher: Publisher, *,
               store: MongoMessageStore,
               suppressions: MongoSuppressions, usage: MongoUsage, oauth: OAuthClient,
               cast_http: Upstream) -> tuple[OutboundPipeline, ReceiptDesk]:
    """The two users of the Cast lane: sends, and the receipt checks behind them."""
    topology = settings.topology()
    cast = CastClient(cast_http, str(settings.cast_api_url), idempotency=settings.cast_idempotency)
    lane = Lane(settings.cast_rate_limit_per_second, settings.cast_rate_burst,
                settings.cast_key_rate_limit_per_second)
    final = FinalStatuses(store, DelayedStatusQueue(publisher, topology.status,
                                                    settings.ghl_status_delay_seconds), usage)
    desk = ReceiptDesk(
        store=store, cast=cast, lane=lane, locations=oauth,
        ticks=LaneTicks(broker, topology.outbound), final=final,
        policy=ReceiptPolicy(delays=settings.cast_receipt_check_delays,
                             unknown_as=settings.cast_receipt_unknown_as,
                             default_api_key=settings.cast_api_key.get_secret_value()))
    pipeline = OutboundPipeline(
        store=store, cast=cast, lane=lane, locations=oauth, final=final, receipts=desk,
        opt_outs=suppressions, channels=Channels(cast), policy=OutboundPolicy(
            default_api_key=settings.cast_api_key.get_secret_value(),
            default_sender_id=settings.cast_sender_id,
            max_message_chars=settings.cast_max_message_chars,
            max_parts=settings.cast_max_parts_per_message,
            idempotency=settings.cast_idempotency,
        ),
    )
    return pipeline, desk


def _credit_watch(settings: SenderSettings, cast_http: Upstream, oauth: OAuthClient,
                  accounts: MongoAccounts, suppressions: MongoSuppressions) -> CreditWatch:
    """Every Cast account in use (the default key, and the keys locations brought): its
    credits, and its opt-out list."""
    cast = CastClient(cast_http, str(settings.cast_api_url), idempotency=False)
    return CreditWatch(
        cast=cast, keys=oauth, store=accounts,
        also=[functools.partial(sync_cast_opt_outs, cast, suppressions)],
        policy=CreditPolicy(default_api_key=settings.cast_api_key.get_secret_value(),
                            every_seconds=settings.cast_balance_check_seconds,
                            low_credits=settings.cast_low_credits))


def _every_sms_queues(settings: SenderSettings, broker: RabbitBroker,
                      pipeline: OutboundPipeline, desk: ReceiptDesk,
                      reporter: StatusReporter) -> DirectConsumers:
    """The two queues every SMS passes through, consumed without FastStream
    (common/consumers.py). Prefetch bounds the lane's in-flight messages; each waits its
    turn in the lane."""
    topology = settings.topology()
    outbound = Settler(broker, topology.outbound, settings.outbound_max_attempts,
                       settings.outbound_retry_delays, exhausted=pipeline.exhausted)
    receipt_checks = Settler(broker, topology.outbound, settings.outbound_max_attempts,
                             settings.outbound_retry_delays)
    status = Settler(broker, topology.status, settings.status_max_attempts,
                     settings.status_retry_delays)

    async def on_outbound(message: AbstractIncomingMessage) -> None:
        desk.on_duty(channel_open(message))
        if message.headers.get(KIND_HEADER) == RECEIPT_CHECK:
            await receipt_checks.run(message, ReceiptCheck, desk.check)
        else:
            await outbound.run(message, OutboundSms, pipeline.process)

    async def on_status(message: AbstractIncomingMessage) -> None:
        await status.run(message, StatusUpdate, reporter.process)

    direct = DirectConsumers()
    direct.add(topology.outbound.queue, settings.cast_lane_concurrency, on_outbound)
    direct.add(topology.status.queue, settings.status_concurrency, on_status)
    return direct


def _upstreams(settings: SenderSettings
               ) -> tuple[Upstream, Upstream, Upstream]:
    """One pooled `Upstream` per upstream (Cast, GHL, the OAuth service), keeping alive as
    many connections as may be in use at once (castghl.common.http)."""
    cast = pooled_upstream(settings.cast_lane_concurrency, timeout=httpx.Timeout(
        settings.cast_http_timeout_seconds, connect=5.0))
    ghl = pooled_upstream(settings.status_concurrency + settings.inbound_concurrency,
                          timeout=settings.ghl_http_timeout_seconds)
    # Many look-ups in flight at once (the lane, statuses and replies ask concurrently);
    # each call gives its own timeout (OAuthTimings).
    return cast, ghl, pooled_upstream(OAUTH_CONNECTIONS, timeout=5.0)


def create_app(settings: SenderSettings) -> FastAPI:
    topology = settings.topology()
    broker = make_broker(settings, SERVICE)
    # Decided statuses, one per SMS, go out on a channel of their own (status.py).
    publisher = Publisher(str(settings.rabbitmq_url), SERVICE)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(str(settings.mongo_uri),
                                                                tz_aware=True)
    store = MongoMessageStore(mongo[settings.mongo_database])
    inbound_store = MongoInboundStore(mongo[settings.mongo_database])
    suppressions = MongoSuppressions(mongo[settings.mongo_database])
    usage = MongoUsage(mongo[settings.mongo_database])
    cast_http, ghl_http, oauth_http = _upstreams(settings)
    oauth = OAuthClient(oauth_http, str(settings.oauth_url),
                        settings.sender_api_key.get_secret_value(),
                        OAuthTimings(timeout=settings.oauth_timeout_seconds,
                                     settings_ttl=settings.location_cache_seconds))

    pipeline, desk = _cast_lane(settings, broker, publisher, store=store,
                                suppressions=suppressions, usage=usage, oauth=oauth,
                                cast_http=cast_http)
    ghl = GhlApi(ghl_http, str(settings.ghl_api_url))
    # Every GHL call with a location token fetches the token here, with a permit.
    paced = PacedTokens(oauth, LocationRate(
        MongoSchedules(mongo[settings.mongo_database]),
        Gcra.within(settings.ghl_location_calls_per_10s, 10.0)))
    reporter = StatusReporter(store, paced, ghl, lease_seconds=write_lease(
        settings.ghl_http_timeout_seconds, settings.oauth_timeout_seconds))
    replies = InboundDelivery(inbound=inbound_store, messages=store, router=oauth,
                              locations=oauth, tokens=paced, ghl=ghl,
                              suppressions=suppressions, words=settings.consent_words(),
                              fallback=timedelta(days=settings.inbound_fallback_days),
                              conversation_provider_id=settings.ghl_conversation_provider_id)
    accounts = MongoAccounts(mongo[settings.mongo_database])
    credits = _credit_watch(settings, cast_http, oauth, accounts, suppressions)
    direct = _every_sms_queues(settings, broker, pipeline, desk, reporter)
    inbound = Settler(broker, topology.inbound, settings.inbound_max_attempts,
                      settings.inbound_retry_delays)

    @broker.subscriber(topology.inbound.queue, ack_policy=AckPolicy.MANUAL, decoder=undecoded,
                       channel=Channel(prefetch_count=settings.inbound_concurrency,
                                       on_return_raises=True))
    async def on_inbound(message: Delivery) -> None:
        await inbound.run(message, InboundSms, replies.process)

    # Settings the OAuth service just changed must apply to the next message, not to the
    # first one after the cache expires: its notices drop the cached copy.
    @broker.subscriber(topology.location_changes_queue(uuid.uuid4().hex[:12]),
                       exchange=topology.location_changes, ack_policy=AckPolicy.ACK)
    async def on_location_changed(notice: LocationChanged) -> None:
        oauth.forget(notice)
        NOTICES.inc()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for indexed in (store, inbound_store, usage):
            await indexed.ensure_indexes()
        await broker.connect()
        await publisher.connect()
        await declare(broker, [q for work in (topology.outbound, topology.status,
                                              topology.inbound) for q in work.side_queues()])
        await broker.start()
        await direct.start(publisher.connection)
        try:
            async with running(credits.run(), "credit-watch"), \
                    running(watch_consumers(broker, also_missing=direct.missing),
                            "consumer-watch"):
                yield
        finally:
            await direct.stop()  # lets the handlers in flight finish
            await broker.stop()  # waits for in-flight handlers (graceful_timeout)
            for close in (publisher.close, desk.close, cast_http.aclose, ghl_http.aclose,
                          oauth_http.aclose):
                await close()
            await mongo.close()

    checks = {"rabbitmq": broker_check(broker), "publisher": publisher_check(publisher),
              "consumers": consumers_check(broker, also_missing=direct.missing),
              "mongo": mongo_check(mongo)}
    return _http_app(lifespan, checks, ops_router(
        admin_api_key=settings.admin_api_key.get_secret_value(),
        broker_url=str(settings.rabbitmq_url), topology=topology, messages=store,
        accounts=accounts, usage=usage, low_credits=settings.cast_low_credits, checks=checks))


def _http_app(lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]],
              checks: Mapping[str, ReadinessCheck], ops: APIRouter) -> FastAPI:
    """Health and metrics for the orchestrator, and the operator API for the console."""
    app = FastAPI(title="Cast SMS sender", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    answers.install(app)
    app.include_router(health_router(checks))
    app.include_router(ops)
    return app
