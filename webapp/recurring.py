"""Recurring emails in the dashboard: the Recurring tab (each with its next occurrence, last
result, pause and resume), a recurrence's page (its rule, next occurrences and history) and
its edit form (the compose form's "Repeat" fields, prefilled; the edit applies to every
occurrence not yet sent, as the API's PATCH does). Creating one is the compose form's
"Repeat" (webapp/static/recurring.js, through the API)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from tasks.core import errors
from tasks.domain import orgs, recurrence_rules, recurrences, zones
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


#: The edit form's fields that hold the content, as the API names them.
_CONTENT = ("to", "cc", "bcc", "subject", "body_text")
#: Where the edit form shows an error beside its field; any other field's error goes to the form's.
_SLOTS = frozenset({*_CONTENT, "cron", "preset", "ends_at", "count", "starts_at", "time_zone"})


def _values(rec: recurrences.Recurrence) -> dict[str, Any]:
    """The edit form prefilled: the recurrence's content and its rule as the "Repeat" fields say it."""
    preset = rec.preset or {}
    kind = preset.get("kind", "cron")
    hour, minute = str(preset.get("time", "09:00")).split(":")
    monthly = ""
    if kind == "monthly":
        monthly = f"day:{preset['day']}" if "day" in preset else f"{preset['nth']}:{preset['weekday']}"
    until = zones.local(rec.ends_at, rec.time_zone).date().isoformat() if rec.ends_at else ""
    return {
        "to": ", ".join(rec.to_addrs),
        "cc": ", ".join(rec.cc_addrs),
        "bcc": ", ".join(rec.bcc_addrs),
        "subject": rec.subject,
        "body_text": rec.body_text,
        "repeat": kind,
        "repeat_time": f"{int(hour):02d}:{minute}",
        "repeat_day": list(preset.get("days", [])),
        "repeat_monthly": monthly,
        "repeat_every": str(preset.get("every", 1)),
        "repeat_minute": str(preset.get("minute", 0)),
        "cron": rec.cron,
        "repeat_until": until,
        # The end as stored, kept while its day is not changed (it need not be the day's last second).
        "repeat_until_was": until,
        "keep_ends_at": rec.ends_at.isoformat() if rec.ends_at else "",
        "count": "" if rec.max_count is None else str(rec.max_count),
        "time_zone": rec.time_zone,
        # Not changed here: the preview starts from it, as the recurrence does.
        "starts_at": rec.starts_at.isoformat(),
    }


def _submitted(form: MultiDict[str, str], was: dict[str, Any]) -> dict[str, Any]:
    """The edit form as it was sent (shown again beside its errors)."""
    values = {
        name: form.get(name, "") for name in was if name not in ("repeat_day", "repeat_until_was", "keep_ends_at")
    }
    return values | {
        "repeat_day": form.getlist("repeat_day"),
        "repeat_until_was": was["repeat_until_was"],
        "keep_ends_at": was["keep_ends_at"],
    }


def _whole(raw: str) -> int | str:
    """A number field as a number when it is one (the rule's check names what is wrong otherwise)."""
    return int(raw) if raw.strip().isdigit() else raw


def _preset(form: MultiDict[str, str]) -> dict[str, Any]:
    """The preset the "Repeat" fields say (as recurring.js builds it for the API)."""
    kind, time = form.get("repeat", ""), form.get("repeat_time", "") or "09:00"
    if kind == "hourly":
        return {
            "kind": kind,
            "every": _whole(form.get("repeat_every", "1")),
            "minute": _whole(form.get("repeat_minute", "") or "0"),
        }
    if kind == "weekly":
        return {"kind": kind, "time": time, "days": form.getlist("repeat_day")}
    if kind == "monthly":
        first, _, second = form.get("repeat_monthly", "").partition(":")
        if first == "day":
            return {"kind": kind, "time": time, "day": second if second == "last" else _whole(second)}
        return {"kind": kind, "time": time, "weekday": second, "nth": first if first == "last" else _whole(first)}
    return {"kind": kind, "time": time}


