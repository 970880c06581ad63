"""Send to a list, in the dashboard: the form (preview, then confirm) and a batch's page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from tasks.core import errors
from tasks.domain import batches, listing, orgs
from webapp import ext
from webapp.auth import login_required, require, scope

bp = Blueprint("batches", __name__, url_prefix="/batches")


@bp.get("/new")
@login_required
def new() -> Any:
    """Show the send-to-a-list form (it previews and confirms through the API)."""
    return render_template("batch_new.html", max_recipients=ext.settings().batch_max_recipients)


@bp.get("/<batch_id>")
@login_required
def show(batch_id: str) -> Any:
    """Show a batch: progress, next send, its emails, and cancel-the-rest."""
    conn = ext.conn()
    batch = batches.get(conn, scope(), batch_id)
    cursor = request.args.get("cursor") or None
    try:
        page = listing.emails_page(conn, scope(), cursor=cursor, limit=50, batch_id=batch.id)
    except errors.ValidationError:
        return redirect(url_for("batches.show", batch_id=batch.id))
    return render_template("batch.html", batch=batch, page=page, first_page=cursor is None)


@bp.post("/<batch_id>/cancel")
@login_required
def cancel(batch_id: str) -> Any:
    """Cancel every email of the batch that has not started sending."""
    batches.get(ext.conn(), scope(), batch_id)  # 404 outside the organization
    require(orgs.Action.SEND)  # then 403 for a viewer
    batch, cancelled = batches.cancel_rest(ext.conn(), scope(), batch_id)
    ext.publish(batch.org_id, "", "batch", batch_id=str(batch.id), cancelled=len(cancelled))
    flash(f"Cancelled {len(cancelled)} email(s) of this batch.", "ok")
    return redirect(url_for("batches.show", batch_id=batch.id))
