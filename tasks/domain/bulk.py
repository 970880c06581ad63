"""Bulk actions: cancel, reschedule, send now or retry every email a search matched, safely.

Three steps (docs/bulk-actions.md):

1. ``preview``: the exact count of the emails the action applies to, a sample, and how many
   more match but will be left alone (a cancel applies to scheduled and offline emails only,
   a retry to failed and uncertain ones).
2. ``confirm``: in ONE transaction, the action's row, a snapshot of every email it applies to
   (its id, status and version: ``emails.updated_at``, which the database moves on every
   change), the organization's audit line and the job that will do it. Over
   ``CONFIRM_ABOVE`` emails the user types the count; a count other than the snapshot's
   refuses it all (nothing stored).
3. ``run`` (the job, tasks/queue/bulk.py): the snapshot in chunks of ``CHUNK``, each chunk
   one transaction with set-based statements. An email still as it was confirmed gets the
   action and a timeline event naming the bulk action; one that changed meanwhile is skipped
   with the reason. An email that was not in the snapshot is never touched, even if it
   matches the search now.

``undo``: within ``UNDO_WINDOW`` of the end, a cancel or a reschedule is undone for the
emails it changed that are still as it left them (the others are skipped and reported).
A cancelled email stays cancelled everywhere else: only this statement may bring it back
(migration 0022, ``reach.bulk_undo``).

Each statement is one of sql/queries.sql's ``bulk_*``; the search's conditions are
tasks/domain/search.py's, in the caller's scope.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from tasks.core import db, errors
from tasks.core.config import Settings
from tasks.domain import audit, listing, search
from tasks.domain.models import Email, Scope, Status
from tasks.queue import jobs
from tasks.webhooks import events as webhook_events

#: The task and queue of a bulk action's job (tasks/queue/bulk.py).
TASK = "bulk_action"
QUEUE = "bulk"
#: Over this many emails, the user types the count to confirm.
CONFIRM_ABOVE = 100
#: How long after it ends a cancel or a reschedule can be undone.
UNDO_WINDOW = dt.timedelta(seconds=10)
#: Emails per transaction of the job.
CHUNK = 500
#: Emails shown before confirming.
SAMPLE = 10
#: The list's "Select all N matching" counts up to this many (then "N+"): every search of the list
#: pays for it, and counting a million matches would cost seconds.
COUNT_CAP = 10_000
#: Most emails a selection of rows picked by hand may name.
MAX_PICKED = 1000


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of bulk action: the statuses it applies to, and whether it can be undone."""

    name: str
    label: str
    #: What an email it applied to was: "no email here can be {past}".
    past: str
    applies: tuple[Status, ...]
    undoable: bool


ACTIONS: dict[str, Kind] = {
    "cancel": Kind("cancel", "Cancel", "cancelled", (Status.SCHEDULED, Status.OFFLINE), True),
    "reschedule": Kind("reschedule", "Reschedule", "rescheduled", (Status.SCHEDULED,), True),
    "send_now": Kind("send_now", "Send now", "sent now", (Status.SCHEDULED,), False),
    "retry": Kind("retry", "Retry", "retried", (Status.FAILED, Status.UNCERTAIN), False),
}


def kind(action: str) -> Kind:
    """Return the action's kind, or raise ``ValidationError`` on the field ``action``."""
    if action not in ACTIONS:
        raise errors.ValidationError(f"action: must be one of {', '.join(ACTIONS)}", field="action")
    return ACTIONS[action]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Selection:
    """What the user selected: a search (its text, the list's tab, "mine"), or rows picked in it."""

    q: str = ""
    view: str = "all"
    mine: bool = False
    ids: tuple[uuid.UUID, ...] | None = None

    @classmethod
    def of(cls, q: str | None, view: str | None, mine: bool, ids: Sequence[str] | None) -> Selection:
        """Read a selection from a form or a request, or raise ``ValidationError`` naming the field."""
        q = (q or "").strip()
        if len(q) > search.MAX_QUERY:
            raise errors.ValidationError(f"q: at most {search.MAX_QUERY} characters", field="q")
        view = view or "all"
        listing.statuses_for(view)  # a known tab or status, else the field "status"
        picked: tuple[uuid.UUID, ...] | None = None
        if ids is not None:
            if not ids:
                raise errors.ValidationError("ids: pick some emails first, or select all that match", field="ids")
            if len(ids) > MAX_PICKED:
                raise errors.ValidationError(f"ids: at most {MAX_PICKED} picked emails", field="ids")
            try:
                picked = tuple(dict.fromkeys(uuid.UUID(str(i)) for i in ids))
            except ValueError:
                raise errors.ValidationError("ids: each must be an email's id", field="ids") from None
        return cls(q=q, view=view, mine=mine, ids=picked)

    def describe(self) -> str:
        """The selection in words, for the audit log and the pages."""
        where = f"“{self.q}”" if self.q else "every email"
        if self.view != "all":
            where += f" in {self.view}"
        if self.mine:
            where += " (mine)"
        return f"{len(self.ids)} picked of {where}" if self.ids is not None else where


