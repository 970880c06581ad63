"""Alerts: the conditions the monitor watches, their episodes, and the messages Slack gets.

An alert is one condition (``key``: ``no_worker``, ``breaker:primary``,
``uncertain:org:12``...) of a ``kind`` (docs/alerts.md lists each). The monitor
(tasks/ops/monitor.py) looks every MONITOR_INTERVAL and hands ``step`` what is
true now (``Finding``) and which kinds it could look at; ``step`` decides, for
each key, what to tell Slack:

- true and not yet raised: **raised**, once, unless a message about the same key
  went out less than ALERT_MIN_INTERVAL ago (a flapping condition): then it waits,
  recorded, and is raised only if it is still true when the interval is over;
- raised and no longer true: **resolved**, once;
- held back and no longer true: closed when the interval is over, never posted
  (a flap: it was over before it was worth a message);
- for kinds that ``grow`` (new uncertain emails), **more** when the count went up,
  at most once per interval.

A kind not looked at this round (PostgreSQL was down, so no count of the queue)
keeps its alerts as they are: being unable to look is not being well.

An episode is stored by a ``Store``: PostgreSQL (the table ``alerts``, one open
episode per key at most), or memory while PostgreSQL itself is unreachable
(written to PostgreSQL when it is back). A message is recorded after Slack took
it; one Slack did not take is tried again next round.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import structlog

from tasks.core import db, errors

log = structlog.get_logger("tasks.ops.alerts")

#: The kinds of alert, each with its title (docs/alerts.md says more of each).
KINDS: dict[str, str] = {
    "no_worker": "No worker is alive",
    "breaker": "A transport's circuit breaker is open",
    "offline": "Mail is going to the offline log",
    "queue_lag": "Due emails are not being claimed",
    "postgres_unreachable": "PostgreSQL is unreachable",
    "redis_unreachable": "Redis is unreachable",
    "uncertain": "Emails are uncertain",
}
#: How long resolved alerts stay on /ops/alerts and the Operators page.
RECENT_SECONDS = 24 * 3600
RECENT_LIMIT = 50


@dataclasses.dataclass(frozen=True, kw_only=True)
class Finding:
    """A condition true now, as one round of checks saw it."""

    key: str
    kind: str
    summary: str
    action: str
    since: dt.datetime
    affected: int | None
    org_id: int | None = None
    #: Post "more" when ``affected`` goes up while it is raised (new uncertain emails).
    grows: bool = False
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(kw_only=True)
class Episode:
    """One alert from when it was first seen true to when it was over (a row of ``alerts``)."""

    id: int | None = None
    key: str
    kind: str
    org_id: int | None
    summary: str
    action: str
    affected: int | None
    since: dt.datetime
    last_seen_at: dt.datetime
    cleared_at: dt.datetime | None = None
    raised_at: dt.datetime | None = None
    announced: int | None = None
    resolved_at: dt.datetime | None = None
    resolved_posted: bool = False
    posted_at: dt.datetime | None = None
    flaps: int = 0
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Episode:
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})

    @property
    def state(self) -> str:
        """``raised``, ``pending`` (true, held back by the minimum interval), ``cleared`` or ``resolved``."""
        if self.resolved_at is not None:
            return "resolved"
        if self.raised_at is None:
            return "pending" if self.cleared_at is None else "cleared"
        return "raised"

    def as_dict(self) -> dict[str, Any]:
        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "id": self.id,
            "key": self.key,
            "kind": self.kind,
            "title": KINDS.get(self.kind, self.kind),
            "org_id": self.org_id,
            "state": self.state,
            "summary": self.summary,
            "action": self.action,
            "affected": self.affected,
            "since": iso(self.since),
            "last_seen_at": iso(self.last_seen_at),
            "raised_at": iso(self.raised_at),
            "resolved_at": iso(self.resolved_at),
            "resolved_posted": self.resolved_posted,
            "flaps": self.flaps,
        }


class Store(Protocol):
    """Where episodes live: PostgreSQL, or memory while it is unreachable."""

    def open_episodes(self) -> dict[str, Episode]: ...

    def last_posts(self) -> dict[str, dt.datetime]: ...

    def save(self, episode: Episode) -> bool:
        """Insert or update; False when a new episode's key is open already (another monitor's)."""
        ...


class PgStore:
    """Episodes in the table ``alerts``; ``within``: how far back a last message matters (the minimum interval)."""

    def __init__(self, conn: db.Conn, *, within: float = 86400.0):
        self.conn = conn
        self.within = within

    def open_episodes(self) -> dict[str, Episode]:
        return {r["key"]: Episode.from_row(r) for r in db.all_rows(self.conn, "alerts_open")}

    def last_posts(self) -> dict[str, dt.datetime]:
        return {r["key"]: r["posted_at"] for r in db.all_rows(self.conn, "alerts_last_posts", within=self.within)}

    def save(self, episode: Episode) -> bool:
        params = dataclasses.asdict(episode) | {"detail": json.dumps(episode.detail, default=str)}
        if episode.id is not None:
            db.run(self.conn, "alert_update", **params)
            return True
        row = db.one(self.conn, "alert_insert", **params)
        if row is None:
            return False
        episode.id = row["id"]
        return True


class MemoryStore:
    """Episodes kept in memory while PostgreSQL is unreachable; ``flush`` writes them when it is back."""

    def __init__(self, known: dict[str, Episode] | None = None) -> None:
        #: Seeded with the open episodes PostgreSQL held when it was last read.
        self.episodes: dict[str, Episode] = dict(known or {})
        self.closed: list[Episode] = []
        self.posts: dict[str, dt.datetime] = {}
        #: The open episodes changed here (the others are PostgreSQL's to change meanwhile).
        self.changed: set[str] = set()

    def open_episodes(self) -> dict[str, Episode]:
        return dict(self.episodes)

    def last_posts(self) -> dict[str, dt.datetime]:
        return dict(self.posts)

    def save(self, episode: Episode) -> bool:
        self.changed.add(episode.key)
        if episode.posted_at is not None:
            self.posts[episode.key] = max(episode.posted_at, self.posts.get(episode.key, episode.posted_at))
        if episode.resolved_at is not None:
            self.episodes.pop(episode.key, None)
            self.closed.append(episode)
        else:
            self.episodes[episode.key] = episode
        return True

    def flush(self, store: PgStore) -> None:
        """Record what happened while PostgreSQL was away.

        A new episode whose key another monitor opened meanwhile is left to that one.
        """
        for episode in [*self.closed, *(e for k, e in self.episodes.items() if k in self.changed)]:
            store.save(episode)
        self.changed.clear()
        self.episodes.clear()
        self.closed.clear()
        self.posts.clear()


#: Posts one message about an episode: ``(episode, event)``, event being raised, more or resolved.
#: It raises (any ``ReachError``) when the message was not taken: the step is tried again next round.
Post = Callable[[Episode, str], None]


def step(
    store: Store,
    findings: Iterable[Finding],
    looked_at: set[str],
    *,
    now: dt.datetime,
    min_interval: float,
    post: Post,
) -> list[tuple[Episode, str]]:
    """Bring every alert up to date with one round of checks; return the messages posted."""
    found = {f.key: f for f in findings}
    open_now = store.open_episodes()
    last = store.last_posts()
    gap = dt.timedelta(seconds=min_interval)
    sent: list[tuple[Episode, str]] = []

    def allowed(key: str) -> bool:
        return key not in last or now - last[key] >= gap

    def send(episode: Episode, event: str) -> bool:
        try:
            post(episode, event)
        except errors.ReachError:  # Slack did not take it (``post`` logged why): tried again next round
            return False
        except Exception:
            log.exception("alert not posted", key=episode.key, alert_event=event)
            return False
        last[episode.key] = now
        sent.append((episode, event))
        return True

    for key, finding in found.items():
        episode = open_now.get(key)
        if episode is None:
            episode = Episode(
                key=key,
                kind=finding.kind,
                org_id=finding.org_id,
                summary=finding.summary,
                action=finding.action,
                affected=finding.affected,
                since=finding.since,
                last_seen_at=now,
            )
        if episode.cleared_at is not None:
            episode.flaps += 1
            episode.cleared_at = None
        episode.summary, episode.action, episode.affected = finding.summary, finding.action, finding.affected
        episode.last_seen_at, episode.detail = now, finding.detail
        if episode.raised_at is None and allowed(key):
            if send(episode, "raised"):
                episode.raised_at = episode.posted_at = now
                episode.announced = finding.affected
        elif (
            finding.grows
            and episode.raised_at is not None
            and (finding.affected or 0) > (episode.announced or 0)
            and allowed(key)
            and send(episode, "more")
        ):
            episode.posted_at, episode.announced = now, finding.affected
        store.save(episode)

    for key, episode in open_now.items():
        if key in found or episode.kind not in looked_at:
            continue
        if episode.cleared_at is None:
            episode.cleared_at = now
        if episode.raised_at is not None:
            if send(episode, "resolved"):
                episode.resolved_at = episode.posted_at = now
                episode.resolved_posted = True
        elif allowed(key):
            # Held back, and over before the interval was: a flap, closed without a message.
            episode.resolved_at = now
        store.save(episode)
    return sent


# --- What Slack is told.

_ICONS = {"raised": ":rotating_light:", "more": ":warning:", "resolved": ":white_check_mark:"}


def _clock(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _affected(episode: Episode) -> str:
    if episode.affected is None:
        return "Emails affected: unknown (the database cannot be read)."
    return f"Emails affected: {episode.affected}."


def message(episode: Episode, event: str, *, now: dt.datetime, where: str) -> tuple[str, list[dict[str, Any]]]:
    """Return the text and Block Kit blocks of one message: what, since when, how many, what to do."""
    title = KINDS.get(episode.kind, episode.kind)
    icon = _ICONS[event]
    if event == "resolved":
        lasted = _duration((now - episode.since).total_seconds())
        head = f"{icon} Resolved: {title}"
        body = f"{episode.summary}\nOver at {_clock(now)}, after {lasted} (since {_clock(episode.since)})."
        if episode.flaps:
            body += f" It came and went {episode.flaps} more time(s) meanwhile."
    else:
        head = f"{icon} {'Raised' if event == 'raised' else 'Still open, and worse'}: {title}"
        body = f"{episode.summary}\nSince {_clock(episode.since)}. {_affected(episode)}\n*What to do:* {episode.action}"
    text = f"{head} ({where})\n{body}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": head[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": body[:2900]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{where} · alert `{episode.key}`"}]},
    ]
    return text, blocks


# --- What operators read (/ops/alerts, the Operators page, /metrics).


def recent(conn: db.Conn, *, window: float = RECENT_SECONDS, limit: int = RECENT_LIMIT) -> list[Episode]:
    """Open alerts, then those resolved within ``window`` seconds, newest first."""
    return [Episode.from_row(r) for r in db.all_rows(conn, "alerts_recent", window=window, limit=limit)]


def split(episodes: Sequence[Episode]) -> dict[str, list[dict[str, Any]]]:
    """The shape /ops/alerts answers and the Operators page shows: ``open`` and ``resolved``."""
    return {
        "open": [e.as_dict() for e in episodes if e.resolved_at is None],
        "resolved": [e.as_dict() for e in episodes if e.resolved_at is not None],
    }
