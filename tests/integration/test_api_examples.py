"""The OpenAPI document's worked examples, sent to a running app: each gets the answer it shows.

For every response example of every operation (webapp/api/examples.py says how an
example's name ties a request to its answer), the request is built from the document
alone and sent to a real gunicorn with a personal access token of a user of its own.
The answer must have the documented status, match the documented schema, and equal the
example field by field, except the fields that differ from run to run (VARIES). The ids
an exchange names (EMAIL_ID, BATCH_ID) are created first by the example that creates
them, and stand for the real ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tasks.core import config, db
from tasks.domain import bulk, emails, tokens
from tests.support import procs
from tests.support.oauth_provider import OAuthProvider
from tests.support.openapi_check import check
from tests.support.smtp_sink import free_port
from tests.support.web import Server
from webapp.api import openapi

DOCUMENT = openapi.document()
#: Fields set by the clock or by who asks, never twice the same: checked by the schema only.
VARIES = frozenset(
    {"created_at", "updated_at", "at", "job_id", "owner_id", "org_id", "why", "secret", "webhook_id", "timestamp"}
)
#: ...and, for one operation, the times it sets to the moment of the request.
VARIES_IN = {
    "sendEmailNow": frozenset({"send_at", "send_at_local", "next_attempt_at"}),
    # Who made the example's token (a user of its own) and the token's id.
    "getOrgAudit": frozenset({"actor_id", "actor_email", "target", "detail"}),
    "rotateWebhookSecret": frozenset({"previous_secret_valid_until"}),
    "redeliverWebhook": frozenset({"next_attempt_at"}),
    # The window and the hours are the moment of the request's.
    "getFailures": frozenset({"since", "until"}),
    "getUpcoming": frozenset({"now", "start"}),
    # A bulk action's id is made when it is confirmed; once its job has run, the times it ended.
    "createBulkAction": frozenset({"id"}),
    "getBulkAction": frozenset({"finished_at", "undo_until", "undo_seconds_left"}),
    "undoBulkAction": frozenset({"finished_at", "undo_until"}),
}
#: What the 401 examples are sent with: the shape of a token, but no one's.
NOT_A_TOKEN = "rdbx_not-a-real-token-0000000000000000"


@dataclasses.dataclass(frozen=True)
class Exchange:
    """One named example: an operation's request and the answer the document shows for it."""

    operation_id: str
    method: str
    path: str
    name: str
    status: int
    answer: Any

    def __str__(self) -> str:
        return f"{self.operation_id}-{self.status}-{self.name}"


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (the shared error answers live in components)."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def exchanges() -> list[Exchange]:
    """Every response example of every operation."""
    found = []
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                media = _resolve(response).get("content", {}).get("application/json", {})
                for name, shown in media.get("examples", {}).items():
                    found.append(Exchange(operation["operationId"], method, path, name, int(status), shown["value"]))
    return found


EXCHANGES = exchanges()


def _creators() -> dict[str, tuple[Exchange, tuple[str, ...]]]:
    """Which exchange creates each documented id, and where the id is in its answer."""
    out: dict[str, tuple[Exchange, tuple[str, ...]]] = {}
    for x in EXCHANGES:
        if x.status == 201:
            where = ("id",) if "id" in x.answer else ("batch", "id")
            out[_dig(x.answer, where)] = (x, where)
        elif x.status == 202:  # a bulk action, accepted for its job
            out[_dig(x.answer, ("bulk_action", "id"))] = (x, ("bulk_action", "id"))
    return out


def _dig(value: Any, where: tuple[str, ...]) -> Any:
    for key in where:
        value = value[key]
    return value


CREATORS = _creators()


@dataclasses.dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


def request_of(x: Exchange) -> Request:
    """Build the exchange's request from the document: each part's example of the same name,
    else a required part's first example; an optional part without one is left out."""
    item = DOCUMENT["paths"][x.path]
    operation = item[x.method]
    path, query, headers = x.path, {}, {}
    for parameter in item.get("parameters", []) + operation.get("parameters", []):
        shown = parameter.get("examples", {})
        if x.name in shown:
            value = shown[x.name]["value"]
        elif parameter.get("required"):
            assert shown, f"{x}: the required parameter {parameter['name']} has no example"
            value = next(iter(shown.values()))["value"]
        else:
            continue
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", str(value))
        elif parameter["in"] == "query":
            query[parameter["name"]] = str(value)
        else:
            headers[parameter["name"]] = str(value)
    body = None
    if "requestBody" in operation:
        shown = operation["requestBody"]["content"]["application/json"]["examples"]
        body = shown.get(x.name, next(iter(shown.values())))["value"]
    return Request(path, query, headers, body)


def substitute(value: Any, ids: dict[str, str]) -> Any:
    """Put the real ids where the document has its example ones (also inside text)."""
    if isinstance(value, dict):
        return {k: substitute(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, ids) for v in value]
    if isinstance(value, str):
        for documented, real in ids.items():
            value = value.replace(documented, real)
    return value


