"""The API fuzzed with Schemathesis against its own /api/v1/openapi.json, in-process (WSGI),
as a signed-in user on a fresh database: no 5xx, and every answer documented and matching
its schema. Valid and invalid data alike; a 4xx the document lists (422 for a business
rule, 409, 404...) is a fine answer. Bounded: a few dozen cases per operation and mode."""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.security.conftest import Owned
from webapp.api import openapi

pytestmark = pytest.mark.slow
EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
OPERATIONS = [
    (method.upper(), path)
    for path, item in openapi.document()["paths"].items()
    for method in item
    if method != "parameters"
]


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_the_api_answers_every_generated_request_as_documented(
    app: Flask, alices: Owned, method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    """Path ids are Alice's own half the time (so bodies reach the real logic), else random."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operation = schema[path][method]
    auth = {"Authorization": f"Bearer {alices.secret}"}
    ids = {
        "email_id": alices.email,
        "batch_id": alices.batch,
        "recurrence_id": alices.recurrence,
        "endpoint_id": alices.webhook,
        "delivery_id": alices.delivery,
    }
    fixed = {k: v for k, v in ids.items() if "{" + k + "}" in path}
    strategies = [operation.as_strategy(mode)]
    if fixed:
        strategies.append(operation.as_strategy(mode, path_parameters=fixed))
    checks = CHECKS + ([negative_data_rejection] if mode.is_negative else [])

    for strategy in strategies:

        @given(case=strategy)
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            case.call_and_validate(headers=auth, checks=checks)

        run()
