"""An organization's own transports, identity, limits, quota and suspension, with real workers,
a real PostgreSQL, Redis and SMTP sinks (one for the deployment, one for the organization)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet

from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, org_settings, orgs
from tasks.domain.models import User
from tasks.ops import orgs as ops_orgs
from tests.integration.test_rate_limits import max_in_window
from tests.support.procs import wait_until
from tests.support.smtp_sink import Sink

pytestmark = pytest.mark.slow

PASSWORD = "s3cret-Pa55"


@pytest.fixture
def own_sink() -> Iterator[Sink]:
    """The organization's own provider: it wants its own login."""
    server = Sink(auth=("org-user", PASSWORD)).start()
    yield server
    server.stop()


def org_of(conn: Conn, user: User) -> int:
    return orgs.personal_org_id(conn, user.id)


def schedule(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], n: int = 1, **kw: Any
) -> list[Any]:
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    return [
        emails.schedule(conn, owner=owner, draft=make_draft(send_at=at, subject=f"#{i}"), settings=settings, **kw)[0]
        for i in range(n)
    ]


def row(conn: Conn, email_id: Any) -> dict[str, Any]:
    found = conn.execute("SELECT * FROM emails WHERE id = %s", (email_id,)).fetchone()
    assert found is not None
    return found


def test_own_transport_sends_with_the_identity_and_its_password_never_leaves_encrypted(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    own_sink: Sink,
    workers: Any,
) -> None:
    org_id = org_of(conn, owner)
    url = f"smtp://org-user:{PASSWORD}@127.0.0.1:{own_sink.port}"
    shown = org_settings.add_transport(conn, settings, org_id, owner.id, label="own", url=url, rate_limit="")
    identity = org_settings.check_identity(
        settings, from_name="Acme Support", from_address="help@acme.example", reply_to="desk@acme.example"
    )
    org_settings.set_identity(conn, org_id, owner.id, identity)
    assert PASSWORD not in shown.url_masked
    stored = conn.execute("SELECT url_secret FROM org_transports WHERE org_id = %s", (org_id,)).fetchone()
    assert stored is not None and PASSWORD not in stored["url_secret"]
    worker = workers()

    (sent,) = schedule(conn, owner, settings, make_draft)
    (received,) = own_sink.wait_for(1, timeout=20)

    assert sink.messages == []  # the deployment's transport was not used
    assert own_sink.logins >= 1
    assert received.mail_from == "help@acme.example"  # the envelope, on the organization's own transport
    parsed = email.message_from_bytes(received.raw, policy=email.policy.default)
    assert parsed["From"].addresses[0].display_name == "Acme Support"
    assert parsed["From"].addresses[0].addr_spec == "help@acme.example"
    assert parsed["Reply-To"].addresses[0].addr_spec == "desk@acme.example"
    done = wait_until(lambda: (r := row(conn, sent.id))["status"] == "sent" and r, timeout=10, what="sent")
    assert done["transport"] == f"o{org_id}.own"
    # The row (what the dashboard, the API and psql show) says the From the message carried.
    as_sent = conn.execute("SELECT from_addr, reply_to FROM emails WHERE id = %s", (sent.id,)).fetchone()
    assert as_sent == {"from_addr": "Acme Support <help@acme.example>", "reply_to": "desk@acme.example"}
    worker.stop()
    assert PASSWORD not in worker.output()


def test_instead_uses_only_the_organizations_transports_and_before_falls_back_on_the_deployments(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    own_sink: Sink,
    workers: Any,
) -> None:
    org_id = org_of(conn, owner)
    url = f"smtp://org-user:{PASSWORD}@127.0.0.1:{own_sink.port}"
    org_settings.add_transport(conn, settings, org_id, owner.id, label="own", url=url, rate_limit="")
    org_settings.set_mode(conn, org_id, owner.id, "instead")
    own_sink.stop()  # the organization's provider is down
    workers(extra_env={"BREAKER_THRESHOLD": "1", "BREAKER_COOLDOWN": "600", "RETRY_BACKOFF_BASE": "0.2"})

    (first,) = schedule(conn, owner, settings, make_draft)
    wait_until(lambda: row(conn, first.id)["last_error"], timeout=20, what="the failed attempt")
    # Its breaker is open and nothing else may carry its mail: it waits, the deployment's sink gets nothing.
    waiting = wait_until(
        lambda: (
            (r := row(conn, first.id))["status"] == "scheduled"
            and "circuit breaker" in (r["waiting_reason"] or "")
            and r
        ),
        timeout=20,
        what="waiting for a transport",
    )
    assert waiting["attempts"] == 1 and sink.messages == []

    org_settings.set_mode(conn, org_id, owner.id, "before")
    (second,) = schedule(conn, owner, settings, make_draft)
    sink.wait_for(1, timeout=20)
    done = wait_until(lambda: (r := row(conn, second.id))["status"] == "sent" and r, timeout=10, what="sent")
    assert done["transport"] == "smtp"


