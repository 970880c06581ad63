"""A local stand-in for SendGrid's v3 ``POST /v3/mail/send``, driven by the real client (httpx).

Every request is checked against ``MAIL_SEND_SCHEMA``, the part of SendGrid's documented
request body that we rely on (https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send),
and against the rules the documentation states in words (text/plain first in ``content``, an
address once per personalization, at most 1000 recipients, the reserved headers). A request
that breaks one is answered as SendGrid answers it (400, ``{"errors": [{"message", "field",
"help"}]}``) and kept in ``violations``, for the test to fail on.

A valid request is answered by the next scripted reply, else accepted:

- ``accept``: 202, empty body, ``X-Message-Id`` (the message is kept in ``accepted``);
- ``reject``: 400 with SendGrid's error shape (``message`` says what);
- ``unauthorized``: 401 as for a wrong key;
- ``throttle``: 429 with SendGrid's ``X-RateLimit-*`` headers, and ``Retry-After`` if given;
- ``unavailable``: 503 (or any ``status``), SendGrid's error shape;
- ``stall_after_accept``: the message is kept, and the reply held back until the client gives up
  (or ``release()``): a provider that took it whose answer was lost.
"""

from __future__ import annotations

import collections
import dataclasses
import http.server
import json
import secrets
import threading
import time
from typing import Any

import jsonschema

from tests.support.held_replies import HeldReplies
from tests.support.smtp_sink import free_port

#: Headers SendGrid does not let ``headers`` set.
_RESERVED = (
    r"(?i)^(x-sg-id|x-sg-eid|received|dkim-signature|content-type|content-transfer-encoding"
    r"|to|from|subject|reply-to|cc|bcc)$"
)
_ADDRESS = {
    "type": "object",
    "required": ["email"],
    "additionalProperties": False,
    "properties": {"email": {"type": "string", "format": "email", "minLength": 3}, "name": {"type": "string"}},
}
_ADDRESSES = {"type": "array", "minItems": 1, "maxItems": 1000, "items": _ADDRESS}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}

#: The v3 mail/send body, as far as we use it (JSON Schema 2020-12).
MAIL_SEND_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["personalizations", "from", "content"],
    "additionalProperties": False,
    "properties": {
        "personalizations": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": {
                "type": "object",
                "required": ["to"],
                "additionalProperties": False,
                "properties": {
                    "to": _ADDRESSES,
                    "cc": _ADDRESSES,
                    "bcc": _ADDRESSES,
                    "from": _ADDRESS,
                    "subject": {"type": "string", "minLength": 1},
                    "headers": _STRINGS,
                    "substitutions": _STRINGS,
                    "dynamic_template_data": {"type": "object"},
                    "custom_args": _STRINGS,
                    "send_at": {"type": "integer"},
                },
            },
        },
        "from": _ADDRESS,
        "reply_to": _ADDRESS,
        "reply_to_list": {"type": "array", "maxItems": 1000, "items": _ADDRESS},
        "subject": {"type": "string", "minLength": 1},
        "content": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["type", "value"],
                "additionalProperties": False,
                "properties": {"type": {"type": "string", "minLength": 1}, "value": {"type": "string", "minLength": 1}},
            },
        },
        "headers": {
            "type": "object",
            "propertyNames": {"not": {"pattern": _RESERVED}},
            "additionalProperties": {"type": "string"},
        },
        "categories": {
            "type": "array",
            "maxItems": 10,
            "uniqueItems": True,
            "items": {"type": "string", "maxLength": 255},
        },
        "custom_args": _STRINGS,
        "send_at": {"type": "integer"},
        "batch_id": {"type": "string"},
        "template_id": {"type": "string"},
        "attachments": {"type": "array"},
        "asm": {"type": "object"},
        "ip_pool_name": {"type": "string", "minLength": 2, "maxLength": 64},
        "mail_settings": {"type": "object"},
        "tracking_settings": {"type": "object"},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(MAIL_SEND_SCHEMA, format_checker=jsonschema.FormatChecker())


def _errors(message: str, field: str | None = None) -> dict[str, Any]:
    """SendGrid's error body: ``{"errors": [{"message", "field", "help"}]}``."""
    return {"errors": [{"message": message, "field": field, "help": None}]}


UNAUTHORIZED = "The provided authorization grant is invalid, expired, or revoked"


