"""Settings of the transport chain, the breakers, retention and the ops token."""

from __future__ import annotations

import pathlib
import re

import pytest

from tasks.core import config, errors
from tasks.delivery import transports


def test_a_chain_of_providers_ends_in_the_offline_log() -> None:
    """Each entry keeps its label; jsonl:// and console:// name no credentials."""
    specs = transports.parse_transports(
        "primary=smtps://apikey:s3cret@smtp.example.com:465 console:// jsonl:///var/lib/reachdbox/offline.jsonl"
    )

    assert [(s.label, s.scheme, s.offline) for s in specs] == [
        ("primary", "smtps", False),
        ("console", "console", False),
        ("jsonl", "jsonl", True),
    ]
    assert specs[2].path == "/var/lib/reachdbox/offline.jsonl"
    assert [s.name for s in specs] == [
        "smtps://apikey@smtp.example.com:465",
        "console://",
        "jsonl:///var/lib/reachdbox/offline.jsonl",
    ]
    assert "s3cret" not in repr(specs)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("jsonl:///tmp/offline.jsonl smtp://127.0.0.1:25", "can only be the last transport"),
        ("jsonl://offline.jsonl", "needs an absolute file path"),
        ("jsonl:///var/lib/", "needs an absolute file path"),
        ("jsonl:///tmp/x.jsonl?fsync=0", "needs an absolute file path"),
        ("console://somewhere", "takes no host, path or options"),
    ],
)
def test_a_misplaced_or_malformed_local_transport_is_refused(raw: str, message: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        transports.parse_transports(raw)

    assert info.value.field == "MAIL_TRANSPORTS" and message in info.value.message


def test_breaker_retention_and_ops_settings_have_defaults_and_overrides() -> None:
    defaults = config.load({})
    tuned = config.load(
        {
            "BREAKER_THRESHOLD": "3",
            "BREAKER_COOLDOWN": "30",
            "JOB_RETENTION_HOURS": "72",
            "OPS_TOKEN": "x" * 20,
        }
    )

    assert (defaults.breaker_threshold, defaults.breaker_cooldown, defaults.job_retention_hours) == (5, 60.0, 24)
    assert defaults.ops_token == ""
    assert (tuned.breaker_threshold, tuned.breaker_cooldown, tuned.job_retention_hours) == (3, 30.0, 72)
    assert tuned.ops_token == "x" * 20 and "xxxx" not in repr(tuned)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BREAKER_THRESHOLD", "0"),
        ("BREAKER_THRESHOLD", "many"),
        ("BREAKER_COOLDOWN", "0"),
        ("JOB_RETENTION_HOURS", "0"),
        ("OPS_TOKEN", "short"),
    ],
)
def test_an_invalid_chain_setting_is_named_in_the_error(name: str, value: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        config.load({name: value})

    assert info.value.field == name


def test_every_provider_example_in_the_docs_is_a_valid_chain() -> None:
    """docs/mail-providers.md's examples (Ethereal, SES, SendGrid, Mailgun, Postmark, Gmail) parse, with TLS."""
    readme = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "mail-providers.md").read_text()
    examples = re.findall(r'^MAIL_TRANSPORTS="([^"]+)"$', readme, flags=re.MULTILINE)

    chains = [transports.parse_transports(example) for example in examples]

    hosts = {spec.host for chain in chains for spec in chain}
    assert {
        "smtp.ethereal.email",
        "email-smtp.eu-west-1.amazonaws.com",
        "smtp.sendgrid.net",
        "smtp.mailgun.org",
        "smtp.postmarkapp.com",
        "smtp.gmail.com",
        "smtp-relay.gmail.com",
    } <= hosts
    for spec in (spec for chain in chains for spec in chain if spec.scheme in ("smtp", "smtps")):
        assert spec.starttls or spec.scheme == "smtps", spec.name
    mailgun = next(s for chain in chains for s in chain if s.host == "smtp.mailgun.org")
    assert mailgun.username == "postmaster@mg.example.com"
    ses = next(s for chain in chains for s in chain if s.scheme == "smtps")
    assert ses.password == "SES+SMTP/password" and ses.port == 465
