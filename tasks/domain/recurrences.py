"""Recurring emails: create (idempotent), list, read, preview, edit, pause, resume, delete.

Shared by the CLI, the dashboard and the API. A recurrence holds the content and the
rule; its occurrences are ordinary emails, created ahead of time by the reconciler
(``tasks/queue/occurrences.py``). Every change that stops occurrences (pause, delete, a
new rule) cancels, in the same transaction, those created and not yet claimed: nothing
more goes out. docs/recurring.md has the semantics.

A recurrence belongs to an organization, like an email: every read and change is scoped
by it (``Scope``), its occurrences are the organization's emails, and each creation,
pause, resume, edit and deletion by a member is a line of the organization's audit log,
written in the same transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import uuid
from typing import Any

from psycopg.types.json import Jsonb

from tasks.core import db, errors
from tasks.core.config import Settings
from tasks.domain import audit, orgs, recurrence_rules, suppression, validation
from tasks.domain.models import Scope, User, json_value
from tasks.domain.recurrence_rules import Rule
from tasks.queue import jobs
from tasks.webhooks import events as webhook_events

CONTENT = ("to", "cc", "bcc", "subject", "body_text", "body_html")
RULE = ("cron", "preset", "time_zone", "starts_at", "ends_at", "count")
FIELDS = frozenset({*CONTENT, *RULE})
MAX_PREVIEW = 50
STATUSES = ("active", "paused", "ended")


def parse_id(raw: str | uuid.UUID) -> uuid.UUID:
    """Return the recurrence id, or raise ``NotFound`` for anything that is not one."""
    if isinstance(raw, uuid.UUID):
        return raw
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise errors.NotFound(f"no recurrence with id {str(raw)[:64]!r}") from None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Spec:
    """A valid request: the content (normalised like an email's) and the rule."""

    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    subject: str
    body_text: str
    body_html: str | None
    rule: Rule
    idempotency_key: str | None = None
    #: Whether the request gave ``starts_at`` (without it the rule starts when it was checked).
    start_given: bool = True

    def request_hash(self) -> str:
        """What the request asked for: a retry with its key is the same request, whenever it comes
        (a start left out is "now", then and at the retry alike)."""
        data = {name: getattr(self, name) for name in CONTENT} | {
            "cron": self.rule.cron,
            "preset": self.rule.preset,
            "time_zone": self.rule.time_zone,
            "starts_at": self.rule.starts_at.isoformat() if self.start_given else None,
            "ends_at": self.rule.ends_at.isoformat() if self.rule.ends_at else None,
            "count": self.rule.count,
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=list).encode()).hexdigest()


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recurrence:
    id: uuid.UUID
    org_id: int
    owner_id: int
    to_addrs: list[str]
    cc_addrs: list[str]
    bcc_addrs: list[str]
    subject: str
    body_text: str
    body_html: str | None
    cron: str
    preset: dict[str, Any] | None
    time_zone: str
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    max_count: int | None
    status: str
    paused_reason: str | None
    next_at: dt.datetime | None
    made: int
    failures_in_row: int
    idempotency_key: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    #: From the list's query: the latest occurrence whose time has come, and its email.
    last_status: str | None = None
    last_at: dt.datetime | None = None
    last_email_id: uuid.UUID | None = None
    #: The next occurrence waiting (created or not yet).
    next_pending: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Recurrence:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row})

    @property
    def rule(self) -> Rule:
        return Rule(
            cron=self.cron,
            preset=self.preset,
            time_zone=self.time_zone,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            count=self.max_count,
        )

    @property
    def summary(self) -> str:
        return self.rule.summary()

    @property
    def next_occurrence(self) -> dt.datetime | None:
        if self.status != "active":
            return None
        return self.next_pending or self.next_at

    def as_dict(self, *, with_body: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "owner_id": self.owner_id,
            "status": self.status,
            "paused_reason": self.paused_reason,
            "summary": self.summary,
            "to": self.to_addrs,
            "cc": self.cc_addrs,
            "bcc": self.bcc_addrs,
            "subject": self.subject,
            "cron": self.cron,
            "preset": self.preset,
            "time_zone": self.time_zone,
            "starts_at": json_value(self.starts_at),
            "ends_at": json_value(self.ends_at),
            "count": self.max_count,
            "next_occurrence_at": json_value(self.next_occurrence),
            "occurrences_made": self.made,
            "failures_in_row": self.failures_in_row,
            "last_status": self.last_status,
            "last_occurrence_at": json_value(self.last_at),
            "last_email_id": json_value(self.last_email_id),
            "idempotency_key": self.idempotency_key,
            "created_at": json_value(self.created_at),
            "updated_at": json_value(self.updated_at),
        }
        if with_body:
            data["body_text"] = self.body_text
            data["body_html"] = self.body_html
        return data


