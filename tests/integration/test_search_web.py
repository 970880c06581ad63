"""Search on the web: ``GET /api/v1/emails?q=``, the dashboard's box (and its message for an invalid
query), the autocomplete's JSON, and saved searches with their counts."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks.core.db import Conn
from tasks.domain import emails, orgs
from tasks.domain.models import User
from tests.support.web import csrf_token


@pytest.fixture
def alice(client: FlaskClient, sign_in: Callable[..., Any]) -> User:
    return sign_in(client, "alice@example.com", name="Alice")


@pytest.fixture
def mail(conn: Conn, alice: User, settings: Any, make_draft: Callable[..., Any]) -> dict[str, Any]:
    invoice = emails.schedule(
        conn, owner=alice, draft=make_draft(subject="Invoice 7", to=["ann@acme.example"]), settings=settings
    )[0]
    lunch = emails.schedule(
        conn, owner=alice, draft=make_draft(subject="Lunch", to=["zed@example.org"]), settings=settings
    )[0]
    emails.cancel(conn, orgs.personal_scope(conn, alice.id), lunch.id)
    return {"invoice": invoice, "lunch": lunch}


def _ids(page: str) -> list[str]:
    return re.findall(r'<li class="row" data-email-id="([0-9a-f-]+)"', page)


def test_the_api_lists_what_a_query_finds(client: FlaskClient, mail: dict[str, Any]) -> None:
    def subjects(q: str) -> list[str]:
        response = client.get("/api/v1/emails", query_string={"q": q})
        assert response.status_code == 200, response.get_data(as_text=True)
        return [e["subject"] for e in response.get_json()["emails"]]

    assert subjects("domain:acme.example status:scheduled") == ["Invoice 7"]
    assert subjects("!status:scheduled") == ["Lunch"]
    assert subjects('subject:"invoice 7" to:ann@') == ["Invoice 7"]
    assert subjects("from:me after:-1h") == ["Lunch", "Invoice 7"]
    # ?status= still applies, with the query.
    response = client.get("/api/v1/emails", query_string={"q": "example", "status": "cancelled"})
    assert [e["subject"] for e in response.get_json()["emails"]] == ["Lunch"]


@pytest.mark.parametrize(
    ("q", "says"),
    [
        ("state:sent", 'q: unknown qualifier "state:"'),
        ('subject:"open', "q: this quote is never closed (at character 9)"),
        ("status:nope", 'q: status: "nope" is not one of'),
        ("after:later", 'q: after: "later" is not a time'),
    ],
)
def test_the_api_says_what_is_wrong_with_a_query(client: FlaskClient, alice: User, q: str, says: str) -> None:
    response = client.get("/api/v1/emails", query_string={"q": q})

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "q" and error["code"] == "invalid"
    assert error["message"].startswith(says) and "(at character " in error["message"]


def test_the_dashboard_shows_an_invalid_querys_problem_instead_of_an_empty_list(
    client: FlaskClient, mail: dict[str, Any]
) -> None:
    response = client.get("/", query_string={"view": "all", "q": "to:ann status:nope"})
    page = response.get_data(as_text=True)

    assert response.status_code == 400
    assert 'role="alert">Status: &#34;nope&#34; is not one of' in page and "(at character 8)" in page
    assert 'value="to:ann status:nope"' in page and 'aria-invalid="true"' in page
    assert _ids(page) == [] and "No email matches" not in page

    found = client.get("/", query_string={"view": "all", "q": "to:ann"}).get_data(as_text=True)
    assert _ids(found) == [str(mail["invoice"].id)]


def test_the_autocomplete_answers_qualifiers_and_values(client: FlaskClient, mail: dict[str, Any]) -> None:
    def texts(word: str) -> list[str]:
        response = client.get("/search/suggest", query_string={"w": word})
        assert response.status_code == 200
        return [s["text"] for s in response.get_json()["suggestions"]]

    assert texts("do") == ["domain:"]
    assert texts("domain:a") == ["domain:acme.example"]
    assert texts("!to:z") == ["!to:zed@example.org"]
    assert client.get("/search/suggest", query_string={"w": "x" * 101}).status_code == 422


def test_a_saved_search_shows_in_the_sidebar_with_its_count_and_is_the_users_own(
    client: FlaskClient, app: Any, mail: dict[str, Any], sign_in: Callable[..., Any], conn: Conn
) -> None:
    token = csrf_token(client)
    saved = client.post("/searches", data={"csrf_token": token, "name": "Acme", "q": "domain:acme.example"})
    assert saved.status_code == 302 and saved.headers["Location"] == "/?view=all&q=domain:acme.example"
    refused = client.post("/searches", data={"csrf_token": token, "name": "Bad", "q": "nope:x"})
    assert refused.status_code == 302

    page = client.get("/").get_data(as_text=True)
    search_id = re.search(r'data-saved-id="(\d+)"', page)
    assert search_id and ">Acme</span>" in page and "Bad" not in page
    assert re.search(rf'data-saved-count="{search_id[1]}"[^>]*>1<', page)
    assert client.get("/searches/counts.json").get_json() == {"counts": {search_id[1]: 1}, "cap": 1000}

    # Another member of the organization neither sees nor deletes it.
    bob_client = app.test_client()
    bob = sign_in(bob_client, "bob@example.com", name="Bob")
    alice_org = orgs.personal_org_id(conn, mail["invoice"].owner_id)
    orgs.add_member(conn, alice_org, bob, orgs.Role.MEMBER)
    bob_client.post("/orgs/switch", data={"csrf_token": csrf_token(bob_client), "org_id": alice_org})
    assert "Acme" not in bob_client.get("/").get_data(as_text=True)
    bob_delete = bob_client.post(f"/searches/{search_id[1]}/delete", data={"csrf_token": csrf_token(bob_client)})
    assert bob_delete.status_code == 404

    gone = client.post(f"/searches/{search_id[1]}/delete", data={"csrf_token": token})
    assert gone.status_code == 302
    assert "data-saved-id" not in client.get("/").get_data(as_text=True)
