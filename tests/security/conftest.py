"""Fixtures of the abuse suite: Alice (signed in through the real OAuth flow), Bob and
what each of them owns, so every route can be tried with the other user's ids."""

from __future__ import annotations

import dataclasses
import email.message
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks.core import db
from tasks.core.config import Settings
from tasks.domain import batch_plan, batches, emails, orgs, recurrences, saved_searches, suppression, tokens
from tasks.domain.models import User
from tasks.webhooks import endpoints as webhook_endpoints
from tests.e2e.conftest import browser, output_dir  # noqa: F401  (Chromium, and where screenshots go)
from webapp import orgs as webapp_orgs

Conn = Any
#: Text planted in Bob's data: it must never reach Alice, whatever route she calls.
BOBS_SECRET = "BOB-PRIVATE-7f3a"


@dataclasses.dataclass(frozen=True)
class Owned:
    """What one user has, in their own organization: an email, a batch, a token (and its secret),
    an invitation (and its signed link) to someone else, a recurrence and a saved search."""

    user: User
    org_id: int
    email: str
    batch: str
    token: int
    secret: str
    invitation: int
    invitation_link: str
    recurrence: str
    #: An address on the organization's suppression list.
    suppressed: str
    search: int
    #: A webhook endpoint (its secret, shown once at creation) and a delivery of a test event to it.
    webhook: str
    webhook_secret: str
    delivery: str
    #: A bulk action (a cancel of nothing, finished), for the routes that take a ``<bulk_id>``.
    bulk: str

    def ids(self) -> dict[str, str]:
        """Return the values for a route's ``<email_id>``, ``<batch_id>``, ``<token_id>``, ``<user_id>``
        (a member), ``<invitation_id>``, ``<token>`` (an invitation's signed link), ``<recurrence_id>``,
        ``<address>`` (on the suppression list), ``<search_id>``, ``<message_id>`` and ``<number>`` (a dev
        mailbox message and its attachment: operators only, so any numbers)."""
        return {
            "email_id": self.email,
            "batch_id": self.batch,
            "token_id": str(self.token),
            "user_id": str(self.user.id),
            "invitation_id": str(self.invitation),
            "token": self.invitation_link,
            "recurrence_id": self.recurrence,
            "address": self.suppressed,
            "search_id": str(self.search),
            "message_id": "1",
            "number": "0",
            "endpoint_id": self.webhook,
            "delivery_id": self.delivery,
            "bulk_id": self.bulk,
        }


def own(conn: Conn, settings: Settings, make_draft: Callable[..., Any], user: User, marker: str) -> Owned:
    """Give ``user`` a scheduled email, a batch of two, a token, a recurrence and a saved search, each carrying
    ``marker``."""
    draft = make_draft(subject=f"{marker} subject", body_text=f"{marker} body", to=[f"to-{user.id}@example.com"])
    mail, _ = emails.schedule(conn, owner=user, draft=draft, settings=settings)
    plan = batch_plan.prepare(
        settings=settings,
        addresses="x@example.com\ny@example.com",
        subject=f"{marker} batch",
        body_text="B",
        name=f"{marker} list",
        start_at="2030-01-01T00:00:00Z",
    )
    batch, _ = batches.create(conn, owner=user, plan=plan, settings=settings)
    token, secret = tokens.create(conn, user, f"{marker} token")
    spec = recurrences.validate(
        {
            "to": [f"to-{user.id}@example.com"],
            "subject": f"{marker} recurring",
            "body_text": f"{marker} every day",
            "preset": {"kind": "daily", "time": "09:00"},
        },
        settings=settings,
    )
    recurrence, _ = recurrences.create(conn, owner=user, spec=spec, settings=settings)
    me = orgs.memberships_of(conn, user.id)[0]
    hook = webhook_endpoints.create(
        conn, settings, me.org_id, user.id, url=f"https://hooks.example.com/{user.id}",
        event_types=["email.failed"], description=f"{marker} hook",
    )  # fmt: skip
    assert hook.secret is not None
    delivery = webhook_endpoints.send_test(conn, me.org_id, hook.id)
    invitation, invitation_secret = orgs.invite(conn, me, f"invitee-{user.id}@example.com", orgs.Role.MEMBER)
    suppressed = f"suppressed-{user.id}@example.com"
    suppression.add(conn, me.org_id, suppressed, detail=f"{marker} note")
    scope = orgs.personal_scope(conn, user.id)
    saved = saved_searches.save(conn, scope, name=f"{marker} search", query=f'"{marker}"')
    bulk_row = conn.execute(
        """INSERT INTO bulk_actions (org_id, actor_id, action, query, total, state, finished_at)
           VALUES (%s, %s, 'cancel', %s, 0, 'done', now()) RETURNING id""",
        (me.org_id, user.id, f'"{marker}"'),
    ).fetchone()
    return Owned(
        user=user,
        org_id=me.org_id,
        email=str(mail.id),
        batch=str(batch.id),
        token=token.id,
        secret=secret,
        invitation=invitation.id,
        invitation_link=webapp_orgs.sign(invitation, invitation_secret, settings.secret_key),
        recurrence=str(recurrence.id),
        suppressed=suppressed,
        search=saved.id,
        webhook=str(hook.id),
        webhook_secret=hook.secret,
        delivery=str(delivery.id),
        bulk=str(bulk_row["id"]),
    )


