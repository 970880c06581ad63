"""Errors as the API's ``{"error": {"code", "message", "field"}}`` or as a page, by who asked."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from flask import Flask, Response, jsonify, render_template, request
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from tasks.core import errors

log = structlog.get_logger("webapp")

STATUS = {
    errors.ValidationError: 422,
    errors.NotFound: 404,
    errors.Forbidden: 403,
    errors.Conflict: 409,
    errors.TooLate: 409,
}
CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal",
}


def wants_json() -> bool:
    """Tell whether the caller is a program (the API, or the dashboard's own scripts)."""
    if request.path.startswith(("/api/", "/feedback/")):  # the API, and providers posting events
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(status: int, code: str, message: str, field: str | None = None, **extra: Any) -> Response:
    """Build the error answer in the form the caller expects."""
    if wants_json():
        body: dict[str, Any] = {"code": code, "message": message, "field": field}
        body.update(extra)
        response = jsonify({"error": body})
    else:
        page = render_template("error.html", status=status, message=message, **extra)
        response = Response(page, mimetype="text/html")
    response.status_code = status
    return response


def _reach(exc: errors.ReachError) -> Response:
    status = next((s for cls, s in STATUS.items() if type(exc) is cls), None)
    if status is None:
        status = next((s for cls, s in STATUS.items() if isinstance(exc, cls)), 500)
    extra = {"details": exc.details} if len(exc.details) > 1 else {}
    return error_response(status, exc.code, exc.message, exc.field, **extra)


def _csrf(exc: CSRFError) -> Response:
    return error_response(403, "csrf", f"missing or invalid CSRF token ({exc.description}); reload the page")


def _rate(exc: RateLimitExceeded) -> Response:
    return error_response(429, "rate_limited", f"too many requests ({exc.description}); slow down")


def _http(exc: HTTPException) -> Response | HTTPException:
    status = exc.code or 500
    if status < 400:
        return exc
    message = exc.description or exc.name
    if status == 413:
        message = "the request body is too large"
    response = error_response(status, CODES.get(status, "error"), message)
    allowed = getattr(exc, "valid_methods", None)
    if status == 405 and allowed:
        response.headers["Allow"] = ", ".join(allowed)
    return response


def _unexpected(exc: Exception) -> Response:
    # The id ties what the user sees to the one log line with the traceback; the page
    # shows nothing else (no traceback, no request data).
    error_id = uuid.uuid4().hex[:12]
    log.error(
        "unhandled error",
        error_id=error_id,
        path=request.path,
        method=request.method,
        error=type(exc).__name__,
        exc_info=exc,
    )
    return error_response(
        500,
        "internal",
        f"something went wrong on our side; quote error id {error_id} to the operator",
        error_id=error_id,
    )


def init_app(app: Flask) -> None:
    app.register_error_handler(errors.ReachError, _reach)
    app.register_error_handler(CSRFError, _csrf)
    app.register_error_handler(RateLimitExceeded, _rate)
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(Exception, _unexpected)
