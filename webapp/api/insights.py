"""``/api/v1/failures`` and ``/api/v1/upcoming``: the Failures and Upcoming views as JSON, in the
caller's scope (the token's or the session's organization; ``mine=true``: only their own)."""

from __future__ import annotations

from typing import Any

from flask import request

from tasks.domain import failures, upcoming
from webapp import ext
from webapp.api import bp
from webapp.api.emails import _flag
from webapp.auth import scope


@bp.get("/failures")
def get_failures() -> Any:
    """The failed, uncertain and bounced emails of the last 7 days, grouped by cause."""
    mine = _flag(request.args.get("mine"))
    return failures.report(ext.conn(), scope(mine=mine)).as_json()


@bp.get("/upcoming")
def get_upcoming() -> Any:
    """The scheduled emails per hour (next 24) and per UTC day (next 7), against the limits."""
    mine = _flag(request.args.get("mine"))
    return upcoming.forecast(ext.conn(), scope(mine=mine), ext.settings()).as_json()
