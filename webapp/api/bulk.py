"""``/api/v1/emails/bulk``: a bulk action (cancel, reschedule, send now, retry) on every email a
search matches or the ids given; its progress; undo (tasks/domain/bulk.py, docs/bulk-actions.md).

As in the dashboard: ``dry_run`` answers the exact count first; over 100 emails the request
carries ``confirm_count``, the count; the action then runs as a job (202, its URL to follow).
"""

from __future__ import annotations

from typing import Any

from flask import url_for

from tasks.core import errors
from tasks.domain import bulk
from webapp import ext
from webapp.api import bp, json_body
from webapp.auth import scope

FIELDS = frozenset({"action", "q", "view", "mine", "ids", "to", "shift", "confirm_count", "dry_run"})


def _typed(data: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = data.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool)):
        raise errors.ValidationError(f"{name}: must be {what}", field=name)
    return value


def _read(data: dict[str, Any]) -> tuple[bulk.Selection, str, dict[str, Any]]:
    for name in data:
        if name not in FIELDS:
            raise errors.ValidationError(f"{name}: unknown field", field=name)
    action = _typed(data, "action", str, "one of " + ", ".join(bulk.ACTIONS))
    action = bulk.kind(action or "").name
    ids = _typed(data, "ids", list, "a list of email ids")
    if ids is not None and not all(isinstance(i, str) for i in ids):
        raise errors.ValidationError("ids: each must be an email's id", field="ids")
    if ids == []:
        raise errors.ValidationError("ids: name at least one email, or leave ids out to act on the search", field="ids")
    selection = bulk.Selection.of(
        _typed(data, "q", str, "a search"),
        _typed(data, "view", str, "a list's tab or a status"),
        bool(_typed(data, "mine", bool, "true or false")),
        ids,
    )
    raw = {"to": _typed(data, "to", str, "a time"), "shift": _typed(data, "shift", str, "a shift such as +2h")}
    return selection, action, bulk.parse_params(action, raw)


def _json(found: bulk.BulkAction) -> dict[str, Any]:
    return {"bulk_action": found.as_json(bulk.reasons(ext.conn(), found.id))}


@bp.post("/emails/bulk")
def create_bulk_action() -> Any:
    """Preview (``dry_run``) or start a bulk action; 202 with the URL of its progress."""
    data = json_body()
    selection, action, params = _read(data)
    dry_run = _typed(data, "dry_run", bool, "true or false")
    count = _typed(data, "confirm_count", int, "the number of emails, as an integer")
    where = scope(mine=selection.mine)
    if dry_run:
        found = bulk.preview(ext.conn(), where, selection, action, params)
        return {
            "dry_run": True,
            "action": found.action.name,
            "count": found.count,
            "left": found.left,
            "confirm_count_required": found.needs_typed_count,
            "sample": [
                {"id": str(e.id), "status": e.status, "subject": e.subject, "to": list(e.to_addrs)}
                for e in found.sample
            ],
        }
    bulk_id = bulk.confirm(ext.conn(), where, selection, action, params, confirm_count=count)
    location = url_for("api.get_bulk_action", bulk_id=bulk_id)
    return _json(bulk.get(ext.conn(), where, bulk_id)), 202, {"Location": location}


@bp.get("/emails/bulk/<bulk_id>")
def get_bulk_action(bulk_id: str) -> Any:
    """A bulk action and its progress: applied, skipped (and why), the seconds left to undo it."""
    return _json(bulk.get(ext.conn(), scope(), bulk_id))


@bp.post("/emails/bulk/<bulk_id>/undo")
def undo_bulk_action(bulk_id: str) -> Any:
    """Undo a finished cancel or reschedule within its seconds (409 otherwise)."""
    return _json(bulk.undo(ext.conn(), scope(), bulk_id, settings=ext.settings(), changed=ext.publish_rows))