def _instant(raw: Any, field: str) -> dt.datetime | None:
    if raw in (None, ""):
        return None
    try:
        return validation.parse_send_at(raw)
    except errors.ValidationError as exc:
        raise errors.ValidationError(exc.message.replace("send_at", field), field=field) from None


def _count(raw: Any) -> int | None:
    if raw in (None, ""):
        return None
    if isinstance(raw, str) and raw.strip().isdigit():
        raw = int(raw)
    if type(raw) is not int or not 1 <= raw <= 1_000_000:
        raise errors.ValidationError("count: must be a whole number from 1 to 1000000", field="count")
    return raw


def validate(
    data: dict[str, Any], *, settings: Settings, now: dt.datetime | None = None, idempotency_key: Any = None
) -> Spec:
    """Check a request (the API's fields) and return the spec, or raise ``ValidationError``."""
    now = now or dt.datetime.now(dt.UTC)
    for name in data:
        if name not in FIELDS and name != "idempotency_key":
            raise errors.ValidationError(f"{name}: unknown field", field=name)
    draft = validation.validate(
        to=data.get("to"),
        cc=data.get("cc"),
        bcc=data.get("bcc"),
        subject=data.get("subject"),
        body_text=data.get("body_text"),
        body_html=data.get("body_html"),
        send_tz=data.get("time_zone"),
        send_now=True,
        idempotency_key=idempotency_key,
        now=now,
    )
    rule = rule_from(data, settings=settings, now=now, time_zone=draft.send_tz)
    return Spec(
        to=draft.to,
        cc=draft.cc,
        bcc=draft.bcc,
        subject=draft.subject,
        body_text=draft.body_text,
        body_html=draft.body_html,
        rule=rule,
        idempotency_key=draft.idempotency_key,
        start_given=data.get("starts_at") not in (None, ""),
    )


def rule_from(
    data: dict[str, Any], *, settings: Settings, now: dt.datetime | None = None, time_zone: Any = None
) -> Rule:
    """Check only the rule's fields (cron or preset, time_zone, starts_at, ends_at, count); return the rule.

    A preview needs no content: the rule is all it shows.
    """
    now = now or dt.datetime.now(dt.UTC)
    for name in data:
        if name not in FIELDS and name != "idempotency_key":
            raise errors.ValidationError(f"{name}: unknown field", field=name)
    if time_zone is None:
        time_zone = data.get("time_zone") or "UTC"
        if not validation.valid_time_zone(time_zone):
            raise errors.ValidationError(
                f"time_zone: must be an IANA time zone such as Europe/Paris, got {str(time_zone)[:60]!r}",
                field="time_zone",
            )
    cron, preset = data.get("cron"), data.get("preset")
    if cron not in (None, "") and preset not in (None, ""):
        raise errors.ValidationError("cron: give either cron or preset, not both", field="cron")
    if preset not in (None, ""):
        field, expr, kept = "preset", recurrence_rules.preset_cron(preset), preset
    elif cron not in (None, ""):
        field, expr, kept = "cron", recurrence_rules.check_cron(cron), None
    else:
        raise errors.ValidationError("cron: give a cron expression or a preset", field="cron")
    rule = Rule(
        cron=expr,
        preset=kept,
        time_zone=time_zone,
        starts_at=_instant(data.get("starts_at"), "starts_at") or now.replace(microsecond=0),
        ends_at=_instant(data.get("ends_at"), "ends_at"),
        count=_count(data.get("count")),
    )
    recurrence_rules.check_rule(rule, now=now, min_interval=settings.recurrence_min_interval, field=field)
    return rule


def preview(rule: Rule, n: int, *, now: dt.datetime | None = None) -> list[dt.datetime]:
    """The next ``n`` occurrences of a proposed rule, from now."""
    return rule.preview(now or dt.datetime.now(dt.UTC), n)


def parse_n(raw: Any) -> int:
    if raw in (None, ""):
        return 5
    try:
        n = int(raw)
    except (TypeError, ValueError):
        n = 0
    if not 1 <= n <= MAX_PREVIEW:
        raise errors.ValidationError(f"n: must be a whole number from 1 to {MAX_PREVIEW}", field="n")
    return n


