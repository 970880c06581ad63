"""Delivery feedback: SendGrid's signed Event Webhook, SES through SNS (AWS's signature over a
certificate served by a local server), the Standard Webhooks endpoint; the delivery state,
the timeline, the suppression list, and what a forged, stale or replayed request changes
(nothing). Keys and certificates are made here, with ``cryptography``."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient
from standardwebhooks.webhooks import Webhook

from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, models, suppression
from tasks.domain.models import Email, User
from tests.support.web import make_app

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


# --- The stand-ins: a P-256 key for SendGrid, an RSA certificate and its server for SNS.


@pytest.fixture(scope="module")
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_public(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


class CertServer:
    """A local HTTP server standing in for SNS: the signing certificate, and subscribe URLs (each GET recorded)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )
        self.pem = cert.public_bytes(serialization.Encoding.PEM)
        self.gets: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (the standard library's name)
                server.gets.append(self.path)
                body = server.pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def sign(self, message: dict[str, Any], version: str = "1") -> dict[str, Any]:
        """Sign as SNS does (docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html)."""
        if message["Type"] == "Notification":
            names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
        else:
            names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        text = "".join(f"{n}\n{message[n]}\n" for n in names if n in message)
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303  (SNS's version 1 is SHA1)
        signature = self.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
        return message | {
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": f"{self.base}/SimpleNotificationService-{version}.pem",
        }

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def sns() -> Iterator[CertServer]:
    server = CertServer()
    yield server
    server.stop()


@pytest.fixture
def app(web_env: dict[str, str], sendgrid_key: ec.EllipticCurvePrivateKey, sns: CertServer) -> Iterator[Flask]:
    environ = web_env | {
        "SENDGRID_WEBHOOK_PUBLIC_KEY": sendgrid_public(sendgrid_key),
        "SES_SNS_TOPIC_ARNS": TOPIC,
        "FEEDBACK_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    application = make_app(environ)
    # Tests only: the local server stands in for sns.REGION.amazonaws.com.
    application.config["SNS_ORIGIN_PATTERN"] = r"http://127\.0\.0\.1:\d+"
    yield application
    application.extensions["reachdbox"].close()


@pytest.fixture
def sent(conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any]) -> Email:
    """An email of ours (scheduled: providers' events are matched whatever its status)."""
    return emails.schedule(conn, owner=owner, draft=make_draft(to=["Bob@Example.com"]), settings=settings)[0]


def post_sendgrid(
    client: FlaskClient, key: ec.EllipticCurvePrivateKey, events: list[dict[str, Any]], *, at: float | None = None
) -> Any:
    body = json.dumps(events).encode()
    timestamp = str(int(at if at is not None else time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return client.post(
        "/feedback/sendgrid",
        data=body,
        content_type="application/json",
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )


def sg(event: str, email: Email, event_id: str | None = None, **more: Any) -> dict[str, Any]:
    return {
        "email": "bob@example.com",
        "timestamp": int(time.time()),
        "smtp-id": email.message_id,
        "event": event,
        "sg_event_id": event_id or uuid.uuid4().hex,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
    } | more


def state(conn: Conn, email: Email) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT delivery, bounce_type, delivery_detail FROM emails WHERE id = %s", (email.id,)
    ).fetchone()
    assert row is not None
    return (row["delivery"], row["bounce_type"], row["delivery_detail"])


def feedback_kinds(conn: Conn, email: Email) -> list[str]:
    return [
        e.kind
        for e in emails.timeline(conn, models.OPERATOR, email.id)
        if e.kind in ("delivered", "deferred", "bounced", "complained", "unsubscribed")
    ]


def written(conn: Conn) -> tuple[int, int, int]:
    """What feedback wrote: providers' event ids, feedback events on timelines, suppressed addresses."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM feedback_seen) AS seen,"
        " (SELECT count(*) FROM email_events WHERE kind IN ('delivered', 'deferred', 'bounced', 'complained')) AS ev,"
        " (SELECT count(*) FROM suppressions) AS sup"
    ).fetchone()
    assert row is not None
    return (row["seen"], row["ev"], row["sup"])


# --- SendGrid.


def test_sendgrid_events_move_the_delivery_state_up_only_and_suppress_a_hard_bounce(
    client: FlaskClient, conn: Conn, sendgrid_key: ec.EllipticCurvePrivateKey, sent: Email
) -> None:
    first = post_sendgrid(client, sendgrid_key, [sg("processed", sent), sg("deferred", sent), sg("open", sent)])
    assert first.status_code == 200
    assert first.get_json() == {"received": 1, "matched": 1, "duplicates": 0, "unknown": 0}
    assert state(conn, sent) == ("deferred", None, None)

    bounce = sg("bounce", sent, "bounce-1", type="bounce", reason="550 5.1.1 The email account does not exist")
    # The bounce and a delivered of the same message in one request: the bounce wins, whatever the order.
    assert post_sendgrid(client, sendgrid_key, [bounce, sg("delivered", sent)]).status_code == 200
    assert state(conn, sent) == ("bounced", "hard", "550 5.1.1 The email account does not exist")
    # A late delivered never hides the bounce; the same bounce again is ignored.
    again = post_sendgrid(client, sendgrid_key, [sg("delivered", sent), bounce])
    assert again.get_json() == {"received": 2, "matched": 1, "duplicates": 1, "unknown": 0}
    assert state(conn, sent) == ("bounced", "hard", "550 5.1.1 The email account does not exist")

    assert feedback_kinds(conn, sent) == ["deferred", "bounced", "delivered", "delivered"]
    [entry] = suppression.entries(conn, sent.org_id)
    assert (entry.address, entry.reason, entry.email_id) == ("bob@example.com", "hard_bounce", sent.id)


def test_a_complaint_and_an_unsubscribe_suppress_a_blocked_bounce_does_not(
    client: FlaskClient, conn: Conn, sendgrid_key: ec.EllipticCurvePrivateKey, sent: Email
) -> None:
    post_sendgrid(client, sendgrid_key, [sg("bounce", sent, type="blocked", reason="421 try later")])
    assert state(conn, sent) == ("bounced", "soft", "421 try later")
    assert suppression.entries(conn, sent.org_id) == []

    post_sendgrid(client, sendgrid_key, [sg("spamreport", sent)])
    assert state(conn, sent)[0] == "complained"
    other = sg("unsubscribe", sent) | {"email": "carol@example.com"}
    post_sendgrid(client, sendgrid_key, [other])
    assert {(e.address, e.reason) for e in suppression.entries(conn, sent.org_id)} == {
        ("bob@example.com", "complaint"),
        ("carol@example.com", "unsubscribe"),
    }


def test_an_event_for_no_email_of_ours_is_dropped_with_a_2xx(
    client: FlaskClient, conn: Conn, sendgrid_key: ec.EllipticCurvePrivateKey, sent: Email
) -> None:
    stranger = sg("bounce", sent, type="bounce") | {"smtp-id": f"<{uuid.uuid4()}@test.reachdbox.localhost>"}
    foreign = sg("delivered", sent) | {"smtp-id": "<abc@elsewhere.example>"}
    # Our email's id in another Message-ID: not ours either (the id alone does not match).
    forged = sg("spamreport", sent) | {"smtp-id": f"<{sent.id}@elsewhere.example>"}
    response = post_sendgrid(client, sendgrid_key, [stranger, foreign, forged])

    assert response.status_code == 200
    assert response.get_json()["unknown"] == 3
    assert state(conn, sent) == (None, None, None)
    assert written(conn)[1:] == (0, 0)


@pytest.mark.parametrize(
    "tamper",
    ["body", "stale", "ahead", "other_key", "missing"],
)
def test_a_forged_or_stale_sendgrid_request_is_refused_and_changes_nothing(
    client: FlaskClient, conn: Conn, sendgrid_key: ec.EllipticCurvePrivateKey, sent: Email, tamper: str
) -> None:
    events = [sg("bounce", sent, type="bounce")]
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    key = ec.generate_private_key(ec.SECP256R1()) if tamper == "other_key" else sendgrid_key
    if tamper in ("stale", "ahead"):
        timestamp = str(int(time.time()) + (-3600 if tamper == "stale" else 3600))
    signature = base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    if tamper == "body":
        body = body.replace(b'"bounce"', b'"delivered"', 1)
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": signature,
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
    if tamper == "missing":
        headers.pop("X-Twilio-Email-Event-Webhook-Signature")

    response = client.post("/feedback/sendgrid", data=body, content_type="application/json", headers=headers)

    assert response.status_code == (401 if tamper == "missing" else 403)
    assert response.get_json()["error"]["code"] in ("unauthenticated", "forbidden")
    assert state(conn, sent) == (None, None, None)
    assert written(conn) == (0, 0, 0)


# --- SES through SNS.


def ses_notification(email: Email, kind: str, **more: Any) -> dict[str, Any]:
    mail = {
        "timestamp": "2026-01-02T03:04:05.000Z",
        "messageId": "0100018c-ses-own-id",
        "source": "noreply@example.com",
        "destination": ["bob@example.com"],
        "headers": [{"name": "Message-ID", "value": email.message_id}],
        "commonHeaders": {"messageId": email.message_id, "subject": "Hello"},
    }
    return {"notificationType": kind, "mail": mail, **more}


def sns_message(notification: dict[str, Any], message_id: str | None = None) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": message_id or str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": json.dumps(notification),
        "Timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def post_sns(client: FlaskClient, message: dict[str, Any]) -> Any:
    return client.post(
        "/feedback/ses",
        data=json.dumps(message),
        content_type="text/plain; charset=UTF-8",
        headers={"x-amz-sns-message-type": message["Type"]},
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_bounces_and_complaints_through_sns_are_verified_and_taken(
    client: FlaskClient, conn: Conn, sns: CertServer, sent: Email, version: str
) -> None:
    bounce = ses_notification(
        sent,
        "Bounce",
        bounce={
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "timestamp": "2026-01-02T03:04:06.000Z",
            "bouncedRecipients": [
                {"emailAddress": "bob@example.com", "diagnosticCode": "smtp; 550 5.1.1 no such user"}
            ],
        },
    )
    response = post_sns(client, sns.sign(sns_message(bounce), version))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["matched"] == 1
    assert state(conn, sent) == ("bounced", "hard", "smtp; 550 5.1.1 no such user")

    delivered = ses_notification(sent, "Delivery", delivery={"recipients": ["bob@example.com"]})
    post_sns(client, sns.sign(sns_message(delivered), version))
    assert state(conn, sent)[0] == "bounced"
    complaint = ses_notification(
        sent, "Complaint", complaint={"complainedRecipients": [{"emailAddress": "bob@example.com"}]}
    )
    post_sns(client, sns.sign(sns_message(complaint), version))
    assert state(conn, sent)[0] == "complained"
    assert [(e.address, e.reason) for e in suppression.entries(conn, sent.org_id)] == [
        ("bob@example.com", "hard_bounce")
    ]
    assert feedback_kinds(conn, sent) == ["bounced", "delivered", "complained"]


def test_a_subscription_is_confirmed_by_getting_its_subscribe_url(
    client: FlaskClient, sns: CertServer, conn: Conn
) -> None:
    token = uuid.uuid4().hex
    confirm = {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": token,
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": f"{sns.base}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}",
        "Timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
    }
    response = post_sns(client, sns.sign(confirm, "2"))

    assert response.status_code == 200
    assert f"/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}" in sns.gets


@pytest.mark.parametrize("tamper", ["message", "topic", "cert_host", "stale", "unsigned", "version"])
def test_a_forged_sns_message_is_refused_and_changes_nothing(
    client: FlaskClient, conn: Conn, sns: CertServer, sent: Email, tamper: str
) -> None:
    bounce = ses_notification(
        sent, "Bounce", bounce={"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "bob@example.com"}]}
    )
    message = sns_message(bounce)
    if tamper == "stale":
        message["Timestamp"] = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).isoformat()
    if tamper == "topic":
        message["TopicArn"] = "arn:aws:sns:eu-west-1:210987654321:someone-elses"
    signed = sns.sign(message)
    if tamper == "message":
        signed["Message"] = signed["Message"].replace("Permanent", "Transient")
    if tamper == "cert_host":
        signed["SigningCertURL"] = "http://localhost.evil.example/SimpleNotificationService-1.pem"
    if tamper == "unsigned":
        signed.pop("Signature")
    if tamper == "version":
        signed["SignatureVersion"] = "3"
    fetched = len(sns.gets)

    response = post_sns(client, signed)

    assert response.status_code == (401 if tamper == "unsigned" else 403)
    assert written(conn) == (0, 0, 0)
    if tamper == "cert_host":
        assert len(sns.gets) == fetched  # never fetched from a host that is not SNS's


def test_by_default_only_https_sns_hosts_are_trusted(
    web_env: dict[str, str], sendgrid_key: ec.EllipticCurvePrivateKey
) -> None:
    from webapp import feedback

    application = make_app(web_env | {"APP_ENV": "development", "SES_SNS_TOPIC_ARNS": TOPIC})
    with application.test_request_context("/feedback/ses"):
        assert feedback._sns_url(
            "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-a.pem", "SigningCertURL"
        )
        for bad in (
            "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-a.pem",
            "https://sns.eu-west-1.amazonaws.com.evil.example/a.pem",
            "https://user@sns.eu-west-1.amazonaws.com/a.pem",
            "https://sns.eu-west-1.amazonaws.com/a.txt",
            "https://s3.amazonaws.com/a.pem",
        ):
            with pytest.raises(feedback.Refused):
                feedback._sns_url(bad, "SigningCertURL")
    application.extensions["reachdbox"].close()


# --- The generic endpoint (Standard Webhooks).


def post_webhook(
    client: FlaskClient, payload: dict[str, Any], *, secret: str = WEBHOOK_SECRET, msg_id: str = ""
) -> Any:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    body = json.dumps(payload)
    now = dt.datetime.now(dt.UTC)
    signature = Webhook(secret).sign(msg_id, now, body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}
    return client.post("/feedback/webhook", data=body, content_type="application/json", headers=headers)


def test_a_relay_posts_signed_events_to_the_generic_endpoint(client: FlaskClient, conn: Conn, sent: Email) -> None:
    event = {
        "type": "email.bounced",
        "timestamp": dt.datetime.now(dt.UTC).isoformat(),
        "data": {"message_id": sent.message_id, "recipient": "bob@example.com", "bounce_type": "soft"},
    }
    assert post_webhook(client, event, msg_id="msg_1").status_code == 200
    assert post_webhook(client, event, msg_id="msg_1").get_json()["duplicates"] == 1
    assert state(conn, sent) == ("bounced", "soft", None)

    forged = post_webhook(client, event | {"type": "email.complained"}, secret="whsec_" + "A" * 44)
    assert forged.status_code == 403
    invalid = post_webhook(client, {"type": "email.opened", "data": {"recipient": "bob@example.com"}})
    assert invalid.status_code == 422
    assert state(conn, sent) == ("bounced", "soft", None)


# --- Where it shows: the dashboard (badge, filter), the API, live status.


def test_the_delivery_state_shows_on_the_dashboard_in_the_api_and_live(
    client: FlaskClient,
    conn: Conn,
    sendgrid_key: ec.EllipticCurvePrivateKey,
    sign_in: Callable[..., User],
    settings: Settings,
    make_draft: Callable[..., Any],
    web_env: dict[str, str],
) -> None:
    import redis

    from tasks.core import live
    from tasks.domain import orgs, tokens

    user = sign_in(client, "alice@example.com")
    org_id = orgs.personal_org_id(conn, user.id)
    bounced, quiet = (
        emails.schedule(conn, owner=user, draft=make_draft(subject=s), settings=settings, org_id=org_id)[0]
        for s in ("Bounced one", "Quiet one")
    )
    listener = redis.Redis.from_url(web_env["REDIS_URL"]).pubsub()
    listener.subscribe(live.channel(web_env["REDIS_PREFIX"], org_id))
    listener.get_message(timeout=2)  # the subscription's confirmation

    post_sendgrid(client, sendgrid_key, [sg("bounce", bounced, type="bounce", reason="550 gone")])

    pushed = listener.get_message(timeout=5)
    assert pushed is not None
    change = json.loads(pushed["data"])
    assert (change["email_id"], change["status"], change["delivery"], change["bounce_type"]) == (
        str(bounced.id), "scheduled", "bounced", "hard",
    )  # fmt: skip
    listener.close()
    page = client.get("/?view=all&delivery=bounced").get_data(as_text=True)
    assert "Bounced one" in page and "Quiet one" not in page
    assert "badge-delivery-bounced" in page
    detail = client.get(f"/emails/{bounced.id}").get_data(as_text=True)
    assert "550 gone" in detail
    token = tokens.create(conn, user, "t", org_id=org_id)[1]
    api = client.get("/api/v1/emails?delivery=bounced", headers={"Authorization": f"Bearer {token}"}).get_json()
    [shown] = api["emails"]
    assert (shown["id"], shown["delivery"], shown["bounce_type"], shown["delivery_detail"]) == (
        str(bounced.id), "bounced", "hard", "550 gone",
    )  # fmt: skip
    refused = client.get("/api/v1/emails?delivery=lost", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 422 and refused.get_json()["error"]["field"] == "delivery"
    assert quiet.delivery is None
