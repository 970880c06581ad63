"""Settings: defaults, and a clear error naming any invalid setting."""

from __future__ import annotations

import pytest

from tasks.core import config, errors
from tasks.delivery import transports


def test_defaults_need_no_environment() -> None:
    """Every setting has a default; the default transport is the dev mailbox."""
    settings = config.load({})

    assert settings.worker_concurrency == 5
    assert [t.scheme for t in settings.mail_transports] == ["devmail"]
    assert settings.mail_from_address == "noreply@localhost"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORKER_CONCURRENCY", "zero"),
        ("WORKER_CONCURRENCY", "0"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("REDIS_URL", "http://localhost"),
        ("MAIL_TRANSPORTS", "carrier-pigeon://coop"),
        ("MAIL_TRANSPORTS", "smtp://"),
        ("MAIL_TRANSPORTS", "smtp://host:99999"),
        ("MAIL_TRANSPORTS", "smtp://h:25?bogus=1"),
        ("MAIL_FROM", "not an address"),
        ("MAIL_DOMAIN", "bad domain"),
        ("SMTP_TIMEOUT", "-1"),
        ("APP_ENV", "staging"),
        ("LOG_LEVEL", "LOUD"),
        ("DEVMAIL_ADDR", "nohostport"),
        ("GOOGLE_OAUTH_TOKEN_URL", "ftp://example.com/token"),
        ("ALLOWED_EMAIL_DOMAINS", "example.com, not a domain"),
        ("ALLOWED_EMAILS", "nobody"),
        ("API_RATE_LIMIT", "lots"),
        ("WEB_MAX_REQUEST_BYTES", "10"),
        ("WEB_TRUSTED_PROXIES", "-1"),
        ("BATCH_MAX_RECIPIENTS", "0"),
        ("BATCH_MAX_RENDERED_BYTES", "1000"),
        ("RATE_LIMITS", "smtp=5/second"),
        ("RATE_LIMITS", "devmail=5/fortnight"),
        ("RATE_LIMITS", "devmail"),
        ("RATE_LIMITS", "devmail=5/s;devmail=6/s"),
        ("USER_RATE_LIMIT", "0/day"),
        ("USER_RATE_LIMIT", "500/day,20/1d"),
        ("RATE_LIMIT_MARGIN", "-1"),
        ("SLACK_WEBHOOK_URL", "hooks.slack.com/services/T/B/x"),
        ("SLACK_WEBHOOK_URL", "https:///services/T/B/x"),
        ("MONITOR_INTERVAL", "0"),
        ("ALERT_QUEUE_LAG", "soon"),
        ("ALERT_MIN_INTERVAL", "-5"),
    ],
)
def test_an_invalid_setting_is_named_in_the_error(name: str, value: str) -> None:
    """The process stops at start with a message that names the bad setting."""
    with pytest.raises(errors.ConfigError) as info:
        config.load({name: value})

    assert info.value.field == name
    assert info.value.message.startswith(f"{name}: ")


def test_the_web_in_production_requires_a_real_secret_key() -> None:
    """The key signs the web's sessions; a worker, which has none, starts without it."""
    worker = config.load({"APP_ENV": "production"})

    for weak in ({}, {"SECRET_KEY": "short"}):
        with pytest.raises(errors.ConfigError) as info:
            config.validate_for_web(config.load({"APP_ENV": "production"} | weak))
        assert info.value.field == "SECRET_KEY"
    assert worker.secret_key == config.default("SECRET_KEY")


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"GOOGLE_OAUTH_CLIENT_ID": "id"}, "GOOGLE_OAUTH_CLIENT_SECRET"),
        ({"GOOGLE_OAUTH_CLIENT_SECRET": "secret"}, "GOOGLE_OAUTH_CLIENT_ID"),
        (
            {
                "APP_ENV": "production",
                "SECRET_KEY": "s" * 40,
                "GOOGLE_OAUTH_TOKEN_URL": "http://oauth.example.com/token",
            },
            "GOOGLE_OAUTH_TOKEN_URL",
        ),
    ],
)
def test_sign_in_settings_are_rules_of_the_web_not_of_workers(env: dict[str, str], field: str) -> None:
    """Half a Google client, or plain-http OAuth in production, stops the web app only."""
    settings = config.load(env)

    with pytest.raises(errors.ConfigError) as info:
        config.validate_for_web(settings)

    assert info.value.field == field


