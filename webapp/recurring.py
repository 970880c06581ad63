"""Recurring emails in the dashboard: the Recurring tab (each with its next occurrence, last
result, pause and resume) and a recurrence's page (its rule, next occurrences and history).
Creating one is the compose form's "Repeat" (webapp/static/recurring.js, through the API)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for

from tasks.domain import orgs, recurrences
from tasks.domain.models import Status
from webapp import ext
from webapp.auth import login_required, membership, require, scope

bp = Blueprint("recurring", __name__, url_prefix="/recurring")


def _publish(changed: recurrences.Changed) -> None:
    for row in changed.cancelled:
        ext.publish(row["org_id"], str(row["id"]), Status.CANCELLED)


@bp.get("/")
@login_required
def index() -> Any:
    """The Recurring tab: the organization's recurrences not deleted (``?mine=1``: the caller's own), newest
    first."""
    mine = request.args.get("mine") == "1"
    return render_template(
        "recurring.html",
        recurrences=recurrences.list_for(ext.conn(), scope(mine=mine)),
        mine=mine,
        may_send=membership().may(orgs.Action.SEND),
    )


@bp.get("/<recurrence_id>")
@login_required
def show(recurrence_id: str) -> Any:
    """A recurrence: its rule in words, its next occurrences, and its history linking to each email."""
    conn = ext.conn()
    rec = recurrences.get(conn, scope(), recurrence_id)
    return render_template(
        "recurrence.html",
        rec=rec,
        upcoming=recurrences.upcoming(conn, rec, 5),
        history=recurrences.history(conn, scope(), rec.id),
        may_send=membership().may(orgs.Action.SEND),
    )


def _check(recurrence_id: str) -> None:
    """404 outside the organization, then 403 (with the reason) for a viewer."""
    recurrences.get(ext.conn(), scope(), recurrence_id)
    require(orgs.Action.SEND)


@bp.post("/<recurrence_id>/pause")
@login_required
def pause(recurrence_id: str) -> Any:
    _check(recurrence_id)
    changed = recurrences.pause(ext.conn(), scope(), recurrence_id, reason="paused by its owner")
    _publish(changed)
    flash("Paused: nothing more goes out until you resume it.", "ok")
    return redirect(url_for("recurring.show", recurrence_id=changed.recurrence.id))


@bp.post("/<recurrence_id>/resume")
@login_required
def resume(recurrence_id: str) -> Any:
    _check(recurrence_id)
    changed = recurrences.resume(ext.conn(), scope(), recurrence_id)
    flash("Resumed from the next occurrence.", "ok")
    return redirect(url_for("recurring.show", recurrence_id=changed.recurrence.id))


@bp.post("/<recurrence_id>/delete")
@login_required
def delete(recurrence_id: str) -> Any:
    _check(recurrence_id)
    changed = recurrences.delete(ext.conn(), scope(), recurrence_id)
    _publish(changed)
    flash("Deleted. The emails it already sent are still in your lists.", "ok")
    return redirect(url_for("recurring.index"))
