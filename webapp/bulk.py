"""Bulk actions in the dashboard: confirm (the exact count, a sample, what is left alone, the
typed count over 100), then follow the job's progress to its result, and undo it for a few seconds.

The list's action bar and the Failures view's group buttons lead to ``/bulk/new`` (a GET: it
changes nothing); its form posts to ``/bulk``. Viewers may look but not act (403); another
organization's bulk action is 404 (tasks/domain/bulk.py, docs/bulk-actions.md).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from tasks.core import errors
from tasks.domain import bulk, orgs
from webapp import ext
from webapp.auth import login_required, membership, require, scope
from webapp.dashboard import local_time, readable

bp = Blueprint("bulk", __name__, url_prefix="/bulk")


def _selection(form: Any) -> bulk.Selection:
    """The selection a form names: every email of the search (``all``), else the rows picked."""
    ids = None if form.get("all") == "1" else form.getlist("ids")
    return bulk.Selection.of(form.get("q"), form.get("view"), form.get("mine") == "1", ids)


def _params(form: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"shift": form.get("shift") or None}
    if form.get("to"):
        raw["to"] = form.get("to")
    elif form.get("local"):
        raw["to"] = local_time(form.get("local", ""), form.get("time_zone") or "UTC")
    return raw


def _confirm_page(
    selection: bulk.Selection, action: str, form: Any, error: errors.ReachError | None = None, status: int = 200
) -> Any:
    preview = bulk.preview(ext.conn(), scope(mine=selection.mine), selection, action)
    return render_template(
        "bulk_confirm.html",
        preview=preview,
        form=form,
        error=readable(error) if error else None,
        error_field=error.field if error else None,
        confirm_above=bulk.CONFIRM_ABOVE,
        undo_seconds=int(bulk.UNDO_WINDOW.total_seconds()),
    ), status


@bp.get("/new")
@login_required
def new() -> Any:
    """The confirmation page: what the action would do, exactly (nothing changes yet)."""
    require(orgs.Action.SEND)
    try:
        selection = _selection(request.args)
        action = bulk.kind(request.args.get("action", "")).name
        return _confirm_page(selection, action, request.args)
    except errors.ValidationError as exc:
        flash(readable(exc), "error")
        return redirect(url_for("dashboard.index", view=request.args.get("view"), q=request.args.get("q") or None))


@bp.post("")
@login_required
def create() -> Any:
    """Confirm: the snapshot, the audit line and the job, in one transaction; then its progress page."""
    require(orgs.Action.SEND)
    form = request.form
    try:
        selection = _selection(form)
        action = bulk.kind(form.get("action", "")).name
    except errors.ValidationError as exc:
        flash(readable(exc), "error")
        return redirect(url_for("dashboard.index"))
    try:
        params = bulk.parse_params(action, _params(form))
        expected = int(form["expected"]) if form.get("expected", "").isdigit() else None
        bulk_id = bulk.confirm(
            ext.conn(),
            scope(mine=selection.mine),
            selection,
            action,
            params,
            confirm_count=form.get("confirm_count"),
            expected=expected,
        )
    except errors.ValidationError as exc:
        return _confirm_page(selection, action, form, exc, 422)
    return redirect(url_for("bulk.show", bulk_id=bulk_id))


def _progress(found: bulk.BulkAction) -> dict[str, Any]:
    data = found.as_json(bulk.reasons(ext.conn(), found.id))
    data["undo_url"] = url_for("bulk.undo", bulk_id=found.id) if found.kind.undoable else None
    return data


@bp.get("/<bulk_id>")
@login_required
def show(bulk_id: str) -> Any:
    """The progress page: updates itself (``bulk.js`` polls the JSON) and ends with the result."""
    found = bulk.get(ext.conn(), scope(), bulk_id)
    return render_template(
        "bulk.html",
        action=found,
        progress=_progress(found),
        examples=bulk.skipped_examples(ext.conn(), found.id),
        may_act=membership().may(orgs.Action.SEND),
    )


@bp.get("/<bulk_id>.json")
@login_required
def progress(bulk_id: str) -> Any:
    """The progress as JSON: counts, state, the seconds left to undo, why emails were skipped."""
    return jsonify(_progress(bulk.get(ext.conn(), scope(), bulk_id)))


@bp.post("/<bulk_id>/undo")
@login_required
def undo(bulk_id: str) -> Any:
    """Undo a finished cancel or reschedule, within its few seconds."""
    found = bulk.get(ext.conn(), scope(), bulk_id)  # 404 outside the organization
    require(orgs.Action.SEND)  # then 403 for a viewer
    try:
        done = bulk.undo(ext.conn(), scope(), found.id, settings=ext.settings(), changed=ext.publish_rows)
    except errors.Conflict as exc:
        flash(readable(exc), "error")
    else:
        flash(f"Undone: {done.restored} restored, {done.undo_skipped} left as they were.", "ok")
    return redirect(url_for("bulk.show", bulk_id=found.id))
