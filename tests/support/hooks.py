"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that records each request
(headers and body, as received) and answers as the test scripts it (status, body, headers,
a delay); it counts the connections it accepted, so a test can show none was opened."""

from __future__ import annotations

import dataclasses
import http.server
import threading
import time
from typing import Any

from tests.support.procs import wait_until


@dataclasses.dataclass
class Answer:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0


@dataclasses.dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Start with ``start()``; ``answers`` are used in order, then ``default``."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.received: list[Received] = []
        self.answers: list[Answer] = []
        self.default = Answer()
        self.connections = 0
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: without this, the second waits for the
            # client's delayed ACK (Nagle), 40 ms a request.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with outer._lock:
                    outer.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    answer = outer.answers.pop(0) if outer.answers else outer.default
                if answer.delay:
                    time.sleep(answer.delay)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the client gave up (a timeout)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                with outer._lock:
                    outer.connections += 1
                return True

        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, n: int, timeout: float = 20) -> list[Received]:
        wait_until(lambda: len(self.received) >= n, timeout=timeout, what=f"{n} webhook request(s)")
        return list(self.received)


def verified(received: Received, secret: str) -> Any:
    """The payload, verified with the standardwebhooks library's own Webhook.verify."""
    from standardwebhooks.webhooks import Webhook

    return Webhook(secret).verify(received.body, received.headers)