def _statement(conn: db.Conn, query: str, scope: Scope, sel: Selection) -> tuple[sql.Composed, dict[str, Any]]:
    compiled = search.compile_query(sel.q, scope, conn=conn)
    parts: list[sql.Composable] = [compiled.condition]
    params: dict[str, Any] = {**compiled.params, **scope.params()}
    params["mine_only"] = sel.mine and scope.user_id is not None
    statuses = [str(s) for s in listing.statuses_for(sel.view)]
    if set(statuses) != set(search.STATUS_WORDS["all"]):
        parts.append(sql.SQL("status = ANY({}::text[])").format(sql.Placeholder("view_statuses")))
        params["view_statuses"] = statuses
    if sel.ids is not None:
        parts.append(sql.SQL("id = ANY({}::uuid[])").format(sql.Placeholder("picked_ids")))
        params["picked_ids"] = list(sel.ids)
    return sql.SQL(db.queries[query]).format(conditions=sql.SQL(" AND ").join(parts)), params


# ---- the parameters ----


def parse_shift(text: str) -> dt.timedelta:
    """Read a shift as the search writes relative times: ``+2h``, ``-30m``, ``+1d``, ``+1w``."""
    delta = search.relative(text)
    if delta is None:
        raise errors.ValidationError("shift: write it as +2h, -30m, +1d or +1w", field="shift")
    if not delta:
        raise errors.ValidationError("shift: must move the emails (not +0)", field="shift")
    return delta


