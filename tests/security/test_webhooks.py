"""The abuse suite, webhooks: where a delivery may go, and who may see an endpoint's secret.

- SSRF: an endpoint on a private, loopback or link-local address (literal, ``localhost``, a
  name that resolves there, a name resolving to a public and a private address, an IPv6 or
  IPv4-mapped spelling) is refused before any connection: the transport underneath is never
  called and the receiver on 127.0.0.1 accepts nothing. Names are resolved by a resolver the
  test controls, so nothing leaves 127.0.0.0/8. A redirect (to a private address) is not
  followed. The connection goes to the very address that was checked, with the name as Host
  and SNI: a resolver answering differently the second time is never asked twice.
- Saving such a URL (and http://, or one with credentials) is refused with the field.
- The secret is in the answer that creates (or rotates) it, and nowhere after: not in the
  API's answers, the pages, the database's text, nor the worker's log.
(Another organization's endpoints and deliveries answer 404 on every route:
tests/security/test_routes.py, with the ids of tests/security/conftest.py.)
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient

from tasks.core import config, db
from tasks.core.config import Settings
from tasks.webhooks import deliver, safety
from tests.security.conftest import Owned
from tests.support.hooks import Answer, Receiver
from tests.support.web import csrf_token

Conn = Any


class Recording(httpx.AsyncBaseTransport):
    """Stands for the network underneath: records what it was asked, answers 200 without sending a packet."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, text="ok")


class Resolver:
    """The test's DNS: names to addresses, and every question it was asked."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        queue = self.answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture(scope="module")
def plain() -> Settings:
    """Settings for the tests that need no database (the delivery's transport alone)."""
    return config.load({"APP_ENV": "test", "DATABASE_URL": "postgresql://127.0.0.1:1/unused"})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def _post(settings: Settings, resolver: Resolver, inner: httpx.AsyncBaseTransport, url: str) -> httpx.Response:
    async def run() -> httpx.Response:
        sender = deliver.Sender(settings, resolver=resolver, inner=inner)
        try:
            return await sender.client.post(url, content=b"{}")
        finally:
            await sender.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("target", "dns"),
    [
        ("http://127.0.0.1:{port}/hook", {}),
        ("http://[::1]:{port}/hook", {}),
        ("http://[::ffff:127.0.0.1]:{port}/hook", {}),
        ("http://0.0.0.0:{port}/hook", {}),
        ("http://localhost:{port}/hook", {"localhost": [["127.0.0.1"]]}),
        ("http://internal.example.test:{port}/hook", {"internal.example.test": [["10.0.0.5"]]}),
        ("http://metadata.example.test/latest", {"metadata.example.test": [["169.254.169.254"]]}),
        ("http://office.example.test/", {"office.example.test": [["192.168.1.20"]]}),
        ("http://v6.example.test/", {"v6.example.test": [["fd00::1"]]}),
        ("http://mixed.example.test:{port}/", {"mixed.example.test": [["93.184.216.34", "127.0.0.1"]]}),
    ],
)
def test_a_private_loopback_or_link_local_address_is_refused_before_any_connection(
    plain: Settings, receiver: Receiver, target: str, dns: dict[str, list[list[str]]]
) -> None:
    strict = dataclasses.replace(plain, webhook_allow_http=True, webhook_allow_private=False)
    inner = Recording()
    resolver = Resolver(dns)

    with pytest.raises(safety.Refused):
        _post(strict, resolver, inner, target.format(port=receiver.port))

    assert inner.requests == []  # nothing underneath was asked to connect
    assert receiver.connections == 0


def test_the_connection_goes_to_the_address_checked_with_the_name_as_host_and_sni(plain: Settings) -> None:
    """A rebinding resolver (public first, loopback next) is asked once: its second answer is never used."""
    strict = dataclasses.replace(plain, webhook_allow_private=False)
    resolver = Resolver({"hooks.example.com": [["93.184.216.34"], ["127.0.0.1"]]})
    inner = Recording()

    answer = _post(strict, resolver, inner, "https://hooks.example.com/in?x=1")

    assert answer.status_code == 200
    assert resolver.asked == ["hooks.example.com"]
    [sent] = inner.requests
    assert (sent.url.host, sent.url.port, sent.url.path, sent.url.query) == ("93.184.216.34", None, "/in", b"x=1")
    assert sent.headers["host"] == "hooks.example.com"
    assert sent.extensions["sni_hostname"] == "hooks.example.com"


