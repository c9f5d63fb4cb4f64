"""Composition root of the OAuth service: settings → clients, store, token service, broker
subscribers and routes. Nothing connects before the lifespan starts."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from castghl.common import answers
from castghl.common.background import running
from castghl.common.broker import declare, make_broker
from castghl.common.cast.client import CastClient
from castghl.common.ghl.oauth import GhlOAuth
from castghl.common.health import (
    broker_check,
    consumers_check,
    health_router,
    mongo_check,
    watch_consumers,
)
from castghl.common.http import pooled_upstream
from castghl.common.worker import Settler
from castghl.oauth.admin import SenderIdCheck, SettingsEditor, admin_router
from castghl.oauth.changes import ChangeNotices
from castghl.oauth.console.ops_routes import OwnParts
from castghl.oauth.console.routes import console_router
from castghl.oauth.console.session import Sessions
from castghl.oauth.ghl_page.routes import ghl_page_router
from castghl.oauth.install import Installer, install_router
from castghl.oauth.install_state import StateSigner
from castghl.oauth.internal import internal_router
from castghl.oauth.lifecycle import Lifecycle, register_lifecycle
from castghl.oauth.refresh import RefreshPolicy, TokenService
from castghl.oauth.sender_api import SenderApi
from castghl.oauth.settings import OAuthSettings
from castghl.oauth.store import (
    AUDIT_COLLECTION,
    COLLECTION,
    EVENTS_COLLECTION,
    MongoAuditLog,
    MongoEventLog,
    MongoInstallations,
)
from castghl.oauth.sweep import Sweep

SERVICE = "castghl-oauth"


def lease_owner() -> str:
    """Names this process in the leases it takes (for operators reading MongoDB)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def mongo_client(settings: OAuthSettings) -> AsyncMongoClient[dict[str, Any]]:
    # tz_aware: lease and expiry comparisons are between aware UTC datetimes.
    return AsyncMongoClient(str(settings.mongo_uri), tz_aware=True,
                            serverSelectionTimeoutMS=5000)


def create_app(settings: OAuthSettings) -> FastAPI:
    topology = settings.topology()
    mongo = mongo_client(settings)
    database = mongo[settings.mongo_database]
    store = MongoInstallations(database[COLLECTION], settings.cipher())
    events = MongoEventLog(database[EVENTS_COLLECTION])
    audit = MongoAuditLog(database[AUDIT_COLLECTION])
    http = httpx.AsyncClient(timeout=settings.ghl_http_timeout_seconds)
    # Sender-ID checks, a few at a time (the console's settings form).
    cast_http = pooled_upstream(4, timeout=settings.cast_http_timeout_seconds)
    client_secret = settings.ghl_client_secret.get_secret_value()
    ghl = GhlOAuth(http, str(settings.ghl_api_url), settings.ghl_client_id, client_secret)
    tokens = TokenService(store, ghl, lease_owner(), RefreshPolicy(
        lease_seconds=settings.refresh_lease_seconds,
        wait_seconds=settings.refresh_lease_seconds + 5,
        poll_seconds=settings.refresh_poll_seconds,
        call_timeout=settings.ghl_http_timeout_seconds))
    broker = make_broker(settings, SERVICE)
    notices = ChangeNotices(broker, topology)
    default_key_for = settings.cast_default_key_for
    marketplace = str(settings.ghl_marketplace_url).rstrip("/")
    installer = Installer(
        store, ghl, tokens, StateSigner(client_secret, settings.oauth_state_ttl_seconds),
        notices, authorize_url=f"{marketplace}/v2/oauth/chooselocation",
        callback_url=settings.callback_url, client_id=settings.ghl_client_id,
        app_id=settings.ghl_app_id, marketplace_user_type=settings.ghl_marketplace_user_type)

    register_lifecycle(broker, topology,
                       Lifecycle(store, tokens, events, notices,
                                 app_id=settings.ghl_app_id),
                       Settler(broker, topology.lifecycle, settings.lifecycle_max_attempts,
                               topology.lifecycle.tier_delays))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await store.ensure_indexes()
        await events.ensure_indexes()
        await audit.ensure_indexes()
        await broker.connect()
        # The Settler publishes to the tiers and the parking queue: declare them all.
        await declare(broker, topology.lifecycle.side_queues())
        await broker.declare_exchange(topology.location_changes)
        await broker.start()
        sweep = Sweep(store, tokens, timedelta(days=settings.refresh_idle_days))
        try:
            async with running(sweep.run(settings.sweep_interval_seconds), "sweep"), \
                    running(watch_consumers(broker), "consumer-watch"):
                yield
        finally:
            await broker.stop()  # waits for in-flight handlers (graceful_timeout)
            await http.aclose()
            await cast_http.aclose()
            await mongo.close()

    app = FastAPI(title="Cast SMS OAuth", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    answers.install(app)
    app.include_router(install_router(installer))
    app.include_router(internal_router(
        tokens, store, sender_api_key=settings.sender_api_key.get_secret_value(),
        default_key_for=default_key_for, min_valid_floor=settings.token_min_valid_seconds))
    # Read-only use of the default key: sender IDs are checked before they are set.
    sender_ids = SenderIdCheck(CastClient(cast_http, str(settings.cast_api_url),
                                          idempotency=False),
                               settings.cast_api_key.get_secret_value())
    admin_key = settings.admin_api_key.get_secret_value()
    # Usage, messages, parked messages and queues are the sender's: read through its API.
    sender = SenderApi(http, str(settings.sender_url), admin_key)
    app.include_router(admin_router(store, admin_key, default_key_for, notices,
                                    sender_ids=sender_ids, usage=sender, audit=audit))
    editor = SettingsEditor(store, sender_ids, notices, audit, default_key_for)
    checks = {"mongo": mongo_check(mongo), "consumers": consumers_check(broker),
              "rabbitmq": broker_check(broker)}
    own = OwnParts(broker_url=str(settings.rabbitmq_url), lifecycle=topology.lifecycle,
                   checks=checks, gateway_url=str(settings.gateway_url), http=http)
    app.include_router(console_router(
        store, sender, Sessions(admin_key), editor=editor, audit=audit, own=own,
        default_key_for=default_key_for, default_api_key=settings.cast_api_key.get_secret_value(),
        sender_ids=sender_ids))
    app.include_router(ghl_page_router(
        editor, sender, sso_key=(settings.ghl_sso_key.get_secret_value()
                                 if settings.ghl_sso_key else None),
        frame_ancestors=settings.ghl_frame_ancestors, default_key_for=default_key_for,
        sender_ids=sender_ids))
    app.include_router(health_router(checks))
    return app
