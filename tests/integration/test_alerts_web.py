"""The alerts where operators look (/ops/alerts, the Operators page, /metrics) and an
organization's Slack webhook on its settings page: real PostgreSQL, the app's own
routes, alerts written by a real monitor round (no Slack configured: recorded only)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tasks.core import config, db
from tasks.ops import monitor
from tests.integration.test_ops_web import TOKEN, client, scrape, value
from tests.support.web import csrf_token, make_app

HOOK = "https://hooks.slack.com/services/T0001/B0001/sEcReTsEcReTsEcReT"


def breaker_alert(env: dict[str, str], conn: db.Conn, *, resolve: bool = False) -> None:
    """A breaker opens (and closes again if ``resolve``), seen by a monitor round."""
    m = monitor.Monitor(config.load(env | {"ALERT_MIN_INTERVAL": "0"}), name="web-test", grace=0)
    try:
        db.run(conn, "ensure_breakers", labels=["smtp"])
        error = "refused <img src=x onerror=alert(1)> `x`"  # a provider's reply, shown escaped
        db.one(conn, "breaker_failure", label="smtp", trial=None, threshold=1, cooldown=60, error=error)
        m.round()
        if resolve:
            conn.execute("UPDATE transport_breakers SET state = 'closed', failures = 0 WHERE label = 'smtp'")
            m.round()
    finally:
        m.close()


def test_ops_alerts_lists_open_and_resolved_behind_the_ops_token(env: dict[str, str], conn: db.Conn) -> None:
    breaker_alert(env, conn, resolve=True)
    breaker_alert(env, conn)
    web = client(env, OPS_TOKEN=TOKEN)

    assert web.get("/ops/alerts").status_code == 401
    data = web.get("/ops/alerts", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()

    assert {a["key"] for a in data["open"]} == {"no_worker", "breaker:smtp"}
    opened = next(a for a in data["open"] if a["key"] == "breaker:smtp")
    assert opened["state"] == "raised" and opened["since"] and "refused" in opened["summary"] and opened["action"]
    assert [a["key"] for a in data["resolved"]] == ["breaker:smtp"]
    assert data["resolved"][0]["resolved_at"]


def test_metrics_export_the_alerts(env: dict[str, str], conn: db.Conn) -> None:
    breaker_alert(env, conn)

    samples = scrape(client(env))

    assert value(samples, "reachdbox_alerts_open", kind="breaker", state="raised") == 1
    assert value(samples, "reachdbox_alerts_open", kind="no_worker", state="raised") == 1
    assert value(samples, "reachdbox_alerts_open", kind="queue_lag", state="raised") == 0
    assert value(samples, "reachdbox_alerts_raised_24h", kind="breaker") == 1


@pytest.fixture
def operator_app(web_env: dict[str, str]) -> Iterator[Flask]:
    app = make_app(web_env | {"OPERATOR_EMAILS": "ops@example.com"})
    yield app
    app.extensions["reachdbox"].close()


def test_the_operators_page_shows_open_and_recently_resolved_alerts(
    operator_app: Flask, sign_in: Callable[..., Any], env: dict[str, str], conn: db.Conn
) -> None:
    breaker_alert(env, conn, resolve=True)
    breaker_alert(env, conn)
    web = operator_app.test_client()
    sign_in(web, "ops@example.com")

    page = web.get("/operators").get_data(as_text=True)

    alerts = page[page.index('id="alerts"') : page.index("</section>", page.index('id="alerts"'))]
    assert 'data-alert="no_worker" data-state="raised"' in alerts and "No worker is alive" in alerts
    assert "<code>python -m tasks worker</code>" in alerts
    assert 'data-alert="breaker:smtp" data-state="resolved"' in alerts
    assert 'data-alert="breaker:smtp" data-state="raised"' in alerts
    assert "<img" not in alerts and "refused &lt;img src=x onerror=alert(1)&gt; <code>x</code>" in alerts


def settings_page(web: FlaskClient) -> str:
    return web.get("/org/settings").get_data(as_text=True)


def test_an_admin_sets_the_organizations_slack_webhook_shown_masked_never_whole(
    app: Flask, client: FlaskClient, sign_in: Callable[..., Any], conn: db.Conn
) -> None:
    sign_in(client, "alice@example.com")
    token = csrf_token(client, "/org/settings")

    saved = client.post("/org/settings/slack", data={"csrf_token": token, "slack_webhook": HOOK})
    page = settings_page(client)

    assert saved.status_code == 302
    assert "https://hooks.slack.com/services/T0001/B0001/****" in page and "sEcReT" not in page
    row = conn.execute("SELECT slack_webhook_secret, slack_webhook_masked FROM org_settings").fetchone()
    assert row is not None and "sEcReT" not in row["slack_webhook_secret"]
    audit = client.get("/org/audit").get_data(as_text=True)
    assert "settings.slack_webhook" in audit and "sEcReT" not in audit

    refused = client.post("/org/settings/slack", data={"csrf_token": token, "slack_webhook": "ftp://example.com/x"})
    assert refused.status_code == 422 and 'data-field="slack_webhook"' in refused.get_data(as_text=True)
    assert "T0001/B0001/****" in settings_page(client)  # nothing changed

    client.post("/org/settings/slack", data={"csrf_token": token, "slack_webhook": ""})
    assert conn.execute("SELECT slack_webhook_secret FROM org_settings").fetchone() == {"slack_webhook_secret": None}


def test_in_production_only_a_slack_incoming_webhook_is_accepted(env: dict[str, str]) -> None:
    from tasks.core import errors
    from tasks.domain import org_settings

    production = config.load(env | {"APP_ENV": "production", "SECRET_KEYS": ""})
    for url in (
        "http://hooks.slack.com/services/T/B/x",
        "https://127.0.0.1/services/T/B/x",
        "https://evil.example/a/b/c",
    ):
        with pytest.raises(errors.ValidationError, match="slack_webhook"):
            org_settings.check_slack_webhook(production, url)
    assert org_settings.check_slack_webhook(production, HOOK) == HOOK


def test_the_web_role_cannot_read_alerts_only_the_operators_connection_can(conn: db.Conn) -> None:
    import psycopg

    with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
        conn.execute("SET LOCAL ROLE reach_web")
        conn.execute("SELECT * FROM alerts")
