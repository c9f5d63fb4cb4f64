"""Composition root of the gateway: settings → verifier, publisher, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from castghl.common import answers
from castghl.common.broker import Publisher
from castghl.common.health import health_router, publisher_check
from castghl.common.signatures import WebhookVerifier
from castghl.gateway.inbound import inbound_routes
from castghl.gateway.intake import Intake, WebhookApp
from castghl.gateway.settings import GatewaySettings
from castghl.gateway.webhooks import webhook_routes

SERVICE = "castghl-gateway"


def create_app(settings: GatewaySettings) -> ASGIApp:
    topology = settings.topology()
    publisher = Publisher(str(settings.rabbitmq_url), SERVICE, exchange=topology.intake.name)
    intake = Intake(publisher, topology, WebhookVerifier(settings.public_keys()),
                    max_age_seconds=settings.webhook_max_age_seconds)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await publisher.connect()
        # Declared here where this user may (a broker without our definitions), so
        # webhooks route even before any worker has started; with per-service users
        # the broker's definitions hold them (docs/deploy.md, "RabbitMQ users").
        await publisher.declare_routes(topology.intake, topology.intake_queues())
        yield
        await publisher.close()

    rest = FastAPI(title="Cast SMS gateway", lifespan=lifespan, docs_url=None,
                   redoc_url=None, openapi_url=None)
    answers.install(rest)
    rest.include_router(health_router({"rabbitmq": publisher_check(publisher)}))
    routes = {**webhook_routes(intake),
              **inbound_routes(intake, settings.inbound_api_key.get_secret_value())}
    return WebhookApp(routes, rest, max_body_bytes=settings.max_body_bytes,
                      max_concurrent=settings.max_concurrent_requests)
