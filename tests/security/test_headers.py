"""Header injection in every field that becomes a mail header (CR, LF, encoded-words),
and a From the user cannot choose: the product has no From field at all, so a From
smuggled in anywhere is refused (an unknown field) or ignored, and MAIL_FROM is sent."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks.delivery import message
from tasks.domain import emails, tokens
from tests.security.conftest import snapshot
from tests.support import invariants
from tests.support.smtp_sink import Sink
from tests.unit.test_send_rules import make_email

Conn = Any
NEW = {"to": ["bob@example.com"], "subject": "Hi", "body_text": "B", "send_at": "2030-01-01T00:00:00Z"}
#: Ways to end a header early, plainly or encoded so that a mail reader decodes a line break.
BREAKS = [
    "Hi\r\nBcc: everyone@example.com",
    "Hi\nX-Injected: 1",
    "Hi\rFrom: ceo@example.com",
    "Hi\x00",
    "=?utf-8?q?Hi=0D=0ABcc:_everyone@example.com?=",
    "=?UTF-8?B?SGkNCkZyb206IGNlb0BleGFtcGxlLmNvbQ==?=",
    "Re: =?iso-8859-1?Q?caf=E9?= =?utf-8?q?=0AFrom:_x@example.com?=",
]
ADDRESS_TRICKS = [
    "bob@example.com\r\nBcc: everyone@example.com",
    "bob@example.com\nbcc: x@example.com",
    "=?utf-8?q?Boss=0D=0ABcc:_x@example.com?= <bob@example.com>",
    '"Boss\r\nBcc: x@example.com" <bob@example.com>',
    "Boss <bob@example.com>, everyone@example.com",
    "bob@example.com, everyone@example.com",
]


MAIL_FROM = "Reach Test <sender@reach.example>"


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """This module's processes (web and workers) send as MAIL_FROM."""
    return env | {"MAIL_FROM": MAIL_FROM}


@pytest.fixture
def api(client: FlaskClient, conn: Conn) -> Callable[..., Any]:
    """Call the API as Alice with her personal access token."""
    alice = emails.ensure_user(conn, email="alice@example.com", name="Alice")
    headers = {"Authorization": f"Bearer {tokens.create(conn, alice)[1]}"}

    def call(method: str, path: str, body: Any, **extra: str) -> Any:
        return client.open(path, method=method, json=body, headers=headers | extra)

    return call


def test_a_subject_that_would_break_a_header_is_422(api: Callable[..., Any], conn: Conn) -> None:
    fields = {subject: api("POST", "/api/v1/emails", NEW | {"subject": subject}) for subject in BREAKS}

    assert {s: (r.status_code, r.get_json()["error"]["field"]) for s, r in fields.items()} == {
        s: (422, "subject") for s in BREAKS
    }
    assert invariants.counts(conn) == {}


def test_a_recipient_that_would_break_a_header_is_422(api: Callable[..., Any], conn: Conn) -> None:
    """Recipients are bare addresses: a display name, a second address or a line break is refused."""
    answers = {}
    for field in ("to", "cc", "bcc"):
        for address in ADDRESS_TRICKS:
            body = NEW | {field: [address]} | ({} if field == "to" else {"to": ["ann@example.com"]})
            response = api("POST", "/api/v1/emails", body)
            answers[(field, address)] = response.status_code, response.get_json()["error"]["field"]

    assert answers == {key: (422, key[0]) for key in answers}
    assert invariants.counts(conn) == {}


def test_an_edit_that_would_break_a_header_is_422_and_changes_nothing(api: Callable[..., Any], conn: Conn) -> None:
    email_id = api("POST", "/api/v1/emails", NEW).get_json()["id"]
    changes = [
        *[({"subject": s}, "subject") for s in BREAKS],
        ({"to": [ADDRESS_TRICKS[0]]}, "to"),
        ({"bcc": [ADDRESS_TRICKS[2]]}, "bcc"),
        ({"time_zone": "UTC\r\nX: 1"}, "time_zone"),
    ]
    before = snapshot(conn)

    for change, field in changes:
        response = api("PATCH", f"/api/v1/emails/{email_id}", change)

        assert (response.status_code, response.get_json()["error"]["field"]) == (422, field), change
    assert snapshot(conn) == before


