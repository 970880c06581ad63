"""The operators' page: the queue, each transport's circuit breaker, the workers alive.

Only operators see it (OPERATOR_EMAILS; outside production also the dev user);
anyone else gets 404, as if it did not exist. It shows the same data as
``python -m tasks status`` and ``/ops/status`` (``tasks.ops.overview.overview``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template

from tasks.ops import overview as ops
from webapp import ext
from webapp.auth import is_operator, login_required

bp = Blueprint("operators", __name__)


@bp.get("/operators")
@login_required
def index() -> Any:
    """Show counts by status, the transports in chain order with their breakers, and the workers."""
    if not is_operator():
        abort(404)
    return render_template("operators.html", overview=ops.overview(ext.conn(), ext.settings()))
