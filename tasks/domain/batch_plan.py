"""Plan a send to a list: parse the recipients, check the templates, render and time each email.

``prepare`` turns a request (CSV, pasted addresses or a list of objects; a subject
and body with ``{{column}}`` placeholders; start time, minimum delay, hourly cap)
into a ``Plan``: the emails to create, each timed, and the lines rejected with
their reason. Nothing here touches the database.

What one request may cost is bounded before anything is rendered. The templates
are capped (``MAX_PLACEHOLDERS`` each; the subject at ``MAX_SUBJECT_CHARS``, the
body at ``MAX_BODY_BYTES``), each email's size is worked out from its row's values
without rendering it, and the sum over the batch is capped by the setting
``batch_max_rendered_bytes``. Below the caps, a plan renders an email only when
asked: the preview renders five, and the insert a chunk at a time.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime as dt
import functools
import hashlib
import io
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import email_validator

from tasks.core import errors
from tasks.core.config import Settings
from tasks.domain import validation
from tasks.domain.suppression import REASON_TEXT as SUPPRESSION_REASONS

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_COLUMN = re.compile(r"[a-z_][a-z0-9_]*")
MAX_DELAY = 86_400.0
MAX_HOURLY_CAP = 1_000_000
PREVIEW_COUNT = 5
#: Placeholders in one template. A mail merge uses a handful; each costs a lookup per email,
#: so a body of nothing but ``{{email}}`` (110,000 of them fit in 1 MB) cost 40 ms per row.
MAX_PLACEHOLDERS = 1_000


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
class Recipient:
    """One accepted line of the list: its email is rendered from ``fields`` when needed."""

    line: int
    to: str
    fields: dict[str, str]
    send_at: dt.datetime
    #: The rendered subject and body's size in UTF-8, known before either is rendered.
    size: int


@dataclasses.dataclass(frozen=True)
class Template:
    """A subject or body split once into its text and placeholders.

    ``parts`` alternates text and column names (``text, name, text, ..., text``), so a
    row renders with one join, and its size is the text's plus each value's times its
    uses, worked out without rendering.
    """

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        pieces = _PLACEHOLDER.split(text)
        return cls(tuple(p.lower() if i % 2 else p for i, p in enumerate(pieces)))

    @functools.cached_property
    def columns(self) -> dict[str, int]:
        """Each column the template names, and how many times."""
        return collections.Counter(self.parts[1::2])

    @functools.cached_property
    def _text_bytes(self) -> int:
        return sum(_utf8_size(p) for p in self.parts[0::2])

    @functools.cached_property
    def _text_chars(self) -> int:
        return sum(len(p) for p in self.parts[0::2])

    def size(self, fields: dict[str, str]) -> int:
        """Return the rendering's size in UTF-8 bytes."""
        return self._text_bytes + sum(n * _utf8_size(fields.get(c, "")) for c, n in self.columns.items())

    def length(self, fields: dict[str, str]) -> int:
        """Return the rendering's length in characters."""
        return self._text_chars + sum(n * len(fields.get(c, "")) for c, n in self.columns.items())

    def values(self, fields: dict[str, str]) -> list[str]:
        """Return the values the rendering would take from this row."""
        return [fields.get(c, "") for c in self.columns]

    def render(self, fields: dict[str, str]) -> str:
        """Fill the placeholders from one row (missing values render empty)."""
        out = list(self.parts)
        for i in range(1, len(out), 2):
            out[i] = fields.get(out[i], "")
        return "".join(out)


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    name: str
    subject_template: str
    body_template: str
    start_at: dt.datetime
    send_tz: str
    min_delay_seconds: float
    hourly_cap: int | None
    recipients: list[Recipient]
    rejected: list[Rejected]
    idempotency_key: str | None
    request_hash: str
    #: The size of every email of the batch together (subjects and bodies, UTF-8).
    rendered_bytes: int

    @functools.cached_property
    def _subject(self) -> Template:
        return Template.parse(self.subject_template)

    @functools.cached_property
    def _body(self) -> Template:
        return Template.parse(self.body_template)

    def render(self, recipient: Recipient) -> Planned:
        """Render one recipient's email (a new string each call: nothing is kept)."""
        return Planned(
            line=recipient.line,
            to=recipient.to,
            subject=self._subject.render(recipient.fields),
            body_text=self._body.render(recipient.fields),
            send_at=recipient.send_at,
        )

    def chunks(self, max_bytes: int, max_count: int) -> Iterator[list[Planned]]:
        """Render the emails in order, in lists of at most ``max_count`` emails and
        ``max_bytes`` (or one email, if that alone is more): the caller holds one list at a time."""
        chunk: list[Recipient] = []
        size = 0
        for recipient in self.recipients:
            if chunk and (len(chunk) >= max_count or size + recipient.size > max_bytes):
                yield [self.render(r) for r in chunk]
                chunk, size = [], 0
            chunk.append(recipient)
            size += recipient.size
        if chunk:
            yield [self.render(r) for r in chunk]

    def preview(self, count: int = PREVIEW_COUNT) -> dict[str, Any]:
        """Return what the user confirms: the first emails, the rejects, the time span."""
        first = self.recipients[0] if self.recipients else None
        last = self.recipients[-1] if self.recipients else None
        return {
            "accepted": len(self.recipients),
            "rejected": [dataclasses.asdict(r) for r in self.rejected],
            "first_send_at": first.send_at.isoformat() if first else None,
            "last_send_at": last.send_at.isoformat() if last else None,
            "preview": [
                {
                    "line": p.line,
                    "to": p.to,
                    "subject": p.subject,
                    "body_text": p.body_text,
                    "send_at": p.send_at.isoformat(),
                }
                for p in map(self.render, self.recipients[:count])
            ],
        }


