"""A TCP proxy on loopback that slows a connection down and can act when enough bytes have passed.

Downloads over loopback finish in milliseconds, too fast for a test to drop the connection in the
middle of one. Tests point the client at this proxy instead of the server: the server-to-client stream
is throttled to ``bytes_per_second`` and ``on_bytes(threshold, action)`` runs ``action`` once that many
bytes have gone to the client.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

_CHUNK = 16 * 1024


class ThrottleProxy:
    def __init__(self, target_host: str, target_port: int, bytes_per_second: float) -> None:
        self.target = (target_host, target_port)
        self.rate = bytes_per_second
        self.sent_to_client = 0
        self._lock = threading.Lock()
        self._triggers: list[tuple[int, Callable[[], None]]] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def on_bytes(self, threshold: int, action: Callable[[], None]) -> None:
        """Run ``action`` (in a proxy thread) once ``threshold`` more bytes have gone to clients."""
        with self._lock:
            self._triggers.append((self.sent_to_client + threshold, action))

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                # The server is down (a test crashed it): refuse this client as the server would have,
                # and keep accepting, for the server may come back.
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, to_client: bool) -> None:
        started, moved = time.monotonic(), 0
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
                if to_client:
                    moved += len(data)
                    self._count(len(data))
                    ahead = moved / self.rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _count(self, n: int) -> None:
        due = []
        with self._lock:
            self.sent_to_client += n
            for trigger in list(self._triggers):
                if self.sent_to_client >= trigger[0]:
                    self._triggers.remove(trigger)
                    due.append(trigger[1])
        for action in due:
            action()
