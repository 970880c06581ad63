"""A local stand-in for Amazon SES v2, driven by the real client (aiobotocore, boto3).

SES itself is moto's server mode (``moto.server.ThreadedMotoServer`` on 127.0.0.1): it
parses ``SendEmail`` as SES does, keeps each raw message as sent (``sent()``), and refuses
a sender that is not a verified identity with SES's own ``MessageRejected`` (400).

What moto cannot be made to answer, a small front on another port answers as SES's
documented API does (REST-JSON errors: the code in ``x-amzn-ErrorType``, ``{"message"}``
in the body), each time a test scripts it; anything else it passes to moto:

- ``throttle``: 429 ``TooManyRequestsException`` (``Retry-After`` if given);
- ``unavailable``: 503 ``ServiceUnavailable`` (or ``status`` and ``code``: 500 ``InternalFailure``);
- ``stall_after_accept``: passed to moto (which keeps the message), the reply then held back
  until the client gives up (or ``release()``): SES took it and its answer was lost.

``url`` is the front (scripted behaviours); ``moto_url`` is moto itself.
"""

from __future__ import annotations

import collections
import http.client
import http.server
import json
import logging
import threading
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from tests.support.held_replies import HeldReplies
from tests.support.smtp_sink import free_port

ACCOUNT = "123456789012"  # moto's default account
#: Credentials for the stand-in (moto checks none); set in the environment of whoever talks to it.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


class SesStandIn(HeldReplies):
    """moto's SES on 127.0.0.1 behind a front that answers scripted failures."""

    def __init__(self, region: str = "eu-west-1") -> None:
        super().__init__()
        self.region = region
        self.moto_port = free_port()
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        self.port = free_port()
        self.script: collections.deque[dict[str, Any]] = collections.deque()
        #: Every request the front answered: (status, error code or "").
        self.answers: list[tuple[int, str]] = []
        #: Every SendEmail request's body, as the client sent it (JSON).
        self.requests: list[dict[str, Any]] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ses-front", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    def start(self) -> SesStandIn:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
        self._moto.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._moto.stop()

    def client(self) -> Any:
        """boto3's SES v2 client on moto (to set up identities, as one would on AWS)."""
        return boto3.client(
            "sesv2",
            region_name=self.region,
            endpoint_url=self.moto_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def verify(self, *identities: str) -> None:
        """Make these addresses (or domains) verified identities: SES sends only from those."""
        client = self.client()
        for identity in identities:
            client.create_email_identity(EmailIdentity=identity)

    def reset(self) -> None:
        """Forget every identity and message (moto's reset) and every scripted reply."""
        connection = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=10)
        connection.request("POST", "/moto-api/reset")
        connection.getresponse().read()
        connection.close()
        with self._lock:
            self.script.clear()
            self.answers.clear()
            self.requests.clear()
        self._release.clear()

    def sent(self) -> list[Any]:
        """The raw messages SES (moto) took, in order (``source``, ``destinations``, ``raw_data``, ``id``)."""
        from moto.ses.models import ses_backends

        return list(ses_backends[ACCOUNT][self.region].sent_messages)

    def then(self, kind: str, **options: Any) -> SesStandIn:
        """Answer the next SendEmail with ``kind`` (see the module's docstring)."""
        self.script.append({"kind": kind, **options})
        return self

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=30)
        try:
            keep = {k: v for k, v in headers.items() if k.lower() not in ("connection", "keep-alive")}
            connection.request(method, path, body=body, headers=keep)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # the base class's name
                """Quiet: the test says what matters."""

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (a held reply)

            def _error(self, status: int, code: str, message: str, extra: list[tuple[str, str]]) -> None:
                headers = [("x-amzn-ErrorType", code), ("Content-Type", "application/json"), *extra]
                self._count(status, code)
                self._reply(status, headers, json.dumps({"message": message}).encode())

            def _count(self, status: int, code: str) -> None:
                with standin._lock:  # before the reply: a client that has it finds it counted
                    standin.answers.append((status, code))

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                step = None
                if self.command == "POST" and self.path == "/v2/email/outbound-emails":
                    with standin._lock:
                        standin.requests.append(json.loads(body))
                        step = standin.script.popleft() if standin.script else None
                kind = step["kind"] if step else "pass"
                extra = [("Retry-After", str(step["retry_after"]))] if step and "retry_after" in step else []
                if kind == "throttle":
                    self._error(429, "TooManyRequestsException", "Maximum sending rate exceeded.", extra)
                elif kind == "unavailable":
                    assert step is not None
                    status, code = step.get("status", 503), step.get("code", "ServiceUnavailable")
                    self._error(status, code, "Service is unavailable. Try again later.", extra)
                else:
                    status, headers, answer = standin._forward(self.command, self.path, self.headers, body)
                    code = dict((k.lower(), v) for k, v in headers).get("x-amzn-errortype", "")
                    if kind == "stall_after_accept":
                        standin._hold(step.get("hold", 10.0) if step else 10.0)
                    self._count(status, code)
                    self._reply(status, headers, answer)
                    if kind == "stall_after_accept":
                        standin._answered()

            do_POST = do_GET = do_PUT = do_DELETE = _any

        return Handler
