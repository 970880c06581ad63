"""``python -m tasks monitor``: watch the system and tell Slack when it goes wrong, and when it is over.

Several may run; one is active. It holds a session-level PostgreSQL advisory
lock on a connection of its own: when that process dies, its session ends, the
lock is free, and another takes it at its next round (within MONITOR_INTERVAL).
The others only try the lock each round.

Every MONITOR_INTERVAL the active one looks (``checks``) and hands what it saw to
``tasks.ops.alerts.step``, which raises each alert once, resolves it once, and
keeps a flapping one quiet; the alerts live in PostgreSQL, so the next active
monitor carries on where the last one stopped (nothing raised twice).

PostgreSQL itself unreachable: the monitor that was active goes on, its alerts
in memory, and posts that PostgreSQL is unreachable (and whether Redis is) once
it has been for ALERT_UNREACHABLE_AFTER; when PostgreSQL answers again it posts
the resolution and records the episode. A monitor that was not active takes
that role only if it gets a short lock in Redis first (so monitors started while
PostgreSQL is down do not all post); with both down, only the one that was
active speaks.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import threading
import time
from types import FrameType

import psycopg
import redis
import structlog

from tasks.core import crypto, db, errors
from tasks.core.config import Settings
from tasks.ops import alerts, slack
from tasks.ops.alerts import Episode, Finding
from tasks.queue import procrastinate_boundary

log = structlog.get_logger("tasks.ops.monitor")

#: Arbitrary, fixed: the advisory lock of the active monitor (tasks/core/migrate.py has another).
LOCK_KEY = 0x5EAC_A1E7
#: Seconds a connection or a ping may take before the server counts as unreachable.
CONNECT_TIMEOUT = 2
#: Each statement of a round at most (a blocked one must not stop the monitor).
STATEMENT_TIMEOUT_MS = 10_000
#: An organization's own transport's breaker label: ``o<org>.<label>`` (tasks/delivery/mailer.py).
_ORG_LABEL = re.compile(r"o(\d+)\.")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Monitor:
    """One monitor process: its leadership, its connections, and what it knows while PostgreSQL is away."""

    def __init__(self, settings: Settings, *, name: str | None = None, grace: float | None = None):
        self.settings = settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        #: "No worker is alive" is not looked at before this many seconds of watching (default
        #: WORKER_STALLED_AFTER): started with the workers (``make run``, a deploy), the monitor
        #: would otherwise raise it before they had time to register.
        self.watch_workers_at = time.monotonic() + (settings.worker_stalled_after if grace is None else grace)
        self.lock_conn: db.Conn | None = None
        self.conn: db.Conn | None = None
        #: Holds the advisory lock (PostgreSQL up).
        self.leader = False
        #: Held it when PostgreSQL went away: speaks through the outage.
        self.lost_leadership = False
        self.memory: alerts.MemoryStore | None = None
        self.known_open: dict[str, Episode] = {}
        self.pg_failing_since: dt.datetime | None = None
        self.redis_failing_since: dt.datetime | None = None
        self.redis = redis.Redis.from_url(
            settings.redis_url, socket_timeout=CONNECT_TIMEOUT, socket_connect_timeout=CONNECT_TIMEOUT
        )
        #: Organizations' Slack webhooks (org_id: (url, name)), read each round.
        self.org_hooks: dict[int, tuple[str, str]] = {}

    # --- The loop.

    def run(self, stop: threading.Event) -> None:
        """Run rounds until ``stop`` is set."""
        log.info("monitor started", name=self.name, interval=self.settings.monitor_interval)
        while not stop.is_set():
            try:
                self.round()
            except Exception as exc:  # a round that failed is logged; the next one starts afresh
                log.exception("monitor round failed", error=str(exc)[:200])
                if isinstance(exc, psycopg.OperationalError) and self.leader:
                    self.lost_leadership = True  # PostgreSQL went away mid-round: as in _connect_and_lead
                self._drop_connections()
            stop.wait(self.settings.monitor_interval)
        self.close()
        log.info("monitor stopped", name=self.name)

    def close(self) -> None:
        self._drop_connections()
        self.redis.close()

    def round(self) -> list[tuple[Episode, str]]:
        """Look once; return the messages posted."""
        now = _now()
        self._look_at_redis(now)
        if not self._connect_and_lead(now):
            return self._round_without_postgres(now)
        assert self.conn is not None
        sent: list[tuple[Episode, str]] = []
        if self.memory is not None:
            sent += self._back_from_outage(now)
        if not self.leader:
            return sent
        store = alerts.PgStore(self.conn, within=self.settings.alert_min_interval)
        findings, looked_at = self.checks(self.conn, now)
        sent += self._step(store, findings, looked_at, now)
        self.known_open = store.open_episodes()
        return sent

    # --- Leadership and connections.

    def _connect_and_lead(self, now: dt.datetime) -> bool:
        """Make sure PostgreSQL answers and try (or check) the lock; False when it does not answer.

        A connection that failed is given one fresh try at once: a session cut by itself (an
        administrator's pg_terminate_backend, a proxy's idle timeout) is not an outage.
        """
        error: psycopg.OperationalError | None = None
        for _ in range(2):
            try:
                self._connect_once()
            except psycopg.OperationalError as exc:
                error = exc
                if self.leader:
                    # The session, and the lock with it, is gone: if PostgreSQL is away, this
                    # monitor was the active one and speaks through the outage.
                    self.lost_leadership = True
                self._drop_connections()
                continue
            self.pg_failing_since = None
            if self.memory is None:
                self.lost_leadership = False
            return True
        if self.pg_failing_since is None:
            log.warning("monitor: PostgreSQL does not answer", error=str(error).strip()[:200])
            self.pg_failing_since = now
        return False

    def _connect_once(self) -> None:
        if self.lock_conn is None or self.lock_conn.broken or self.lock_conn.closed:
            self._drop_connections()
            self.lock_conn = self._connect()
        if self.leader:
            self.lock_conn.execute("SELECT 1")
        else:
            row = db.one(self.lock_conn, "monitor_try_lock", key=LOCK_KEY)
            self.leader = bool(row and row["locked"])
            if self.leader:
                log.info("monitor active", name=self.name)
        if self.conn is None or self.conn.broken or self.conn.closed:
            self.conn = self._connect()
        else:
            self.conn.execute("SELECT 1")

    def _connect(self) -> db.Conn:
        return db.connect(
            self.settings.database_url,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="reachdbox-monitor",
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        )

    def _drop_connections(self) -> None:
        for conn in (self.conn, self.lock_conn):
            if conn is not None:
                try:
                    conn.close()
                except psycopg.Error:
                    pass
        self.conn = self.lock_conn = None
        self.leader = False

    def _fallback_lock(self, *, take: bool = False) -> bool:
        """Hold the short Redis lock that says who speaks while PostgreSQL is down.

        ``take``: the monitor that was active when PostgreSQL went away takes it whoever holds it.
        """
        key = f"{self.settings.redis_prefix}monitor:acting"
        ttl = max(int(3 * self.settings.monitor_interval) + 1, 5)
        try:
            if self.redis.set(key, self.name, nx=not take, ex=ttl):
                return True
            held = self.redis.get(key)
            if held is not None and (held.decode() if isinstance(held, bytes) else held) == self.name:
                self.redis.expire(key, ttl)
                return True
        except (redis.RedisError, OSError):
            pass
        return False

    # --- Outages of PostgreSQL.

    def _round_without_postgres(self, now: dt.datetime) -> list[tuple[Episode, str]]:
        if self.lost_leadership:
            self._fallback_lock(take=True)
        elif not self._fallback_lock():
            return []
        if self.memory is None:
            self.memory = alerts.MemoryStore(self.known_open)
        findings = [f for f in (self._pg_finding(now), self._redis_finding(now)) if f is not None]
        return self._step(self.memory, findings, {"postgres_unreachable", "redis_unreachable"}, now)

    def _back_from_outage(self, now: dt.datetime) -> list[tuple[Episode, str]]:
        """PostgreSQL answers again: resolve what this monitor raised meanwhile, and record it."""
        assert self.memory is not None and self.conn is not None
        redis_finding = self._redis_finding(now)
        sent = self._step(
            self.memory, [redis_finding] if redis_finding else [], {"postgres_unreachable", "redis_unreachable"}, now
        )
        self.memory.flush(alerts.PgStore(self.conn))
        self.memory = None
        self.lost_leadership = False
        log.info("monitor: PostgreSQL answers again; alerts recorded", name=self.name)
        return sent

    def _pg_finding(self, now: dt.datetime) -> Finding | None:
        since = self.pg_failing_since
        if since is None or (now - since).total_seconds() < self.settings.alert_unreachable_after:
            return None
        return Finding(
            key="postgres_unreachable",
            kind="postgres_unreachable",
            summary="The monitor cannot connect to PostgreSQL (DATABASE_URL): nothing is scheduled or sent, the"
            " web app and the API answer 503.",
            action="Check the database server (is it running, reachable, out of disk or connections?). Workers"
            " and the web app reconnect by themselves when it is back; nothing is lost.",
            since=since,
            affected=None,
        )

    # --- Redis.

    def _look_at_redis(self, now: dt.datetime) -> None:
        try:
            self.redis.ping()
        except (redis.RedisError, OSError) as exc:
            if self.redis_failing_since is None:
                log.warning("monitor: Redis does not answer", error=type(exc).__name__)
                self.redis_failing_since = now
            return
        self.redis_failing_since = None

    def _redis_finding(self, now: dt.datetime, affected: int | None = None) -> Finding | None:
        since = self.redis_failing_since
        if since is None or (now - since).total_seconds() < self.settings.alert_unreachable_after:
            return None
        return Finding(
            key="redis_unreachable",
            kind="redis_unreachable",
            summary="The monitor cannot reach Redis (REDIS_URL): rate-limited sends wait (nothing fails),"
            " live status stops, request limits fall back to each web process's memory.",
            action="Check the Redis server. Sends resume by themselves when it is back (the rate-limit buckets"
            " are rebuilt from PostgreSQL).",
            since=since,
            affected=affected,
        )

    # --- The checks.

    def checks(self, conn: db.Conn, now: dt.datetime) -> tuple[list[Finding], set[str]]:
        """What is wrong now, and the kinds looked at (every one when PostgreSQL answers, but the workers at first)."""
        s = self.settings
        found: list[Finding] = []
        counts = db.one(conn, "monitor_emails", lag=s.alert_queue_lag)
        assert counts is not None
        due = int(counts["due"])

        looked_at = set(alerts.KINDS)
        workers = procrastinate_boundary.workers_heartbeat(conn, stalled_after=s.worker_stalled_after)
        if time.monotonic() < self.watch_workers_at:
            looked_at.discard("no_worker")
        elif not workers["alive"]:
            last = workers["last_heartbeat"]
            found.append(
                Finding(
                    key="no_worker",
                    kind="no_worker",
                    summary=f"No worker has sent a heartbeat for WORKER_STALLED_AFTER ({s.worker_stalled_after:g} s)"
                    + (f"; the last one came at {last.astimezone(dt.UTC):%H:%M:%S} UTC." if last else "; none did.")
                    + " Nothing is being sent.",
                    action="Start workers (`python -m tasks worker`; in compose `docker compose up -d worker`), or"
                    " read the last worker's log for why it stopped. Nothing is lost: they pick the due emails"
                    " up when they start.",
                    since=last or now,
                    affected=due,
                )
            )

        if counts["lagging"]:
            oldest = counts["oldest_due"] or now
            found.append(
                Finding(
                    key="queue_lag",
                    kind="queue_lag",
                    summary=f"{counts['lagging']} email(s) were due more than ALERT_QUEUE_LAG ({s.alert_queue_lag:g} s)"
                    f" ago and no worker has claimed them; the oldest is {int((now - oldest).total_seconds())} s late.",
                    action="Look at the workers (`python -m tasks status`: alive? busy?): add workers or"
                    " WORKER_CONCURRENCY if they are all busy, or find what blocks them (their logs, the database's"
                    " load).",
                    since=oldest + dt.timedelta(seconds=s.alert_queue_lag),
                    affected=int(counts["lagging"]),
                )
            )

        if counts["offline"]:
            found.append(
                Finding(
                    key="offline",
                    kind="offline",
                    summary=f"{counts['offline']} email(s) went to the offline log (jsonl://) because every real"
                    " transport was unavailable: they are not sent.",
                    action="Once a provider works again (its breaker closes, or you fixed it), run"
                    " `python -m tasks replay-offline` to send them.",
                    since=counts["oldest_offline"] or now,
                    affected=int(counts["offline"]),
                )
            )

        found += self._breakers(conn, due, now)
        found += self._uncertain(conn, now)

        redis_finding = self._redis_finding(now, affected=due)
        if redis_finding is not None:
            found.append(redis_finding)
        return found, looked_at

    def _breakers(self, conn: db.Conn, due: int, now: dt.datetime) -> list[Finding]:
        rows = db.all_rows(conn, "monitor_breakers")
        org_of = {r["label"]: int(m[1]) for r in rows if (m := _ORG_LABEL.match(r["label"]))}
        scheduled: dict[int, int] = {}
        if org_of:
            scheduled = {
                r["org_id"]: int(r["n"])
                for r in db.all_rows(conn, "monitor_org_scheduled", org_ids=sorted(set(org_of.values())))
            }
        found = []
        for row in rows:
            label = row["label"]
            org_id = org_of.get(label)
            state = "open" if row["state"] == "open" else "half-open (one trial send decides)"
            error = f" Last error: {row['last_error']}." if row["last_error"] else ""
            found.append(
                Finding(
                    key=f"breaker:{label}",
                    kind="breaker",
                    org_id=org_id,
                    summary=f"The circuit breaker of transport `{label}` is {state} after {row['failures']} provider"
                    f" failures in a row: its mail goes to the next transport in the chain, or waits.{error}",
                    action="Check that provider (its status page, credentials, limits). The breaker tries one send"
                    " after BREAKER_COOLDOWN and closes by itself when it works.",
                    since=row["changed_at"] or now,
                    affected=scheduled.get(org_id, 0) if org_id is not None else due,
                    detail={"label": label, "state": row["state"]},
                )
            )
        return found

    def _uncertain(self, conn: db.Conn, now: dt.datetime) -> list[Finding]:
        rows = db.all_rows(conn, "monitor_uncertain")
        self._read_org_hooks(conn)
        action = (
            "Open each one (dashboard, or `python -m tasks inspect ID`): the provider may or may not have taken it."
            " Check with the provider or the recipient, then `python -m tasks retry ID` to send it again, or leave"
            " it."
        )
        found = []
        total = sum(int(r["n"]) for r in rows)
        if total:
            found.append(
                Finding(
                    key="uncertain",
                    kind="uncertain",
                    summary=f"{total} email(s) are uncertain: the connection was lost after DATA began, so whether"
                    " the provider took them is unknown. They are never re-sent without a decision.",
                    action=action,
                    since=min(r["since"] for r in rows),
                    affected=total,
                    grows=True,
                )
            )
        for row in rows:
            if row["org_id"] in self.org_hooks:
                found.append(
                    Finding(
                        key=f"uncertain:org:{row['org_id']}",
                        kind="uncertain",
                        org_id=row["org_id"],
                        summary=f"{row['n']} of this organization's emails are uncertain: the connection was lost"
                        " after DATA began, so whether the provider took them is unknown.",
                        action=action,
                        since=row["since"],
                        affected=int(row["n"]),
                        grows=True,
                    )
                )
        return found

    def _read_org_hooks(self, conn: db.Conn) -> None:
        rows = db.all_rows(conn, "monitor_org_webhooks")
        hooks: dict[int, tuple[str, str]] = {}
        try:
            box = crypto.Box(self.settings)
            for row in rows:
                hooks[row["org_id"]] = (box.decrypt(row["slack_webhook_secret"].encode("ascii")), row["name"])
        except errors.ReachError as exc:  # keys missing or removed too early: the operators' alerts go on
            log.warning("monitor: cannot read organizations' Slack webhooks", error=exc.message)
        self.org_hooks = hooks

    # --- Posting.

    def _step(
        self, store: alerts.Store, findings: list[Finding], looked_at: set[str], now: dt.datetime
    ) -> list[tuple[Episode, str]]:
        return alerts.step(
            store, findings, looked_at, now=now, min_interval=self.settings.alert_min_interval, post=self._post
        )

    def _post(self, episode: Episode, event: str) -> None:
        if episode.org_id is None:
            url, where = self.settings.slack_webhook_url, "Reach D. Box"
        else:
            url, name = self.org_hooks.get(episode.org_id, ("", ""))
            where = f"Reach D. Box, organization {name or episode.org_id}"
        if url:
            text, blocks = alerts.message(episode, event, now=_now(), where=where)
            try:
                slack.post(url, text, blocks)
            except slack.SlackError as exc:
                log.warning("alert not posted; tried again next round", key=episode.key, event=event, error=exc.message)
                raise
        log.info(
            f"alert {event}",
            key=episode.key,
            org_id=episode.org_id,
            affected=episode.affected,
            posted=bool(url),
        )


def run(settings: Settings) -> None:
    """Run a monitor until SIGTERM or SIGINT."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
    Monitor(settings).run(stop)