def parse_params(action: str, raw: dict[str, Any], *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Check an action's parameters: a reschedule's ``to`` (a time to come) or ``shift``; none for the others."""
    if kind(action).name != "reschedule":
        return {}
    now = now or dt.datetime.now(dt.UTC)
    to, shift = raw.get("to"), raw.get("shift")
    if to and shift:
        raise errors.ValidationError("to: give a time or a shift, not both", field="to")
    if shift:
        delta = parse_shift(str(shift))
        return {"shift": str(shift).strip().lower(), "shift_seconds": int(delta.total_seconds())}
    if not to:
        raise errors.ValidationError("to: give the new time, or a shift such as +2h", field="to")
    try:
        when = to if isinstance(to, dt.datetime) else dt.datetime.fromisoformat(str(to))
    except ValueError:
        raise errors.ValidationError("to: must be a time such as 2026-12-01T09:30:00Z", field="to") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if when < now:
        raise errors.ValidationError("to: that time has passed", field="to")
    return {"to": when.astimezone(dt.UTC).isoformat()}


def _check_shift(params: dict[str, Any], earliest: dt.datetime | None, count: int, now: dt.datetime) -> None:
    if "shift_seconds" in params and earliest is not None and earliest + _seconds(params) < now:
        raise errors.ValidationError(
            f"shift: {params['shift']} would move some of the {count} emails into the past", field="shift"
        )


def _seconds(params: dict[str, Any]) -> dt.timedelta:
    return dt.timedelta(seconds=params["shift_seconds"])


# ---- preview ----


@dataclasses.dataclass(frozen=True, kw_only=True)
class Preview:
    """What confirming would do: ``count`` emails acted on, ``left`` matching ones left alone (by status)."""

    action: Kind
    selection: Selection
    params: dict[str, Any]
    count: int
    left: dict[str, int]
    sample: list[Email]

    @property
    def needs_typed_count(self) -> bool:
        return self.count > CONFIRM_ABOVE


def count(conn: db.Conn, scope: Scope, selection: Selection, *, cap: int | None = None) -> int:
    """How many emails the selection matches, whatever their status, counted up to ``cap`` (the
    list's "Select all N"; the confirmation page counts exactly)."""
    statement, values = _statement(conn, "bulk_match_count", scope, selection)
    row = conn.execute(statement, values | {"cap": cap or COUNT_CAP}, prepare=False).fetchone()
    return int(row["n"]) if row else 0


def preview(
    conn: db.Conn, scope: Scope, selection: Selection, action: str, params: dict[str, Any] | None = None
) -> Preview:
    """Count exactly what the action would apply to, and show a sample (nothing is written)."""
    spec = kind(action)
    statement, values = _statement(conn, "bulk_match_counts", scope, selection)
    by_status = {r["status"]: int(r["n"]) for r in conn.execute(statement, values, prepare=False).fetchall()}
    count = sum(n for s, n in by_status.items() if s in spec.applies)
    left = {s: n for s, n in sorted(by_status.items()) if s not in spec.applies}
    statement, values = _statement(conn, "bulk_match_sample", scope, selection)
    values |= {"applies": [str(s) for s in spec.applies], "limit": SAMPLE}
    sample = [Email.from_row(r) for r in conn.execute(statement, values, prepare=False).fetchall()]
    return Preview(action=spec, selection=selection, params=params or {}, count=count, left=left, sample=sample)


# ---- confirm ----


def _typed(raw: Any) -> int | None:
    if raw is None or str(raw).strip() == "":
        return None
    text = str(raw).strip().replace(",", "").replace(" ", "")
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise errors.ValidationError("confirm_count: type the number of emails, in digits", field="confirm_count")
    return int(text)


def confirm(
    conn: db.Conn,
    scope: Scope,
    selection: Selection,
    action: str,
    params: dict[str, Any],
    *,
    confirm_count: Any = None,
    expected: int | None = None,
) -> uuid.UUID:
    """Snapshot the emails, record the action and its audit line and defer its job, all in one transaction.

    ``confirm_count``: what the user typed (required over ``CONFIRM_ABOVE`` emails, and then
    equal to the count); ``expected``: the count the confirmation page showed, when it must
    still hold. Raises ``ValidationError`` (field ``confirm_count``), nothing stored, otherwise.
    """
    spec = kind(action)
    if scope.org_id is None or scope.user_id is None:
        raise errors.Forbidden("a bulk action is a member's, in one organization")
    typed = _typed(confirm_count)
    now = dt.datetime.now(dt.UTC)
    with conn.transaction():
        row = db.one(
            conn,
            "bulk_insert",
            org_id=scope.org_id,
            actor_id=scope.user_id,
            action=spec.name,
            params=Jsonb(params),
            query=selection.q,
            view=selection.view,
            mine=selection.mine,
            picked=selection.ids is not None,
        )
        assert row is not None
        bulk_id: uuid.UUID = row["id"]
        statement, values = _statement(conn, "bulk_snapshot", scope, selection)
        values |= {"bulk_id": bulk_id, "applies": [str(s) for s in spec.applies], "bulk_org_id": scope.org_id}
        snap = conn.execute(statement, values, prepare=False).fetchone()
        assert snap is not None
        count = int(snap["n"])
        if count == 0:
            raise errors.ValidationError(f"q: no email here can be {spec.past}", field="q")
        if expected is not None and expected != count:
            raise errors.ValidationError(
                f"confirm_count: the selection now holds {count} emails, not {expected}: check them again",
                field="confirm_count",
            )
        if count > CONFIRM_ABOVE and typed is None:
            raise errors.ValidationError(
                f"confirm_count: type {count}, the number of emails, to confirm", field="confirm_count"
            )
        if typed is not None and typed != count:
            raise errors.ValidationError(
                f"confirm_count: {typed} is not the number of emails ({count})", field="confirm_count"
            )
        _check_shift(params, snap["earliest"], count, now)
        db.run(conn, "bulk_set_total", id=bulk_id, total=count)
        audit.record(
            conn,
            scope.org_id,
            scope.user_id,
            f"bulk.{spec.name}",
            selection.describe(),
            {"bulk_action_id": str(bulk_id), "query": selection.q, "view": selection.view, "count": count} | params,
        )
        jobs.defer_task(conn, TASK, QUEUE, lock=job_lock(bulk_id), bulk_id=str(bulk_id))
    return bulk_id


def job_lock(bulk_id: uuid.UUID | str) -> str:
    """The lock every job of one bulk action holds (a lost job's replacement, tasks/queue/reconcile.py,
    waits for it): two never apply the same snapshot at once."""
    return f"bulk:{bulk_id}"


# ---- the job ----


def _reason(was: str, row: db.Row) -> str:
    if row["status"] != was:
        return f"changed since confirmed: now {row['status']}"
    return "changed since confirmed: edited or moved"


#: Told the emails a committed chunk (or an undo) changed, as ``bulk_changed_emails`` reads them
#: (id, org_id, status, next_attempt_at): the live status of the pages open on them.
Changed = Callable[[list[db.Row]], None]


def run(
    conn: db.Conn, bulk_id: uuid.UUID | str, settings: Settings, *, changed: Changed | None = None
) -> db.Row | None:
    """Apply a confirmed bulk action to its snapshot, a chunk per transaction (idempotent: a
    restarted job goes on where it stopped). Returns its row when done. ``changed`` is told the
    emails of each chunk once it has committed."""
    started = db.one(conn, "bulk_start", id=bulk_id)
    if started is None:  # done, undone or failed already
        return None
    spec = ACTIONS[started["action"]]
    params: dict[str, Any] = started["params"]
    while (applied := _chunk(conn, started["id"], spec, params, settings)) is not None:
        _tell(conn, applied, changed)
    return db.one(conn, "bulk_finish", id=started["id"], undoable=spec.undoable, window=UNDO_WINDOW)


def _tell(conn: db.Conn, ids: Sequence[uuid.UUID], changed: Changed | None) -> None:
    """Tell ``changed`` where the emails ``ids`` stand now (after their transaction committed)."""
    if changed is not None and ids:
        changed(db.all_rows(conn, "bulk_changed_emails", ids=list(ids)))


def _chunk(
    conn: db.Conn, bulk_id: uuid.UUID, spec: Kind, params: dict[str, Any], settings: Settings
) -> list[uuid.UUID] | None:
    """Do one chunk; return the emails it changed (None when nothing was left)."""
    with conn.transaction():
        rows = db.all_rows(conn, "bulk_chunk", bulk_id=bulk_id, limit=CHUNK)
        if not rows:
            return None
        ready = [r for r in rows if r["status"] == r["was"] and r["updated_at"] == r["version"]]
        versions: dict[uuid.UUID, dt.datetime] = {}
        if ready:
            versions = _apply(conn, bulk_id, spec, params, ready, settings)
        marks = [
            (r["email_id"], "applied", None, versions[r["email_id"]])
            if r["email_id"] in versions
            else (r["email_id"], "skipped", _reason(r["was"], r), None)
            for r in rows
        ]
        db.run(
            conn,
            "bulk_mark",
            bulk_id=bulk_id,
            ids=[m[0] for m in marks],
            outcomes=[m[1] for m in marks],
            reasons=[m[2] for m in marks],
            versions=[m[3] for m in marks],
        )
        db.run(conn, "bulk_progress", id=bulk_id, applied=len(versions), skipped=len(rows) - len(versions))
    return list(versions)


def _apply(
    conn: db.Conn, bulk_id: uuid.UUID, spec: Kind, params: dict[str, Any], rows: list[db.Row], settings: Settings
) -> dict[uuid.UUID, dt.datetime]:
    """Apply the action to emails locked and still as confirmed; return each one's new version."""
    if spec.name == "cancel":
        done = db.all_rows(conn, "bulk_cancel", bulk_id=bulk_id, ids=[r["email_id"] for r in rows])
        jobs.cancel_jobs(conn, [r["job_id"] for r in done])
        webhook_events.emails_changed(conn, [r["id"] for r in done])
        return {r["id"]: r["updated_at"] for r in done}
    now = dt.datetime.now(dt.UTC)
    send_ats: list[dt.datetime | None] = []
    next_ats: list[dt.datetime] = []
    for r in rows:
        if spec.name == "reschedule":
            if "to" in params:
                at = dt.datetime.fromisoformat(params["to"])
            else:
                at = max(r["send_at"] + _seconds(params), now)
            send_ats.append(at)
            next_ats.append(at)
        elif spec.name == "send_now":
            send_ats.append(now)
            next_ats.append(now)
        else:  # retry: a new attempt now; the email keeps its send time
            send_ats.append(None)
            next_ats.append(now)
    return _wait_again(
        conn,
        bulk_id,
        rows,
        send_ats,
        next_ats,
        settings,
        kind="rescheduled" if spec.name == "reschedule" else spec.name,
    )


def _wait_again(
    conn: db.Conn,
    bulk_id: uuid.UUID,
    rows: list[db.Row],
    send_ats: list[dt.datetime | None],
    next_ats: list[dt.datetime],
    settings: Settings,
    *,
    kind: str,
    undo: bool = False,
) -> dict[uuid.UUID, dt.datetime]:
    """Each email waits again until its next_at: its old job cancelled (if scheduled), a new one
    (within the horizon)."""
    jobs.cancel_jobs(conn, [r["job_id"] for r in rows if r["status"] == Status.SCHEDULED])
    job_of = jobs.defer_due_sends(
        conn, [(r["email_id"], at) for r, at in zip(rows, next_ats, strict=True)], settings.schedule_horizon
    )
    done = db.all_rows(
        conn,
        "bulk_wait_again",
        bulk_id=bulk_id,
        ids=[r["email_id"] for r in rows],
        send_ats=send_ats,
        next_ats=next_ats,
        job_ids=[job_of.get(r["email_id"]) for r in rows],
        kind=kind,
        undo=undo,
    )
    return {r["id"]: r["updated_at"] for r in done}


# ---- reading one ----


@dataclasses.dataclass(frozen=True, kw_only=True)
class BulkAction:
    id: uuid.UUID
    org_id: int
    actor_email: str | None
    action: str
    params: dict[str, Any]
    query: str
    view: str
    mine: bool
    picked: bool
    state: str
    total: int
    applied: int
    skipped: int
    restored: int
    undo_skipped: int
    created_at: dt.datetime
    finished_at: dt.datetime | None
    undo_until: dt.datetime | None
    undone_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: db.Row) -> BulkAction:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})

    @property
    def kind(self) -> Kind:
        return ACTIONS[self.action]

    def undo_seconds_left(self, now: dt.datetime | None = None) -> float:
        """How long the Undo stays possible (0: not, or no more)."""
        if self.state != "done" or self.undo_until is None:
            return 0.0
        return max(0.0, (self.undo_until - (now or dt.datetime.now(dt.UTC))).total_seconds())

    def as_json(self, reasons: list[db.Row] | None = None) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "action": self.action,
            "params": self.params,
            "query": self.query,
            "view": self.view,
            "mine": self.mine,
            "picked": self.picked,
            "state": self.state,
            "total": self.total,
            "applied": self.applied,
            "skipped": self.skipped,
            "restored": self.restored,
            "undo_skipped": self.undo_skipped,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "undo_until": self.undo_until.isoformat() if self.undo_until else None,
            "undo_seconds_left": round(self.undo_seconds_left(), 1),
            "skipped_reasons": [
                {"stage": r["stage"], "reason": r["reason"], "count": int(r["n"])} for r in (reasons or [])
            ],
        }