def _rows_from_csv(text: str, keep: int) -> tuple[list[str], list[tuple[int, dict[str, str]]], int]:
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
    count = 0
    line = reader.line_num + 1
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                count += 1
                if count <= keep:  # past the limit, only count (for the message)
                    rows.append((line, {col: cell.strip() for col, cell in zip(columns, record, strict=False) if col}))
            line = reader.line_num + 1
    except csv.Error as exc:
        raise errors.ValidationError(f"csv: line {line}: {exc}", field="csv") from None
    return columns, rows, count


def _rows_from_paste(text: str, keep: int) -> tuple[list[tuple[int, dict[str, str]]], int]:
    rows = []
    count = 0
    for n, line in enumerate(text.splitlines(), start=1):
        for part in re.split(r"[,;]", line):
            if part.strip():
                count += 1
                if count <= keep:
                    rows.append((n, {"email": part.strip()}))
    return rows, count


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


def _template(field: str, template: Any) -> Template:
    """Check a template's own limits (before the list is read): text, its size, its placeholders."""
    if not isinstance(template, str):
        raise errors.ValidationError(f"{field}: must be text", field=field)
    if field == "subject":
        if problem := validation.header_problem(template):
            raise errors.ValidationError(f"{field}: {problem}", field=field)
        if len(template) > validation.MAX_SUBJECT_CHARS:
            raise errors.ValidationError(
                f"subject: must be at most {validation.MAX_SUBJECT_CHARS} characters, got {len(template)}",
                field=field,
            )
    else:
        if "\x00" in template:
            raise errors.ValidationError(f"{field}: must not contain NUL characters", field=field)
        if (size := _utf8_size(template)) > validation.MAX_BODY_BYTES:
            raise errors.ValidationError(
                f"{field}: must be at most 1 MB ({validation.MAX_BODY_BYTES} bytes), got {size}", field=field
            )
    for count, _ in enumerate(_PLACEHOLDER.finditer(template), start=1):  # counted before it is split
        if count > MAX_PLACEHOLDERS:
            raise errors.ValidationError(
                f"{field}: at most {MAX_PLACEHOLDERS} placeholders in a template, got more", field=field
            )
    return Template.parse(template)


def _check_columns(field: str, template: Template, columns: list[str]) -> None:
    for name in template.columns:
        if name not in columns:
            raise errors.ValidationError(
                f"{field}: unknown placeholder {{{{{name}}}}}; the list has {', '.join(columns)}", field=field
            )


