"""The composition root builds the whole service without touching the network."""

from __future__ import annotations

import httpx
import pytest

from castghl.common.crypto import generate_key
from castghl.oauth.app import create_app
from castghl.oauth.main import main
from castghl.oauth.settings import OAuthSettings


async def test_the_app_builds_and_routes_without_connecting_to_anything() -> None:
    settings = OAuthSettings(
        base_url="https://bridge.example", ghl_client_id="client", ghl_client_secret="secret",
        ghl_app_id="app",
        token_encryption_keys=generate_key(), admin_api_key="a" * 16, sender_api_key="s" * 16,
        cast_api_key="cast_" + "0" * 64,
        rabbitmq_url="amqp://nowhere.invalid:5672/", mongo_uri="mongodb://nowhere.invalid/x")
    app = create_app(settings)
    # No lifespan here: routes that need no broker or database answer all the same.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="https://bridge.example") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        install = await client.get("/oauth/install")
        assert install.status_code == 302
        assert install.headers["location"].startswith(
            "https://marketplace.gohighlevel.com/v2/oauth/chooselocation?")
        assert (await client.head("/oauth/install")).status_code == 302  # curl -I
        assert (await client.get("/admin/installations")).status_code == 401


def test_an_unknown_command_prints_the_usage_and_exits_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["rotate-everything"])
    assert exited.value.code == 2
    assert "usage: castghl-oauth [rotate-keys]" in capsys.readouterr().err
