"""Personal access tokens in the dashboard: create (shown once), list, revoke."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from tasks.core import errors
from tasks.domain import tokens
from webapp import ext
from webapp.auth import login_required, signed_in_user

bp = Blueprint("tokens", __name__, url_prefix="/tokens")


@bp.get("/")
@login_required
def index() -> Any:
    """List the user's tokens."""
    user = signed_in_user()
    return render_template("tokens.html", tokens=tokens.list_for(ext.conn(), user), secret=None)


@bp.post("/")
@login_required
def create() -> Any:
    """Create a token and show its secret this once."""
    user = signed_in_user()
    try:
        _token, secret = tokens.create(ext.conn(), user, request.form.get("name", ""))
    except errors.ValidationError as exc:
        flash(exc.message, "error")
        return redirect(url_for("tokens.index"))
    return render_template("tokens.html", tokens=tokens.list_for(ext.conn(), user), secret=secret)


@bp.post("/<int:token_id>/revoke")
@login_required
def revoke(token_id: int) -> Any:
    """Revoke one of the user's tokens."""
    user = signed_in_user()
    tokens.revoke(ext.conn(), user, token_id)
    flash("Token revoked: programs using it are now refused.", "ok")
    return redirect(url_for("tokens.index"))