def create(
    conn: db.Conn, *, owner: User, spec: Spec, settings: Settings, org_id: int | None = None, by_operator: bool = False
) -> tuple[Recurrence, bool]:
    """Store the recurrence; return it and whether it is new (a repeated idempotency key returns the first).

    It belongs to ``org_id`` (by default the owner's personal organization: the CLI). The
    audit line names the owner as who acted, or no one for an operator's command (``by_operator``).
    """
    if org_id is None:
        org_id = orgs.personal_org_id(conn, owner.id)
    now = dt.datetime.now(dt.UTC)
    first = next(spec.rule.upcoming(now), None)
    params = {
        "org_id": org_id,
        "owner_id": owner.id,
        "to_addrs": list(spec.to),
        "cc_addrs": list(spec.cc),
        "bcc_addrs": list(spec.bcc),
        "subject": spec.subject,
        "body_text": spec.body_text,
        "body_html": spec.body_html,
        "cron": spec.rule.cron,
        "preset": Jsonb(spec.rule.preset) if spec.rule.preset is not None else None,
        "time_zone": spec.rule.time_zone,
        "starts_at": spec.rule.starts_at,
        "ends_at": spec.rule.ends_at,
        "max_count": spec.rule.count,
        "next_at": first,
        "idempotency_key": spec.idempotency_key,
        "request_hash": spec.request_hash(),
    }
    with conn.transaction():
        # A recipient on the organization's (or the global) suppression list: refused as
        # scheduling refuses it (422 naming the address), nothing stored.
        suppression.refuse_suppressed(conn, org_id, (("to", spec.to), ("cc", spec.cc), ("bcc", spec.bcc)))
        row = db.one(conn, "insert_recurrence", **params)
        if row is not None:
            rec = Recurrence.from_row(row)
            _audit(conn, rec, None if by_operator else owner.id, "recurrence.create")
            return rec, True
    first_row = db.one(
        conn,
        "recurrence_by_idempotency_key",
        org_id=org_id,
        owner_id=owner.id,
        idempotency_key=spec.idempotency_key,
    )
    if first_row is None:
        raise errors.Conflict("this idempotency key is being used by another request", field="idempotency_key")
    if first_row["request_hash"] != params["request_hash"]:
        raise errors.Conflict(
            "this idempotency key was already used for a different recurrence", field="idempotency_key"
        )
    return Recurrence.from_row(first_row), False


def _audit(
    conn: db.Conn, rec: Recurrence, actor_id: int | None, action: str, detail: dict[str, Any] | None = None
) -> None:
    """A line of the organization's audit log: the recurrence's id, its subject and rule (never its body)."""
    audit.record(
        conn,
        rec.org_id,
        actor_id,
        action,
        str(rec.id),
        {"subject": rec.subject, "rule": rec.summary, "status": rec.status} | (detail or {}),
    )


def get(conn: db.Conn, scope: Scope, recurrence_id: str | uuid.UUID) -> Recurrence:
    row = db.one(conn, "get_recurrence", id=parse_id(recurrence_id), **scope.params())
    if row is None:
        raise errors.NotFound(f"no recurrence with id {str(recurrence_id)[:64]}")
    return Recurrence.from_row(row)


def list_for(conn: db.Conn, scope: Scope, *, limit: int = 200) -> list[Recurrence]:
    return [Recurrence.from_row(r) for r in db.all_rows(conn, "list_recurrences", limit=limit, **scope.params())]


def upcoming(conn: db.Conn, recurrence: Recurrence, n: int) -> list[dt.datetime]:
    """Its next ``n`` occurrences: those created and waiting, then the rule's from its cursor."""
    if recurrence.status != "active":
        return []
    pending = sorted(r["occurrence_at"] for r in db.all_rows(conn, "recurrence_pending", id=recurrence.id))
    more: list[dt.datetime] = []
    if recurrence.next_at is not None and len(pending) < n:
        more = recurrence.rule.preview(recurrence.next_at, n - len(pending), made=recurrence.made)
    return (pending + more)[:n]


def history(conn: db.Conn, scope: Scope, recurrence_id: str | uuid.UUID, *, limit: int = 100) -> list[dict[str, Any]]:
    """Its occurrences (each an email: sent, failed, waiting...) and the runs it skipped, newest first."""
    recurrence = get(conn, scope, recurrence_id)
    return db.all_rows(conn, "recurrence_history", id=recurrence.id, limit=limit)


