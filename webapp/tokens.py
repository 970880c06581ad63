"""API tokens in the dashboard: create (shown once), list, revoke.

A token belongs to one user in the current organization and carries scopes
(``send``, ``read``, ``admin``) no wider than its user's role there. Admins and
owners see and revoke every member's tokens in the organization; others, their own.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from tasks.core import errors
from tasks.domain import orgs, tokens
from webapp import ext
from webapp.auth import login_required, membership, signed_in_user

bp = Blueprint("tokens", __name__, url_prefix="/tokens")


def _page(secret: str | None) -> Any:
    member = membership()
    all_users = member.may(orgs.Action.ADMIN)
    found = tokens.list_for(ext.conn(), member.org_id, signed_in_user(), all_users=all_users)
    return render_template(
        "tokens.html",
        tokens=found,
        secret=secret,
        all_users=all_users,
        grantable=orgs.ROLE_SCOPES[member.role],
    )


@bp.get("/")
@login_required
def index() -> Any:
    """List the user's tokens in this organization (every member's, for admins)."""
    return _page(None)


@bp.post("/")
@login_required
def create() -> Any:
    """Create a token and show its secret this once."""
    member = membership()
    try:
        # No scope ticked (a script's form): what the role may use of send and read.
        wanted = request.form.getlist("scope") or [s for s in ("send", "read") if s in orgs.ROLE_SCOPES[member.role]]
        scopes = orgs.check_scopes(wanted, member.role)
        _token, secret = tokens.create(
            ext.conn(), signed_in_user(), request.form.get("name", ""), org_id=member.org_id, scopes=scopes
        )
    except errors.ValidationError as exc:
        flash(exc.message, "error")
        return redirect(url_for("tokens.index"))
    return _page(secret)


@bp.post("/<int:token_id>/revoke")
@login_required
def revoke(token_id: int) -> Any:
    """Revoke one of the user's tokens (any member's, for admins)."""
    member = membership()
    tokens.revoke(ext.conn(), member.org_id, signed_in_user(), token_id, all_users=member.may(orgs.Action.ADMIN))
    flash("Token revoked: programs using it are now refused.", "ok")
    return redirect(url_for("tokens.index"))
