"""Lists of a user's emails: filters, search (the language: ``search.py``), counts, and keyset pagination.

Pages are keyed on ``(created_at, id)``, newest first: a cursor names the last
row seen, so emails created meanwhile (always newer) never shift a page, and
nothing is skipped or repeated.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import re
import uuid
from typing import Any

from tasks.core import db, errors
from tasks.domain import search
from tasks.domain.models import Email, Scope, Status

#: Every status, in order.
ALL = tuple(Status)
#: The dashboard's tabs and the statuses each one shows ("sending" is brief: it stays with scheduled).
VIEWS: dict[str, tuple[Status, ...]] = {
    Status.SCHEDULED: (Status.SCHEDULED, Status.SENDING),
    Status.SENT: (Status.SENT,),
    Status.FAILED: (Status.FAILED,),
    Status.UNCERTAIN: (Status.UNCERTAIN,),
    Status.OFFLINE: (Status.OFFLINE,),
    Status.CANCELLED: (Status.CANCELLED,),
    "all": ALL,
}
#: What ``?status=`` accepts: a view, or one exact status.
FILTERS = (*VIEWS, *(s for s in Status if s not in VIEWS))
#: The delivery states a list can be narrowed to (the providers' feedback, tasks/domain/feedback.py).
DELIVERY_STATES = ("delivered", "deferred", "bounced", "complained")
MAX_LIMIT = 200
#: Far longer than any cursor the lists make (about 100 characters).
MAX_CURSOR = 1000
_DIGITS = re.compile(r"[0-9]{1,9}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Page:
    emails: list[Email]
    #: Opaque cursor of the next (older) page, or None on the last page.
    next_cursor: str | None


def encode_cursor(created_at: dt.datetime, row_id: uuid.UUID) -> str:
    """Return the opaque cursor that points just after this row."""
    raw = json.dumps([created_at.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[dt.datetime | None, uuid.UUID | None]:
    """Return the (created_at, id) a cursor names, or raise ``ValidationError``."""
    if not cursor:
        return None, None
    problem = errors.ValidationError("cursor: is not a cursor this API returned", field="cursor")
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR:
        raise problem
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeDecodeError):  # (binascii.Error and JSONDecodeError are ValueErrors)
        raise problem from None
    # Anyone can encode JSON: check its shape before each part is read.
    if not (isinstance(decoded, list) and len(decoded) == 2 and all(isinstance(p, str) for p in decoded)):
        raise problem
    try:
        when = dt.datetime.fromisoformat(decoded[0])
        row_id = uuid.UUID(decoded[1])
    except ValueError:
        raise problem from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise problem
    return when, row_id


def statuses_for(view: str | None) -> tuple[Status, ...]:
    """Return the statuses of a view or a single status (None: all)."""
    if view is None or view == "":
        return ALL
    if view in VIEWS:
        return VIEWS[view]
    if view in ALL:
        return (Status(view),)
    raise errors.ValidationError(f"status: must be one of {', '.join(FILTERS)}", field="status")


def parse_limit(raw: str | None, default: int = 50) -> int:
    """Return a page size from a query string's text: ASCII digits only, 1 to ``MAX_LIMIT``.

    ``str.isdigit`` and ``int`` accept other scripts' digits ("²" is a digit to the first and
    not to the second; "٣" is 3 to both): only what the API documents, an integer, is read.
    """
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw):
        raise errors.ValidationError(f"limit: must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    return _limit(int(raw))


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.ValidationError(f"limit: must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def emails_page(
    conn: db.Conn,
    scope: Scope,
    *,
    view: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    batch_id: uuid.UUID | None = None,
    delivery: str | None = None,
) -> Page:
    """Return one page of emails matching the search ``q`` (tasks/domain/search.py), newest first
    (``delivery``: only those in this delivery state)."""
    if delivery is not None and delivery not in DELIVERY_STATES:
        raise errors.ValidationError(f"delivery: must be one of {', '.join(DELIVERY_STATES)}", field="delivery")
    compiled = search.compile_query(q, scope, conn=conn)
    before_created, before_id = decode_cursor(cursor)
    limit = _limit(limit)
    rows = search.page_rows(
        conn,
        scope,
        compiled,
        statuses=list(statuses_for(view)),
        batch_id=batch_id,
        delivery=delivery,
        before_created=before_created,
        before_id=before_id,
        limit=limit + 1,
    )
    emails = [Email.from_row(r) for r in rows[:limit]]
    more = len(rows) > limit
    return Page(emails=emails, next_cursor=encode_cursor(emails[-1].created_at, emails[-1].id) if more else None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Item:
    """One line of the dashboard's list: an email, or a whole batch."""

    kind: str
    email: Email | None = None
    batch: Any = None


def items_page(
    conn: db.Conn, scope: Scope, *, view: str | None, cursor: str | None, limit: int = 50
) -> tuple[list[Item], str | None]:
    """Return one page of the dashboard's list, batches grouped, and the next cursor."""
    from tasks.domain import batches

    before_created, before_id = decode_cursor(cursor)
    limit = _limit(limit)
    rows = db.all_rows(
        conn,
        "list_items",
        statuses=list(statuses_for(view)),
        before_created=before_created,
        before_id=before_id,
        limit=limit + 1,
        **scope.params(),
    )
    more = len(rows) > limit
    rows = rows[:limit]
    email_ids = [r["id"] for r in rows if r["kind"] == "email"]
    by_id = {e["id"]: Email.from_row(e) for e in db.all_rows(conn, "emails_by_ids", ids=email_ids, **scope.params())}
    groups = {b.id: b for b in batches.get_many(conn, scope, [r["id"] for r in rows if r["kind"] == "batch"])}
    items = [
        Item(kind="email", email=by_id[r["id"]]) if r["kind"] == "email" else Item(kind="batch", batch=groups[r["id"]])
        for r in rows
        if r["id"] in by_id or r["id"] in groups
    ]
    next_cursor = encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return items, next_cursor


def counts(conn: db.Conn, scope: Scope) -> dict[str, int]:
    """Count the caller's emails per dashboard view."""
    by_status = {r["status"]: r["n"] for r in db.all_rows(conn, "owner_status_counts", **scope.params())}
    return {view: sum(by_status.get(s, 0) for s in statuses) for view, statuses in VIEWS.items()}


def statuses(conn: db.Conn, scope: Scope, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """Return the current status of these emails (the caller's only; others are left out)."""
    return db.all_rows(conn, "statuses_by_ids", ids=ids, **scope.params())