def history_json(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{name: json_value(value) for name, value in row.items()} for row in rows]


def _lock(conn: db.Conn, scope: Scope, recurrence_id: str | uuid.UUID) -> Recurrence:
    row = db.one(conn, "lock_recurrence", id=parse_id(recurrence_id), **scope.params())
    if row is None:
        raise errors.NotFound(f"no recurrence with id {str(recurrence_id)[:64]}")
    return Recurrence.from_row(row)


def _cancel_pending(conn: db.Conn, recurrence: Recurrence, reason: str) -> list[dict[str, Any]]:
    cancelled = db.all_rows(conn, "cancel_recurrence_pending", id=recurrence.id, reason=reason)
    for row in cancelled:
        jobs.cancel_job(conn, row["job_id"])
    webhook_events.emails_changed(conn, [row["id"] for row in cancelled])
    return cancelled


def _save(conn: db.Conn, recurrence: Recurrence, *, given_back: int = 0, **changes: Any) -> Recurrence:
    values = dataclasses.replace(recurrence, **changes)
    row = db.one(
        conn,
        "update_recurrence",
        id=values.id,
        to_addrs=values.to_addrs,
        cc_addrs=values.cc_addrs,
        bcc_addrs=values.bcc_addrs,
        subject=values.subject,
        body_text=values.body_text,
        body_html=values.body_html,
        cron=values.cron,
        preset=Jsonb(values.preset) if values.preset is not None else None,
        time_zone=values.time_zone,
        starts_at=values.starts_at,
        ends_at=values.ends_at,
        max_count=values.max_count,
        status=values.status,
        paused_reason=values.paused_reason,
        next_at=values.next_at,
        given_back=given_back,
        failures_in_row=values.failures_in_row,
    )
    assert row is not None
    return Recurrence.from_row(row)


@dataclasses.dataclass(frozen=True)
class Changed:
    """What an action did: the recurrence now, and the occurrences it cancelled (for live status)."""

    recurrence: Recurrence
    cancelled: list[dict[str, Any]]


def pause(conn: db.Conn, scope: Scope, recurrence_id: str | uuid.UUID, *, reason: str = "paused") -> Changed:
    """Stop creating occurrences and cancel those waiting; pausing a paused one changes nothing."""
    with conn.transaction():
        rec = _lock(conn, scope, recurrence_id)
        if rec.status == "paused":
            return Changed(rec, [])
        if rec.status != "active":
            raise errors.Conflict(f"cannot pause: the recurrence has {rec.status}")
        cancelled = _cancel_pending(conn, rec, "the recurrence was paused")
        saved = _save(conn, rec, given_back=len(cancelled), status="paused", paused_reason=reason)
        _audit(conn, saved, scope.user_id, "recurrence.pause", {"cancelled": len(cancelled)})
        webhook_events.emit(
            conn, [webhook_events.recurrence_paused(saved.org_id, saved.id, saved.owner_id, reason, len(cancelled))]
        )
        return Changed(saved, cancelled)


def _restart(rec: Recurrence, now: dt.datetime) -> dict[str, Any]:
    first = next(rec.rule.upcoming(now, made=rec.made), None)
    if first is None:
        return {"status": "ended", "next_at": None, "paused_reason": None}
    return {"status": "active", "next_at": first, "paused_reason": None, "failures_in_row": 0}


def resume(conn: db.Conn, scope: Scope, recurrence_id: str | uuid.UUID) -> Changed:
    """Create occurrences again, from the next one after now (those missed while paused are not sent)."""
    with conn.transaction():
        rec = _lock(conn, scope, recurrence_id)
        if rec.status == "active":
            return Changed(rec, [])
        if rec.status != "paused":
            raise errors.Conflict(f"cannot resume: the recurrence has {rec.status}")
        saved = _save(conn, rec, **_restart(rec, dt.datetime.now(dt.UTC)))
        _audit(conn, saved, scope.user_id, "recurrence.resume")
        return Changed(saved, [])


def delete(conn: db.Conn, scope: Scope, recurrence_id: str | uuid.UUID) -> Changed:
    """Delete it: nothing more goes out; the emails it sent stay (each is still an email)."""
    with conn.transaction():
        rec = _lock(conn, scope, recurrence_id)
        cancelled = _cancel_pending(conn, rec, "the recurrence was deleted")
        saved = _save(conn, rec, given_back=len(cancelled), status="deleted", next_at=None)
        _audit(conn, saved, scope.user_id, "recurrence.delete", {"cancelled": len(cancelled)})
        return Changed(saved, cancelled)