@pytest.fixture
def alice_client(client: FlaskClient, sign_in: Callable[..., User]) -> FlaskClient:
    """A browser signed in as Alice through the OAuth flow."""
    sign_in(client, "alice@example.com", name="Alice")
    return client


@pytest.fixture
def alices(alice_client: FlaskClient, conn: Conn, settings: Settings, make_draft: Callable[..., Any]) -> Owned:
    user = User.from_row(db.one(conn, "user_by_email", email="alice@example.com"))
    return own(conn, settings, make_draft, user, "ALICE")


@pytest.fixture
def bobs(conn: Conn, settings: Settings, make_draft: Callable[..., Any]) -> Owned:
    """Bob's email, batch, token, and a message of his in the dev mailbox."""
    bob = emails.ensure_user(conn, email="bob@example.com", name="Bob")
    owned = own(conn, settings, make_draft, bob, BOBS_SECRET)
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = "noreply@localhost", "b@example.com", f"{BOBS_SECRET} mail"
    message.set_content(f"{BOBS_SECRET} captured")
    db.one(
        conn,
        "insert_devmail",
        mail_from="noreply@localhost",
        rcpt_tos=["b@example.com"],
        message_id="<bob@test>",
        subject=f"{BOBS_SECRET} mail",
        raw=message.as_bytes(),
    )
    return owned


def snapshot(conn: Conn) -> dict[str, list[Any]]:
    """Everything a request could change: emails, batches, tokens, users' session versions, jobs."""
    return {
        "emails": conn.execute(
            "SELECT id, status, subject, body_text, to_addrs, send_at, job_id, updated_at FROM emails ORDER BY id"
        ).fetchall(),
        "batches": conn.execute("SELECT * FROM batches ORDER BY id").fetchall(),
        "recurrences": conn.execute("SELECT * FROM recurrences ORDER BY id").fetchall(),
        "saved_searches": conn.execute("SELECT * FROM saved_searches ORDER BY org_id, id").fetchall(),
        "tokens": conn.execute("SELECT id, name, revoked_at FROM api_tokens ORDER BY id").fetchall(),
        "memberships": conn.execute("SELECT * FROM memberships ORDER BY org_id, user_id").fetchall(),
        "invitations": conn.execute("SELECT * FROM invitations ORDER BY org_id, id").fetchall(),
        "organizations": conn.execute("SELECT * FROM organizations ORDER BY id").fetchall(),
        "users": conn.execute("SELECT id, session_version FROM users ORDER BY id").fetchall(),
        "jobs": conn.execute("SELECT id, status, scheduled_at FROM procrastinate_jobs ORDER BY id").fetchall(),
        "suppressions": conn.execute("SELECT * FROM suppressions ORDER BY id").fetchall(),
        "webhooks": conn.execute("SELECT * FROM webhook_endpoints ORDER BY id").fetchall(),
        "deliveries": conn.execute("SELECT * FROM webhook_deliveries ORDER BY id").fetchall(),
    }
