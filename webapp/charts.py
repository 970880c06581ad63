"""The charts' data, as JSON for the pages' scripts (webapp/static/charts.js).

- ``/operators/charts.json?range=1h|24h``: the operators' charts; anyone else
  gets 404, as for the operators' page.
- ``/charts/mine.json?tz=Europe/Paris``: the signed-in user's own sent and
  failed emails per day over the last 7 days, in their browser's zone.
- ``/charts/lateness.json?range=1h|24h[&mine=1]``: how late the current
  organization's emails (``mine=1``: the user's own) were sent, per minute, for
  the Lateness view (webapp/insights.py).

All are read from the rollups of ``tasks.ops.charts`` plus the latest events,
so they stay cheap however many events the database holds.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, request

from tasks.core import errors
from tasks.ops import charts
from webapp import ext
from webapp.auth import current_user, is_operator, scope

bp = Blueprint("charts", __name__)


@bp.errorhandler(errors.ValidationError)
def _invalid(exc: errors.ValidationError) -> Any:
    """A bad parameter is answered in JSON whatever the request accepts: these are JSON resources."""
    return jsonify({"error": exc.as_dict()}), 422


def _signed_in() -> int:
    """Return the signed-in user's id; a script's request without a session gets 401, not a page."""
    user = current_user()
    if user is None:
        abort(401, "sign in first")
    return user.id


@bp.get("/operators/charts.json")
def operators() -> Any:
    """Return the operators' charts over the last hour or 24 hours, one point per minute."""
    _signed_in()
    if not is_operator():
        abort(404)
    return charts.operators(ext.operator_conn(), request.args.get("range", "1h"))


@bp.get("/charts/mine.json")
def mine() -> Any:
    """Return the signed-in user's sent and failed emails per day, last 7 days, in zone ``tz``."""
    owner_id = _signed_in()
    return charts.owner_days(ext.conn(), scope().org_id or 0, owner_id, request.args.get("tz", "UTC"))


@bp.get("/charts/lateness.json")
def lateness() -> Any:
    """Return how late the organization's (``mine=1``: the user's own) emails were sent, per minute."""
    _signed_in()
    mine = request.args.get("mine", "0")
    if mine not in ("0", "1"):
        raise errors.ValidationError("mine must be 0 or 1", field="mine")
    return charts.lateness(ext.conn(), scope(mine=mine == "1"), request.args.get("range", "1h"))
