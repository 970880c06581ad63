"""Check API answers against the OpenAPI document the app serves."""

from __future__ import annotations

from typing import Any

import jsonschema
import referencing
from referencing.jsonschema import DRAFT202012

from webapp.api import openapi

URI = "urn:reachdbox:openapi"
_DOC = openapi.document()
_REGISTRY = referencing.Registry().with_resource(URI, referencing.Resource.from_contents(_DOC, DRAFT202012))


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def check(method: str, path: str, status: int, body: Any) -> None:
    """Fail unless ``status`` is documented for the operation and ``body`` matches its schema."""
    operation = _DOC["paths"][path][method.lower()]
    responses = operation["responses"]
    assert str(status) in responses, f"{method} {path} answered {status}, which is not documented"
    response = responses[str(status)]
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        pointer = "#/" + _pointer("components", "responses", name, "content", "application/json", "schema")
    else:
        pointer = "#/" + _pointer(
            "paths", path, method.lower(), "responses", str(status), "content", "application/json", "schema"
        )
    validator = jsonschema.Draft202012Validator({"$ref": URI + pointer}, registry=_REGISTRY)
    validator.validate(body)


def check_schema(name: str, body: Any) -> None:
    """Fail unless ``body`` matches the document's schema ``name`` (a webhook's payload, say)."""
    pointer = "#/" + _pointer("components", "schemas", name)
    jsonschema.Draft202012Validator({"$ref": URI + pointer}, registry=_REGISTRY).validate(body)
