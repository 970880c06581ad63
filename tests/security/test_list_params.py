"""A malformed cursor or limit on the lists: every one is 422 naming its field on the API, and
on the dashboard's pages a redirect to the first page with the message; never a 500."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest
from flask.testing import FlaskClient

from tests.security.conftest import Owned


def forged(value: object) -> str:
    """Encode ``value`` the way the lists encode their cursors (JSON in unpadded URL-safe base64)."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


NOW = "2030-01-01T00:00:00+00:00"
ID = "00000000-0000-0000-0000-000000000001"
#: Cursors that decode to JSON of the wrong shape: each part of the wrong type, too many, none.
CURSORS = [
    forged([NOW, 5]),
    forged([NOW, None]),
    forged([NOW, [ID]]),
    forged([NOW, {"hex": ID}]),
    forged([5, ID]),
    forged([None, ID]),
    forged([[NOW], ID]),
    forged([NOW, ID, ID]),
    forged([NOW]),
    forged({"created": NOW, "id": ID}),
    forged(5),
    forged("x"),
    forged(None),
    forged([NOW, "not-a-uuid"]),
    forged(["2030-01-01T00:00:00", ID]),  # naive
    "%%%",
    "A" * 10_000,
]
#: Limits that are not a number from 1 to 200 written in ASCII digits (``"²".isdigit()`` is true).
LIMITS = ["²", "٣", "１０", "⁵", "1²", "-1", "+5", " 5", "5 ", "1e2", "0x10", "9" * 5000, "", "0", "201"]


@pytest.mark.parametrize("cursor", CURSORS)
def test_a_malformed_cursor_is_422_on_the_api(alice_client: FlaskClient, alices: Owned, cursor: str) -> None:
    response = alice_client.get("/api/v1/emails", query_string={"cursor": cursor})

    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["field"] == "cursor"


@pytest.mark.parametrize("limit", LIMITS)
def test_a_malformed_limit_is_422_on_the_api(alice_client: FlaskClient, alices: Owned, limit: str) -> None:
    response = alice_client.get("/api/v1/emails", query_string={"limit": limit})

    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    assert response.get_json()["error"]["field"] == "limit"


@pytest.mark.parametrize("page", ["/", "/?view=all", "/?q=ALICE", "/batches/{batch}"])
def test_a_malformed_cursor_on_a_dashboard_list_goes_back_to_its_first_page(
    alice_client: FlaskClient, alices: Owned, page: str
) -> None:
    """The pages' way with a bad cursor (a stale or edited link): the list's first page."""
    target = page.format(batch=alices.batch)
    for cursor in CURSORS:
        joiner = "&" if "?" in target else "?"
        response = alice_client.get(target + joiner + urllib.parse.urlencode({"cursor": cursor}))

        assert response.status_code == 302, (cursor, response.status_code)
        assert "cursor=" not in response.headers["Location"]
    assert alice_client.get(response.headers["Location"]).status_code == 200
