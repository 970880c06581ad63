"""The JSON API, ``/api/v1``: the dashboard's operations for scripts and other programs.

Authenticated by a personal access token (``Authorization: Bearer``; only here, never
on a page) or by the session cookie plus a CSRF token (``webapp/security.py``); without
either, 401 with ``WWW-Authenticate: Bearer``. Emails are shown as ``tasks.domain.present``
shapes them. Errors are ``{"error": {"code", "message", "field"}}``.
The OpenAPI document at ``/api/v1/openapi.json`` describes exactly this.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, abort, g, request

from tasks.domain import orgs
from webapp import auth
from webapp.errors import error_response

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC_ENDPOINTS = frozenset({"api.openapi"})


@bp.before_request
def _require_user() -> Response | None:
    """Answer 401 to a request that is neither signed in nor carrying a valid token (RFC 6750's challenge)."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if auth.current_user() is not None:
        # Reading needs the viewer role (and a token's 'read' scope); anything else, member ('send').
        auth.require(orgs.Action.READ if request.method in ("GET", "HEAD", "OPTIONS") else orgs.Action.SEND)
        return None
    problem = g.get("token_problem") or "sign in, or send 'Authorization: Bearer <personal access token>'"
    response = error_response(401, "unauthenticated", problem)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def json_body() -> dict[str, Any]:
    """Return the request's JSON object, or answer 400."""
    data = request.get_json(silent=True, force=True) if request.data else None
    if not isinstance(data, dict):
        abort(400, "the body must be a JSON object")
    try:
        # JSON may spell lone surrogates (\ud800) that no UTF-8 text, and so no database, can hold.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        abort(400, "the body must be valid Unicode text (no lone surrogates)")
    return data


def idempotency_key(data: dict[str, Any]) -> Any:
    """Return the Idempotency-Key header (or the body's ``idempotency_key``)."""
    return request.headers.get("Idempotency-Key", data.get("idempotency_key"))


from webapp.api import (  # noqa: E402,F401  (routes register on bp)
    batches,
    bulk,
    emails,
    insights,
    openapi,
    org,
    recurrences,
    suppressions,
    webhooks,
)
