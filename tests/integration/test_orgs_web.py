"""Organizations in the dashboard and the API: a shared outbox with a "mine" filter, live status
for every member, the members page, and the dev login's address (to accept an invitation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from tasks.core import db
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, listing, orgs, tokens
from tasks.domain.models import User
from tests.support.web import csrf_token, make_app


def test_members_share_the_outbox_and_mine_narrows_it_to_their_own(
    app: Flask, conn: Conn, settings: Settings, make_draft: Callable[..., Any], sign_in: Callable[..., User]
) -> None:
    alice_client, ben_client = app.test_client(), app.test_client()
    alice = sign_in(alice_client, "alice@example.com")
    ben = sign_in(ben_client, "ben@example.com")
    org_id = orgs.personal_org_id(conn, alice.id)
    orgs.add_member(conn, org_id, ben, orgs.Role.MEMBER)
    ben_client.post("/orgs/switch", data={"csrf_token": csrf_token(ben_client), "org_id": org_id})
    emails.schedule(conn, owner=alice, draft=make_draft(subject="From Alice"), settings=settings, org_id=org_id)
    emails.schedule(conn, owner=ben, draft=make_draft(subject="From Ben"), settings=settings, org_id=org_id)
    emails.schedule(conn, owner=ben, draft=make_draft(subject="Ben alone"), settings=settings)  # his own org
    _token, secret = tokens.create(conn, ben, "ci", org_id=org_id)
    bearer = {"Authorization": f"Bearer {secret}"}

    everyone = ben_client.get("/").get_data(as_text=True)
    mine = ben_client.get("/?mine=1").get_data(as_text=True)
    api_all = [e["subject"] for e in app.test_client().get("/api/v1/emails", headers=bearer).get_json()["emails"]]
    api_mine = app.test_client().get("/api/v1/emails?mine=true", headers=bearer).get_json()["emails"]
    bad = app.test_client().get("/api/v1/emails?mine=perhaps", headers=bearer)

    assert "From Alice" in everyone and "From Ben" in everyone and "Ben alone" not in everyone
    assert "From Alice" not in mine and "From Ben" in mine
    assert sorted(api_all) == ["From Alice", "From Ben"]
    assert [e["subject"] for e in api_mine] == ["From Ben"]
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "mine"


def test_the_members_page_lists_roles_and_shows_admins_the_invite_form(
    app: Flask, conn: Conn, sign_in: Callable[..., User]
) -> None:
    owner_client, viewer_client = app.test_client(), app.test_client()
    owner = sign_in(owner_client, "alice@example.com", name="Alice")
    viewer = sign_in(viewer_client, "vic@example.com", name="Vic")
    org_id = orgs.personal_org_id(conn, owner.id)
    orgs.add_member(conn, org_id, viewer, orgs.Role.VIEWER)
    viewer_client.post("/orgs/switch", data={"csrf_token": csrf_token(viewer_client), "org_id": org_id})

    as_owner = owner_client.get("/members").get_data(as_text=True)
    as_viewer = viewer_client.get("/members").get_data(as_text=True)

    assert "vic@example.com" in as_owner and 'id="invite-form"' in as_owner
    assert "alice@example.com" in as_viewer and 'id="invite-form"' not in as_viewer
    assert '<strong id="my-role">viewer</strong>' in as_viewer


def test_the_dev_login_signs_in_with_the_address_given(web_env: dict[str, str], conn: Conn) -> None:
    """Development only: how an invitation sent to another address is accepted without Google."""
    app = make_app({k: v for k, v in web_env.items() if not k.startswith("GOOGLE_OAUTH")})
    client = app.test_client()

    response = client.post(
        "/auth/dev", data={"csrf_token": csrf_token(client, "/auth/login"), "email": "carol@example.com"}
    )

    assert response.status_code == 302
    assert "carol@example.com" in client.get("/").get_data(as_text=True)


def test_the_outbox_list_reads_its_page_not_every_email_of_the_organization(conn: Conn) -> None:
    """A team's outbox grows: the list's first page must cost the same at 3,000 emails as at 30."""
    user = emails.ensure_user(conn, email="alice@example.com")
    org_id = orgs.personal_org_id(conn, user.id)
    conn.execute(
        """INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                               message_id, created_at)
           SELECT %(o)s, %(u)s, 'f@example.com', ARRAY['t@example.com'], 's' || n, 'b', now(), now(),
                  '<list-' || n || '@x>', now() - n * interval '1 second'
             FROM generate_series(1, 3000) AS n""",
        {"o": org_id, "u": user.id},
    )
    conn.execute("ANALYZE emails")
    params = {
        "any_org": False,
        "org_id": org_id,
        "mine_only": False,
        "owner_id": user.id,
        "statuses": list(listing.statuses_for("all")),
        "before_created": None,
        "before_id": None,
        "limit": 26,
    }
    conn.execute("SET ROLE reach_web")
    db.run(conn, "set_org", org_id=str(org_id))

    row = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + db.queries["list_items"], params).fetchone()

    assert row is not None
    plan = row["QUERY PLAN"][0]["Plan"]
    scans = [n for n in _nodes(plan) if n.get("Relation Name") == "emails" and "Scan" in n["Node Type"]]
    read = sum(n["Actual Rows"] * n["Actual Loops"] for n in scans)
    assert scans and read <= 26, scans


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", []) for n in _nodes(child))]
