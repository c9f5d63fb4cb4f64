"""A TCP relay to one address that a test can cut, as a broker restart or a lost network
link would: every connection through it drops at once, and new ones are refused until the
test restores the link. A cut lasts until then, not for however long a reconnect takes,
so a test sees the outage whatever the machine's speed."""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    """A TCP relay to one address that a test can cut, as a network failure would."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._down = False
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:  # the link is cut: the connection opens and drops at once
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_RDWR)
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection, and every new one until `restore`."""
        with self._lock:
            self._down = True
            ends, self._open = self._open, []
        for end in ends:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def restore(self) -> None:
        with self._lock:
            self._down = False

    def close(self) -> None:
        self.listener.close()
        self.cut()
