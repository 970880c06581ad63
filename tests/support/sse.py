"""Read a live stream (Server-Sent Events) from a real server, as a browser's EventSource does."""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import urllib.parse
from typing import Any

import requests


class Stream:
    """Read a Server-Sent Events response in a thread; events land in a queue.

    A plain http.client connection, so the test can cut it at once (shutting the socket down)
    rather than waiting for the server's next keep-alive.
    """

    def __init__(self, session: requests.Session, url: str):
        parts = urllib.parse.urlsplit(url)
        cookies = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        self.conn.request(
            "GET", f"{parts.path}?{parts.query}", headers={"Cookie": cookies, "Accept": "text/event-stream"}
        )
        self.response = self.conn.getresponse()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.connected = threading.Event()
        #: Set when the server ends the response (or the connection breaks).
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\n")
                if line.startswith(": connected"):
                    self.connected.set()
                if line.startswith("data: "):
                    self.events.put(json.loads(line[6:]))
        except (OSError, ValueError, http.client.HTTPException):
            pass
        finally:
            self.ended.set()

    def next(self, timeout: float = 10) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        if self.conn.sock is not None:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self.response.close()
        self.conn.close()
