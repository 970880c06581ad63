"""A local stand-in for Slack's incoming webhooks: a real HTTP server on 127.0.0.1.

It speaks what Slack documents for an incoming webhook: ``POST`` of a JSON body
(``text``, optional ``blocks``) to ``/services/T…/B…/…``, answered ``200 ok``; an
unknown path is ``404 no_service``, a body without ``text`` nor ``blocks``
``400 invalid_payload``. ``fail_with`` makes it answer an error (Slack down) until
cleared. Each message taken is kept with its path and the time it arrived
(``time.monotonic()``), and ``wait_for`` awaits one without sleeping blind.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Message:
    path: str
    body: dict[str, Any]
    arrived: float

    @property
    def text(self) -> str:
        return str(self.body.get("text", ""))

    @property
    def alert_key(self) -> str | None:
        """The alert's key, from the context block the monitor adds (``alert `KEY```)."""
        for block in self.body.get("blocks") or []:
            if block.get("type") == "context":
                for element in block.get("elements", []):
                    text = element.get("text", "")
                    if "alert `" in text:
                        return str(text.split("alert `", 1)[1].split("`", 1)[0])
        return None

    @property
    def event(self) -> str:
        """``raised``, ``resolved`` or ``more``, from the first line."""
        first = self.text.splitlines()[0] if self.text else ""
        for word, event in (("Raised", "raised"), ("Resolved", "resolved"), ("Still open", "more")):
            if word in first:
                return event
        return ""


class SlackReceiver:
    """Start with ``start()``; ``url(name)`` is an incoming webhook's URL on it."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.fail_with: int | None = None
        self.hooks: set[str] = set()
        self._changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if receiver.fail_with is not None:
                    return self._answer(receiver.fail_with, "service_unavailable")
                if self.path not in receiver.hooks:
                    return self._answer(404, "no_service")
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._answer(400, "invalid_payload")
                if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
                    return self._answer(400, "invalid_payload")
                with receiver._changed:
                    receiver.messages.append(Message(self.path, body, time.monotonic()))
                    receiver._changed.notify_all()
                self._answer(200, "ok")

            def _answer(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> SlackReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, name: str = "T000/B000/operators") -> str:
        """An incoming webhook this receiver takes (``/services/NAME``)."""
        path = f"/services/{name}"
        self.hooks.add(path)
        return f"http://127.0.0.1:{self.port}{path}"

    def clear(self) -> None:
        with self._changed:
            self.messages.clear()

    def matching(self, key: str | None = None, event: str | None = None, path: str | None = None) -> list[Message]:
        with self._changed:
            return [
                m
                for m in self.messages
                if (key is None or m.alert_key == key)
                and (event is None or m.event == event)
                and (path is None or m.path == path)
            ]

    def wait_for(self, check: Callable[[list[Message]], bool], *, timeout: float, what: str = "a message") -> None:
        """Wait until ``check(messages)`` holds; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check(list(self.messages)):
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(m.alert_key, m.event) for m in self.messages]
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; got {got}")
                self._changed.wait(left)