def test_a_batch_whose_subject_or_name_would_break_a_header_is_422(api: Callable[..., Any], conn: Conn) -> None:
    cases = [
        *[({"subject": s}, "subject") for s in BREAKS],
        ({"name": "List\r\nBcc: x@example.com"}, "name"),
        ({"time_zone": "UTC\nX: 1"}, "time_zone"),
    ]

    for fields, field in cases:
        body = {"addresses": "a@example.com", "subject": "S", "body_text": "B"} | fields
        response = api("POST", "/api/v1/batches", body)

        assert (response.status_code, response.get_json()["error"]["field"]) == (422, field), fields
    assert invariants.counts(conn) == {}


def test_a_list_value_that_would_break_the_subject_rejects_only_its_line(api: Callable[..., Any], conn: Conn) -> None:
    recipients = [
        {"email": "ann@example.com", "first_name": "Ann"},
        {"email": "bob@example.com", "first_name": "Bob\r\nBcc: x@example.com"},
        {"email": "cy@example.com", "first_name": "=?utf-8?q?Cy=0ABcc:_x@example.com?="},
        {"email": "dee@example.com\r\nBcc: x@example.com", "first_name": "Dee"},
    ]

    body = api("POST", "/api/v1/batches", {"recipients": recipients, "subject": "Hi {{first_name}}", "body_text": "B"})

    assert body.status_code == 201
    assert body.get_json()["accepted"] == 1
    assert [r["line"] for r in body.get_json()["rejected"]] == [2, 3, 4]
    assert invariants.counts(conn) == {"scheduled": 1}


def test_an_encoded_word_already_stored_goes_out_as_typed_never_decoded_into_headers() -> None:
    """Rows stored before the check above: with an international address the message is built
    by Python's EmailMessage, which used to decode the subject and put its line break on the wire."""
    for to in (["bob@example.com"], ["josé@example.com"]):
        row = make_email(subject="=?utf-8?q?Hi=0D=0ABcc:_x@example.com=0D=0AFrom:_ceo@example.com?=", to_addrs=to)

        parsed = email.message_from_bytes(message.build(row), policy=email.policy.default)

        assert parsed["Bcc"] is None and len(parsed.get_all("From")) == 1, to
        assert parsed["From"].addresses[0].addr_spec == "noreply@example.com", to


def _headers_of(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


@pytest.mark.slow
def test_a_from_smuggled_anywhere_is_refused_or_ignored_and_mail_from_is_sent(
    api: Callable[..., Any], conn: Conn, env: dict[str, str], sink: Sink, workers: Any
) -> None:
    """No From field exists: in the body it is an unknown field (422); in the request's own
    headers or a list's columns it is ignored. What goes out is From: MAIL_FROM, Reply-To: the user."""
    refused = {
        key: api("POST", "/api/v1/emails", NEW | {key: "ceo@example.com"}).get_json()["error"]["field"]
        for key in ("from", "From", "sender", "reply_to", "headers", "from_addr")
    }
    refused_batch = api(
        "POST", "/api/v1/batches", {"addresses": "a@example.com", "subject": "S", "body_text": "B", "from": "x@y.z"}
    ).status_code
    sent = [
        api(
            "POST",
            "/api/v1/emails",
            {"to": ["bob@example.com"], "subject": "plain", "body_text": "B", "send_now": True},
            From="ceo@example.com",
            Sender="ceo@example.com",
            **{"Reply-To": "ceo@example.com", "X-Mail-From": "ceo@example.com"},
        ).status_code,
        api(
            "POST",
            "/api/v1/batches",
            {
                "recipients": [{"email": "carol@example.com", "from": "ceo@example.com", "From": "ceo@example.com"}],
                "subject": "list {{from}}",
                "body_text": "B",
            },
        ).status_code,
    ]
    assert refused == {k: k for k in refused} and refused_batch == 422
    assert sent == [201, 201]
    workers()

    received = sink.wait_for(2, timeout=30)

    for got in received:
        headers = _headers_of(got.raw)
        assert got.mail_from == "sender@reach.example", got.subject
        assert [str(a) for a in headers["From"].addresses] == [MAIL_FROM], got.subject
        assert len(headers.get_all("From")) == 1, got.subject
        assert headers["Reply-To"] == "alice@example.com" and headers["Sender"] is None, got.subject
        assert "ceo@example.com" not in got.raw.decode("utf-8", "replace").replace("list ceo@example.com", "")
