"""Ports for the stack's processes: free now, and out of the way of outgoing connections."""

from __future__ import annotations

import itertools
import socket

import pytest

from castghl.sandbox import server
from castghl.sandbox.server import PORTS_FROM, _first_ephemeral, free_port


def test_ports_come_from_below_the_ephemeral_range_and_can_be_bound() -> None:
    ports = [free_port() for _ in range(50)]
    assert all(PORTS_FROM <= port < _first_ephemeral() for port in ports)
    for port in ports[:5]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", free_port()))
        held.listen()
        taken = held.getsockname()[1]
        # Drawn twice, then its neighbours.
        picks = itertools.chain([taken - PORTS_FROM] * 2, itertools.count(taken + 1 - PORTS_FROM))
        monkeypatch.setattr(server.secrets, "randbelow", lambda _: next(picks))

        assert free_port() > taken
