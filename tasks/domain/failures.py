"""Why mail fails: the failed, uncertain and bounced emails of a scope, grouped by cause.

A group is one cause: what happened (failed, uncertain, bounced), the SMTP reply code, the
enhanced status (``x.y.z``) found in the error, an error class, the transport that tried, and
the first recipient's domain. Each group has its count over the window, its failures per
hour over the last 24 hours (a sparkline), its newest examples, and the search that lists
its emails (tasks/domain/search.py). One statement (``failure_groups``) reads the emails
created in the window through the status and delivery indexes (docs/web-app.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from tasks.core import db
from tasks.domain import search
from tasks.domain.models import Scope

#: How far back the view looks, by creation time (what the indexes are ordered by).
WINDOW = dt.timedelta(days=7)
#: Examples shown per group.
EXAMPLES = 3
#: Hours in a group's sparkline.
HOURS = 24
#: How a failed email's error starts when it was held back by the suppression list (tasks/delivery/send.py).
SUPPRESSED_PREFIX = "not sent: on the suppression list: "
#: The error classes, in words.
CLASSES = {
    "refused": "Refused by the server (5xx)",
    "retries exhausted": "Gave up after every retry",
    "suppressed": "On the suppression list",
    "uncertain": "Connection lost after DATA",
    "bounce (hard)": "Bounced (hard)",
    "bounce (soft)": "Bounced (soft)",
    "bounce": "Bounced",
    "other": "Other error",
}

#: The search term that picks out an error class among failed emails (the others are told by their code).
_CLASS_TERMS = {"retries exhausted": 'error:"gave up after"', "suppressed": 'error:"suppression list"'}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Example:
    id: uuid.UUID
    subject: str
    to: list[str]
    status: str
    last_error: str | None


@dataclasses.dataclass(kw_only=True)
class Group:
    """One cause and the emails it took."""

    kind: str
    code: int | None
    enhanced: str | None
    error_class: str
    transport: str
    domain: str
    count: int = 0
    #: Failures per hour, oldest first: ``hourly[-1]`` is the last hour.
    hourly: list[int] = dataclasses.field(default_factory=lambda: [0] * HOURS)
    examples: list[Example] = dataclasses.field(default_factory=list)
    #: (failed_at order, id) of the newest emails, before they are read as examples.
    _newest: list[tuple[int, int, uuid.UUID]] = dataclasses.field(default_factory=list, repr=False)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.kind, self.code, self.enhanced, self.error_class, self.transport, self.domain)

    @property
    def query(self) -> str:
        """The search that lists this group's emails (the transport is not a qualifier: not narrowed by it)."""
        terms: list[str] = []
        if self.kind != "bounced":
            terms.append(f"status:{self.kind}")
            if self.code is not None:
                terms.append(f"code:{self.code}")
            elif self.kind == "failed":
                terms += ["!code:4xx", "!code:5xx"]  # no reply code (a NULL passes a negated code:)
            if self.enhanced:
                terms.append(f"code:{self.enhanced}")
            if self.error_class in _CLASS_TERMS:
                terms.append(_CLASS_TERMS[self.error_class])
            elif self.error_class == "other":
                terms += [f"!{t}" for t in _CLASS_TERMS.values()]
        # A long domain may not fit in a query (search.MAX_QUERY): the list is then wider than the group.
        domain = f"domain:{self.domain}" if self.domain else ""
        return " ".join([*terms, domain] if len(" ".join([*terms, domain])) <= search.MAX_QUERY else terms).strip()

    @property
    def pending_query(self) -> str | None:
        """The search for this cause's emails still waiting for a retry ("Cancel this group"): a
        failed email is final, but one that failed with the same error and waits for its next
        attempt is scheduled, with that error as its last. None for the other kinds (an
        uncertain or bounced email is not retried by itself)."""
        if self.kind != "failed" or not self.query.startswith("status:failed"):
            return None
        return "status:scheduled" + self.query.removeprefix("status:failed")

    @property
    def delivery(self) -> str | None:
        """The list's delivery filter this group needs (bounces are a delivery state, not a status)."""
        return "bounced" if self.kind == "bounced" else None

    @property
    def class_name(self) -> str:
        return CLASSES.get(self.error_class, self.error_class)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reply_code": self.code,
            "enhanced_status": self.enhanced,
            "error_class": self.error_class,
            "transport": self.transport or None,
            "domain": self.domain or None,
            "count": self.count,
            "hourly": self.hourly,
            "query": self.query,
            "delivery": self.delivery,
            "examples": [
                {"id": str(e.id), "subject": e.subject, "to": e.to, "status": e.status, "last_error": e.last_error}
                for e in self.examples
            ],
        }


@dataclasses.dataclass(frozen=True, kw_only=True)
class Report:
    since: dt.datetime
    until: dt.datetime
    total: int
    groups: list[Group]

    def as_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "total": self.total,
            "groups": [g.as_json() for g in self.groups],
        }


def report(conn: db.Conn, scope: Scope, *, now: dt.datetime | None = None) -> Report:
    """Return the scope's failures of the window, grouped by cause, the largest group first."""
    now = now or dt.datetime.now(dt.UTC)
    since = now - WINDOW
    rows = db.all_rows(
        conn,
        "failure_groups",
        since=since,
        now=now,
        suppressed=SUPPRESSED_PREFIX.replace("%", "\\%").replace("_", "\\_") + "%",
        **scope.params(),
    )
    groups: dict[tuple[Any, ...], Group] = {}
    for r in rows:
        g = Group(
            kind=r["kind"],
            code=r["code"],
            enhanced=r["enhanced"],
            error_class=r["error_class"],
            transport=r["transport"],
            domain=r["domain"],
        )
        g = groups.setdefault(g.key, g)
        g.count += r["n"]
        hour = r["hour"]
        if 0 <= hour < HOURS:
            g.hourly[HOURS - 1 - hour] += r["n"]
        # The newest first: the last hour's (0), then earlier ones; older than a day (-1) last.
        rank = hour if hour >= 0 else HOURS
        g._newest += [(rank, i, eid) for i, eid in enumerate(r["examples"])]
    ordered = sorted(groups.values(), key=lambda g: (-g.count, g.key[0], str(g.key)))
    wanted = {g.key: [eid for _, _, eid in sorted(g._newest)[:EXAMPLES]] for g in ordered}
    ids = [eid for found in wanted.values() for eid in found]
    by_id = {r["id"]: r for r in db.all_rows(conn, "emails_by_ids", ids=ids, **scope.params())} if ids else {}
    for g in ordered:
        g.examples = [
            Example(
                id=r["id"], subject=r["subject"], to=list(r["to_addrs"]), status=r["status"], last_error=r["last_error"]
            )
            for r in (by_id.get(eid) for eid in wanted[g.key])
            if r is not None
        ]
    return Report(since=since, until=now, total=sum(g.count for g in ordered), groups=ordered)


def sparkline(hourly: list[int], *, width: int = 96, height: int = 20) -> str:
    """Return the points of an SVG polyline drawing these counts (the highest at the top)."""
    top = max(hourly) or 1
    step = width / max(len(hourly) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - (n / top) * (height - 2) - 1:.1f}" for i, n in enumerate(hourly))