def test_a_suspended_organizations_mail_waits_with_the_reason_until_resumed(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    org_id = org_of(conn, owner)
    ops_orgs.suspend(conn, org_id, "invoice overdue", None)
    workers()  # ORG_HOLD_RECHECK's default (60 s): resuming must not wait for the hold's next look

    (held,) = schedule(conn, owner, settings, make_draft)
    waiting = wait_until(
        lambda: (r := row(conn, held.id))["waiting_reason"] == "organization suspended: invoice overdue" and r,
        timeout=20,
        what="the suspension's wait",
    )
    assert waiting["status"] == "scheduled" and waiting["attempts"] == 0
    events = conn.execute("SELECT kind FROM email_events WHERE email_id = %s", (held.id,)).fetchall()
    assert "org_suspended" in {e["kind"] for e in events}
    assert sink.messages == []

    ops_orgs.resume(conn, org_id, None)
    sink.wait_for(1, timeout=15)
    wait_until(lambda: row(conn, held.id)["status"] == "sent", timeout=10, what="sent after resuming")
    actions = [
        r["action"] for r in conn.execute("SELECT action FROM org_audit WHERE org_id = %s ORDER BY id", (org_id,))
    ]
    assert actions == ["org.suspend", "org.resume"]


def test_over_the_daily_quota_waits_for_the_next_utc_day_and_is_not_dropped(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    org_id = org_of(conn, owner)
    org_settings.set_quota(conn, org_id, None, 3)
    workers()

    batch = schedule(conn, owner, settings, make_draft, n=5)
    sink.wait_for(3, timeout=20)
    waiting = wait_until(
        lambda: (
            len(
                rows := [
                    r
                    for e in batch
                    if (r := row(conn, e.id))["waiting_reason"] and "daily quota" in r["waiting_reason"]
                ]
            )
            == 2
            and rows
        ),
        timeout=20,
        what="two emails over the quota",
    )
    tomorrow = dt.datetime.combine(dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1), dt.time(), dt.UTC)
    for r in waiting:
        assert r["status"] == "scheduled" and r["attempts"] == 0
        assert tomorrow <= r["next_attempt_at"] <= tomorrow + dt.timedelta(minutes=1)
        assert "daily quota of 3 emails reached" in r["waiting_reason"]
    assert len(sink.messages) == 3

    # Redis loses the day's count: it is rebuilt from the sends PostgreSQL recorded, not restarted at 0.
    client = redis.Redis.from_url(settings.redis_url)
    key = f"{settings.redis_prefix}rl:q:{org_id}:{dt.datetime.now(dt.UTC).date().isoformat()}"
    assert client.delete(key) == 1
    (late,) = schedule(conn, owner, settings, make_draft)
    wait_until(lambda: "daily quota" in (row(conn, late.id)["waiting_reason"] or ""), timeout=20, what="held")
    assert len(sink.messages) == 3 and client.zcard(key) == 4  # the 3 sends and the sentinel


def test_an_organizations_own_limit_is_shared_by_all_its_members_across_workers(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], own_sink: Sink, workers: Any
) -> None:
    org_id = org_of(conn, owner)
    bob = emails.ensure_user(conn, email="bob@example.com", name="Bob")
    orgs.add_member(conn, org_id, bob, orgs.Role.MEMBER)
    url = f"smtp://org-user:{PASSWORD}@127.0.0.1:{own_sink.port}"
    org_settings.add_transport(conn, settings, org_id, owner.id, label="own", url=url, rate_limit="3/4s")
    workers()
    workers()

    schedule(conn, owner, settings, make_draft, n=4, org_id=org_id)
    schedule(conn, bob, settings, make_draft, n=4, org_id=org_id)
    received = own_sink.wait_for(8, timeout=40)

    assert max_in_window([m.at for m in received], 4.0) <= 3


def test_a_transport_no_key_opens_never_lets_instead_mail_out_through_the_deployment(
    conn: Conn,
    owner: User,
    settings: Settings,
    make_draft: Callable[..., Any],
    sink: Sink,
    own_sink: Sink,
    workers: Any,
) -> None:
    org_id = org_of(conn, owner)
    url = f"smtp://org-user:{PASSWORD}@127.0.0.1:{own_sink.port}"
    org_settings.add_transport(conn, settings, org_id, owner.id, label="own", url=url, rate_limit="")
    org_settings.set_mode(conn, org_id, owner.id, "instead")
    # The workers hold another key than the one that encrypted it (one removed too early).
    worker = workers(extra_env={"SECRET_KEYS": Fernet.generate_key().decode()})

    (held,) = schedule(conn, owner, settings, make_draft)
    waiting = wait_until(
        lambda: (r := row(conn, held.id))["waiting_reason"] and r, timeout=20, what="the email to wait"
    )

    assert waiting["status"] == "scheduled" and sink.messages == [] and own_sink.messages == []
    worker.stop()
    assert "an organization's transport cannot be used" in worker.output() and PASSWORD not in worker.output()