def _end_of_day(raw: str, time_zone: str) -> dt.datetime:
    """Until a date: through the end of that day in the recurrence's zone."""
    try:
        day = dt.date.fromisoformat(raw.strip())
    except ValueError:
        raise errors.ValidationError("ends_at: must be a date such as 2027-06-30", field="ends_at") from None
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=zones.zone(time_zone) or dt.UTC)


def changes_from_form(form: MultiDict[str, str], rec: recurrences.Recurrence) -> dict[str, Any]:
    """What the edit form changes, as the API's PATCH body (only the fields that differ)."""
    was = _values(rec)
    changes: dict[str, Any] = {}
    for name in _CONTENT:
        value = form.get(name, "")
        if name == "body_text":
            value = value.replace("\r\n", "\n")  # a textarea sends CRLF
        if value != was[name]:
            changes[name] = value
    if form.get("repeat") == "cron":
        if rec.preset is not None or form.get("cron", "") != rec.cron:
            changes["cron"] = form.get("cron", "")
    elif (preset := _preset(form)) != rec.preset:
        changes["preset"] = preset
    time_zone = form.get("time_zone", "").strip()
    if time_zone != rec.time_zone:
        changes["time_zone"] = time_zone
    until = form.get("repeat_until", "")
    if until != was["repeat_until"] or (until and "time_zone" in changes):
        changes["ends_at"] = _end_of_day(until, time_zone) if until else None
    if form.get("count", "").strip() != was["count"]:
        changes["count"] = form.get("count", "").strip()
    return changes


def _field_errors(exc: errors.ValidationError) -> dict[str, str]:
    """Each problem beside its field ("field: " left out, as the compose form shows them)."""
    found: dict[str, str] = {}
    items = exc.details if len(exc.details) > 1 else [{"field": exc.field or "", "message": exc.message}]
    for item in items:
        field = item.get("field") or ""
        message = item["message"].removeprefix(f"{field}: ")
        slot = field if field in _SLOTS else "_form"
        found[slot] = f"{found[slot]} {message}" if slot in found else message
    return found


def _monthly_option(value: str) -> tuple[str, str] | None:
    """A monthly rule the form's list lacks (day 29 to 31, the fifth weekday: the API takes them)."""
    first, _, second = value.partition(":")
    if first == "day" and second.isdigit() and int(second) > 28:
        return value, f"day {second}"
    if first == "5" and second in recurrence_rules.DAYS:
        return value, f"the fifth {recurrence_rules.DAY_NAMES[recurrence_rules.DAYS.index(second)]}"
    return None


def _edit_page(rec: recurrences.Recurrence, values: dict[str, Any], problems: dict[str, str] | None = None) -> Any:
    return render_template(
        "recurrence_edit.html",
        rec=rec,
        v=values,
        errors=problems or {},
        extra_monthly=_monthly_option(values.get("repeat_monthly", "")),
    )


@bp.get("/<recurrence_id>/edit")
@login_required
def edit_form(recurrence_id: str) -> Any:
    """The edit form: the compose form's "Repeat" fields and the content, prefilled."""
    _check(recurrence_id)
    rec = recurrences.get(ext.conn(), scope(), recurrence_id)
    return _edit_page(rec, _values(rec))


@bp.post("/<recurrence_id>/edit")
@login_required
def edit(recurrence_id: str) -> Any:
    """Apply the edit to every occurrence not yet sent (``recurrences.edit``, as PATCH does); a refused
    value answers 422 with the form again, the reason beside its field, and nothing changed."""
    _check(recurrence_id)
    conn = ext.conn()
    rec = recurrences.get(conn, scope(), recurrence_id)
    try:
        changes = changes_from_form(request.form, rec)
        if not changes:
            flash("Nothing to change.", "ok")
            return redirect(url_for("recurring.show", recurrence_id=rec.id))
        changed = recurrences.edit(conn, scope(), rec.id, changes=changes, settings=ext.settings())
    except errors.ValidationError as exc:
        return _edit_page(rec, _submitted(request.form, _values(rec)), _field_errors(exc)), 422
    _publish(changed)
    flash("Saved: every occurrence not yet sent follows the change.", "ok")
    return redirect(url_for("recurring.show", recurrence_id=rec.id))