def problems(body: Any) -> list[dict[str, Any]]:
    """What SendGrid would refuse in ``body``, in its error shape (empty: nothing)."""
    found = [
        {
            "message": error.message,
            "field": ".".join(str(p) for p in error.absolute_path) or None,
            "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html",
        }
        for error in _VALIDATOR.iter_errors(body)
    ]
    if found:
        return found
    if not body.get("subject") and not all(p.get("subject") for p in body["personalizations"]):
        found.append({"message": "The subject is required.", "field": "subject", "help": None})
    types = [c["type"] for c in body["content"]]
    if "text/plain" in types and types[0] != "text/plain":
        found.append({"message": "text/plain must come first.", "field": "content", "help": None})
    total = 0
    for n, personalization in enumerate(body["personalizations"]):
        addresses = [a["email"].lower() for kind in ("to", "cc", "bcc") for a in personalization.get(kind, [])]
        total += len(addresses)
        if len(set(addresses)) != len(addresses):
            found.append(
                {
                    "message": "Each email address in the personalization block should be unique between to, cc,"
                    " and bcc. We found the first duplicate instance of "
                    f"[{next(a for a in addresses if addresses.count(a) > 1)}] in the personalizations.{n}.to field.",
                    "field": f"personalizations.{n}",
                    "help": None,
                }
            )
    if total > 1000:
        found.append({"message": "Too many recipients.", "field": "personalizations", "help": None})
    return found


@dataclasses.dataclass(frozen=True)
class Accepted:
    at: float
    message_id: str
    body: dict[str, Any]


class SendgridStandIn(HeldReplies):
    """SendGrid's mail/send on 127.0.0.1, checking each request, answering as scripted."""

    def __init__(self, api_key: str = "SG.test-key.standin") -> None:
        super().__init__()
        self.api_key = api_key
        self.port = free_port()
        self.script: collections.deque[dict[str, Any]] = collections.deque()
        self.accepted: list[Accepted] = []
        self.violations: list[dict[str, Any]] = []
        #: Every request answered: (status, time).
        self.answers: list[tuple[int, float]] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="sendgrid-standin", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SendgridStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.script.clear()
            self.accepted.clear()
            self.violations.clear()
            self.answers.clear()
        self._release.clear()

    def then(self, kind: str, **options: Any) -> SendgridStandIn:
        """Answer the next valid request with ``kind`` (see the module's docstring)."""
        self.script.append({"kind": kind, **options})
        return self

    def _answer(self, headers: Any, raw: bytes) -> tuple[int, dict[str, str], Any]:
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return 401, {}, _errors(UNAUTHORIZED)
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {}, _errors("Bad Request")
        found = problems(body)
        if found:
            with self._lock:
                self.violations.extend(found)
            return 400, {}, {"errors": found}
        with self._lock:
            step: dict[str, Any] = self.script.popleft() if self.script else {"kind": "accept"}
        kind: str = step["kind"]
        hold: float = step.get("hold", 10.0)
        status: int = step.get("status", 503)
        if kind in ("accept", "stall_after_accept"):
            message_id = secrets.token_urlsafe(16)
            with self._lock:
                self.accepted.append(Accepted(time.time(), message_id, body))
            if kind == "stall_after_accept":
                self._hold(hold)
                return 202, {"X-Message-Id": message_id, "X-Held": "1"}, None
            return 202, {"X-Message-Id": message_id}, None
        if kind == "reject":
            return 400, {}, _errors(step.get("message", "Does not contain a valid address."), step.get("field"))
        if kind == "unauthorized":
            return 401, {}, _errors(UNAUTHORIZED)
        if kind == "throttle":
            reset = str(int(time.time()) + 1)
            extra = {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
            if "retry_after" in step:
                extra["Retry-After"] = str(step["retry_after"])
            return 429, extra, _errors("too many requests")
        if kind == "unavailable":
            extra = {"Retry-After": str(step["retry_after"])} if "retry_after" in step else {}
            return status, extra, _errors("Service Unavailable")
        raise ValueError(f"unknown scripted reply {kind!r}")

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # the base class's name
                """Quiet: the test says what matters."""

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers: dict[str, str]
                if self.path != "/v3/mail/send":
                    status, headers, body = 404, {}, _errors("not found")
                else:
                    status, headers, body = standin._answer(self.headers, raw)
                held = headers.pop("X-Held", None) is not None  # ours, not SendGrid's: never sent
                payload = b"" if body is None else json.dumps(body).encode()
                with standin._lock:  # before the reply: a client that has it finds it counted
                    standin.answers.append((status, time.time()))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (a held reply)
                if held:
                    standin._answered()

        return Handler
