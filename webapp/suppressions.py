"""The suppression list in the dashboard: view and search, add, import and export CSV, remove.

Every member sees the organization's list and the operators' global one (marked, not
removable here) and may add and import; removing an address takes an admin and goes on
the audit log (tasks/domain/suppression.py).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from tasks.core import errors
from tasks.domain import orgs, suppression
from webapp import ext
from webapp.auth import login_required, require, signed_in_user

bp = Blueprint("suppressions", __name__, url_prefix="/suppressions")


@bp.get("/")
@login_required
def index() -> Any:
    """The list, newest first, searchable (``q``), a page at a time (``before``)."""
    member = require(orgs.Action.READ)
    q = request.args.get("q", "")[:320]
    before = request.args.get("before", "")
    page = suppression.entries(
        ext.conn(), member.org_id, q=q or None, before=int(before) if before.isdigit() and len(before) < 19 else None
    )
    return render_template(
        "suppressions.html",
        entries=page,
        q=q,
        next_before=page[-1].id if len(page) == suppression.PAGE else None,
        may_remove=member.may(orgs.Action.ADMIN),
        reasons=suppression.REASON_TEXT,
    )


@bp.post("/add")
@login_required
def add() -> Any:
    """Add one address by hand."""
    member = require(orgs.Action.SEND)
    try:
        address = suppression.normalize(request.form.get("address"))
        added = suppression.add(ext.conn(), member.org_id, address, actor_id=signed_in_user().id)
    except errors.ValidationError as exc:
        flash(exc.message, "error")
    else:
        flash(f"{address} added." if added else f"{address} was already on the list.", "ok")
    return redirect(url_for("suppressions.index"))


@bp.post("/remove")
@login_required
def remove() -> Any:
    """Take an address off the organization's list (admins; on the audit log)."""
    member = require(orgs.Action.ADMIN)
    entry = suppression.remove(ext.conn(), member.org_id, request.form.get("address", ""), actor_id=signed_in_user().id)
    flash(f"{entry.address} removed: it can be sent to again.", "ok")
    return redirect(url_for("suppressions.index"))


@bp.post("/import")
@login_required
def import_csv() -> Any:
    """Add the addresses of an uploaded (or pasted) CSV."""
    member = require(orgs.Action.SEND)
    upload = request.files.get("file")
    text = upload.read().decode("utf-8", "replace") if upload and upload.filename else request.form.get("csv")
    try:
        done = suppression.import_csv(ext.conn(), member.org_id, text, actor_id=signed_in_user().id)
    except errors.ValidationError as exc:
        flash(exc.message, "error")
    else:
        flash(f"{done.added} added, {done.already} already there, {len(done.rejected)} lines refused.", "ok")
    return redirect(url_for("suppressions.index"))


@bp.get("/export.csv")
@login_required
def export() -> Any:
    """The list as CSV."""
    member = require(orgs.Action.READ)
    return Response(
        "".join(suppression.export_csv(ext.conn(), member.org_id)),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )
