"""Delivery feedback and one-click unsubscribe: the endpoints that take no sign-in.

- ``POST /feedback/sendgrid``: SendGrid's Event Webhook. Its ECDSA signature
  (``X-Twilio-Email-Event-Webhook-Signature`` over the timestamp header and the body,
  P-256 and SHA-256) is checked with ``SENDGRID_WEBHOOK_PUBLIC_KEY``, and the timestamp
  must be within ``FEEDBACK_MAX_AGE`` of now.
- ``POST /feedback/ses``: SES notifications through SNS. The SNS message's signature is
  checked as AWS documents it (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA, over the
  message's fields in their fixed order) with the certificate at ``SigningCertURL``, which
  must be an ``https://sns.REGION.amazonaws.com/….pem`` URL (fetched once, then cached);
  the topic must be one of ``SES_SNS_TOPIC_ARNS``. A subscription is confirmed by GETting
  its ``SubscribeURL`` (same origin rule).
- ``POST /feedback/webhook``: a generic endpoint for SMTP relays, signed with Standard
  Webhooks (``FEEDBACK_WEBHOOK_SECRET``).
- ``GET /u/TOKEN`` shows a confirmation page; ``POST /u/TOKEN`` (RFC 8058's one-click, or
  the page's button) suppresses the link's address at once (tasks/domain/unsubscribe.py).

A missing signature is 401, a wrong or stale one 403, and nothing is written. An
endpoint whose setting is empty answers 404. Events are taken by tasks/domain/feedback.py;
an event for no email of ours is logged and answered 200 (the provider would retry
it forever otherwise). These routes are CSRF-exempt (``security.CSRF_EXEMPT``: their
callers are providers and mail clients, authenticated by the signature or the signed
link) and rate-limited like every public route that changes something.

Tests only (never in production): ``SNS_ORIGIN_PATTERN`` in the app's config replaces the
origin rule for certificate and subscribe URLs, and ``SNS_FETCH`` the function that GETs them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import redis
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from flask import Blueprint, abort, current_app, render_template, request
from psycopg.types.json import Jsonb
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tasks.core import db, errors, live
from tasks.domain import feedback, suppression
from tasks.domain.unsubscribe import Links
from webapp import ext
from webapp.errors import error_response

log = structlog.get_logger("webapp.feedback")
bp = Blueprint("feedback", __name__)

SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
#: Where SNS certificates and subscribe URLs may be: https on an SNS regional host.
SNS_ORIGIN = r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
#: How old a signed SNS message may be (AWS signs each delivery's message once).
SNS_MAX_AGE = 3600.0
#: The fields each SNS message type signs, in the order AWS puts them in the string to sign.
SNS_SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
SNS_FETCH_TIMEOUT = 5.0
#: Certificates kept, by URL (AWS rotates them rarely).
_CERT_CACHE_SIZE = 16
_certs: dict[str, rsa.RSAPublicKey] = {}
_certs_lock = threading.Lock()


class Refused(Exception):
    """A request whose signature is missing (401) or wrong (403): nothing is written."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@bp.errorhandler(Refused)
def _refused(exc: Refused) -> Any:
    log.warning("feedback refused", path=request.path, status=exc.status, reason=exc.message)
    return error_response(exc.status, "unauthenticated" if exc.status == 401 else "forbidden", exc.message)


# --- SendGrid.


def verify_sendgrid(public_key: str, body: bytes, signature: str | None, timestamp: str | None, max_age: float) -> None:
    """Check SendGrid's signature of ``timestamp + body`` and the timestamp's age; raise ``Refused``."""
    if not signature or not timestamp:
        raise Refused(401, f"{SENDGRID_SIGNATURE} and {SENDGRID_TIMESTAMP} are required")
    try:
        at = float(timestamp)
    except ValueError:
        raise Refused(403, f"{SENDGRID_TIMESTAMP}: not a Unix time") from None
    if abs(time.time() - at) > max_age:
        raise Refused(403, f"{SENDGRID_TIMESTAMP}: too old or too far ahead (a replay?)")
    key = _sendgrid_key(public_key)
    try:
        key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise Refused(403, "the signature does not match the body") from None


@functools.lru_cache(maxsize=4)
def _sendgrid_key(raw: str) -> ec.EllipticCurvePublicKey:
    if raw.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(raw.encode())
    else:
        key = serialization.load_der_public_key(base64.b64decode(raw))
    assert isinstance(key, ec.EllipticCurvePublicKey)  # checked when the setting was read
    return key


