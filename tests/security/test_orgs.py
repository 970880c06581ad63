"""The abuse suite, organizations: one organization with a user of each role, another
organization beside it (Bob's, tests/security/conftest.py).

- every state-changing route, for each role that may not use it: 403 with the reason,
  and nothing changes;
- invitation links replayed, expired, withdrawn, tampered with, or used by another address;
- a token after its user is removed from the organization (401), or demoted (403);
- the last owner can neither leave nor be demoted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain import audit, emails, orgs, recurrences, tokens
from tasks.domain.models import User
from tests.security.conftest import Owned, snapshot
from tests.security.test_routes import SAFE, routes, url
from tests.support.web import csrf_token
from webapp import orgs as webapp_orgs

Conn = Any
ROLES = [orgs.Role.VIEWER, orgs.Role.MEMBER, orgs.Role.ADMIN]
#: What each state-changing route needs, when it is given ids of the caller's own organization
#: (``<user_id>``: its owner). A new route must be added here, or this suite fails.
NEEDS: dict[str, orgs.Action | None] = {
    "dashboard.cancel": orgs.Action.SEND,
    "dashboard.send_now": orgs.Action.SEND,
    "dashboard.resend": orgs.Action.SEND,
    "dashboard.reschedule": orgs.Action.SEND,
    "batches.cancel": orgs.Action.SEND,
    "bulk.create": orgs.Action.SEND,
    "bulk.undo": orgs.Action.SEND,
    "api.create_bulk_action": orgs.Action.SEND,
    "api.undo_bulk_action": orgs.Action.SEND,
    "api.create_email": orgs.Action.SEND,
    "api.edit_email": orgs.Action.SEND,
    "api.cancel_email": orgs.Action.SEND,
    "api.send_email_now": orgs.Action.SEND,
    "api.create_batch": orgs.Action.SEND,
    "api.cancel_batch": orgs.Action.SEND,
    "recurring.pause": orgs.Action.SEND,
    "recurring.resume": orgs.Action.SEND,
    "recurring.delete": orgs.Action.SEND,
    "recurring.edit": orgs.Action.SEND,
    "api.create_recurrence": orgs.Action.SEND,
    "api.preview_recurrence": orgs.Action.SEND,
    "api.edit_recurrence": orgs.Action.SEND,
    "api.delete_recurrence": orgs.Action.SEND,
    "api.pause_recurrence": orgs.Action.SEND,
    "api.resume_recurrence": orgs.Action.SEND,
    "orgs.invite": orgs.Action.ADMIN,
    "org_settings.identity": orgs.Action.ADMIN,
    "org_settings.mode": orgs.Action.ADMIN,
    "org_settings.add_provider": orgs.Action.ADMIN,
    "org_settings.remove_provider": orgs.Action.ADMIN,
    "api.edit_org_settings": orgs.Action.ADMIN,
    "api.add_org_provider": orgs.Action.ADMIN,
    "webhooks.create": orgs.Action.ADMIN,
    "webhooks.edit": orgs.Action.ADMIN,
    "webhooks.rotate": orgs.Action.ADMIN,
    "webhooks.test": orgs.Action.ADMIN,
    "webhooks.delete": orgs.Action.ADMIN,
    "webhooks.redeliver": orgs.Action.ADMIN,
    "api.create_webhook": orgs.Action.ADMIN,
    "api.edit_webhook": orgs.Action.ADMIN,
    "api.delete_webhook": orgs.Action.ADMIN,
    "api.rotate_webhook_secret": orgs.Action.ADMIN,
    "api.test_webhook": orgs.Action.ADMIN,
    "api.redeliver_webhook": orgs.Action.ADMIN,
    "orgs.revoke_invitation": orgs.Action.ADMIN,
    "org_settings.slack": orgs.Action.ADMIN,
    # The suppression list: adding or importing is sending's side (members); removing an
    # address lets mail reach it again, an admin's decision (audited).
    "suppressions.add": orgs.Action.SEND,
    "suppressions.import_csv": orgs.Action.SEND,
    "suppressions.remove": orgs.Action.ADMIN,
    "api.add_suppression": orgs.Action.SEND,
    "api.import_suppressions": orgs.Action.SEND,
    "api.remove_suppression": orgs.Action.ADMIN,
    "orgs.delete": orgs.Action.OWNER,
    # The target is the owner: only owners manage owners.
    "orgs.change_role": orgs.Action.OWNER,
    "orgs.remove": orgs.Action.OWNER,
    # Anyone: their own tokens, their own session, switching among their own organizations,
    # and an invitation (judged by its address, test_invitation_*).
    "tokens.create": None,
    "tokens.revoke": None,
    "auth.logout": None,
    "auth.dev_login": None,
    "orgs.switch": None,
    "orgs.accept": None,
    # Each user's own saved searches.
    "search.save": None,
    "search.delete": None,
    # No sign-in at all: the providers' signed event feeds and a recipient's one-click
    # unsubscribe (tests/integration/test_feedback.py, test_suppression.py).
    "feedback.sendgrid": None,
    "feedback.ses": None,
    "feedback.webhook": None,
    "feedback.unsubscribe": None,
    # Operators only (404 for anyone else, whatever their role: test_org_settings_web.py).
    "org_ops.suspend": None,
    "org_ops.resume": None,
    "org_ops.quota": None,
    "devmail.check_links": None,
    "devmail.delete": None,
}


@dataclasses.dataclass
class Team:
    """Alice's organization: Alice (owner) and one signed-in client per other role."""

    owner: Owned
    users: dict[orgs.Role, User]
    clients: dict[orgs.Role, FlaskClient]
    secrets: dict[orgs.Role, str]


