"""`castghl-gateway`: validate settings, then serve the webhook routes."""

from __future__ import annotations

from castghl.common.logging import configure_logging
from castghl.common.serve import serve
from castghl.common.settings import announce, load_settings
from castghl.gateway.app import SERVICE, create_app
from castghl.gateway.settings import GatewaySettings


def main() -> None:
    settings = load_settings(GatewaySettings, SERVICE)
    configure_logging(SERVICE, settings.log_level)
    announce(settings)
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
