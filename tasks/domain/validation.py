"""Validate a request to schedule an email, before anything touches the database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

import email_validator

from tasks.core import errors
from tasks.domain.zones import moment, zone

MAX_RECIPIENTS = 50
MAX_SUBJECT_CHARS = 998
MAX_BODY_BYTES = 1024 * 1024
MAX_IDEMPOTENCY_KEY = 255
#: How far in the past a send time may be (clock skew, a slow form) before it is an error.
PAST_TOLERANCE = dt.timedelta(minutes=1)

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
#: An RFC 2047 encoded-word: mail readers (and Python's own email package) decode it, so
#: ``=?utf-8?q?Hi=0D=0ABcc:_x?=`` would carry a line break past the check above.
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[bq]\?[^?\s]*\?=", re.IGNORECASE)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Draft:
    """A schedule request that passed every check, normalised."""

    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    subject: str
    body_text: str
    body_html: str | None
    send_at: dt.datetime
    send_tz: str
    send_now: bool
    idempotency_key: str | None
    #: Its message carries one-click unsubscribe (List-Unsubscribe), as a list's do.
    list_unsubscribe: bool = False

    def request_hash(self) -> str:
        """Fingerprint the request, so a reused idempotency key with other content is caught."""
        data = dataclasses.asdict(self)
        data.pop("idempotency_key")
        if not self.list_unsubscribe:
            data.pop("list_unsubscribe")  # the fingerprints of requests from before it existed stay
        data["send_at"] = "now" if self.send_now else self.send_at.isoformat()
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            first = self.items[0]
            raise errors.ValidationError(
                f"{first['field']}: {first['message']}", field=first["field"], details=self.items
            )


def header_problem(value: str) -> str | None:
    """Say what makes ``value`` unfit for a mail header, if anything."""
    if "\r" in value or "\n" in value:
        return "must not contain a line break (CR or LF)"
    if _CONTROL.search(value):
        return "must not contain control characters"
    if _ENCODED_WORD.search(value):
        return "must not contain an RFC 2047 encoded-word (=?charset?q?...?=): mail readers would decode it"
    return None


def _addresses(field: str, raw: Any, errs: _Errors) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [part for part in re.split(r"[,;]", raw) if part.strip()]
    if not isinstance(raw, list | tuple) or not all(isinstance(a, str) for a in raw):
        errs.add(field, "must be a list of email addresses")
        return []
    out = []
    for addr in raw:
        addr = addr.strip()
        problem = header_problem(addr)
        if problem:
            errs.add(field, f"{problem}: {addr[:80]!r}")
            continue
        try:
            valid = email_validator.validate_email(addr, check_deliverability=False)
        except email_validator.EmailNotValidError as exc:
            errs.add(field, f"{addr[:80]!r} is not a valid email address: {exc}")
            continue
        out.append(valid.normalized)
    return out


def user_address(raw: Any, *, field: str = "email") -> str:
    """Return a user's normalised email address, or raise ``ValidationError``."""
    if not isinstance(raw, str) or header_problem(raw):
        raise errors.ValidationError(f"{field}: must be an email address", field=field)
    try:
        return email_validator.validate_email(raw.strip(), check_deliverability=False).normalized
    except email_validator.EmailNotValidError as exc:
        raise errors.ValidationError(
            f"{field}: {raw[:80]!r} is not a valid email address: {exc}", field=field
        ) from None


def parse_send_at(raw: Any) -> dt.datetime:
    """Return an aware datetime from a datetime or an ISO 8601 string with an offset."""
    if isinstance(raw, str):
        text = raw.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            raw = dt.datetime.fromisoformat(text)
        except ValueError:
            raise errors.ValidationError(
                "send_at: must be an ISO 8601 date and time, e.g. 2026-12-01T09:00:00+01:00", field="send_at"
            ) from None
    if not isinstance(raw, dt.datetime):
        raise errors.ValidationError("send_at: must be a date and time", field="send_at")
    if raw.tzinfo is None or raw.utcoffset() is None:
        raise errors.ValidationError(
            "send_at: must include a time zone offset (a naive time is ambiguous), e.g. +01:00 or Z",
            field="send_at",
        )
    try:
        return raw.astimezone(dt.UTC)
    except OverflowError:
        raise errors.ValidationError(
            "send_at: is out of range: in UTC it would be outside the years 1 to 9999", field="send_at"
        ) from None


def in_the_past(when: dt.datetime, tz: str, *, instead: str = "Pick a later time or send now.") -> str:
    """Say that ``when`` has passed, as a sentence with the time as the person reads it in ``tz``.

    Shown beside the date field, so it names the moment they picked, not an ISO timestamp.
    """
    return f"This time is in the past: {moment(when, tz)}. {instead}"