@pytest.fixture
def team(app: Flask, alice_client: FlaskClient, alices: Owned, conn: Conn, sign_in: Callable[..., User]) -> Team:
    users, clients, secrets = {}, {orgs.Role.OWNER: alice_client}, {orgs.Role.OWNER: alices.secret}
    for role in ROLES:
        client = app.test_client()
        user = sign_in(client, f"{role}@example.com", name=role.title())
        orgs.add_member(conn, alices.org_id, user, role)
        client.post("/orgs/switch", data={"org_id": alices.org_id, "csrf_token": csrf_token(client)})
        scopes = orgs.ROLE_SCOPES[role]
        secrets[role] = tokens.create(conn, user, role, org_id=alices.org_id, scopes=scopes)[1]
        users[role], clients[role] = user, client
    return Team(owner=alices, users=users, clients=clients, secrets=secrets)


def _call(client: FlaskClient, method: str, target: str, token: str, bearer: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {"X-CSRF-Token": token}
    kwargs: dict[str, Any] = {"headers": headers}
    if target.startswith("/api/"):
        kwargs["json"] = {"subject": "changed"} if method == "PATCH" else {}
    else:
        kwargs["data"] = {"csrf_token": token, "send_at": "2031-01-01T00:00:00Z", "role": "viewer", "email": "x@y.z"}
    return client.open(target, method=method, buffered=True, **kwargs)


def test_every_state_changing_route_is_classified(app: Flask) -> None:
    changing = {rule.endpoint for rule, method in routes(app) if method not in SAFE and rule.endpoint != "static"}
    assert changing - {"google.authorized"} == set(NEEDS)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_refused_what_it_may_not_do_with_a_reason(
    app: Flask, conn: Conn, team: Team, role: orgs.Role
) -> None:
    """Session and token alike; the ids are the organization's own, so only the role stands in the way."""
    client = team.clients[role]
    token = csrf_token(client)
    ids = team.owner.ids()
    before = snapshot(conn)
    refused = {}
    for rule, method in routes(app):
        needed = NEEDS.get(rule.endpoint)
        if method in SAFE or needed is None or orgs.Membership(org_id=0, org_name="", user_id=0, role=role).may(needed):
            continue
        target = url(rule, ids)
        response = _call(client, method, target, token)
        refused[f"session {method} {rule.rule}"] = response.status_code, response.get_json(silent=True)
        if target.startswith("/api/"):
            response = _call(app.test_client(), method, target, token, bearer=team.secrets[role])
            refused[f"token {method} {rule.rule}"] = response.status_code, response.get_json(silent=True)

    assert refused, role
    for route, (status, body) in refused.items():
        assert status == 403, (route, status)
        if body is not None:
            assert body["error"]["code"] == "forbidden" and f"role here is {role}" in body["error"]["message"]
    assert snapshot(conn) == before


def test_every_role_reads_the_whole_organizations_outbox(team: Team) -> None:
    for role in ROLES:
        page = team.clients[role].get("/?view=all").get_data(as_text=True)
        assert "ALICE subject" in page and "ALICE batch" in page or "ALICE list" in page, role
        assert team.clients[role].get(f"/emails/{team.owner.email}").status_code == 200, role
        assert "ALICE recurring" in team.clients[role].get("/recurring/").get_data(as_text=True), role
        assert team.clients[role].get(f"/recurring/{team.owner.recurrence}").status_code == 200, role
        listed = team.clients[role].get("/api/v1/recurrences").get_json()["recurrences"]
        assert [r["id"] for r in listed] == [team.owner.recurrence], role


def test_a_viewer_sees_no_recurrence_actions_and_a_member_pauses_anyones(conn: Conn, team: Team) -> None:
    viewer_page = team.clients[orgs.Role.VIEWER].get(f"/recurring/{team.owner.recurrence}").get_data(as_text=True)
    viewer_list = team.clients[orgs.Role.VIEWER].get("/recurring/").get_data(as_text=True)
    member = team.clients[orgs.Role.MEMBER]
    mine = member.get("/recurring/?mine=1").get_data(as_text=True)

    response = member.post(f"/recurring/{team.owner.recurrence}/pause", data={"csrf_token": csrf_token(member)})

    assert "/pause" not in viewer_page and "/delete" not in viewer_page and "data-open-compose" not in viewer_list
    assert "ALICE recurring" not in mine  # Mine: the member's own, none
    assert response.status_code == 302
    scope = orgs.personal_scope(conn, team.owner.user.id)
    assert recurrences.get(conn, scope, team.owner.recurrence).status == "paused"
    line = audit.entries(conn, team.owner.org_id)[0]
    assert (line.action, line.target, line.actor_id) == (
        "recurrence.pause",
        team.owner.recurrence,
        team.users[orgs.Role.MEMBER].id,
    )


def test_a_token_reads_and_changes_recurrences_within_its_scopes(app: Flask, conn: Conn, team: Team) -> None:
    member = team.users[orgs.Role.MEMBER]
    _token, read_only = tokens.create(conn, member, "ro", org_id=team.owner.org_id, scopes=["read"])
    api = app.test_client()
    new = {"to": ["bob@example.com"], "subject": "Hi", "body_text": "B", "cron": "0 9 * * *"}
    ro = {"Authorization": f"Bearer {read_only}"}
    rw = {"Authorization": f"Bearer {team.secrets[orgs.Role.MEMBER]}"}

    listed = api.get("/api/v1/recurrences", headers=ro)
    read = api.get(f"/api/v1/recurrences/{team.owner.recurrence}", headers=ro)
    refused = api.post("/api/v1/recurrences", json=new, headers=ro)
    paused = api.post(f"/api/v1/recurrences/{team.owner.recurrence}/pause", headers=ro)
    created = api.post("/api/v1/recurrences", json=new, headers=rw)

    assert listed.status_code == 200 and len(listed.get_json()["recurrences"]) == 1
    assert read.status_code == 200 and read.get_json()["subject"] == "ALICE recurring"
    for response in (refused, paused):
        assert response.status_code == 403 and "lacks the 'send' scope" in response.get_json()["error"]["message"]
    assert created.status_code == 201
    rec = recurrences.get(conn, orgs.personal_scope(conn, team.owner.user.id), created.get_json()["id"])
    assert (rec.org_id, rec.owner_id) == (team.owner.org_id, member.id)
    everyone = api.get("/api/v1/recurrences", headers=rw).get_json()["recurrences"]
    mine = api.get("/api/v1/recurrences?mine=true", headers=rw).get_json()["recurrences"]
    bad = api.get("/api/v1/recurrences?mine=perhaps", headers=rw)
    assert {r["id"] for r in everyone} == {team.owner.recurrence, str(rec.id)}
    assert [r["id"] for r in mine] == [str(rec.id)]
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "mine"


def test_a_viewer_sees_no_action_buttons_and_a_member_may_act_on_anyones_email(conn: Conn, team: Team) -> None:
    viewer_page = team.clients[orgs.Role.VIEWER].get(f"/emails/{team.owner.email}").get_data(as_text=True)
    member = team.clients[orgs.Role.MEMBER]

    response = member.post(f"/emails/{team.owner.email}/cancel", data={"csrf_token": csrf_token(member)})

    assert "/cancel" not in viewer_page and "data-open-compose" not in viewer_page
    assert response.status_code == 302
    assert emails.get(conn, orgs.personal_scope(conn, team.owner.user.id), team.owner.email).status == "cancelled"


def test_a_token_acts_within_its_scopes(app: Flask, conn: Conn, team: Team) -> None:
    member = team.users[orgs.Role.MEMBER]
    _token, read_only = tokens.create(conn, member, "ro", org_id=team.owner.org_id, scopes=["read"])
    api = app.test_client()
    new = {"to": ["bob@example.com"], "subject": "Hi", "body_text": "B", "send_now": True}

    listed = api.get("/api/v1/emails", headers={"Authorization": f"Bearer {read_only}"})
    refused = api.post("/api/v1/emails", json=new, headers={"Authorization": f"Bearer {read_only}"})
    sent = api.post("/api/v1/emails", json=new, headers={"Authorization": f"Bearer {team.secrets[orgs.Role.MEMBER]}"})

    assert listed.status_code == 200 and len(listed.get_json()["emails"]) == 3  # the organization's: 1 + a batch of 2
    assert refused.status_code == 403 and "lacks the 'send' scope" in refused.get_json()["error"]["message"]
    assert sent.status_code == 201


def test_a_token_stops_working_the_moment_its_user_leaves_the_organization(app: Flask, conn: Conn, team: Team) -> None:
    member = team.users[orgs.Role.MEMBER]
    bearer = {"Authorization": f"Bearer {team.secrets[orgs.Role.MEMBER]}"}
    api = app.test_client()
    assert api.get("/api/v1/emails", headers=bearer).status_code == 200
    admin = team.clients[orgs.Role.ADMIN]

    removed = admin.post(f"/members/{member.id}/remove", data={"csrf_token": csrf_token(admin, "/members")})
    after = api.get("/api/v1/emails", headers=bearer)

    assert removed.status_code == 302
    assert after.status_code == 401 and "left its organization" in after.get_json()["error"]["message"]
    assert team.clients[orgs.Role.MEMBER].get(f"/emails/{team.owner.email}").status_code in (403, 404)
    # Added back, the old token stays revoked.
    orgs.add_member(conn, team.owner.org_id, member, orgs.Role.MEMBER)
    assert api.get("/api/v1/emails", headers=bearer).status_code == 401


def test_a_token_follows_its_users_role(app: Flask, conn: Conn, team: Team) -> None:
    member = team.users[orgs.Role.MEMBER]
    orgs.change_role(conn, None, team.owner.org_id, member.id, orgs.Role.VIEWER)
    new = {"to": ["bob@example.com"], "subject": "Hi", "body_text": "B", "send_now": True}

    response = app.test_client().post(
        "/api/v1/emails", json=new, headers={"Authorization": f"Bearer {team.secrets[orgs.Role.MEMBER]}"}
    )

    assert response.status_code == 403 and "role here is viewer" in response.get_json()["error"]["message"]


def test_the_last_owner_can_neither_leave_nor_be_demoted(conn: Conn, team: Team, alice_client: FlaskClient) -> None:
    alice = team.owner.user
    token = csrf_token(alice_client, "/members")
    before = snapshot(conn)

    left = alice_client.post(f"/members/{alice.id}/remove", data={"csrf_token": token}, follow_redirects=True)
    demoted = alice_client.post(
        f"/members/{alice.id}/role", data={"csrf_token": token, "role": "admin"}, follow_redirects=True
    )

    assert "The last owner cannot leave" in left.get_data(as_text=True)
    assert "The last owner cannot be demoted" in demoted.get_data(as_text=True)
    assert snapshot(conn) == before
    # With a second owner, the first may go.
    admin = team.users[orgs.Role.ADMIN]
    alice_client.post(f"/members/{admin.id}/role", data={"csrf_token": token, "role": "owner"})
    alice_client.post(f"/members/{alice.id}/remove", data={"csrf_token": token})
    assert orgs.membership(conn, team.owner.org_id, alice.id) is None
    assert orgs.membership(conn, team.owner.org_id, admin.id).role == orgs.Role.OWNER


def test_an_admin_manages_members_but_not_owners(conn: Conn, team: Team) -> None:
    admin = team.clients[orgs.Role.ADMIN]
    token = csrf_token(admin, "/members")
    viewer = team.users[orgs.Role.VIEWER]

    promoted = admin.post(f"/members/{viewer.id}/role", data={"csrf_token": token, "role": "member"})
    crowned = admin.post(f"/members/{viewer.id}/role", data={"csrf_token": token, "role": "owner"})
    invited_owner = admin.post("/members/invite", data={"csrf_token": token, "email": "o@x.org", "role": "owner"})

    assert promoted.status_code == 302
    assert (crowned.status_code, invited_owner.status_code) == (403, 403)
    assert orgs.membership(conn, team.owner.org_id, viewer.id).role == orgs.Role.MEMBER


# ---- Invitations ----


def _invite(client: FlaskClient, email: str, role: str = "member") -> str:
    """Invite through the members page; return the link's path."""
    page = client.post(
        "/members/invite", data={"csrf_token": csrf_token(client, "/members"), "email": email, "role": role}
    ).get_data(as_text=True)
    start = page.index('<code id="invitation-link">') + len('<code id="invitation-link">')
    return urllib.parse.urlsplit(page[start : page.index("</code>", start)]).path


def test_an_invitation_is_accepted_once_by_signing_in_with_its_address(
    app: Flask, conn: Conn, team: Team, sign_in: Callable[..., User]
) -> None:
    link = _invite(team.clients[orgs.Role.ADMIN], "carol@example.com", "viewer")
    carol = app.test_client()
    visitor = carol.get(link)
    sign_in(carol, "carol@example.com", name="Carol")

    shown = carol.get(link)
    accepted = carol.post(link, data={"csrf_token": csrf_token(carol, link)})
    replayed = carol.post(link, data={"csrf_token": csrf_token(carol)})

    assert visitor.status_code == 302 and visitor.headers["Location"].startswith("/auth/login")
    assert shown.status_code == 200 and "as viewer" in shown.get_data(as_text=True)
    assert accepted.status_code == 302
    assert replayed.status_code == 410 and "already been used" in replayed.get_data(as_text=True)
    carol_user = User.from_row(db.one(conn, "user_by_email", email="carol@example.com") or {})
    assert orgs.membership(conn, team.owner.org_id, carol_user.id).role == orgs.Role.VIEWER
    assert "ALICE subject" in carol.get("/?view=all").get_data(as_text=True)  # now in Alice's organization


def test_an_invitation_used_by_another_address_is_refused(
    app: Flask, conn: Conn, team: Team, sign_in: Callable[..., User]
) -> None:
    link = _invite(team.clients[orgs.Role.ADMIN], "carol@example.com")
    mallory = app.test_client()
    sign_in(mallory, "mallory@example.com")
    before = snapshot(conn)

    shown = mallory.get(link)
    used = mallory.post(link, data={"csrf_token": csrf_token(mallory)})

    assert (shown.status_code, used.status_code) == (403, 403)
    assert "for another address" in used.get_data(as_text=True)
    assert snapshot(conn) == before


@pytest.mark.parametrize("spoil", ["expired", "withdrawn"])
def test_an_expired_or_withdrawn_invitation_is_refused(
    app: Flask, conn: Conn, team: Team, sign_in: Callable[..., User], spoil: str
) -> None:
    link = _invite(team.clients[orgs.Role.ADMIN], "carol@example.com")
    if spoil == "expired":
        # Eight days later (as the owner role: no web path moves it).
        conn.execute("UPDATE invitations SET expires_at = now() - interval '1 day' WHERE email = 'carol@example.com'")
    else:
        admin = team.clients[orgs.Role.ADMIN]
        row = conn.execute("SELECT id FROM invitations WHERE email = 'carol@example.com'").fetchone()
        admin.post(f"/members/invitations/{row['id']}/revoke", data={"csrf_token": csrf_token(admin, "/members")})
    carol = app.test_client()
    sign_in(carol, "carol@example.com")

    used = carol.post(link, data={"csrf_token": csrf_token(carol)})

    assert used.status_code == 410
    assert ("expired" if spoil == "expired" else "withdrawn") in used.get_data(as_text=True)
    carol_user = User.from_row(db.one(conn, "user_by_email", email="carol@example.com") or {})
    assert orgs.membership(conn, team.owner.org_id, carol_user.id) is None


def test_a_tampered_or_guessed_invitation_link_is_unknown(
    app: Flask, conn: Conn, team: Team, settings: Settings, sign_in: Callable[..., User]
) -> None:
    link = _invite(team.clients[orgs.Role.ADMIN], "carol@example.com")
    token = link.rsplit("/", 1)[1]
    row = conn.execute("SELECT * FROM invitations WHERE email = 'carol@example.com'").fetchone()
    invitation = orgs.Invitation.from_row(row | {"role": row["role"]})
    wrong_secret = webapp_orgs.sign(invitation, "not-the-secret", settings.secret_key)
    other_key = webapp_orgs.sign(invitation, "not-the-secret", "another-key-" + "x" * 32)
    carol = app.test_client()
    sign_in(carol, "carol@example.com")
    csrf = csrf_token(carol)

    answers = [
        carol.post(f"/invitations/{t}", data={"csrf_token": csrf}).status_code
        for t in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), wrong_secret, other_key, "x")
    ]

    assert answers == [404, 404, 404, 404]
    carol_user = User.from_row(db.one(conn, "user_by_email", email="carol@example.com") or {})
    assert orgs.membership(conn, team.owner.org_id, carol_user.id) is None