def edit(
    conn: db.Conn, scope: Scope, recurrence_id: str | uuid.UUID, *, changes: dict[str, Any], settings: Settings
) -> Changed:
    """Change its content or rule; it applies to every occurrence not yet sent.

    New content is written into the occurrences already created and waiting; a new rule
    cancels them and starts again from the next occurrence after now.
    """
    if not changes:
        raise errors.ValidationError("give at least one field to change", field=None)
    for name in changes:
        if name not in FIELDS:
            raise errors.ValidationError(f"{name}: cannot be changed", field=name)
    now = dt.datetime.now(dt.UTC)
    with conn.transaction():
        rec = _lock(conn, scope, recurrence_id)
        merged: dict[str, Any] = {
            "to": rec.to_addrs,
            "cc": rec.cc_addrs,
            "bcc": rec.bcc_addrs,
            "subject": rec.subject,
            "body_text": rec.body_text,
            "body_html": rec.body_html,
            "time_zone": rec.time_zone,
            "starts_at": rec.starts_at,
            "ends_at": rec.ends_at,
            "count": rec.max_count,
        }
        if "cron" in changes or "preset" in changes:
            merged |= {"cron": changes.get("cron"), "preset": changes.get("preset")}
        else:
            merged |= {"cron": None, "preset": rec.preset} if rec.preset is not None else {"cron": rec.cron}
        spec = validate(
            merged | {k: v for k, v in changes.items() if k not in ("cron", "preset")}, settings=settings, now=now
        )
        if {"to", "cc", "bcc"} & changes.keys():
            suppression.refuse_suppressed(conn, rec.org_id, (("to", spec.to), ("cc", spec.cc), ("bcc", spec.bcc)))
        rule_changed = (
            spec.rule.cron,
            spec.rule.time_zone,
            spec.rule.starts_at,
            spec.rule.ends_at,
            spec.rule.count,
        ) != (
            rec.cron,
            rec.time_zone,
            rec.starts_at,
            rec.ends_at,
            rec.max_count,
        )
        new: dict[str, Any] = {
            "to_addrs": list(spec.to),
            "cc_addrs": list(spec.cc),
            "bcc_addrs": list(spec.bcc),
            "subject": spec.subject,
            "body_text": spec.body_text,
            "body_html": spec.body_html,
            "cron": spec.rule.cron,
            "preset": spec.rule.preset,
            "time_zone": spec.rule.time_zone,
            "starts_at": spec.rule.starts_at,
            "ends_at": spec.rule.ends_at,
            "max_count": spec.rule.count,
        }
        cancelled: list[dict[str, Any]] = []
        if rule_changed:
            cancelled = _cancel_pending(conn, rec, "the recurrence's rule changed")
            rec = dataclasses.replace(rec, **new, made=rec.made - len(cancelled))
            restart = _restart(rec, now) if rec.status in ("active", "ended") else {}
            saved = _save(conn, rec, given_back=len(cancelled), **restart)
            _audit(
                conn, saved, scope.user_id, "recurrence.edit", {"fields": sorted(changes), "cancelled": len(cancelled)}
            )
            return Changed(saved, cancelled)
        fields = sorted(
            name
            for name, column in (
                ("to", "to_addrs"),
                ("cc", "cc_addrs"),
                ("bcc", "bcc_addrs"),
                ("subject", "subject"),
                ("body_text", "body_text"),
                ("body_html", "body_html"),
            )
            if getattr(rec, column) != new[column]
        )
        saved = _save(conn, rec, **new)
        _audit(conn, saved, scope.user_id, "recurrence.edit", {"fields": sorted(changes)})
        if fields:
            for row in db.all_rows(conn, "recurrence_unsent", id=rec.id):
                at, tz = row["occurrence_at"], saved.time_zone
                db.run(
                    conn,
                    "edit_recurrence_pending",
                    id=row["id"],
                    recurrence_id=rec.id,
                    fields=fields,
                    to_addrs=saved.to_addrs,
                    cc_addrs=saved.cc_addrs,
                    bcc_addrs=saved.bcc_addrs,
                    subject=recurrence_rules.render(saved.subject, at, tz),
                    body_text=recurrence_rules.render(saved.body_text, at, tz),
                    body_html=None if saved.body_html is None else recurrence_rules.render(saved.body_html, at, tz),
                )
        return Changed(saved, [])
