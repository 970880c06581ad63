"""The operators' commands on organizations: `org create|list|add-member|remove-member|suspend|resume`
and `token create --org --scope`, as real processes."""

from __future__ import annotations

import json

from tasks.core import db
from tasks.core.db import Conn
from tasks.domain import orgs, tokens
from tests.support.procs import run_cli


def _members(conn: Conn, org_id: int) -> dict[str, str]:
    rows = conn.execute(
        "SELECT u.email, m.role FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.org_id = %s", (org_id,)
    ).fetchall()
    return {r["email"]: r["role"] for r in rows}


def test_an_operator_creates_an_organization_and_manages_its_members(env: dict[str, str], conn: Conn) -> None:
    created = run_cli(env, "org", "create", "Support team", "--owner", "lead@example.com")
    org_id = int(created.stdout.split()[1])
    added = run_cli(env, "org", "add-member", "Support team", "agent@example.com", "--role", "member")
    promoted = run_cli(env, "org", "add-member", str(org_id), "agent@example.com", "--role", "admin")
    listed = run_cli(env, "org", "list", "--json")

    assert created.returncode == 0, created.stderr
    assert added.returncode == 0 and "added to 'Support team' as member" in added.stdout
    assert promoted.returncode == 0 and "now admin" in promoted.stdout
    assert _members(conn, org_id) == {"lead@example.com": "owner", "agent@example.com": "admin"}
    row = next(r for r in json.loads(listed.stdout) if r["id"] == org_id)
    assert (row["members"], row["owners"], row["emails"]) == (2, "lead@example.com", 0)

    removed = run_cli(env, "org", "remove-member", "Support team", "agent@example.com")
    last = run_cli(env, "org", "remove-member", "Support team", "lead@example.com")
    stranger = run_cli(env, "org", "remove-member", "Support team", "nobody@example.com")

    assert removed.returncode == 0
    assert last.returncode == 2 and "last owner cannot leave" in last.stderr
    assert stranger.returncode == 2 and "no user" in stranger.stderr
    assert _members(conn, org_id) == {"lead@example.com": "owner"}


def test_bad_input_is_refused_with_exit_code_2(env: dict[str, str], conn: Conn) -> None:
    run_cli(env, "org", "create", "Twin", "--owner", "a@example.com")
    run_cli(env, "org", "create", "Twin", "--owner", "b@example.com")

    answers = [
        run_cli(env, "org", "create", "", "--owner", "a@example.com"),
        run_cli(env, "org", "add-member", "Twin", "c@example.com", "--role", "member"),  # two are named so
        run_cli(env, "org", "add-member", "99999", "c@example.com", "--role", "member"),
        run_cli(env, "org", "add-member", "1", "c@example.com", "--role", "king"),
    ]

    assert [a.returncode for a in answers] == [2, 2, 1, 2]
    assert "several organizations are named 'Twin'" in answers[1].stderr
    assert "no organization" in answers[2].stderr


def test_suspend_and_resume_record_when_and_why(env: dict[str, str], conn: Conn) -> None:
    created = run_cli(env, "org", "create", "Acme", "--owner", "a@example.com")
    org_id = int(created.stdout.split()[1])

    suspended = run_cli(env, "org", "suspend", "Acme", "--reason", "unpaid invoice")
    row = db.one(conn, "get_org", id=org_id)
    resumed = run_cli(env, "org", "resume", str(org_id))

    assert suspended.returncode == 0 and "unpaid invoice" in suspended.stdout
    assert row is not None and row["suspended_at"] is not None and row["suspended_reason"] == "unpaid invoice"
    assert resumed.returncode == 0
    assert db.one(conn, "get_org", id=org_id)["suspended_at"] is None


def test_a_token_is_created_for_one_user_in_one_organization_with_its_scopes(env: dict[str, str], conn: Conn) -> None:
    created = run_cli(env, "org", "create", "Acme", "--owner", "a@example.com")
    org_id = int(created.stdout.split()[1])
    run_cli(env, "org", "add-member", "Acme", "v@example.com", "--role", "viewer")

    token = run_cli(env, "token", "create", "--user", "a@example.com", "--org", "Acme", "--scope", "send,read")
    viewer = run_cli(env, "token", "create", "--user", "v@example.com", "--org", "Acme", "--scope", "read")
    too_wide = run_cli(env, "token", "create", "--user", "v@example.com", "--org", "Acme", "--scope", "send")
    unknown = run_cli(env, "token", "create", "--user", "a@example.com", "--org", "Acme", "--scope", "root")
    outsider = run_cli(env, "token", "create", "--user", "z@example.com", "--org", "Acme")

    assert token.returncode == 0, token.stderr
    identity = tokens.authenticate(conn, token.stdout.strip())
    assert identity is not None and (identity.org_id, identity.scopes) == (org_id, ("send", "read"))
    assert viewer.returncode == 0
    assert too_wide.returncode == 2 and "cannot have the scope 'send'" in too_wide.stderr
    assert unknown.returncode == 2 and "unknown scope 'root'" in unknown.stderr
    assert outsider.returncode == 2 and "no user 'z@example.com'" in outsider.stderr
    assert db.one(conn, "user_by_email", email="z@example.com") is None  # nothing half stored
    # Without --org: the user's first organization (their personal one).
    plain = run_cli(env, "token", "create", "--user", "v@example.com")
    v_id = db.one(conn, "user_by_email", email="v@example.com")["id"]
    plain_identity = tokens.authenticate(conn, plain.stdout.strip())
    assert plain_identity is not None and plain_identity.org_id == orgs.personal_org_id(conn, v_id) != org_id