def test_invitations_expire_after_seven_days(conn: Conn, team: Team) -> None:
    _invite(team.clients[orgs.Role.ADMIN], "carol@example.com")
    row = conn.execute("SELECT expires_at - created_at AS valid FROM invitations WHERE email = 'carol@example.com'")
    assert row.fetchone() == {"valid": dt.timedelta(days=7)}


# ---- The switcher ----


def test_the_switcher_keeps_the_choice_in_the_session_and_refuses_other_organizations(
    conn: Conn, team: Team, bobs: Owned
) -> None:
    viewer = team.clients[orgs.Role.VIEWER]
    personal = orgs.personal_org_id(conn, team.users[orgs.Role.VIEWER].id)
    token = csrf_token(viewer)

    in_alices = viewer.get("/?view=all").get_data(as_text=True)
    to_bobs = viewer.post("/orgs/switch", data={"csrf_token": token, "org_id": bobs.org_id})
    still = viewer.get("/?view=all").get_data(as_text=True)
    to_own = viewer.post("/orgs/switch", data={"csrf_token": token, "org_id": personal})
    in_own = viewer.get("/?view=all").get_data(as_text=True)
    alices_email = viewer.get(f"/emails/{team.owner.email}")

    assert "ALICE subject" in in_alices and 'id="org-switch"' in in_alices
    assert to_bobs.status_code == 404 and "ALICE subject" in still
    assert to_own.status_code == 302 and "ALICE subject" not in in_own
    assert alices_email.status_code == 404  # another organization's now


