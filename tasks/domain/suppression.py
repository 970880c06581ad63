"""The suppression list: addresses nothing is sent to any more.

Each organization has its own (hard bounces, complaints and unsubscribes of its emails
go there by themselves, tasks/domain/feedback.py and the unsubscribe links; members add,
import and remove), and operators keep a global one (``org_id`` NULL; the CLI) that
holds for every organization. Addresses are kept lower-cased.

Where it is checked: scheduling one email to a suppressed address is refused (422 naming
the address, ``refuse_suppressed``); a batch leaves such recipients out and lists them
among its rejected lines (tasks/domain/batch_plan.py); an email already scheduled is
checked again when it is claimed (the claim statements read its suppressed recipients,
tasks/delivery/send.py does not send to them). Removing an address from an
organization's list is on its audit log.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import email_validator

from tasks.core import db, errors
from tasks.domain import audit

#: Why an address is on a list, as the table says (migration 0019).
REASONS = ("hard_bounce", "complaint", "unsubscribe", "manual", "import")
#: The reasons in words, for pages and messages.
REASON_TEXT = {
    "hard_bounce": "hard bounce",
    "complaint": "spam complaint",
    "unsubscribe": "unsubscribed",
    "manual": "added by hand",
    "import": "imported",
}
#: Most lines of one page of the list.
PAGE = 100
#: Most addresses one CSV import takes.
MAX_IMPORT = 100_000
CSV_COLUMNS = ("address", "reason", "detail", "list", "created_at")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Entry:
    id: int
    #: None: the operators' global list.
    org_id: int | None
    address: str
    reason: str
    detail: str
    email_id: uuid.UUID | None
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Entry:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "reason": self.reason,
            "detail": self.detail,
            "list": "global" if self.org_id is None else "organization",
            "email_id": str(self.email_id) if self.email_id else None,
            "created_at": self.created_at.isoformat(),
        }


def normalize(raw: Any, field: str = "address") -> str:
    """An address as the list keeps it (checked, lower-cased), or ``ValidationError``."""
    if not isinstance(raw, str) or not raw.strip():
        raise errors.ValidationError(f"{field}: an email address is required", field=field)
    try:
        return email_validator.validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except email_validator.EmailNotValidError as exc:
        raise errors.ValidationError(f"{field}: not a valid email address: {exc}", field=field) from None


def suppressed_among(conn: db.Conn, org_id: int, addresses: Iterable[str]) -> dict[str, str]:
    """Which of ``addresses`` the organization (or the global list) suppresses: address -> reason."""
    wanted = sorted({a.lower() for a in addresses})
    if not wanted:
        return {}
    rows = db.all_rows(conn, "suppressed_among", org_id=org_id, addresses=wanted)
    return {r["address"]: r["reason"] for r in rows}


def refuse_suppressed(conn: db.Conn, org_id: int, fields: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Raise ``ValidationError`` (422) naming the first suppressed recipient of ``fields`` ((name, addresses))."""
    found = suppressed_among(conn, org_id, [a for _, addresses in fields for a in addresses])
    if found:
        raise refusal(fields, found)


def refusal(fields: Sequence[tuple[str, Sequence[str]]], found: dict[str, str]) -> errors.ValidationError:
    """The 422 that names the first of ``fields``' recipients on a list (``found``: address -> reason)."""
    for field, addresses in fields:
        for address in addresses:
            reason = found.get(address.lower())
            if reason is not None:
                return errors.ValidationError(
                    f"{field}: {address} is on the suppression list ({REASON_TEXT.get(reason, reason)}); "
                    "remove it from the list first to send to it",
                    field=field,
                )
    address, reason = next(iter(found.items()))
    return errors.ValidationError(f"to: {address} is on the suppression list ({reason})", field="to")


