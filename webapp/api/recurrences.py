"""``/api/v1/recurrences``: recurring emails: create (idempotent), list, read, edit, pause,
resume, delete, and the next occurrences of one (or of a rule not saved yet)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request, url_for

from tasks.core import errors
from tasks.domain import listing, recurrences, zones
from tasks.domain.models import Status
from webapp import ext
from webapp.api import bp, idempotency_key, json_body
from webapp.auth import scope, signed_in_user


def _publish(changed: recurrences.Changed) -> None:
    """Tell the organization's open pages about the occurrences an action cancelled."""
    for row in changed.cancelled:
        ext.publish(row["org_id"], str(row["id"]), Status.CANCELLED)


def _instants(ats: list[dt.datetime], time_zone: str) -> list[str]:
    """Occurrences as ISO 8601 with the offset of the recurrence's zone at each (local wall-clock time)."""
    return [zones.local(at, time_zone).isoformat() for at in ats]


def _one(rec: recurrences.Recurrence) -> dict[str, Any]:
    body = rec.as_dict()
    body["next_occurrences"] = _instants(recurrences.upcoming(ext.conn(), rec, 5), rec.time_zone)
    return body


def _flag(raw: str | None) -> bool:
    """Read a query string's yes/no (``mine=true``); anything else is a 422."""
    if raw in (None, "", "0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise errors.ValidationError("mine: must be true or false", field="mine")


@bp.post("/recurrences")
def create_recurrence() -> Any:
    """Create a recurrence; the same Idempotency-Key returns the first one."""
    data = json_body()
    spec = recurrences.validate(
        {k: v for k, v in data.items() if k != "idempotency_key"},
        settings=ext.settings(),
        idempotency_key=idempotency_key(data),
    )
    rec, created = recurrences.create(
        ext.conn(), owner=signed_in_user(), spec=spec, settings=ext.settings(), org_id=scope().org_id
    )
    headers = {"Location": url_for("api.get_recurrence", recurrence_id=rec.id)}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return _one(rec), 201 if created else 200, headers


@bp.post("/recurrences/preview")
def preview_recurrence() -> Any:
    """The next occurrences of a proposed rule (the create body; only its rule is checked) and its summary.

    Nothing is stored."""
    data = json_body()
    n = recurrences.parse_n(request.args.get("n"))
    rule = recurrences.rule_from(data, settings=ext.settings())
    return {
        "summary": rule.summary(),
        "cron": rule.cron,
        "occurrences": _instants(recurrences.preview(rule, n), rule.time_zone),
    }


@bp.get("/recurrences")
def list_recurrences() -> Any:
    """The organization's recurrences (``mine``: the caller's own), newest first (``limit`` of them, default 50)."""
    limit = listing.parse_limit(request.args.get("limit"))
    found = recurrences.list_for(ext.conn(), scope(mine=_flag(request.args.get("mine"))), limit=limit)
    return {"recurrences": [r.as_dict(with_body=False) for r in found]}


@bp.get("/recurrences/<recurrence_id>")
def get_recurrence(recurrence_id: str) -> Any:
    """A recurrence, its next occurrences and its history (sent, failed, skipped)."""
    conn = ext.conn()
    rec = recurrences.get(conn, scope(), recurrence_id)
    return _one(rec) | {"history": recurrences.history_json(recurrences.history(conn, scope(), rec.id))}


@bp.patch("/recurrences/<recurrence_id>")
def edit_recurrence(recurrence_id: str) -> Any:
    """Change the content or the rule; it applies to every occurrence not yet sent."""
    data = json_body()
    conn = ext.conn()
    recurrences.get(conn, scope(), recurrence_id)  # 404 before any message about the body
    changed = recurrences.edit(conn, scope(), recurrence_id, changes=data, settings=ext.settings())
    _publish(changed)
    return _one(changed.recurrence)


@bp.delete("/recurrences/<recurrence_id>")
def delete_recurrence(recurrence_id: str) -> Any:
    """Delete it: what waits is cancelled; the emails it sent stay."""
    changed = recurrences.delete(ext.conn(), scope(), recurrence_id)
    _publish(changed)
    return {"id": str(changed.recurrence.id), "status": "deleted", "cancelled": len(changed.cancelled)}


@bp.post("/recurrences/<recurrence_id>/pause")
def pause_recurrence(recurrence_id: str) -> Any:
    """Pause: nothing more goes out (what waits is cancelled)."""
    changed = recurrences.pause(ext.conn(), scope(), recurrence_id, reason="paused by its owner")
    _publish(changed)
    return _one(changed.recurrence)


@bp.post("/recurrences/<recurrence_id>/resume")
def resume_recurrence(recurrence_id: str) -> Any:
    """Resume from the next occurrence after now."""
    return _one(recurrences.resume(ext.conn(), scope(), recurrence_id).recurrence)


@bp.get("/recurrences/<recurrence_id>/preview")
def preview_saved_recurrence(recurrence_id: str) -> Any:
    """The next ``n`` occurrences (default 5) of a saved recurrence."""
    n = recurrences.parse_n(request.args.get("n"))
    rec = recurrences.get(ext.conn(), scope(), recurrence_id)
    return {"occurrences": _instants(recurrences.upcoming(ext.conn(), rec, n), rec.time_zone)}
