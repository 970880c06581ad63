"""ses:// and sendgrid:// as MAIL_TRANSPORTS entries, Retry-After, and our message as SendGrid's JSON."""

from __future__ import annotations

import email.utils
import uuid

import pytest

from tasks.core import config, errors
from tasks.delivery import message, providers, transports
from tests.support.sendgrid_standin import problems
from tests.unit.test_send_rules import make_email


def test_provider_api_entries_name_no_secret() -> None:
    specs = transports.parse_transports(
        "ses://eu-west-1?configuration_set=events-1&timeout=5 backup=sendgrid://apikey:SG.k3y.s3cret@ "
        "eu=sendgrid://SG.other.k3y@api.eu.sendgrid.com jsonl:///var/lib/reachdbox/offline.jsonl"
    )

    assert [(s.label, s.scheme, s.name) for s in specs[:3]] == [
        ("ses", "ses", "ses://eu-west-1"),
        ("backup", "sendgrid", "sendgrid://api.sendgrid.com"),
        ("eu", "sendgrid", "sendgrid://api.eu.sendgrid.com"),
    ]
    assert (specs[0].region, specs[0].configuration_set, specs[0].timeout) == ("eu-west-1", "events-1", 5.0)
    assert (specs[1].password, specs[2].password) == ("SG.k3y.s3cret", "SG.other.k3y")
    assert "s3cret" not in repr(specs) and "other" not in repr(specs)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ses://", "needs an AWS region"),
        ("ses://europe", "needs an AWS region"),
        ("ses://AKIA:secret@eu-west-1", "takes no credentials"),
        ("ses://eu-west-1?starttls=1", "unknown option"),
        ("ses://eu-west-1?configuration_set=a%20b", "configuration set"),
        ("sendgrid://SG.x@evil.example.com", "not a SendGrid API host"),
        ("sendgrid://api.sendgrid.com:8080", "takes no port"),
        ("sendgrid:///v3", "takes no path"),
    ],
)
def test_a_malformed_provider_entry_is_refused(raw: str, message: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        transports.parse_transports(raw)

    assert info.value.field == "MAIL_TRANSPORTS" and message in info.value.message


def test_sendgrid_needs_a_key_from_the_url_or_the_setting() -> None:
    with pytest.raises(errors.ConfigError, match="SENDGRID_API_KEY"):
        config.load({"MAIL_TRANSPORTS": "sendgrid://"})

    settings = config.load({"MAIL_TRANSPORTS": "sendgrid://", "SENDGRID_API_KEY": "SG.from.env"})
    assert "SG.from.env" not in repr(settings)
    with pytest.raises(errors.ConfigError, match="SENDGRID_API_URL"):
        config.load({"MAIL_TRANSPORTS": "sendgrid://k@", "SENDGRID_API_URL": "http://sendgrid.example.com"})


def test_retry_after_in_seconds_or_as_a_date_and_never_negative() -> None:
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 90, usegmt=True)
    past = email.utils.formatdate(now - 90, usegmt=True)

    assert providers.retry_after({"retry-after": "7"}, now) == 7.0
    assert providers.retry_after({"retry-after": later}, now) == 90.0
    assert providers.retry_after({"retry-after": past}, now) == 0.0
    assert providers.retry_after({"retry-after": "soon"}, now) is None
    assert providers.retry_after({}, now) is None
    assert providers.retry_after({"retry-after": "9999999"}, now) == providers.RETRY_AFTER_MAX


def test_our_message_becomes_a_valid_sendgrid_body_with_our_headers_and_id() -> None:
    row = make_email(
        to_addrs=["Bob <bob@example.com>", "dave@example.com"],
        cc_addrs=["carol@example.com"],
        bcc_addrs=["secret@example.com", "BOB@example.com"],
        subject="Héllo, a long subject " * 5,
    )

    body = providers.sendgrid_body("noreply@example.com", row.recipients, message.build(row))

    assert problems(body) == []
    [personalization] = body["personalizations"]
    assert personalization == {
        "to": [{"email": "bob@example.com", "name": "Bob"}, {"email": "dave@example.com"}],
        "cc": [{"email": "carol@example.com"}],
        "bcc": [{"email": "secret@example.com"}],  # BOB@ is bob@ already in To: once only
    }
    assert body["from"] == {"email": "noreply@example.com", "name": "Reach D. Box"}
    assert body["reply_to"] == {"email": "alice@example.com"}
    assert body["subject"] == row.subject
    assert body["content"] == [
        {"type": "text/plain", "value": "Hi Bob"},
        {"type": "text/html", "value": "<p>Hi Bob</p>"},
    ]
    assert body["headers"]["Message-ID"] == row.message_id
    assert set(body["headers"]) == {"Date", "Message-ID"}  # no header SendGrid writes itself
    assert body["custom_args"] == {"message_id": row.message_id, "email_id": str(row.id)}
    assert body["categories"] == [providers.CATEGORY]


def test_a_text_only_email_to_bcc_only_still_has_a_to() -> None:
    row = make_email(to_addrs=[], cc_addrs=[], bcc_addrs=["x@example.com", "y@example.com"], body_html=None)

    body = providers.sendgrid_body("noreply@example.com", row.recipients, message.build(row))

    assert problems(body) == []
    assert body["personalizations"] == [{"to": [{"email": "x@example.com"}], "bcc": [{"email": "y@example.com"}]}]
    assert [c["type"] for c in body["content"]] == ["text/plain"]


def test_the_stand_in_refuses_what_sendgrid_documents_as_invalid() -> None:
    """The schema check is what makes the SendGrid tests worth something: it must bite."""
    good = providers.sendgrid_body("noreply@example.com", ["a@example.com"], message.build(make_email(id=uuid.uuid4())))
    bad_header = good | {"headers": {"Subject": "again"}}
    html_first = good | {"content": list(reversed(good["content"]))}
    twice = good | {"personalizations": [{"to": [{"email": "a@example.com"}], "bcc": [{"email": "A@example.com"}]}]}
    too_many = good | {"categories": [str(n) for n in range(11)]}

    assert problems(good) == []
    assert [p["field"] for p in problems(bad_header)] == ["headers"]
    assert [p["field"] for p in problems(html_first)] == ["content"]
    assert [p["field"] for p in problems(twice)] == ["personalizations.0"]
    assert [p["field"] for p in problems(too_many)] == ["categories"]
    assert problems({k: v for k, v in good.items() if k != "from"})


def test_an_internationalised_address_is_refused_before_any_request() -> None:
    with pytest.raises(transports.Permanent, match="SMTPUTF8"):
        providers._not_international("noreply@example.com", ["josé@example.com"], "SES")


def test_an_internationalised_message_is_read_back_as_exactly() -> None:
    """A Reply-To that is not ASCII makes the message UTF-8 (RFC 6532): read with the exact parser."""
    row = make_email(reply_to="José <josé@example.com>", subject="Ça va ?", body_text="Olá\nsegunda linha")
    raw = message.build(row)

    body = providers.sendgrid_body("noreply@example.com", row.recipients, raw)

    assert not raw.isascii() and problems(body) == []
    assert body["reply_to"] == {"email": "josé@example.com", "name": "José"}
    # The text as the message carries it (this builder ends it with a newline).
    assert (body["subject"], body["content"][0]["value"]) == ("Ça va ?", "Olá\nsegunda linha\n")
    assert body["headers"]["Message-ID"] == row.message_id