def render(template: str, fields: dict[str, str]) -> str:
    """Fill ``{{column}}`` placeholders from one row (missing values render empty)."""
    return Template.parse(template).render(fields)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f} MB"


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
    suppressed: Callable[[list[str]], Mapping[str, str]] | None = None,
) -> Plan:
    """Check a send-to-a-list request and plan its emails; bad lines are rejected, not fatal.

    ``suppressed``: which of the accepted addresses are on the suppression list (address ->
    reason, lower-cased); they are left out and listed among the rejected lines.
    """
    now = now or dt.datetime.now(dt.UTC)
    given = [k for k, v in (("csv", csv_text), ("addresses", addresses), ("recipients", recipients)) if v is not None]
    if len(given) != 1:
        raise errors.ValidationError("recipients: give exactly one of csv, addresses or recipients", field="recipients")
    # The templates' own limits first: they bound the work every row costs.
    subject_template = _template("subject", subject)
    body_template = _template("body_text", body_text)
    limit = settings.batch_max_recipients
    if given == ["csv"]:
        if not isinstance(csv_text, str):
            raise errors.ValidationError("csv: must be text", field="csv")
        columns, rows, count = _rows_from_csv(csv_text, keep=limit)
    elif given == ["addresses"]:
        if not isinstance(addresses, str):
            raise errors.ValidationError("addresses: must be text", field="addresses")
        rows, count = _rows_from_paste(addresses, keep=limit)
        columns = ["email"]
    else:
        columns, rows = _rows_from_list(recipients)
        count = len(rows)
    if count > limit:
        raise errors.ValidationError(f"recipients: at most {limit} in one batch, got {count}", field=given[0])
    _check_columns("subject", subject_template, columns)
    _check_columns("body_text", body_template, columns)
    if not isinstance(name, str) or len(name) > 200 or validation.header_problem(name):
        raise errors.ValidationError("name: at most 200 characters on one line", field="name")
    tz = time_zone or "UTC"
    if not isinstance(tz, str) or not validation.valid_time_zone(tz):
        raise errors.ValidationError("time_zone: must be an IANA time zone such as Europe/Paris", field="time_zone")
    if start_at in (None, "", "now"):
        start = now
    else:
        try:
            start = validation.parse_send_at(start_at)
        except errors.ValidationError as exc:
            message = exc.message.removeprefix("send_at: ")
            raise errors.ValidationError(f"start_at: {message}", field="start_at") from None
        if start < now - validation.PAST_TOLERANCE:
            past = validation.in_the_past(start, tz, instead="Pick a later time, or leave it empty to start now.")
            raise errors.ValidationError(f"start_at: {past}", field="start_at")
    delay = float(_number("min_delay_seconds", min_delay_seconds or 0, 0, MAX_DELAY, integer=False))
    cap = None if hourly_cap in (None, "") else int(_number("hourly_cap", hourly_cap, 1, MAX_HOURLY_CAP, integer=True))
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not re.fullmatch(r"[\x21-\x7e]{1,255}", idempotency_key)
    ):
        raise errors.ValidationError(
            "idempotency_key: must be 1 to 255 printable ASCII characters without spaces", field="idempotency_key"
        )

    # Every row is checked without rendering its body: its size and its values say enough.
    budget = settings.batch_max_rendered_bytes
    accepted: list[tuple[int, str, dict[str, str], int]] = []
    rejected: list[Rejected] = []
    seen: dict[str, int] = {}
    total = 0
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
        if subject_template.length(fields) > validation.MAX_SUBJECT_CHARS:
            rejected.append(Rejected(line=line, value=raw[:200], reason="the subject would be too long"))
            continue
        # At most MAX_SUBJECT_CHARS: cheap to render, and only a rendering shows a header problem
        # made across a placeholder's edge (an encoded-word begun in the text, ended in a value).
        row_subject = subject_template.render(fields)
        if problem := validation.header_problem(row_subject):
            rejected.append(
                # "must not contain X" (a rule) becomes "the subject would contain X" (what went wrong).
                Rejected(
                    line=line,
                    value=raw[:200],
                    reason=f"the subject would {problem.replace('must not contain', 'contain', 1)}",
                )
            )
            continue
        if any("\x00" in value for value in body_template.values(fields)):
            rejected.append(Rejected(line=line, value=raw[:200], reason="the body would contain a NUL character"))
            continue
        body_size = body_template.size(fields)
        if body_size > validation.MAX_BODY_BYTES:
            rejected.append(Rejected(line=line, value=raw[:200], reason="the body would be over 1 MB"))
            continue
        size = _utf8_size(row_subject) + body_size
        total += size
        if total > budget:
            raise errors.ValidationError(
                f"body_text: the emails of this batch would be over {_megabytes(budget)} in all by line {line} "
                f"(at most {budget} bytes of subjects and bodies in one batch, BATCH_MAX_RENDERED_BYTES): "
                "shorten the body or split the list",
                field="body_text",
            )
        seen[addr.lower()] = line
        accepted.append((line, addr, fields, size))
    if suppressed is not None and accepted:
        held_back = suppressed([addr for _, addr, _, _ in accepted])
        if held_back:
            kept = []
            for item in accepted:
                reason = held_back.get(item[1].lower())
                if reason is None:
                    kept.append(item)
                    continue
                total -= item[3]
                words = SUPPRESSION_REASONS.get(reason, reason)
                rejected.append(Rejected(line=item[0], value=item[1], reason=f"on the suppression list ({words})"))
            accepted = kept
            rejected.sort(key=lambda r: r.line)
    try:
        times = spacing(start, len(accepted), delay, cap)
    except OverflowError:
        raise errors.ValidationError("start_at: the batch would run past the year 9999", field="start_at") from None
    for (line, *_), at in zip(accepted, times, strict=True):
        if problem := validation.local_time_problem(at, tz):
            raise errors.ValidationError(f"start_at: the email of line {line} {problem}", field="start_at")
    fingerprint.update(
        repr((subject, body_text, name, tz, "now" if start is now else start.isoformat(), delay, cap)).encode()
    )
    return Plan(
        name=name.strip(),
        subject_template=subject,
        body_template=body_text,
        start_at=start,
        send_tz=tz,
        min_delay_seconds=delay,
        hourly_cap=cap,
        recipients=[
            Recipient(line=line, to=addr, fields=fields, send_at=at, size=size)
            for (line, addr, fields, size), at in zip(accepted, times, strict=True)
        ],
        rejected=rejected,
        idempotency_key=idempotency_key,
        request_hash=fingerprint.hexdigest(),
        rendered_bytes=total,
    )
