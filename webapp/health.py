"""Process health for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    """Answer 200 while the process is up (no dependency is checked here)."""
    return {"status": "ok"}, 200
