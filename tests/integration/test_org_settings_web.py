"""The organization's settings pages, its audit log, and organizations on the Operators page."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tasks.core import db
from tasks.domain import emails, orgs, tokens
from tests.support.web import csrf_token, make_app

PASSWORD = "pa55-w0rd-xyz"


@pytest.fixture
def org_app(web_env: dict[str, str]) -> Iterator[Flask]:
    app = make_app(web_env | {"OPERATOR_EMAILS": "ops@example.com", "ORG_SENDING_DOMAINS": "acme.example"})
    yield app
    app.extensions["reachdbox"].close()


def post(client: FlaskClient, path: str, **form: str) -> Any:
    return client.post(path, data=form | {"csrf_token": csrf_token(client, "/org/settings")})


def org_of(database_url: str, email: str) -> int:
    with db.connect(database_url) as conn:
        user = db.one(conn, "user_by_email", email=email)
        assert user is not None
        return orgs.personal_org_id(conn, user["id"])


def test_an_admin_sets_the_identity_and_an_address_outside_the_allowed_domains_is_422(
    org_app: Flask, sign_in: Callable[..., Any], database_url: str
) -> None:
    client = org_app.test_client()
    sign_in(client, "alice@example.com")
    assert 'href="/org/settings"' in client.get("/members").get_data(as_text=True)

    refused = post(client, "/org/settings/identity", from_name="Acme", from_address="boss@evil.example")
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert 'data-field="from_address"' in page and "outside the domains this deployment allows" in page
    saved = post(client, "/org/settings/identity", from_name="Acme", from_address="help@acme.example")
    assert saved.status_code == 302

    org_id = org_of(database_url, "alice@example.com")
    with db.connect(database_url) as conn:
        stored = conn.execute("SELECT from_name, from_address FROM org_settings WHERE org_id = %s", (org_id,))
        assert stored.fetchone() == {"from_name": "Acme", "from_address": "help@acme.example"}
        lines = conn.execute("SELECT action, actor_id FROM org_audit WHERE org_id = %s", (org_id,)).fetchall()
    assert [line["action"] for line in lines] == ["settings.identity"]  # the refused one stored nothing


def test_a_transport_is_shown_masked_and_its_password_is_nowhere_on_the_pages(
    org_app: Flask, sign_in: Callable[..., Any]
) -> None:
    client = org_app.test_client()
    sign_in(client, "alice@example.com")

    added = post(
        client, "/org/settings/providers", label="own", url=f"smtp://me:{PASSWORD}@127.0.0.1:2525", rate_limit="5/s"
    )
    assert added.status_code == 302
    settings_page = client.get("/org/settings").get_data(as_text=True)
    audit_page = client.get("/org/audit").get_data(as_text=True)
    assert "smtp://me:****@127.0.0.1:2525" in settings_page and "5/second" in settings_page
    assert PASSWORD not in settings_page and PASSWORD not in audit_page
    assert "provider.add" in audit_page

    bad = post(client, "/org/settings/providers", label="two", url=f"jsonl:///tmp/{PASSWORD}.jsonl")
    assert bad.status_code == 422 and 'data-field="url"' in bad.get_data(as_text=True)
    assert post(client, "/org/settings/providers/remove", label="own").status_code == 302
    assert "smtp://me:****" not in client.get("/org/settings").get_data(as_text=True)


def test_members_and_viewers_are_refused_the_settings_with_the_reason(
    org_app: Flask, sign_in: Callable[..., Any], database_url: str
) -> None:
    client = org_app.test_client()
    alice = sign_in(client, "alice@example.com")
    org_id = org_of(database_url, "alice@example.com")
    with db.connect(database_url) as conn:
        bob = emails.ensure_user(conn, email="bob@example.com", name="Bob")
        orgs.add_member(conn, org_id, bob, orgs.Role.OWNER)
        conn.execute("UPDATE memberships SET role = 'member' WHERE org_id = %s AND user_id = %s", (org_id, alice.id))

    assert 'href="/org/settings"' not in client.get("/members").get_data(as_text=True)
    for path in ("/org/settings", "/org/audit"):
        refused = client.get(path)
        assert refused.status_code == 403
        assert "role" in refused.get_data(as_text=True)
    token = csrf_token(client, "/")
    assert client.post("/org/settings/identity", data={"csrf_token": token, "from_name": "x"}).status_code == 403


def test_operators_see_every_organization_and_suspend_and_resume_one(
    org_app: Flask, sign_in: Callable[..., Any], database_url: str
) -> None:
    member = org_app.test_client()
    sign_in(member, "alice@example.com")
    org_id = org_of(database_url, "alice@example.com")
    ops = org_app.test_client()
    sign_in(ops, "ops@example.com")

    page = ops.get("/operators").get_data(as_text=True)
    assert f'data-org="{org_id}"' in page and f'data-org="{org_of(database_url, "ops@example.com")}"' in page
    token = csrf_token(ops, "/operators")
    assert (
        ops.post(
            "/operators/orgs/quota", data={"csrf_token": token, "org_id": org_id, "daily_quota": "250"}
        ).status_code
        == 302
    )
    done = ops.post("/operators/orgs/suspend", data={"csrf_token": token, "org_id": org_id, "reason": "unpaid"})
    assert done.status_code == 302
    page = ops.get("/operators").get_data(as_text=True)
    assert "unpaid" in page and "/ 250 used" in page
    own_page = member.get("/org/settings").get_data(as_text=True)
    assert "suspended" in own_page and "250 emails a UTC day" in own_page and "0 used today" in own_page
    # Not an operator: the actions do not exist.
    assert (
        member.post("/operators/orgs/resume", data={"csrf_token": csrf_token(member), "org_id": org_id}).status_code
        == 404
    )
    assert ops.post("/operators/orgs/resume", data={"csrf_token": token, "org_id": org_id}).status_code == 302

    with db.connect(database_url) as conn:
        lines = conn.execute("SELECT action FROM org_audit WHERE org_id = %s ORDER BY id", (org_id,)).fetchall()
        assert conn.execute("SELECT suspended_at FROM organizations WHERE id = %s", (org_id,)).fetchone() == {
            "suspended_at": None
        }
    assert [line["action"] for line in lines] == ["settings.daily_quota", "org.suspend", "org.resume"]


def test_the_api_changes_the_settings_for_admin_tokens_only_and_never_answers_a_password(
    org_app: Flask, database_url: str
) -> None:
    client = org_app.test_client()
    with db.connect(database_url) as conn:
        alice = emails.ensure_user(conn, email="alice@example.com", name="Alice")
        admin = tokens.create(conn, alice, "admin", scopes=("send", "read", "admin"))[1]
        sender = tokens.create(conn, alice, "sender", scopes=("send", "read"))[1]

    def call(method: str, path: str, token: str, body: Any = None) -> Any:
        return client.open(f"/api/v1{path}", method=method, json=body, headers={"Authorization": f"Bearer {token}"})

    assert call("GET", "/org/settings", sender).status_code == 403
    assert call("PATCH", "/org/settings", sender, {"from_name": "x"}).status_code == 403
    refused = call(
        "PATCH", "/org/settings", admin, {"from_address": "a@elsewhere.example", "providers_mode": "instead"}
    )
    assert refused.status_code == 422 and refused.get_json()["error"]["field"] == "from_address"
    assert call("GET", "/org/settings", admin).get_json()["providers_mode"] == "before"  # nothing half stored
    changed = call("PATCH", "/org/settings", admin, {"from_address": "news@acme.example", "providers_mode": "instead"})
    assert changed.status_code == 200
    assert changed.get_json()["identity"]["from_address"] == "news@acme.example"
    assert changed.get_json()["providers_mode"] == "instead"
    added = call("POST", "/org/providers", admin, {"label": "own", "url": f"smtp://me:{PASSWORD}@127.0.0.1:2525"})
    assert added.status_code == 200 and PASSWORD not in added.get_data(as_text=True)
    log = call("GET", "/org/audit", admin)
    assert PASSWORD not in log.get_data(as_text=True)
    assert [e["action"] for e in log.get_json()["entries"]][:3] == [
        "provider.add",
        "settings.providers_mode",
        "settings.identity",
    ]


def test_an_owner_deletes_an_organization_with_settings_transports_and_a_log(
    org_app: Flask, sign_in: Callable[..., Any], database_url: str
) -> None:
    """As the web role, under row-level security: the append-only log still goes with its organization."""
    client = org_app.test_client()
    alice = sign_in(client, "alice@example.com")
    with db.connect(database_url) as conn:
        team = orgs.create(conn, "Team", alice)
    client.post("/orgs/switch", data={"org_id": team.id, "csrf_token": csrf_token(client)})
    assert post(client, "/org/settings/identity", from_name="Team", from_address="team@acme.example").status_code == 302
    url = f"smtp://me:{PASSWORD}@127.0.0.1:2525"
    assert post(client, "/org/settings/providers", label="own", url=url).status_code == 302

    done = client.post("/orgs/delete", data={"confirm": "Team", "csrf_token": csrf_token(client)})

    assert done.status_code == 302
    with db.connect(database_url) as conn:
        for table in ("org_settings", "org_transports", "org_audit"):
            left = conn.execute(f"SELECT count(*) AS n FROM {table} WHERE org_id = %s", (team.id,))  # noqa: S608
            assert left.fetchone() == {"n": 0}, table
