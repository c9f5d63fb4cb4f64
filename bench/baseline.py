"""The ratio baseline: a raw ASGI app that reads the body and answers 200.

Served by the same `castghl.common.serve.serve` as every service (uvicorn, uvloop,
httptools, no access log), so gateway/baseline isolates what our code costs per request
on top of the HTTP server. It answers the gateway's exact bytes, so the load generator
parses the same response either way.
"""

from __future__ import annotations

import os

from starlette.types import Receive, Scope, Send

from castghl.common.serve import serve

ANSWER = b'{"status":"accepted"}'
_HEADERS = [(b"content-type", b"application/json"),
            (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole body, as the gateway must before verifying it
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def main() -> None:
    serve(app, os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"]))


if __name__ == "__main__":
    main()
