"""An organization's audit log: who changed a setting, invited or removed whom, created or
revoked a token, cancelled or rescheduled which email.

Append-only: the table's trigger refuses UPDATE, DELETE and TRUNCATE (migration 0013);
only deleting the organization takes its log with it. ``record`` is written in the
caller's transaction, so an action and its line are stored together or not at all.
``detail`` never holds a secret: a provider's URL is recorded masked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from psycopg.types.json import Jsonb

from tasks.core import db

#: Most lines one page of the log shows.
PAGE = 100


@dataclasses.dataclass(frozen=True, kw_only=True)
class Entry:
    id: int
    at: dt.datetime
    actor_id: int | None
    #: The actor's address (None: an operator's command).
    actor_email: str | None
    action: str
    target: str
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Entry:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["at"] = self.at.isoformat()
        return data


def record(
    conn: db.Conn,
    org_id: int,
    actor_id: int | None,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> int:
    """Add a line to the organization's log; return its id.

    ``actor_id``: the member who acted (None: an operator's command). ``action``:
    dotted lower-case words (``provider.add``, ``member.remove``); ``target``: what
    it acted on, for people (an address, a label, an email's id).
    """
    row = db.one(
        conn,
        "audit_insert",
        org_id=org_id,
        actor_id=actor_id,
        action=action,
        target=target[:500],
        detail=Jsonb(detail or {}),
    )
    assert row is not None
    return int(row["id"])


def entries(conn: db.Conn, org_id: int, *, before: int | None = None, limit: int = PAGE) -> list[Entry]:
    """The organization's log, newest first, ``limit`` lines older than line ``before``."""
    rows = db.all_rows(conn, "audit_list", org_id=org_id, before=before, limit=min(max(limit, 1), PAGE))
    return [Entry.from_row(r) for r in rows]