def test_an_owner_deletes_the_organization_and_everything_in_it_and_nothing_else(
    conn: Conn, team: Team, bobs: Owned, alice_client: FlaskClient
) -> None:
    token = csrf_token(alice_client, "/members")
    org_id = team.owner.org_id
    others_before = conn.execute("SELECT count(*) AS n FROM emails WHERE org_id <> %s", (org_id,)).fetchone()
    job_ids = [
        r["job_id"]
        for r in conn.execute("SELECT job_id FROM emails WHERE org_id = %s AND job_id IS NOT NULL", (org_id,))
    ]
    assert job_ids

    unconfirmed = alice_client.post("/orgs/delete", data={"csrf_token": token, "confirm": "wrong"})
    assert unconfirmed.status_code == 302 and orgs.get(conn, org_id)
    deleted = alice_client.post("/orgs/delete", data={"csrf_token": token, "confirm": orgs.get(conn, org_id).name})

    assert deleted.status_code == 302
    tables = ("emails", "email_events", "batches", "api_tokens", "invitations", "memberships", "recurrences")
    for table in tables:
        assert conn.execute(f"SELECT count(*) AS n FROM {table} WHERE org_id = %s", (org_id,)).fetchone() == {"n": 0}
    assert conn.execute("SELECT count(*) AS n FROM organizations WHERE id = %s", (org_id,)).fetchone() == {"n": 0}
    waiting = conn.execute(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE id = ANY(%s) AND status = 'todo'", (job_ids,)
    ).fetchone()
    assert waiting == {"n": 0}
    assert conn.execute("SELECT count(*) AS n FROM emails WHERE org_id <> %s", (org_id,)).fetchone() == others_before
    assert conn.execute("SELECT count(*) AS n FROM recurrences WHERE id = %s", (bobs.recurrence,)).fetchone() == {
        "n": 1
    }
    api = team.clients[orgs.Role.MEMBER].get(
        "/api/v1/emails", headers={"Authorization": f"Bearer {team.secrets[orgs.Role.MEMBER]}"}
    )
    assert api.status_code == 401


