"""Slow clients, for the gateway's limits: a connection that sends the start of a request,
then a byte at a time (slow-loris), until the server answers and closes it."""

from __future__ import annotations

import asyncio
from typing import Final

# A server that closes a socket with bytes still unread resets it, and the reset can drop
# its answer on the way: then this stands for the answer.
RESET: Final = b"(reset)"
DRIP_SECONDS: Final = 0.2


async def trickle(host: str, port: int, start: bytes, stop: asyncio.Event) -> bytes:
    """Send `start`, then a byte every DRIP_SECONDS until the server answers and closes
    (what it answered, or RESET), or `stop` is set (b"")."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(start)
        while not stop.is_set():
            try:
                answer = await asyncio.wait_for(reader.read(4096), DRIP_SECONDS)
            except TimeoutError:
                writer.write(b"x")
                continue
            return answer + await reader.read()  # the answer, then the close
    except ConnectionResetError:
        return RESET
    finally:
        writer.close()
    return b""


def cut_off(answers: list[bytes], status: bytes) -> bool:
    """Every slow client was answered `status` (or reset) and closed; at least one answer
    came through whole."""
    return (all(a.startswith(b"HTTP/1.1 " + status) or a == RESET for a in answers)
            and any(a.startswith(b"HTTP/1.1 " + status) for a in answers))
