"""The audit log is append-only, and every per-organization table is held to its organization
by PostgreSQL's row-level security; stored provider secrets rotate to a new key."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet

from tasks.core import config, crypto
from tasks.core.db import Conn
from tasks.domain import audit, emails, models, org_settings, orgs, tokens
from tests.support.procs import run_cli


def new_org(conn: Conn, name: str) -> int:
    found = conn.execute("INSERT INTO organizations (name) VALUES (%s) RETURNING id", (name,)).fetchone()
    assert found is not None
    return int(found["id"])


def test_lines_can_be_added_never_changed_or_removed(conn: Conn) -> None:
    org_id = new_org(conn, "Acme")
    audit.record(conn, org_id, None, "settings.identity", "sending identity", {"from_address": "a@acme.example"})

    for statement in ("UPDATE org_audit SET target = 'x'", "DELETE FROM org_audit", "TRUNCATE org_audit"):
        with pytest.raises(psycopg.errors.CheckViolation, match="append-only"):
            conn.execute(statement)
    (entry,) = audit.entries(conn, org_id)
    assert (entry.action, entry.target, entry.detail) == (
        "settings.identity",
        "sending identity",
        {"from_address": "a@acme.example"},
    )


def test_deleting_the_organization_takes_its_settings_transports_and_log_with_it(
    conn: Conn, settings: config.Settings
) -> None:
    org_id, kept = new_org(conn, "Gone"), new_org(conn, "Kept")
    for each in (org_id, kept):
        org_settings.set_quota(conn, each, None, 5)
        org_settings.add_transport(
            conn, settings, each, None, label="own", url="smtp://u:pw@127.0.0.1:2525", rate_limit=""
        )

    orgs.delete(conn, None, org_id)

    for table in ("org_settings", "org_transports", "org_audit"):
        left = conn.execute(f"SELECT DISTINCT org_id FROM {table}").fetchall()  # noqa: S608  (fixed names)
        assert left == [{"org_id": kept}], table


def test_the_web_role_sees_only_its_organizations_settings_transports_and_log(
    conn: Conn, settings: config.Settings
) -> None:
    mine, theirs = new_org(conn, "Mine"), new_org(conn, "Theirs")
    for org_id in (mine, theirs):
        org_settings.set_quota(conn, org_id, None, 10)
        org_settings.add_transport(
            conn, settings, org_id, None, label="own", url="smtp://u:pw@127.0.0.1:2525", rate_limit=""
        )
    with conn.transaction():
        conn.execute("SET LOCAL ROLE reach_web")
        conn.execute("SELECT set_config('app.org_id', %s, true)", (str(mine),))
        # Deliberately unscoped: the policies alone answer.
        seen = {
            table: {r["org_id"] for r in conn.execute(f"SELECT org_id FROM {table}")}  # noqa: S608  (fixed names)
            for table in ("org_settings", "org_transports", "org_audit")
        }
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO org_audit (org_id, action) VALUES (%s, 'forged')", (theirs,))
    assert seen == {"org_settings": {mine}, "org_transports": {mine}, "org_audit": {mine}}


def test_keys_rotate_re_encrypts_every_secret_with_the_first_key(conn: Conn, env: dict[str, str]) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = config.load(env | {"SECRET_KEYS": old})
    org_id = new_org(conn, "Rotating")
    org_settings.add_transport(
        conn, before, org_id, None, label="own", url="smtp://u:pw-123@127.0.0.1:2525", rate_limit=""
    )
    hook = "https://hooks.slack.com/services/T1/B1/sEcReT"
    org_settings.set_slack_webhook(conn, before, org_id, None, hook)

    done = run_cli(env | {"SECRET_KEYS": f"{new},{old}"}, "keys", "rotate")

    assert done.returncode == 0, done.stderr
    assert "re-encrypted 2 stored secret" in done.stdout
    token = conn.execute("SELECT url_secret FROM org_transports").fetchone()
    assert token is not None
    only_new = crypto.Box(config.load(env | {"SECRET_KEYS": new}))
    assert only_new.decrypt(token["url_secret"].encode()) == "smtp://u:pw-123@127.0.0.1:2525"
    slack_token = conn.execute("SELECT slack_webhook_secret FROM org_settings").fetchone()
    assert slack_token is not None and only_new.decrypt(slack_token["slack_webhook_secret"].encode()) == hook
    # With the old key gone before the rotation, nothing is half rotated and the command says why.
    refused = run_cli(env | {"SECRET_KEYS": Fernet.generate_key().decode()}, "keys", "rotate")
    assert refused.returncode == 1 and "cannot be decrypted" in refused.stderr
    assert conn.execute("SELECT url_secret FROM org_transports").fetchone() == token


def test_members_tokens_and_emails_changes_are_audited_with_who_did_them(
    conn: Conn, settings: config.Settings, make_draft: Any
) -> None:
    alice = emails.ensure_user(conn, email="alice@example.com", name="Alice")
    bob = emails.ensure_user(conn, email="bob@example.com", name="Bob")
    org_id = orgs.personal_org_id(conn, alice.id)
    actor = orgs.membership(conn, org_id, alice.id)
    assert actor is not None
    orgs.add_member(conn, org_id, bob, orgs.Role.MEMBER)
    orgs.change_role(conn, actor, org_id, bob.id, orgs.Role.VIEWER)
    orgs.invite(conn, actor, "carol@example.com", orgs.Role.MEMBER)
    token, _ = tokens.create(conn, alice, "ci", org_id=org_id)
    tokens.revoke(conn, org_id, alice, token.id)
    scope = models.in_org(org_id, alice.id)
    email, _ = emails.schedule(conn, owner=alice, draft=make_draft(), settings=settings, org_id=org_id)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    emails.reschedule(conn, scope, email.id, send_at=later.isoformat(), settings=settings)
    emails.cancel(conn, scope, email.id)
    orgs.remove_member(conn, actor, org_id, bob.id)

    lines = [(e.action, e.actor_email, e.target) for e in reversed(audit.entries(conn, org_id))]
    assert lines == [
        ("member.add", None, "bob@example.com"),
        ("member.role", "alice@example.com", "bob@example.com"),
        ("member.invite", "alice@example.com", "carol@example.com"),
        ("token.create", "alice@example.com", "alice@example.com"),
        ("token.revoke", "alice@example.com", f"token {token.id}"),
        ("email.reschedule", "alice@example.com", str(email.id)),
        ("email.cancel", "alice@example.com", str(email.id)),
        ("member.remove", "alice@example.com", "bob@example.com"),
    ]


def test_the_cli_sets_a_quota_and_suspends_with_an_audit_line(conn: Conn, env: dict[str, str]) -> None:
    org_id = new_org(conn, "Acme")

    assert run_cli(env, "org", "quota", str(org_id), "500").returncode == 0
    refused = run_cli(env, "org", "quota", str(org_id), "lots")
    assert refused.returncode == 2 and "daily_quota" in refused.stderr
    assert run_cli(env, "org", "suspend", str(org_id), "--reason", "unpaid").returncode == 0

    assert [(e.action, e.actor_id) for e in reversed(audit.entries(conn, org_id))] == [
        ("settings.daily_quota", None),
        ("org.suspend", None),
    ]
    assert conn.execute("SELECT daily_quota FROM org_settings WHERE org_id = %s", (org_id,)).fetchone() == {
        "daily_quota": 500
    }
