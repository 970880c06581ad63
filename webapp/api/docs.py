"""The API reference page, ``/api/docs``: Swagger UI drawing ``/api/v1/openapi.json``.

Swagger UI is vendored under ``webapp/static/vendor/`` (pinned, with its licence; no
other host is asked for anything). Its "Try it out" sends requests from the page
itself: as the signed-in user (the session cookie, plus the CSRF token that
``webapp/static/api-docs.js`` adds to requests that change something), or with a
personal access token given to the Authorize button. The page is public, like the
document it draws; without a session or a token the API answers 401.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

#: The vendored Swagger UI: webapp/static/vendor/swagger-ui-<version>/ (its README says how to update).
SWAGGER_UI = "vendor/swagger-ui-5.35.0"

bp = Blueprint("apidocs", __name__)


@bp.get("/api/docs")
def reference() -> Any:
    """Draw the API reference (the page, its scripts and styles all come from this site)."""
    return render_template("api_docs.html", swagger_ui=SWAGGER_UI)
