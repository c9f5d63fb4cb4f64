"""Composition root of the gateway: settings → verifier, broker, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from castghl.common.broker import declare, make_broker
from castghl.common.health import broker_check, health_router
from castghl.common.signatures import WebhookVerifier
from castghl.gateway import answers
from castghl.gateway.inbound import inbound_router
from castghl.gateway.settings import GatewaySettings
from castghl.gateway.webhooks import Webhooks, webhook_router

SERVICE = "castghl-gateway"


def create_app(settings: GatewaySettings) -> FastAPI:
    broker = make_broker(settings, SERVICE)
    topology = settings.topology()
    hooks = Webhooks(
        broker=broker,
        topology=topology,
        verifier=WebhookVerifier(settings.public_keys()),
        max_body_bytes=settings.max_body_bytes,
        max_age_seconds=settings.webhook_max_age_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await broker.connect()
        # Declared here too, so webhooks route even before any worker has started.
        await declare(broker, [*topology.outbound.all_queues(),
                               *topology.lifecycle.all_queues(),
                               *topology.inbound.all_queues()])
        yield
        await broker.stop()

    app = FastAPI(title="Cast SMS gateway", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    answers.install(app)
    app.include_router(webhook_router(hooks))
    app.include_router(inbound_router(hooks, settings.inbound_api_key.get_secret_value()))
    app.include_router(health_router({"rabbitmq": broker_check(broker)}))
    app.state.hooks = hooks
    return app
