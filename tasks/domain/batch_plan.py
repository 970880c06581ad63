"""Plan a send to a list: parse the recipients, check the templates, render and time each email.

``prepare`` turns a request (CSV, pasted addresses or a list of objects; a subject
and body with ``{{column}}`` placeholders; start time, minimum delay, hourly cap)
into a ``Plan``: the emails to create, each rendered and timed, and the lines
rejected with their reason. Nothing here touches the database.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import re
from typing import Any

import email_validator

from tasks.core import errors
from tasks.core.config import Settings
from tasks.domain import validation

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_COLUMN = re.compile(r"[a-z_][a-z0-9_]*")
MAX_DELAY = 86_400.0
MAX_HOURLY_CAP = 1_000_000
PREVIEW_COUNT = 5


@dataclasses.dataclass(frozen=True, kw_only=True)
class Rejected:
    """A line of the list that was left out, and why."""

    line: int
    value: str
    reason: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Planned:
    """One email of the batch, rendered and timed."""

    line: int
    to: str
    subject: str
    body_text: str
    send_at: dt.datetime


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    name: str
    subject_template: str
    body_template: str
    start_at: dt.datetime
    send_tz: str
    min_delay_seconds: float
    hourly_cap: int | None
    items: list[Planned]
    rejected: list[Rejected]
    idempotency_key: str | None
    request_hash: str

    def preview(self, count: int = PREVIEW_COUNT) -> dict[str, Any]:
        """Return what the user confirms: the first emails, the rejects, the time span."""
        return {
            "accepted": len(self.items),
            "rejected": [dataclasses.asdict(r) for r in self.rejected],
            "first_send_at": self.items[0].send_at.isoformat() if self.items else None,
            "last_send_at": self.items[-1].send_at.isoformat() if self.items else None,
            "preview": [
                {
                    "line": p.line,
                    "to": p.to,
                    "subject": p.subject,
                    "body_text": p.body_text,
                    "send_at": p.send_at.isoformat(),
                }
                for p in self.items[:count]
            ],
        }


def _rows_from_csv(text: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise errors.ValidationError(f"csv: line 1: {exc}", field="csv") from None
    if not header:
        raise errors.ValidationError("csv: is empty; the first line names the columns, one of them email", field="csv")
    columns = [h.strip().lower() for h in header]
    if "email" not in columns:
        raise errors.ValidationError(
            f"csv: needs an 'email' column; the header row has {', '.join(columns) or 'nothing'}", field="csv"
        )
    for col in columns:
        if col and not _COLUMN.fullmatch(col):
            raise errors.ValidationError(
                f"csv: column name {col[:40]!r} must be letters, digits and _ (to use it as {{{{name}}}})",
                field="csv",
            )
    rows: list[tuple[int, dict[str, str]]] = []
    line = reader.line_num + 1
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                rows.append((line, {col: cell.strip() for col, cell in zip(columns, record, strict=False) if col}))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise errors.ValidationError(f"csv: line {line}: {exc}", field="csv") from None
    return columns, rows


def _rows_from_paste(text: str) -> list[tuple[int, dict[str, str]]]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        for part in re.split(r"[,;]", line):
            if part.strip():
                rows.append((n, {"email": part.strip()}))
    return rows


def _rows_from_list(items: Any) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    if not isinstance(items, list):
        raise errors.ValidationError("recipients: must be a list", field="recipients")
    rows, columns = [], {"email"}
    for n, item in enumerate(items, start=1):
        if isinstance(item, str):
            item = {"email": item}
        if not isinstance(item, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in item.items()):
            raise errors.ValidationError(
                f"recipients: item {n} must be an address or an object of text fields", field="recipients"
            )
        fields = {k.strip().lower(): v.strip() for k, v in item.items()}
        bad = [k for k in fields if not _COLUMN.fullmatch(k)]
        if bad:
            raise errors.ValidationError(f"recipients: item {n}: bad field name {bad[0][:40]!r}", field="recipients")
        columns.update(fields)
        rows.append((n, fields))
    return sorted(columns), rows


def _check_template(field: str, template: Any, columns: list[str], *, header: bool) -> str:
    if not isinstance(template, str):
        raise errors.ValidationError(f"{field}: must be text", field=field)
    if header and (problem := validation.header_problem(template)):
        raise errors.ValidationError(f"{field}: {problem}", field=field)
    for name in _PLACEHOLDER.findall(template):
        if name.lower() not in columns:
            raise errors.ValidationError(
                f"{field}: unknown placeholder {{{{{name}}}}}; the list has {', '.join(columns)}", field=field
            )
    return template


def render(template: str, fields: dict[str, str]) -> str:
    """Fill ``{{column}}`` placeholders from one row (missing values render empty)."""
    return _PLACEHOLDER.sub(lambda m: fields.get(m[1].lower(), ""), template)


def spacing(start: dt.datetime, count: int, min_delay: float, hourly_cap: int | None) -> list[dt.datetime]:
    """Return send times: at least ``min_delay`` apart, never more than ``hourly_cap`` in any hour."""
    times: list[dt.datetime] = []
    delay = dt.timedelta(seconds=min_delay)
    hour = dt.timedelta(hours=1)
    for i in range(count):
        at = start if i == 0 else times[-1] + delay
        if hourly_cap and i >= hourly_cap:
            at = max(at, times[i - hourly_cap] + hour)
        times.append(at)
    return times


def _number(field: str, raw: Any, low: float, high: float, *, integer: bool) -> float:
    if isinstance(raw, str):
        raw = raw.strip()
        try:
            raw = int(raw) if integer else float(raw)
        except ValueError:
            raise errors.ValidationError(f"{field}: must be a number", field=field) from None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or (integer and not isinstance(raw, int)):
        raise errors.ValidationError(f"{field}: must be a {'whole ' if integer else ''}number", field=field)
    if not low <= raw <= high:
        raise errors.ValidationError(f"{field}: must be between {low:g} and {high:g}", field=field)
    return raw


def prepare(
    *,
    settings: Settings,
    subject: Any,
    body_text: Any,
    csv_text: Any = None,
    addresses: Any = None,
    recipients: Any = None,
    start_at: Any = None,
    time_zone: Any = None,
    min_delay_seconds: Any = 0,
    hourly_cap: Any = None,
    name: Any = "",
    idempotency_key: Any = None,
    now: dt.datetime | None = None,
) -> Plan:
    """Check a send-to-a-list request and plan its emails; bad lines are rejected, not fatal."""
    now = now or dt.datetime.now(dt.UTC)
    given = [k for k, v in (("csv", csv_text), ("addresses", addresses), ("recipients", recipients)) if v is not None]
    if len(given) != 1:
        raise errors.ValidationError("recipients: give exactly one of csv, addresses or recipients", field="recipients")
    if given == ["csv"]:
        if not isinstance(csv_text, str):
            raise errors.ValidationError("csv: must be text", field="csv")
        columns, rows = _rows_from_csv(csv_text)
    elif given == ["addresses"]:
        if not isinstance(addresses, str):
            raise errors.ValidationError("addresses: must be text", field="addresses")
        columns, rows = ["email"], _rows_from_paste(addresses)
    else:
        columns, rows = _rows_from_list(recipients)
    if len(rows) > settings.batch_max_recipients:
        raise errors.ValidationError(
            f"recipients: at most {settings.batch_max_recipients} in one batch, got {len(rows)}", field=given[0]
        )
    subject = _check_template("subject", subject, columns, header=True)
    body = _check_template("body_text", body_text, columns, header=False)
    if "\x00" in body:
        raise errors.ValidationError("body_text: must not contain NUL characters", field="body_text")
    if not isinstance(name, str) or len(name) > 200 or validation.header_problem(name):
        raise errors.ValidationError("name: at most 200 characters on one line", field="name")
    tz = time_zone or "UTC"
    if not isinstance(tz, str) or not validation.valid_time_zone(tz):
        raise errors.ValidationError("time_zone: must be an IANA time zone such as Europe/Paris", field="time_zone")
    if start_at in (None, "", "now"):
        start = now
    else:
        start = validation.parse_send_at(start_at)
        if start < now - validation.PAST_TOLERANCE:
            problem = validation.in_the_past(start, tz, instead="Pick a later time, or leave it empty to start now.")
            raise errors.ValidationError(f"start_at: {problem}", field="start_at")
    delay = float(_number("min_delay_seconds", min_delay_seconds or 0, 0, MAX_DELAY, integer=False))
    cap = None if hourly_cap in (None, "") else int(_number("hourly_cap", hourly_cap, 1, MAX_HOURLY_CAP, integer=True))
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not re.fullmatch(r"[\x21-\x7e]{1,255}", idempotency_key)
    ):
        raise errors.ValidationError(
            "idempotency_key: must be 1 to 255 printable ASCII characters without spaces", field="idempotency_key"
        )

    accepted: list[tuple[int, str, str, str]] = []
    rejected: list[Rejected] = []
    seen: dict[str, int] = {}
    fingerprint = hashlib.sha256()
    for line, fields in rows:
        raw = fields.get("email", "")
        fingerprint.update(repr((line, sorted(fields.items()))).encode())
        if not raw:
            rejected.append(Rejected(line=line, value="", reason="no email address"))
            continue
        if problem := validation.header_problem(raw):
            rejected.append(Rejected(line=line, value=raw[:200], reason=problem))
            continue
        try:
            addr = email_validator.validate_email(raw, check_deliverability=False).normalized
        except email_validator.EmailNotValidError as exc:
            rejected.append(Rejected(line=line, value=raw[:200], reason=f"not a valid email address: {exc}"))
            continue
        if addr.lower() in seen:
            rejected.append(Rejected(line=line, value=raw[:200], reason=f"duplicate of line {seen[addr.lower()]}"))
            continue
        row_subject = render(subject, fields)
        if problem := validation.header_problem(row_subject):
            rejected.append(
                Rejected(line=line, value=raw[:200], reason=f"the subject would {problem.removeprefix('must ')}")
            )
            continue
        if len(row_subject) > validation.MAX_SUBJECT_CHARS:
            rejected.append(Rejected(line=line, value=raw[:200], reason="the subject would be too long"))
            continue
        row_body = render(body, fields)
        if "\x00" in row_body:
            rejected.append(Rejected(line=line, value=raw[:200], reason="the body would contain a NUL character"))
            continue
        if len(row_body.encode("utf-8", "surrogatepass")) > validation.MAX_BODY_BYTES:
            rejected.append(Rejected(line=line, value=raw[:200], reason="the body would be over 1 MB"))
            continue
        seen[addr.lower()] = line
        accepted.append((line, addr, row_subject, row_body))
    try:
        times = spacing(start, len(accepted), delay, cap)
    except OverflowError:
        raise errors.ValidationError("start_at: the batch would run past the year 9999", field="start_at") from None
    fingerprint.update(
        repr((subject, body, name, tz, "now" if start is now else start.isoformat(), delay, cap)).encode()
    )
    return Plan(
        name=name.strip(),
        subject_template=subject,
        body_template=body,
        start_at=start,
        send_tz=tz,
        min_delay_seconds=delay,
        hourly_cap=cap,
        items=[
            Planned(line=line, to=addr, subject=s, body_text=b, send_at=at)
            for (line, addr, s, b), at in zip(accepted, times, strict=True)
        ],
        rejected=rejected,
        idempotency_key=idempotency_key,
        request_hash=fingerprint.hexdigest(),
    )
