"""Per-organization settings without services: secrets at rest, masked URLs, the sending identity."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import uuid

import pytest
from cryptography.fernet import Fernet

from tasks.core import config, crypto, errors
from tasks.delivery import gate, message, orgs
from tasks.domain import org_settings
from tasks.domain.models import Email, Status

KEY_A, KEY_B = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def settings(**env: str) -> config.Settings:
    return config.load(env)


def test_first_key_encrypts_every_key_decrypts_and_rotate_moves_to_the_first() -> None:
    old = crypto.Box(settings(SECRET_KEYS=KEY_A))
    token = old.encrypt("smtps://u:hunter2@mail.example.com:465")
    assert b"hunter2" not in token
    both = crypto.Box(settings(SECRET_KEYS=f"{KEY_B},{KEY_A}"))
    assert both.decrypt(token) == "smtps://u:hunter2@mail.example.com:465"
    rotated = both.rotate(token)
    only_new = crypto.Box(settings(SECRET_KEYS=KEY_B))
    assert only_new.decrypt(rotated) == "smtps://u:hunter2@mail.example.com:465"
    with pytest.raises(crypto.Undecryptable):
        only_new.decrypt(token)


def test_secret_keys_are_checked_and_never_shown() -> None:
    with pytest.raises(errors.ConfigError, match="SECRET_KEYS: key 2 is not a Fernet key"):
        settings(SECRET_KEYS=f"{KEY_A},not-a-key")
    assert KEY_A not in repr(settings(SECRET_KEYS=KEY_A))


def test_production_without_keys_stores_nothing() -> None:
    box = crypto.Box(settings(APP_ENV="production"))
    with pytest.raises(crypto.KeysMissing, match="SECRET_KEYS"):
        box.encrypt("x")
    with pytest.raises(errors.ValidationError, match="SECRET_KEYS") as caught:
        org_settings.add_transport(
            None,  # refused before any statement
            settings(APP_ENV="production", ORG_SENDING_DOMAINS="example.com"),
            1,
            None,
            label="own",
            url="smtps://u:p@8.8.8.8:465",  # an address literal: no DNS lookup
            rate_limit="",
        )
    assert caught.value.field == "url"


def test_mask_hides_the_password_only() -> None:
    assert org_settings.mask("smtps://me%40x.com:s3cr%2Ft@mail.example.com:465") == (
        "smtps://me%40x.com:****@mail.example.com:465"
    )
    assert org_settings.mask("smtp://mail.example.com:25") == "smtp://mail.example.com:25"


def test_transport_urls_take_the_mail_transports_forms_smtp_only() -> None:
    dev = settings()
    spec = org_settings.check_transport(dev, "smtp://127.0.0.1:2525")
    assert (spec.host, spec.port) == ("127.0.0.1", 2525)
    for url, why in [
        ("jsonl:///tmp/x.jsonl", "smtp:// or smtps://"),
        ("console://", "smtp:// or smtps://"),
        ("smtp://u:topsecret@mail.example.com:587", "clear text"),
        ("ftp://x", "unknown transport"),
    ]:
        with pytest.raises(errors.ValidationError, match=why) as caught:
            org_settings.check_transport(dev, url)
        assert caught.value.field == "url"
        assert "topsecret" not in caught.value.message


def test_production_refuses_the_deployments_own_network() -> None:
    prod = settings(APP_ENV="production")
    with pytest.raises(errors.ValidationError, match="SMTP port"):
        org_settings.check_transport(prod, "smtps://u:p@mail.example.com:6379")
    with pytest.raises(errors.ValidationError, match="not a public internet host"):
        org_settings.check_transport(prod, "smtps://u:p@127.0.0.1:465")
    with pytest.raises(errors.ValidationError, match="not a public internet host"):
        org_settings.check_transport(prod, "smtps://u:p@10.0.0.5:587")


def test_rate_limit_is_parsed_like_rate_limits() -> None:
    assert org_settings.check_rate_limit("20/10s, 500/hour")[0] == "20/10s,500/hour"
    assert org_settings.check_rate_limit("") == ("", ())
    with pytest.raises(errors.ValidationError) as caught:
        org_settings.check_rate_limit("lots")
    assert caught.value.field == "rate_limit"


def test_identity_outside_the_allowed_domains_is_refused_with_its_field() -> None:
    allowed = settings(ORG_SENDING_DOMAINS="example.com")
    ok = org_settings.check_identity(
        allowed, from_name="Support", from_address="help@mail.example.com", reply_to="desk@example.com"
    )
    assert ok == orgs.Identity(from_name="Support", from_address="help@mail.example.com", reply_to="desk@example.com")
    with pytest.raises(errors.ValidationError, match="outside the domains") as caught:
        org_settings.check_identity(allowed, from_name=None, from_address="me@evil.example.org", reply_to=None)
    assert caught.value.field == "from_address"
    with pytest.raises(errors.ValidationError) as caught:
        org_settings.check_identity(allowed, from_name=None, from_address=None, reply_to="x@notexample.com")
    assert caught.value.field == "reply_to"
    with pytest.raises(errors.ValidationError) as caught:
        org_settings.check_identity(allowed, from_name="a\r\nBcc: x@y", from_address=None, reply_to=None)
    assert caught.value.field == "from_name"


def test_empty_allowed_domains_means_any_in_development_none_in_production() -> None:
    anything = org_settings.check_identity(settings(), from_name=None, from_address="a@b.example", reply_to=None)
    assert anything.from_address == "a@b.example"
    with pytest.raises(errors.ValidationError, match="ORG_SENDING_DOMAINS is empty"):
        org_settings.check_identity(
            settings(APP_ENV="production"), from_name=None, from_address="a@b.example", reply_to=None
        )


def _email(**changes: object) -> Email:
    now = dt.datetime(2030, 1, 7, 8, 0, tzinfo=dt.UTC)
    base = dict(
        id=uuid.uuid4(), org_id=1, owner_id=1, from_addr="Reach D. Box <noreply@localhost>",
        reply_to="alice@example.com", to_addrs=["bob@example.com"], cc_addrs=[], bcc_addrs=[], subject="S",
        body_text="B", body_html=None, send_at=now, send_tz="UTC", status=Status.SENDING, attempts=1,
        next_attempt_at=now, waiting_reason=None, last_error=None, message_id="<m@x>", transport=None,
        provider_reply=None, refused_recipients={}, job_id=1, idempotency_key=None, created_at=now,
        updated_at=now, data_started_at=None, sent_at=None,
    )  # fmt: skip
    return Email(**(base | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["Support Team", "Équipe Support"])
def test_the_message_carries_the_organizations_identity(name: str) -> None:
    identity = orgs.Identity(from_name=name, from_address="help@example.com", reply_to="desk@example.com")
    parsed = email.message_from_bytes(message.build(_email(), identity), policy=email.policy.default)
    assert parsed["From"].addresses[0].display_name == name
    assert parsed["From"].addresses[0].addr_spec == "help@example.com"
    assert parsed["Reply-To"].addresses[0].addr_spec == "desk@example.com"
    plain = email.message_from_bytes(message.build(_email()), policy=email.policy.default)
    assert plain["From"].addresses[0].addr_spec == "noreply@localhost"
    assert plain["Reply-To"].addresses[0].addr_spec == "alice@example.com"


def test_over_quota_waits_for_the_next_utc_day() -> None:
    late = dt.datetime(2030, 1, 7, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert gate.next_day(late) == dt.datetime(2030, 1, 9, tzinfo=dt.UTC)
    assert "waits for 2030-01-09 00:00 UTC" in gate.quota_reason(100, gate.next_day(late))


def test_a_suspended_organization_says_why() -> None:
    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert orgs.suspended_reason({"suspended_at": None}) is None
    assert orgs.suspended_reason({"suspended_at": at, "suspended_reason": "unpaid"}) == "organization suspended: unpaid"
    assert "by an operator" in str(orgs.suspended_reason({"suspended_at": at, "suspended_reason": None}))


def test_a_long_suspension_is_looked_at_less_and_less_often() -> None:
    assert gate.hold_recheck(0, 60) == 60
    assert gate.hold_recheck(3000, 60) == 300
    assert gate.hold_recheck(86400 * 3, 60) == gate.HOLD_RECHECK_MAX
    assert gate.hold_recheck(0, 0.5) == 0.5