def test_a_redirect_to_a_private_address_is_not_followed(plain: Settings, receiver: Receiver) -> None:
    """The receiver stands for a public endpoint (allowed here) that redirects to the metadata address."""
    lenient = dataclasses.replace(plain, webhook_allow_http=True, webhook_allow_private=True)
    receiver.default = Answer(302, b"", {"location": "http://169.254.169.254/latest/meta-data/"})
    resolver = Resolver({})
    underneath = Counting(httpx.AsyncHTTPTransport(retries=0))

    answer = _post(lenient, resolver, underneath, receiver.url)

    assert answer.status_code == 302
    assert [str(r.url) for r in underneath.requests] == [receiver.url]  # one request, to the receiver only


class Counting(httpx.AsyncBaseTransport):
    """The real transport, with a list of what it was asked to send."""

    def __init__(self, real: httpx.AsyncBaseTransport) -> None:
        self.real = real
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.real.handle_async_request(request)

    async def aclose(self) -> None:
        await self.real.aclose()


#: URLs refused when saved, and why.
REFUSED = [
    ("http://hooks.example.com/x", "url: must start with https://"),
    ("https://127.0.0.1/x", "url: 127.0.0.1 is a loopback address"),
    ("https://10.1.2.3/x", "url: 10.1.2.3 is a private address"),
    ("https://169.254.169.254/x", "url: 169.254.169.254 is a link-local address"),
    ("https://[::1]/x", "url: ::1 is a loopback address"),
    ("https://localhost/x", "url: localhost is not reachable from the outside"),
    ("https://user:pw@hooks.example.com/x", "url: must not hold a user name or password"),
    ("ftp://hooks.example.com/x", "url: must start with https://"),
]


def test_saving_a_url_that_cannot_be_delivered_to_is_refused_with_the_field(
    alice_client: FlaskClient, conn: Conn
) -> None:
    token = csrf_token(alice_client)
    answers = {}
    for url, _ in REFUSED:
        answer = alice_client.post(
            "/api/v1/webhooks", json={"url": url, "event_types": ["email.sent"]}, headers={"X-CSRF-Token": token}
        )
        error = answer.get_json()["error"]
        answers[url] = (answer.status_code, error["code"], error["message"], error["field"])

    assert answers == {url: (422, "invalid", reason, "url") for url, reason in REFUSED}
    assert conn.execute("SELECT count(*) AS n FROM webhook_endpoints").fetchone() == {"n": 0}


def test_the_secret_is_shown_once_and_nowhere_after(alice_client: FlaskClient, conn: Conn, alices: Owned) -> None:
    token = csrf_token(alice_client)
    headers = {"X-CSRF-Token": token}
    made = alice_client.post(
        "/api/v1/webhooks", json={"url": "https://hooks.example.com/a", "event_types": ["email.sent"]}, headers=headers
    )
    assert made.status_code == 201
    secret, endpoint_id = made.get_json()["secret"], made.get_json()["id"]
    rotated = alice_client.post(f"/api/v1/webhooks/{endpoint_id}/rotate", headers=headers).get_json()["secret"]
    assert secret.startswith("whsec_") and rotated.startswith("whsec_") and rotated != secret
    created_page = alice_client.post(
        "/webhooks/",
        data={
            "csrf_token": token,
            "url": "https://hooks.example.com/b",
            "event_type": ["email.failed"],
            "enabled": "1",
        },
    )
    assert created_page.status_code == 200
    page_secret = created_page.get_data(as_text=True).split('<code id="new-secret">')[1].split("<")[0]
    assert page_secret.startswith("whsec_")

    after = [
        alice_client.get("/api/v1/webhooks"),
        alice_client.get(f"/api/v1/webhooks/{endpoint_id}"),
        alice_client.patch(f"/api/v1/webhooks/{endpoint_id}", json={"description": "renamed"}, headers=headers),
        alice_client.post(f"/api/v1/webhooks/{endpoint_id}/test", headers=headers),
        alice_client.get(f"/api/v1/webhooks/{endpoint_id}/deliveries"),
        alice_client.get("/webhooks/"),
        alice_client.get(f"/webhooks/{endpoint_id}"),
        alice_client.get(f"/webhooks/{alices.webhook}"),
    ]
    texts = [r.get_data(as_text=True) for r in after]

    assert all(r.status_code in (200, 201) for r in after), [r.status_code for r in after]
    for shown in (secret, rotated, page_secret, alices.webhook_secret):
        assert not any(shown in text for text in texts)
        assert not any(
            shown.removeprefix("whsec_") in str(row) for row in conn.execute("SELECT * FROM webhook_endpoints")
        )
        assert not any(shown in str(row) for row in conn.execute("SELECT * FROM org_audit"))
    stored = db.one(conn, "webhook_endpoint_get", org_id=alices.org_id, id=endpoint_id)
    assert stored is not None and stored["secret"].startswith("gAAAA")  # a Fernet token