def valid_time_zone(name: str) -> bool:
    """Tell whether ``name`` is an IANA time zone this machine knows."""
    return zone(name) is not None


def local_time_problem(at: dt.datetime, tz: str) -> str | None:
    """Say why ``at`` cannot be written as a local time in zone ``tz``, if it cannot.

    A date holds the years 1 to 9999, so the last hours of 9999 in UTC are already the year
    10000 east of Greenwich (and the first hours of year 1 are year 0 west of it): such a
    send time could be stored but never shown in the zone it was chosen in.
    """
    try:
        at.astimezone(zone(tz) or dt.UTC)
    except OverflowError:
        side = "past the year 9999" if at.year == dt.MAXYEAR else "before the year 1"
        return f"is out of range: in {tz} it would be {side}, which a date cannot hold"
    return None


def validate(
    *,
    to: Iterable[str] | str | None,
    cc: Iterable[str] | str | None = None,
    bcc: Iterable[str] | str | None = None,
    subject: Any,
    body_text: Any,
    body_html: Any = None,
    send_at: Any = None,
    send_tz: Any = None,
    send_now: bool = False,
    idempotency_key: Any = None,
    list_unsubscribe: Any = False,
    now: dt.datetime | None = None,
) -> Draft:
    """Check every rule and return the normalised draft, or raise ``ValidationError``.

    All problems are collected; the error names the first and carries them all
    in ``details``.
    """
    now = now or dt.datetime.now(dt.UTC)
    errs = _Errors()
    to_list = _addresses("to", to, errs)
    cc_list = _addresses("cc", cc, errs)
    bcc_list = _addresses("bcc", bcc, errs)
    # One envelope recipient each, whatever field named it first.
    seen: set[str] = set()
    fields = []
    for group in (to_list, cc_list, bcc_list):
        kept = []
        for address in group:
            if address.lower() not in seen:
                seen.add(address.lower())
                kept.append(address)
        fields.append(tuple(kept))
    total = sum(len(f) for f in fields)
    if total == 0 and not errs.items:
        errs.add("to", "at least one recipient is required")
    elif total > MAX_RECIPIENTS:
        errs.add("to", f"at most {MAX_RECIPIENTS} recipients in all (to, cc and bcc), got {total}")

    if not isinstance(subject, str):
        errs.add("subject", "must be text")
        subject = ""
    elif problem := header_problem(subject):
        errs.add("subject", problem)
    elif len(subject) > MAX_SUBJECT_CHARS:
        errs.add("subject", f"must be at most {MAX_SUBJECT_CHARS} characters, got {len(subject)}")

    body_size = 0
    for name, body in (("body_text", body_text), ("body_html", body_html)):
        if body is None and name == "body_html":
            continue
        if not isinstance(body, str):
            errs.add(name, "must be text")
        elif "\x00" in body:
            errs.add(name, "must not contain NUL characters")
        else:
            body_size += len(body.encode("utf-8", "surrogatepass"))
    if body_size > MAX_BODY_BYTES:
        errs.add("body_text", f"the body must be at most 1 MB ({MAX_BODY_BYTES} bytes), got {body_size}")

    tz = "UTC" if send_tz in (None, "") else send_tz
    if not isinstance(tz, str) or not valid_time_zone(tz):
        errs.add("time_zone", f"must be an IANA time zone such as Europe/Paris, got {str(tz)[:60]!r}")
        tz = "UTC"

    when = now
    if send_now:
        if send_at not in (None, ""):
            errs.add("send_at", "give either a send time or send now, not both")
    elif send_at in (None, ""):
        errs.add("send_at", "is required (or ask to send now)")
    else:
        try:
            when = parse_send_at(send_at)
        except errors.ValidationError as exc:
            errs.add("send_at", exc.message.removeprefix("send_at: "))
        else:
            if when < now - PAST_TOLERANCE:
                errs.add("send_at", in_the_past(when, tz))
            elif problem := local_time_problem(when, tz):  # (an unknown zone was reported, and is UTC here)
                errs.add("send_at", problem)

    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not _IDEMPOTENCY_KEY.fullmatch(idempotency_key)
    ):
        errs.add("idempotency_key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters without spaces")
    if not isinstance(list_unsubscribe, bool):
        errs.add("list_unsubscribe", "must be true or false")

    errs.raise_if_any()
    return Draft(
        to=fields[0],
        cc=fields[1],
        bcc=fields[2],
        subject=subject,
        body_text=body_text,
        body_html=body_html,
        send_at=when,
        send_tz=tz,
        send_now=send_now,
        idempotency_key=idempotency_key,
        list_unsubscribe=list_unsubscribe is True,
    )