def test_transport_urls_are_parsed_in_order() -> None:
    settings = config.load(
        {
            "MAIL_TRANSPORTS": "smtp://u%40x:p%3Ass@mail.example.com:587?starttls=1&timeout=7 smtps://relay:465 devmail://"
        }
    )

    first, second, third = settings.mail_transports
    assert (first.host, first.port, first.username, first.password) == ("mail.example.com", 587, "u@x", "p:ss")
    assert first.starttls and first.timeout == 7.0
    assert (second.scheme, second.port) == ("smtps", 465)
    assert third.name == "devmail://"


def test_transports_get_labels_for_limits_and_breakers() -> None:
    settings = config.load({"MAIL_TRANSPORTS": "smtp://a:25 smtp://b:25 backup=smtps://c devmail://"})

    assert [t.label for t in settings.mail_transports] == ["smtp", "smtp-2", "backup", "devmail"]
    with pytest.raises(errors.ConfigError, match="used twice"):
        config.load({"MAIL_TRANSPORTS": "x=smtp://a:25 x=smtp://b:25"})


def test_a_transport_never_shows_its_password() -> None:
    spec = transports.parse_transport("smtps://user:hunter2@mail.example.com")

    assert "hunter2" not in repr(spec)
    assert "hunter2" not in spec.name


def test_a_password_over_plain_smtp_to_a_remote_host_is_refused() -> None:
    """Credentials would cross the network in clear text."""
    with pytest.raises(errors.ConfigError, match="clear text"):
        transports.parse_transport("smtp://user:pw@mail.example.com:587")


@pytest.mark.parametrize("rate", ["600/minute", "10/second;600/hour", "5 per minute", "100/5minutes"])
def test_the_api_rate_limit_accepts_what_the_limiter_parses(rate: str) -> None:
    import limits

    assert config.load({"API_RATE_LIMIT": rate}).api_rate_limit == rate
    assert limits.parse_many(rate)


def test_the_web_in_production_needs_google_sign_in_and_an_allow_list() -> None:
    base = config.load({"APP_ENV": "production", "SECRET_KEY": "s" * 40})
    google = {"GOOGLE_OAUTH_CLIENT_ID": "id", "GOOGLE_OAUTH_CLIENT_SECRET": "secret"}
    with_client = config.load({"APP_ENV": "production", "SECRET_KEY": "s" * 40} | google)

    with pytest.raises(errors.ConfigError) as no_client:
        config.validate_for_web(base)
    with pytest.raises(errors.ConfigError) as no_list:
        config.validate_for_web(with_client)

    assert no_client.value.field == "GOOGLE_OAUTH_CLIENT_ID"
    assert no_list.value.field == "ALLOWED_EMAIL_DOMAINS"
    ready = config.load({"APP_ENV": "production", "SECRET_KEY": "s" * 40, "ALLOWED_EMAILS": "Ada@Example.com"} | google)
    config.validate_for_web(ready)
    assert ready.allowed_emails == ("ada@example.com",)


def test_workers_in_production_need_no_sign_in_settings() -> None:
    """Only the web signs people in; a worker starts with the core settings alone."""
    assert config.load({"APP_ENV": "production", "SECRET_KEY": "s" * 40}).google_login is False


def test_rate_limits_name_a_transport_and_several_windows() -> None:
    """`label=LIMIT[,LIMIT]` per transport, `;` between transports; the user's limit alike."""
    settings = config.load(
        {
            "MAIL_TRANSPORTS": "primary=smtp://a:25 backup=smtp://b:25",
            "RATE_LIMITS": "primary=50/hour, 5/second; backup=20/10s",
            "USER_RATE_LIMIT": "500/day,100/15m",
        }
    )

    assert settings.transport_limits("primary") == (config.RateWindow(50, 3600), config.RateWindow(5, 1))
    assert settings.transport_limits("backup") == (config.RateWindow(20, 10),)
    assert settings.transport_limits("other") == ()
    assert settings.user_rate_limit == (config.RateWindow(500, 86400), config.RateWindow(100, 900))
    assert config.load({}).rate_limits == () and config.load({}).user_rate_limit == ()


def test_the_slack_webhook_is_https_in_production_and_never_in_repr() -> None:
    hook = "http://hooks.example/services/T/B/sEcReT"
    with pytest.raises(errors.ConfigError, match="SLACK_WEBHOOK_URL: must be an https:// URL in production"):
        config.load({"APP_ENV": "production", "SLACK_WEBHOOK_URL": hook})

    assert "sEcReT" not in repr(config.load({"SLACK_WEBHOOK_URL": hook}))