def test_an_organization_is_not_deleted_while_one_of_its_emails_is_being_sent(
    conn: Conn, team: Team, alice_client: FlaskClient
) -> None:
    conn.execute("UPDATE emails SET status = 'sending' WHERE id = %s", (team.owner.email,))
    before = snapshot(conn)

    response = alice_client.post(
        "/orgs/delete",
        data={"csrf_token": csrf_token(alice_client, "/members"), "confirm": orgs.get(conn, team.owner.org_id).name},
        follow_redirects=True,
    )

    assert "being sent" in response.get_data(as_text=True)
    assert snapshot(conn) == before


def test_an_invitation_can_be_emailed_from_the_organizations_outbox(conn: Conn, team: Team) -> None:
    admin = team.clients[orgs.Role.ADMIN]
    page = admin.post(
        "/members/invite",
        data={"csrf_token": csrf_token(admin, "/members"), "email": "carol@example.com", "role": "member", "send": "1"},
    ).get_data(as_text=True)
    start = page.index('<code id="invitation-link">') + len('<code id="invitation-link">')
    link = page[start : page.index("</code>", start)]

    row = conn.execute(
        "SELECT org_id, owner_id, to_addrs, body_text, status FROM emails WHERE 'carol@example.com' = ANY(to_addrs)"
    ).fetchone()

    assert row is not None and row["org_id"] == team.owner.org_id and row["owner_id"] == team.users[orgs.Role.ADMIN].id
    assert link in row["body_text"] and row["status"] == "scheduled"
    assert "The link was emailed to carol@example.com" in page