def get(conn: db.Conn, scope: Scope, bulk_id: str | uuid.UUID) -> BulkAction:
    """Return the bulk action, or raise ``NotFound`` (also for another organization's)."""
    try:
        found = uuid.UUID(str(bulk_id))
    except ValueError:
        raise errors.NotFound(f"no bulk action with id {str(bulk_id)[:64]!r}") from None
    row = db.one(conn, "bulk_get", id=found, **scope.params())
    if row is None:
        raise errors.NotFound(f"no bulk action with id {found}")
    return BulkAction.from_row(row)


def reasons(conn: db.Conn, bulk_id: uuid.UUID) -> list[db.Row]:
    """Why emails were skipped, with how many each (stage: ``action`` or ``undo``)."""
    return db.all_rows(conn, "bulk_skip_reasons", bulk_id=bulk_id)


def skipped_examples(conn: db.Conn, bulk_id: uuid.UUID, limit: int = 20) -> list[db.Row]:
    return db.all_rows(conn, "bulk_skipped_examples", bulk_id=bulk_id, limit=limit)


# ---- undo ----


def undo(
    conn: db.Conn, scope: Scope, bulk_id: str | uuid.UUID, *, settings: Settings, changed: Changed | None = None
) -> BulkAction:
    """Undo a finished cancel or reschedule within ``UNDO_WINDOW``, for the emails still as it left them
    (``changed`` is told those it restored, once committed).

    Raises ``NotFound`` outside the scope and ``Conflict`` when it cannot be undone (another
    kind of action, not finished, undone already, or too late).
    """
    found = get(conn, scope, bulk_id)
    with conn.transaction():
        row = db.one(conn, "bulk_lock", id=found.id, **scope.params())
        assert row is not None
        action = BulkAction.from_row(row | {"actor_email": found.actor_email})
        if not action.kind.undoable:
            raise errors.Conflict(f"a bulk {action.kind.label.lower()} cannot be undone")
        if action.state == "undone":
            raise errors.Conflict("this bulk action was undone already")
        if action.state != "done":
            raise errors.Conflict("this bulk action has not finished: undo it once it has")
        if action.undo_seconds_left() <= 0:
            raise errors.Conflict(f"too late to undo: it was possible for {int(UNDO_WINDOW.total_seconds())} seconds")
        rows = db.all_rows(conn, "bulk_undo_rows", bulk_id=action.id)
        left_as = Status.CANCELLED if action.action == "cancel" else Status.SCHEDULED
        ready = [r for r in rows if r["status"] == left_as and r["updated_at"] == r["applied_version"]]
        restored: set[uuid.UUID] = set()
        if ready and action.action == "cancel":
            restored = _uncancel(conn, action.id, ready, settings)
        elif ready:
            restored = set(
                _wait_again(
                    conn,
                    action.id,
                    ready,
                    [r["previous_send_at"] for r in ready],
                    [r["previous_next_attempt_at"] for r in ready],
                    settings,
                    kind="rescheduled",
                    undo=True,
                )
            )
        marks = [
            (r["email_id"], "restored", None)
            if r["email_id"] in restored
            else (r["email_id"], "skipped", _reason(left_as, r).replace("confirmed", "the action"))
            for r in rows
        ]
        db.run(
            conn,
            "bulk_mark_undo",
            bulk_id=action.id,
            ids=[m[0] for m in marks],
            undos=[m[1] for m in marks],
            reasons=[m[2] for m in marks],
        )
        done = db.one(conn, "bulk_undone", id=action.id, restored=len(restored), skipped=len(rows) - len(restored))
        assert done is not None
        audit.record(
            conn,
            action.org_id,
            scope.user_id,
            "bulk.undo",
            f"bulk {action.action} {action.id}",
            {"bulk_action_id": str(action.id), "restored": len(restored), "skipped": len(rows) - len(restored)},
        )
    _tell(conn, sorted(restored), changed)
    return get(conn, scope, action.id)


def _uncancel(conn: db.Conn, bulk_id: uuid.UUID, rows: list[db.Row], settings: Settings) -> set[uuid.UUID]:
    """Bring cancelled emails back to what they were, scheduled ones with a new job (due when they were)."""
    job_of = jobs.defer_due_sends(
        conn,
        [(r["email_id"], r["next_attempt_at"]) for r in rows if r["was"] == Status.SCHEDULED],
        settings.schedule_horizon,
    )
    conn.execute("SELECT set_config('reach.bulk_undo', 'on', true)")
    try:
        done = db.all_rows(
            conn,
            "bulk_uncancel",
            bulk_id=bulk_id,
            ids=[r["email_id"] for r in rows],
            statuses=[r["was"] for r in rows],
            job_ids=[job_of.get(r["email_id"]) for r in rows],
        )
    finally:
        conn.execute("SELECT set_config('reach.bulk_undo', 'off', true)")
    return {r["id"] for r in done}
