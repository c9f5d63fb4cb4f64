"""`castghl-oauth`: serve the OAuth service; `castghl-oauth rotate-keys`: re-encrypt every
stored secret under the newest key of TOKEN_ENCRYPTION_KEYS."""

from __future__ import annotations

import asyncio
import sys

from castghl.common.logging import configure_logging
from castghl.common.serve import serve
from castghl.common.settings import announce, load_settings
from castghl.oauth.app import SERVICE, create_app, mongo_client
from castghl.oauth.rotation import rotate_secrets
from castghl.oauth.settings import OAuthSettings
from castghl.oauth.store import COLLECTION

USAGE = f"usage: {SERVICE} [rotate-keys]"


async def rotate_keys(settings: OAuthSettings) -> int:
    client = mongo_client(settings)
    try:
        collection = client[settings.mongo_database][COLLECTION]
        return await rotate_secrets(collection, settings.cipher())
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["rotate-keys"]):
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    settings = load_settings(OAuthSettings, SERVICE)
    configure_logging(SERVICE, settings.log_level)
    announce(settings)
    if args == ["rotate-keys"]:
        count = asyncio.run(rotate_keys(settings))
        print(f"{SERVICE}: re-encrypted {count} stored secrets under the newest key")
        return
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