def differences(shown: Any, got: Any, varies: frozenset[str], where: str = "") -> list[str]:
    """List where the answer differs from the example (the fields in ``varies`` aside)."""
    if isinstance(shown, dict) and isinstance(got, dict):
        out = [f"{where}/{k}: documented, not answered" for k in shown.keys() - got.keys()]
        out += [f"{where}/{k}: answered, not documented" for k in got.keys() - shown.keys()]
        for key in shown.keys() & got.keys():
            # An event's id is a sequence number; an email's or batch's is mapped to the real one.
            if key in varies or (key == "id" and isinstance(shown[key], int)):
                continue
            out += differences(shown[key], got[key], varies, f"{where}/{key}")
        return out
    if isinstance(shown, list) and isinstance(got, list) and len(shown) == len(got):
        return [
            d
            for i, (s, g) in enumerate(zip(shown, got, strict=True))
            for d in differences(s, g, varies, f"{where}/{i}")
        ]
    return [] if shown == got else [f"{where or '/'}: documented {shown!r}, answered {got!r}"]


@dataclasses.dataclass
class Live:
    """A real gunicorn on a database of this module's own, and a way to get a fresh user."""

    server: Server
    database_url: str
    users: Iterator[int] = dataclasses.field(default_factory=itertools.count)

    def new_token(self, scopes: tuple[str, ...] = ("send", "read", "admin")) -> str:
        """A personal access token of a user no other test uses (so their lists hold only theirs)."""
        with db.connect(self.database_url) as conn:
            user = emails.ensure_user(conn, email=f"example-{next(self.users)}@example.com", name="Ann")
            return tokens.create(conn, user, "examples", scopes=scopes)[1]

    def send(self, x: Exchange, token: str, ids: dict[str, str]) -> requests.Response:
        """Send the exchange's request: with the token, or, for a 401 example, with one that is not valid."""
        request = Request(**substitute(dataclasses.asdict(request_of(x)), ids))
        headers = request.headers | {"Authorization": f"Bearer {NOT_A_TOKEN if x.status == 401 else token}"}
        return requests.request(
            x.method.upper(),
            f"{self.server.url}/api/v1{request.path}",
            params=request.query,
            json=request.body,
            headers=headers,
            timeout=30,
        )


@pytest.fixture(scope="module")
def live(
    module_database_url: str, oauth_provider: OAuthProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """One gunicorn for the module: each example acts as a user of its own, so they cannot meet."""
    env = procs.process_env(
        database_url=module_database_url,
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        redis_prefix=f"rdbx-test-{os.getpid()}-examples:",
        smtp_port=free_port(),  # nothing is sent: no worker runs
        mail_domain="example.com",  # as in the documented message ids
    )
    log_dir: pathlib.Path = tmp_path_factory.mktemp("examples")
    server = Server(env | oauth_provider.env() | {"API_RATE_LIMIT": "100000/minute"}, log_dir)
    yield Live(server, module_database_url)
    server.stop()


@pytest.mark.parametrize("x", EXCHANGES, ids=str)
def test_the_example_gets_the_answer_the_document_shows(live: Live, x: Exchange) -> None:
    # A 403 example shows what a token without the admin scope is told.
    token = live.new_token(("send", "read") if x.status == 403 else ("send", "read", "admin"))
    ids: dict[str, str] = {}
    named = json.dumps([dataclasses.asdict(request_of(x)), x.answer])
    for documented, (creator, where) in CREATORS.items():
        if documented in named and creator != x:
            # A creator may act on what an earlier one created (a webhook's test delivery; a
            # bulk action's emails, which it names, created first if this exchange does not).
            needs = json.dumps(dataclasses.asdict(request_of(creator)))
            for first, (maker, at) in CREATORS.items():
                if first in needs and first not in ids and maker != creator:
                    made = live.send(maker, token, ids)
                    assert made.status_code == maker.status, made.text
                    ids[first] = _dig(made.json(), at)
            created = live.send(creator, token, ids)
            assert created.status_code == creator.status, created.text
            ids[documented] = _dig(created.json(), where)
            if creator.status == 202:  # a bulk action: its job runs (no worker here), as a worker would
                with db.connect(live.database_url) as conn:
                    bulk.run(conn, ids[documented], config.load({"DATABASE_URL": live.database_url}))

    response = live.send(x, token, ids)

    assert response.status_code == x.status, response.text
    body = response.json()
    check(x.method, x.path, x.status, body)
    for documented, (creator, where) in CREATORS.items():
        if creator == x:
            ids[documented] = _dig(body, where)
    varies = VARIES | VARIES_IN.get(x.operation_id, frozenset())
    problems = differences(substitute(x.answer, ids), body, varies)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("x", EXCHANGES, ids=str)
def test_each_documented_answer_matches_its_own_schema(x: Exchange) -> None:
    """The fields the test above cannot compare are at least of the documented shape."""
    check(x.method, x.path, x.status, x.answer)


def test_every_operation_shows_a_success_an_error_and_401() -> None:
    operations = {
        op["operationId"] for item in DOCUMENT["paths"].values() for k, op in item.items() if k != "parameters"
    }
    shown = {(x.operation_id, x.status < 400, x.status == 401) for x in EXCHANGES}

    assert {op for op in operations if (op, True, False) not in shown} == set()
    assert {op for op in operations if not any((op, False, False) == s for s in shown)} == set()
    assert {op for op in operations if (op, False, True) not in shown} == set()
