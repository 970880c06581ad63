"""The suppression list: refused at schedule time (422 naming the address), left out of a batch
(listed among its rejected lines), not sent to at send time by a real worker when suppressed
since; one-click unsubscribe links in a batch's messages (RFC 8058) received by the real SMTP
sink, then used; the list's API (search, CSV, remove on the audit log) and its row-level security."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import audit, emails, models, orgs, suppression, tokens
from tasks.domain.models import Email, User
from tests.support.openapi_check import check
from tests.support.procs import wait_until
from tests.support.smtp_sink import Sink

PUBLIC_URL = "https://reach.example.test"


@pytest.fixture
def web_env(web_env: dict[str, str]) -> dict[str, str]:
    return web_env | {"PUBLIC_URL": PUBLIC_URL}


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return env | {"PUBLIC_URL": PUBLIC_URL}


def bearer(conn: Conn, user: User, scopes: tuple[str, ...] = ("send", "read", "admin")) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.create(conn, user, 'tests', scopes=list(scopes))[1]}"}


def call(client: FlaskClient, method: str, url: str, spec_path: str, headers: dict[str, str], **kw: Any) -> Any:
    response = client.open(url, method=method, headers=headers, **kw)
    if response.is_json:
        check(method, spec_path, response.status_code, response.get_json())
    return response


def final(conn: Conn, email_id: Any, *statuses: str) -> Email:
    return wait_until(
        lambda: (e := emails.get(conn, models.OPERATOR, email_id)).status in statuses and e,
        timeout=20,
        what=f"email to become {'/'.join(statuses)}",
    )


def test_scheduling_to_a_suppressed_address_is_refused_naming_it(client: FlaskClient, conn: Conn, owner: User) -> None:
    headers = bearer(conn, owner)
    org_id = orgs.personal_org_id(conn, owner.id)
    suppression.add(conn, org_id, "Bob@Example.com", reason="complaint")
    body = {"to": ["ann@example.com"], "cc": ["bob@example.com"], "subject": "Hi", "body_text": "x", "send_now": True}

    refused = call(client, "POST", "/api/v1/emails", "/emails", headers, json=body)

    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert error["field"] == "cc"
    assert "bob@example.com is on the suppression list (spam complaint)" in error["message"]
    assert conn.execute("SELECT count(*) AS n FROM emails").fetchone()["n"] == 0
    # Editing a scheduled email's recipients is checked the same way.
    created = call(client, "POST", "/api/v1/emails", "/emails", headers, json=body | {"cc": []})
    assert created.status_code == 201
    target = f"/api/v1/emails/{created.get_json()['id']}"
    edited = call(client, "PATCH", target, "/emails/{email_id}", headers, json={"cc": ["BOB@example.com"]})
    assert edited.status_code == 422 and edited.get_json()["error"]["field"] == "cc"
    # The operators' global list holds too.
    suppression.add(conn, None, "zed@example.com")
    body |= {"cc": [], "to": ["zed@example.com"]}
    assert call(client, "POST", "/api/v1/emails", "/emails", headers, json=body).status_code == 422


def test_a_recurrence_to_a_suppressed_address_is_refused_naming_it(
    client: FlaskClient, conn: Conn, owner: User
) -> None:
    headers = bearer(conn, owner)
    suppression.add(conn, orgs.personal_org_id(conn, owner.id), "bob@example.com", reason="hard_bounce")
    body = {"to": ["ann@example.com"], "bcc": ["Bob@example.com"], "subject": "Weekly", "body_text": "x",
            "cron": "0 9 * * 1", "time_zone": "Europe/Paris"}  # fmt: skip

    refused = call(client, "POST", "/api/v1/recurrences", "/recurrences", headers, json=body)

    assert refused.status_code == 422 and refused.get_json()["error"]["field"] == "bcc"
    assert "Bob@example.com is on the suppression list" in refused.get_json()["error"]["message"]
    assert conn.execute("SELECT count(*) AS n FROM recurrences").fetchone()["n"] == 0
    # Nor can an edit add one; other edits of it still work.
    created = call(client, "POST", "/api/v1/recurrences", "/recurrences", headers, json=body | {"bcc": []})
    assert created.status_code == 201
    target = f"/api/v1/recurrences/{created.get_json()['id']}"
    edited = call(client, "PATCH", target, "/recurrences/{recurrence_id}", headers, json={"to": ["bob@example.com"]})
    assert edited.status_code == 422 and edited.get_json()["error"]["field"] == "to"
    renamed = call(client, "PATCH", target, "/recurrences/{recurrence_id}", headers, json={"subject": "Weekly, again"})
    assert renamed.status_code == 200
    assert conn.execute("SELECT to_addrs FROM recurrences").fetchone()["to_addrs"] == ["ann@example.com"]


def test_a_batch_leaves_suppressed_recipients_out_and_lists_them(client: FlaskClient, conn: Conn, owner: User) -> None:
    headers = bearer(conn, owner)
    org_id = orgs.personal_org_id(conn, owner.id)
    suppression.add(conn, org_id, "bob@example.com", reason="hard_bounce")
    batch = {"addresses": "ann@example.com\nBOB@example.com\ncarol@example.com", "subject": "Hi", "body_text": "x"}

    response = call(client, "POST", "/api/v1/batches", "/batches", headers, json=batch)

    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["accepted"] == 2
    assert body["rejected"] == [
        {"line": 2, "value": "BOB@example.com", "reason": "on the suppression list (hard bounce)"}
    ]
    rows = conn.execute("SELECT to_addrs FROM emails ORDER BY to_addrs").fetchall()
    assert [r["to_addrs"] for r in rows] == [["ann@example.com"], ["carol@example.com"]]


def test_a_worker_does_not_send_to_an_address_suppressed_since_scheduling(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    both = emails.schedule(
        conn, owner=owner, settings=settings, draft=make_draft(to=["ann@example.com", "Bob@example.com"], send_at=soon)
    )[0]
    only = emails.schedule(
        conn, owner=owner, settings=settings, draft=make_draft(to=["bob@example.com"], send_at=soon)
    )[0]
    suppression.add(conn, both.org_id, "bob@example.com", reason="unsubscribe")
    workers()

    partly = final(conn, both.id, "sent")
    held = final(conn, only.id, "failed")

    [received] = sink.wait_for(1, timeout=10)
    assert received.rcpt_tos == ("ann@example.com",)
    assert partly.refused_recipients == {
        "Bob@example.com": "not sent: bob@example.com (unsubscribe) is on the suppression list"
    }
    assert held.last_error == "not sent: on the suppression list: bob@example.com (unsubscribe)"
    assert held.data_started_at is None


def test_a_batchs_messages_carry_a_one_click_unsubscribe_link_that_works_once(
    client: FlaskClient, conn: Conn, owner: User, sink: Sink, workers: Any
) -> None:
    headers = bearer(conn, owner)
    batch = {"addresses": "ann@example.com", "subject": "News", "body_text": "Hello"}
    assert call(client, "POST", "/api/v1/batches", "/batches", headers, json=batch).status_code == 201
    workers()
    [received] = sink.wait_for(1, timeout=15)
    message = email.message_from_bytes(received.raw, policy=email.policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click", received.raw[:800]
    found = re.fullmatch(
        r"<(https://reach\.example\.test/u/[A-Za-z0-9._-]{40,})>", str(message["List-Unsubscribe"]).strip()
    )
    assert found is not None
    path = urllib.parse.urlsplit(found[1]).path
    [row] = conn.execute("SELECT id, org_id FROM emails").fetchall()

    # A stranger (no cookie, no CSRF token) sees the confirmation page; GET changes nothing.
    anonymous = client.application.test_client()
    page = anonymous.get(path)
    assert page.status_code == 200 and "ann@example.com" in page.get_data(as_text=True)
    assert suppression.entries(conn, row["org_id"]) == []
    # An altered link, or one made up: nothing.
    payload, signature = path.rsplit(".", 1)
    assert anonymous.post(f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}").status_code == 404
    assert anonymous.post("/u/eyJhbGciOiJIUzI1NiJ9").status_code == 404

    # RFC 8058's one-click POST: suppressed at once; used again, nothing more.
    first = anonymous.post(path, data={"List-Unsubscribe": "One-Click"})
    again = anonymous.post(path, data={"List-Unsubscribe": "One-Click"})
    assert first.status_code == again.status_code == 200
    [entry] = suppression.entries(conn, row["org_id"])
    assert (entry.address, entry.reason, entry.email_id) == ("ann@example.com", "unsubscribe", row["id"])
    kinds = [e.kind for e in emails.timeline(conn, models.OPERATOR, row["id"])]
    assert kinds.count("unsubscribed") == 1


def test_a_one_off_email_carries_the_link_only_when_it_asks(
    client: FlaskClient, conn: Conn, owner: User, sink: Sink, workers: Any
) -> None:
    headers = bearer(conn, owner)
    plain = {"to": ["ann@example.com"], "subject": "Plain", "body_text": "x", "send_now": True}
    asked = plain | {"subject": "Asked", "list_unsubscribe": True}
    for body in (plain, asked):
        created = call(client, "POST", "/api/v1/emails", "/emails", headers, json=body)
        assert created.status_code == 201
        assert created.get_json()["list_unsubscribe"] is body.get("list_unsubscribe", False)
    workers()
    received = {r.subject: r for r in sink.wait_for(2, timeout=15)}
    assert b"List-Unsubscribe" not in received["Plain"].raw
    assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in received["Asked"].raw


def test_the_list_through_the_api_search_export_remove_import(client: FlaskClient, conn: Conn, owner: User) -> None:
    headers = bearer(conn, owner)
    org_id = orgs.personal_org_id(conn, owner.id)
    for address in ("ann@example.com", "bob@example.com", "=cmd@example.com"):
        added = call(client, "POST", "/api/v1/suppressions", "/suppressions", headers, json={"address": address})
        assert added.get_json() == {"address": address, "added": True}
    suppression.add(conn, None, "global@example.com")

    found = call(client, "GET", "/api/v1/suppressions?q=bob", "/suppressions", headers).get_json()
    assert [s["address"] for s in found["suppressions"]] == ["bob@example.com"]
    everything = call(client, "GET", "/api/v1/suppressions", "/suppressions", headers).get_json()["suppressions"]
    assert {s["list"] for s in everything} == {"organization", "global"}
    exported = client.get("/api/v1/suppressions?format=csv", headers=headers).get_data(as_text=True)
    assert exported.splitlines()[0] == "address,reason,detail,list,created_at"
    assert "'=cmd@example.com" in exported  # not a formula in a spreadsheet

    # Removing takes an admin; it is on the audit log.
    member_only = bearer(conn, owner, ("send", "read"))
    refused = call(client, "DELETE", "/api/v1/suppressions/bob@example.com", "/suppressions/{address}", member_only)
    assert refused.status_code == 403
    removed = call(client, "DELETE", "/api/v1/suppressions/bob@example.com", "/suppressions/{address}", headers)
    assert removed.get_json() == {"address": "bob@example.com", "removed": True}
    # The global list is the operators': not removed from here.
    other = call(client, "DELETE", "/api/v1/suppressions/global@example.com", "/suppressions/{address}", headers)
    assert other.get_json() == {"address": "global@example.com", "removed": False}
    assert {e.address for e in suppression.entries(conn, org_id)} >= {"global@example.com"}
    [line] = [e for e in audit.entries(conn, org_id) if e.action == "suppression.remove"]
    assert line.target == "bob@example.com"

    imported = call(
        client, "POST", "/api/v1/suppressions/import", "/suppressions/import", headers,
        json={"csv": "email,name\nann@example.com,Ann\nnot-an-address,X\ncarol@example.com,C\n"},
    ).get_json()  # fmt: skip
    assert (imported["added"], imported["already"]) == (1, 1)
    assert [r["line"] for r in imported["rejected"]] == [3]


def test_the_web_role_sees_its_organizations_list_and_the_global_one_only(conn: Conn) -> None:
    mine = conn.execute("INSERT INTO organizations (name) VALUES ('Mine') RETURNING id").fetchone()["id"]
    theirs = conn.execute("INSERT INTO organizations (name) VALUES ('Theirs') RETURNING id").fetchone()["id"]
    suppression.add(conn, mine, "a@example.com")
    suppression.add(conn, theirs, "b@example.com")
    suppression.add(conn, None, "c@example.com")
    with conn.transaction():
        conn.execute("SET LOCAL ROLE reach_web")
        conn.execute("SELECT set_config('app.org_id', %s, true)", (str(mine),))
        seen = {r["address"] for r in conn.execute("SELECT address FROM suppressions")}
        assert conn.execute("DELETE FROM suppressions WHERE org_id IS NULL OR org_id <> %s", (mine,)).rowcount == 0
        assert conn.execute("SELECT count(*) AS n FROM feedback_seen").fetchone()["n"] == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO suppressions (org_id, address, reason) VALUES (%s, 'x@example.com', 'manual')", (theirs,)
            )
    assert seen == {"a@example.com", "c@example.com"}


def test_operators_keep_the_global_list_from_the_cli(env: dict[str, str], conn: Conn) -> None:
    from tests.support.procs import run_cli

    added = run_cli(env, "suppression", "add", "Spam@Trap.example", "--detail", "known trap")
    again = run_cli(env, "suppression", "add", "spam@trap.example")
    listed = run_cli(env, "suppression", "list")
    bad = run_cli(env, "suppression", "add", "not-an-address")

    assert (added.returncode, added.stdout.strip()) == (0, "added: spam@trap.example")
    assert again.stdout.strip() == "already on the list: spam@trap.example"
    assert listed.stdout.startswith("spam@trap.example\tmanual\t") and "known trap" in listed.stdout
    assert bad.returncode == 2 and "address: not a valid email address" in bad.stderr
    assert conn.execute("SELECT org_id FROM suppressions").fetchall() == [{"org_id": None}]
    removed = run_cli(env, "suppression", "remove", "spam@trap.example")
    assert removed.returncode == 0 and conn.execute("SELECT count(*) AS n FROM suppressions").fetchone()["n"] == 0


def test_the_list_on_the_dashboard_add_search_import_export_remove(
    client: FlaskClient, conn: Conn, sign_in: Callable[..., User]
) -> None:
    import io

    from tests.support.web import csrf_token

    user = sign_in(client, "alice@example.com")
    org_id = orgs.personal_org_id(conn, user.id)
    token = csrf_token(client, "/suppressions/")
    assert client.post("/suppressions/add", data={"address": "Ann@Example.com"}).status_code == 403  # no CSRF token
    client.post("/suppressions/add", data={"address": "Ann@Example.com", "csrf_token": token})
    upload = (io.BytesIO(b"address\nbob@example.com\n<script>@x\n"), "list.csv")
    client.post("/suppressions/import", data={"file": upload, "csrf_token": token}, content_type="multipart/form-data")
    assert {e.address for e in suppression.entries(conn, org_id)} == {"ann@example.com", "bob@example.com"}

    page = client.get("/suppressions/?q=bob").get_data(as_text=True)
    assert 'data-address="bob@example.com"' in page and 'data-address="ann@example.com"' not in page
    exported = client.get("/suppressions/export.csv").get_data(as_text=True)
    assert exported.count("\n") == 3
    client.post("/suppressions/remove", data={"address": "ann@example.com", "csrf_token": token})
    assert [e.address for e in suppression.entries(conn, org_id)] == ["bob@example.com"]
    assert [e.action for e in audit.entries(conn, org_id)][:3] == [
        "suppression.remove", "suppression.import", "suppression.add",
    ]  # fmt: skip