@bp.post("/feedback/sendgrid")
def sendgrid() -> Any:
    """Take a batch of SendGrid events."""
    settings = ext.settings()
    if not settings.sendgrid_webhook_public_key:
        abort(404)
    body = request.get_data(cache=True)
    verify_sendgrid(
        settings.sendgrid_webhook_public_key,
        body,
        request.headers.get(SENDGRID_SIGNATURE),
        request.headers.get(SENDGRID_TIMESTAMP),
        settings.feedback_max_age,
    )
    try:
        events = feedback.sendgrid_events(json.loads(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.ValidationError(f"body: {exc}", field="body") from None
    return _take("sendgrid", events)


# --- SES through SNS.


def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    """The bytes AWS signs for an SNS message: ``name\\nvalue\\n`` for each signed field it has, in order."""
    fields = SNS_SIGNED.get(str(message.get("Type")))
    if fields is None:
        raise Refused(403, "Type: not an SNS message type")
    out = []
    for name in fields:
        if name not in message:
            if name == "Subject":  # the only optional one
                continue
            raise Refused(403, f"{name}: required in a signed SNS message")
        value = message[name]
        if not isinstance(value, str):
            raise Refused(403, f"{name}: must be text")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode()


def _origin_pattern() -> re.Pattern[str]:
    pattern = current_app.config.get("SNS_ORIGIN_PATTERN")
    if pattern and ext.settings().app_env != "production":
        return re.compile(pattern)
    return re.compile(SNS_ORIGIN)


def _sns_url(raw: Any, field: str) -> str:
    """A certificate or subscribe URL, if it is on SNS's own origin (no redirect, no userinfo)."""
    if not isinstance(raw, str):
        raise Refused(403, f"{field}: required")
    parts = urllib.parse.urlsplit(raw)
    if (
        parts.username is not None
        or parts.password is not None
        or not _origin_pattern().fullmatch(f"{parts.scheme}://{parts.netloc}")
    ):
        raise Refused(403, f"{field}: not an https URL on an sns.REGION.amazonaws.com host")
    if field == "SigningCertURL" and not parts.path.endswith(".pem"):
        raise Refused(403, f"{field}: not a .pem certificate")
    return raw


def _fetch(url: str) -> bytes:
    fetch: Callable[[str], bytes] | None = current_app.config.get("SNS_FETCH")
    if fetch is not None and ext.settings().app_env != "production":
        return fetch(url)
    with httpx.Client(timeout=SNS_FETCH_TIMEOUT, follow_redirects=False) as client:
        response = client.get(url)
        response.raise_for_status()
        return response.content


def _sns_key(url: str) -> rsa.RSAPublicKey:
    with _certs_lock:
        key = _certs.get(url)
    if key is not None:
        return key
    try:
        cert = x509.load_pem_x509_certificate(_fetch(url))
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("SNS certificate not fetched", url=url, error=str(exc))
        raise Refused(403, "SigningCertURL: the certificate could not be fetched") from None
    now = dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise Refused(403, "SigningCertURL: the certificate is not valid now")
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise Refused(403, "SigningCertURL: not an RSA certificate")
    with _certs_lock:
        if len(_certs) >= _CERT_CACHE_SIZE:
            _certs.pop(next(iter(_certs)))
        _certs[url] = public
    return public


def verify_sns(message: dict[str, Any], topics: tuple[str, ...]) -> None:
    """Check an SNS message: its topic, its age, its certificate's URL and its signature; raise ``Refused``."""
    if not message.get("Signature"):
        raise Refused(401, "Signature: required (an SNS message is signed)")
    topic = message.get("TopicArn")
    if not isinstance(topic, str) or topic.lower() not in topics:
        raise Refused(403, "TopicArn: not one of SES_SNS_TOPIC_ARNS")
    at = feedback.from_iso(message.get("Timestamp"))
    if at is None or abs((dt.datetime.now(dt.UTC) - at).total_seconds()) > SNS_MAX_AGE:
        raise Refused(403, "Timestamp: missing, too old or too far ahead (a replay?)")
    version = message.get("SignatureVersion")
    if version not in ("1", "2"):
        raise Refused(403, "SignatureVersion: must be 1 or 2")
    data = sns_string_to_sign(message)
    key = _sns_key(_sns_url(message.get("SigningCertURL"), "SigningCertURL"))
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    try:
        key.verify(base64.b64decode(str(message["Signature"]), validate=True), data, padding.PKCS1v15(), algorithm)
    except (InvalidSignature, binascii.Error, ValueError):
        raise Refused(403, "Signature: does not match the message") from None


@bp.post("/feedback/ses")
def ses() -> Any:
    """Take an SNS message: an SES notification, or a subscription to confirm."""
    settings = ext.settings()
    if not settings.ses_sns_topic_arns:
        abort(404)
    try:
        message = json.loads(request.get_data(cache=True))
    except (ValueError, UnicodeDecodeError):
        raise Refused(401, "the body must be an SNS message (JSON)") from None
    if not isinstance(message, dict):
        raise Refused(401, "the body must be an SNS message (a JSON object)")
    verify_sns(message, settings.ses_sns_topic_arns)
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        url = _sns_url(message.get("SubscribeURL"), "SubscribeURL")
        try:
            _fetch(url)
        except httpx.HTTPError as exc:
            log.warning("SNS subscription not confirmed", topic=message["TopicArn"], error=str(exc))
            return error_response(502, "bad_gateway", "the subscription could not be confirmed; SNS will ask again")
        log.info("SNS subscription confirmed", topic=message["TopicArn"])
        return {"confirmed": True}
    if kind == "UnsubscribeConfirmation":
        log.info("SNS subscription ended", topic=message["TopicArn"])
        return {"confirmed": False}
    try:
        notification = json.loads(message["Message"])
        events = feedback.ses_events(notification, message["MessageId"])
    except ValueError as exc:
        # Signed by AWS, so not a forgery: a message of another kind on the topic. Dropped.
        log.warning("SNS message not an SES notification", message_id=message["MessageId"], error=str(exc))
        events = []
    return _take("ses", events)


# --- Standard Webhooks.


@bp.post("/feedback/webhook")
def webhook() -> Any:
    """Take one event from an SMTP relay signed with Standard Webhooks."""
    secret = ext.settings().feedback_webhook_secret
    if not secret:
        abort(404)
    body = request.get_data(cache=True)
    headers = {k: v for k, v in request.headers.items() if k.lower().startswith("webhook-")}
    if not all(headers.get(h) for h in ("Webhook-Id", "Webhook-Timestamp", "Webhook-Signature")):
        raise Refused(401, "webhook-id, webhook-timestamp and webhook-signature are required")
    try:
        payload = Webhook(secret).verify(body, headers)
    except WebhookVerificationError as exc:
        raise Refused(403, f"the signature does not hold: {exc}") from None
    except ValueError:
        raise errors.ValidationError("body: must be JSON", field="body") from None
    try:
        events = feedback.webhook_events(payload, headers["Webhook-Id"])
    except ValueError as exc:
        raise errors.ValidationError(str(exc), field=str(exc).split(":", 1)[0]) from None
    return _take("webhook", events)


def _take(source: str, events: list[feedback.Event]) -> Any:
    """Ingest verified events, push the changes live, answer 200 with what happened."""
    done = feedback.ingest(ext.operator_conn(), events)
    if done.unknown:
        log.info("feedback for unknown messages dropped", source=source, unknown=done.unknown)
    _publish(done.changed)
    return {
        "received": done.received,
        "matched": done.matched,
        "duplicates": done.duplicates,
        "unknown": done.unknown,
    }


def _publish(changed: list[feedback.Changed]) -> None:
    """Tell each email's organization's open pages its new delivery state (one round trip, best effort)."""
    if not changed:
        return
    res = ext.resources()
    try:
        with res.redis.pipeline(transaction=False) as pipe:
            for c in changed:
                payload = live.message(
                    c.email_id, c.status, delivery=c.delivery, bounce_type=c.bounce_type,
                    delivery_detail=c.delivery_detail,
                )  # fmt: skip
                pipe.publish(live.channel(res.settings.redis_prefix, c.org_id), payload)
            pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.warning("live status not published", error=str(exc))


# --- One-click unsubscribe.


def links() -> Links:
    settings = ext.settings()
    return Links(settings.public_url, settings.secret_key)


def _target(token: str) -> tuple[uuid.UUID, int, str]:
    """The link's email, its organization and its one recipient; 404 for a link that is not
    ours (altered, or signed with another key) or whose email is gone."""
    email_id = links().read(token)
    if email_id is None:
        abort(404)
    row = db.one(ext.operator_conn(), "email_recipient", id=email_id)
    if row is None or not row["address"]:
        abort(404)
    return email_id, int(row["org_id"]), str(row["address"])


@bp.get("/u/<token>")
def unsubscribe_page(token: str) -> Any:
    """Ask to confirm (a mail client's link preview must not unsubscribe anyone)."""
    _, _, address = _target(token)
    return render_template("unsubscribe.html", address=address, token=token, done=False)


@bp.post("/u/<token>")
def unsubscribe(token: str) -> Any:
    """Suppress the link's address for the email's organization at once (again: no change)."""
    email_id, org_id, address = _target(token)
    conn = ext.operator_conn()
    try:
        with conn.transaction():
            added = suppression.add(
                conn, org_id, address, reason="unsubscribe", detail="one-click unsubscribe link", email_id=email_id
            )
            if added:
                detail = Jsonb({"source": "link", "recipient": address})
                db.run(conn, "insert_event", email_id=email_id, kind="unsubscribed", job_id=None, detail=detail)
    except errors.ValidationError:
        abort(404)
    log.info("unsubscribed", email_id=str(email_id), new=added)
    if request.form.get("List-Unsubscribe") == "One-Click" or not request.accept_mimetypes.accept_html:
        return {"unsubscribed": True}
    return render_template("unsubscribe.html", address=address, token=token, done=True)