def add(
    conn: db.Conn,
    org_id: int | None,
    address: str,
    *,
    reason: str = "manual",
    detail: str = "",
    actor_id: int | None = None,
    email_id: uuid.UUID | None = None,
) -> bool:
    """Put an address on the organization's list (None: the global one); False if it was there already."""
    address = normalize(address)
    with conn.transaction():
        row = db.one(
            conn, "suppression_add", org_id=org_id, address=address, reason=reason, detail=detail[:500],
            email_id=email_id,
        )  # fmt: skip
        if row is not None and org_id is not None and reason in ("manual", "import"):
            audit.record(conn, org_id, actor_id, "suppression.add", address, {"reason": reason})
    return row is not None


def remove(conn: db.Conn, org_id: int | None, address: str, *, actor_id: int | None = None) -> Entry:
    """Take an address off the organization's list (None: the global one), on its audit log; ``NotFound`` if absent."""
    address = normalize(address)
    with conn.transaction():
        row = db.one(conn, "suppression_remove", org_id=org_id, address=address)
        if row is None:
            raise errors.NotFound(f"{address} is not on this suppression list")
        entry = Entry.from_row(row)
        if org_id is not None:
            audit.record(
                conn, org_id, actor_id, "suppression.remove", address, {"reason": entry.reason, "detail": entry.detail}
            )
    return entry


def entries(
    conn: db.Conn,
    org_id: int | None,
    *,
    q: str | None = None,
    before: int | None = None,
    limit: int = PAGE,
    with_global: bool = True,
) -> list[Entry]:
    """A list, newest first (the organization's and, with it, the global one's): ``q`` searches addresses."""
    search = None
    if q and q.strip():
        search = q.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = db.all_rows(
        conn, "suppression_list", org_id=org_id, with_global=with_global and org_id is not None, q=search,
        before=before, limit=limit,
    )  # fmt: skip
    return [Entry.from_row(r) for r in rows]


def export_csv(conn: db.Conn, org_id: int | None) -> Iterable[str]:
    """The whole list as CSV (a header, then one line per address), a page at a time."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    yield out.getvalue()
    before = None
    while True:
        page = entries(conn, org_id, before=before, limit=1000)
        if not page:
            return
        out.seek(0)
        out.truncate()
        for e in page:
            d = e.as_dict()
            writer.writerow([_safe_cell(str(d[c] or "")) for c in CSV_COLUMNS])
        yield out.getvalue()
        before = page[-1].id


def _safe_cell(value: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@dataclasses.dataclass(frozen=True, kw_only=True)
class Imported:
    added: int
    already: int
    rejected: list[dict[str, Any]]


def import_csv(conn: db.Conn, org_id: int, text: Any, *, actor_id: int | None) -> Imported:
    """Add the addresses of a CSV (an ``address`` or ``email`` column, else the first one); bad lines are listed."""
    if not isinstance(text, str) or not text.strip():
        raise errors.ValidationError("csv: the CSV text is required", field="csv")
    rows = list(csv.reader(io.StringIO(text)))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    column = next((header.index(n) for n in ("address", "email") if n in header), None)
    body = rows[1:] if column is not None else rows
    column = column or 0
    if len(body) > MAX_IMPORT:
        raise errors.ValidationError(f"csv: at most {MAX_IMPORT} addresses in one import", field="csv")
    good: list[str] = []
    rejected: list[dict[str, Any]] = []
    first = 2 if body is not rows else 1
    for line, row in enumerate(body, start=first):
        raw = row[column].strip() if len(row) > column else ""
        if not raw:
            continue
        try:
            good.append(normalize(raw))
        except errors.ValidationError as exc:
            rejected.append({"line": line, "value": raw[:200], "reason": exc.message.removeprefix("address: ")})
    with conn.transaction():
        added = db.all_rows(
            conn, "suppression_add_many", org_id=org_id, addresses=good, reason="import", detail="CSV import"
        )
        audit.record(
            conn, org_id, actor_id, "suppression.import", f"{len(added)} addresses",
            {"added": len(added), "rejected": len(rejected)},
        )  # fmt: skip
    return Imported(added=len(added), already=len(set(good)) - len(added), rejected=rejected)
