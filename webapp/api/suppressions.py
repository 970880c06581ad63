"""``/api/v1/suppressions``: the organization's suppression list (and the operators' global
one, read-only here): list and search, add, remove (admins; on the audit log), export and
import as CSV."""

from __future__ import annotations

from typing import Any

from flask import Response, request

from tasks.core import errors
from tasks.domain import suppression
from tasks.domain.orgs import Action
from webapp import ext
from webapp.api import bp, json_body
from webapp.auth import require, signed_in_user

ADD_FIELDS = frozenset({"address", "detail"})


def _only(data: dict[str, Any], allowed: frozenset[str]) -> None:
    for name in data:
        if name not in allowed:
            raise errors.ValidationError(f"{name}: unknown field", field=name)


def _before(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise errors.ValidationError("before: must be the next_before of the page before", field="before")
    return int(raw)


def _limit(raw: str | None) -> int:
    if raw is None:
        return suppression.PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= suppression.PAGE:
        raise errors.ValidationError(f"limit: must be from 1 to {suppression.PAGE}", field="limit")
    return int(raw)


@bp.get("/suppressions")
def list_suppressions() -> Any:
    """The list, newest first, a page at a time; ``q`` searches the addresses; ``format=csv``: all of it as CSV."""
    member = require(Action.READ)
    fmt = request.args.get("format", "json")
    if fmt not in ("json", "csv"):
        raise errors.ValidationError("format: must be json or csv", field="format")
    # Every parameter is checked whatever the format: a bad one is refused, never ignored.
    q = request.args.get("q")
    if q is not None and len(q) > 320:
        raise errors.ValidationError("q: at most 320 characters", field="q")
    limit = _limit(request.args.get("limit"))
    before = _before(request.args.get("before"))
    if fmt == "csv":
        return Response(
            "".join(suppression.export_csv(ext.conn(), member.org_id)),
            mimetype="text/csv",
            headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
        )
    page = suppression.entries(ext.conn(), member.org_id, q=q, before=before, limit=limit)
    return {
        "suppressions": [e.as_dict() for e in page],
        "next_before": page[-1].id if len(page) == limit else None,
    }


@bp.post("/suppressions")
def add_suppression() -> Any:
    """Put an address on the organization's list (by hand); one already there is left as it is."""
    member = require(Action.SEND)
    data = json_body()
    _only(data, ADD_FIELDS)
    detail = data.get("detail", "")
    if not isinstance(detail, str) or len(detail) > 500:
        raise errors.ValidationError("detail: text of at most 500 characters", field="detail")
    address = suppression.normalize(data.get("address"))
    added = suppression.add(ext.conn(), member.org_id, address, detail=detail, actor_id=signed_in_user().id)
    return {"address": address, "added": added}


@bp.delete("/suppressions/<address>")
def remove_suppression(address: str) -> Any:
    """Take an address off the organization's list (admins; on the audit log); one not there: nothing.
    The global list is the operators'."""
    member = require(Action.ADMIN)
    normalized = suppression.normalize(address)
    try:
        suppression.remove(ext.conn(), member.org_id, normalized, actor_id=signed_in_user().id)
    except errors.NotFound:
        return {"address": normalized, "removed": False}
    return {"address": normalized, "removed": True}


@bp.post("/suppressions/import")
def import_suppressions() -> Any:
    """Add the addresses of a CSV (an ``address`` or ``email`` column, else the first); bad lines are listed."""
    member = require(Action.SEND)
    data = json_body()
    _only(data, frozenset({"csv"}))
    done = suppression.import_csv(ext.conn(), member.org_id, data.get("csv"), actor_id=signed_in_user().id)
    return {"added": done.added, "already": done.already, "rejected": done.rejected}
