"""The operators' page: the alerts, the queue, each transport's circuit breaker, the workers alive.

Only operators see it (OPERATOR_EMAILS; outside production also the dev user);
anyone else gets 404, as if it did not exist. It shows the same data as
``python -m tasks status`` and ``/ops/status`` (``tasks.ops.overview.overview``),
and charts of the last hour or 24 hours (``?range=``), drawn in the browser from
``/operators/charts.json`` (webapp/charts.py).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request

from tasks.ops import alerts, charts
from tasks.ops import overview as ops
from webapp import ext
from webapp.auth import is_operator, login_required

bp = Blueprint("operators", __name__)


@bp.get("/operators")
@login_required
def index() -> Any:
    """Show the alerts, counts by status, the transports in chain order with their breakers, the workers, the charts."""
    if not is_operator():
        abort(404)
    chart_range = request.args.get("range", "1h")
    if chart_range not in charts.RANGES:
        chart_range = "1h"
    conn = ext.operator_conn()
    return render_template(
        "operators.html",
        overview=ops.overview(conn, ext.settings()),
        alerts=alerts.split(alerts.recent(conn)),
        chart_range=chart_range,
    )
