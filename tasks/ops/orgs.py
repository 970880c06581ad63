"""Every organization as operators see it: volume, quota, failures, its own transports'
breakers; and suspending or resuming one.

A suspended organization's mail is not refused and not dropped: the send gate
(tasks/delivery/gate.py) holds each of its emails, with the reason, and looks
again every ORG_HOLD_RECHECK seconds; workers see a suspension or a resumption
within a second (their copy of the organization's state, tasks/delivery/orgs.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import redis

from tasks.core import db, errors
from tasks.core.config import Settings
from tasks.delivery import orgs as delivery_orgs
from tasks.domain import audit, orgs
from tasks.queue import jobs

#: Longest reason an operator may give.
MAX_REASON = 500


@dataclasses.dataclass(frozen=True, kw_only=True)
class OrgOverview:
    id: int
    name: str
    created_at: dt.datetime
    suspended_at: dt.datetime | None
    suspended_reason: str | None
    daily_quota: int | None
    providers_mode: str
    members: int
    #: Emails whose DATA began today (UTC).
    sent_today: int
    #: What counts against today's quota (Redis's set; None: not known there yet today).
    quota_used: int | None
    waiting: int
    failed_24h: int
    #: The organization's own transports' breakers (label, state, failures, last error).
    breakers: list[dict[str, Any]]


def overview(conn: db.Conn, settings: Settings, client: redis.Redis | None = None) -> list[OrgOverview]:
    """Every organization, oldest first (``conn`` must read across organizations)."""
    breakers: dict[int, list[dict[str, Any]]] = {}
    for row in db.all_rows(conn, "ops_org_breakers"):
        org_id = int(row["label"][1:].partition(".")[0])
        breakers.setdefault(org_id, []).append(dict(row))
    rows = db.all_rows(conn, "ops_orgs")
    used = quota_used(client, settings, [int(r["id"]) for r in rows if r["daily_quota"] is not None])
    fields = {f.name for f in dataclasses.fields(OrgOverview)} - {"quota_used", "breakers"}
    return [
        OrgOverview(
            **{k: row[k] for k in fields},
            quota_used=used.get(int(row["id"])),
            breakers=breakers.get(int(row["id"]), []),
        )
        for row in rows
    ]


def quota_used(client: redis.Redis | None, settings: Settings, org_ids: list[int]) -> dict[int, int]:
    """What counts against each organization's quota today, from Redis (one round trip; best effort)."""
    if client is None or not org_ids:
        return {}
    today = dt.datetime.now(dt.UTC).date().isoformat()
    try:
        with client.pipeline(transaction=False) as pipe:
            for org_id in org_ids:
                pipe.zcard(f"{settings.redis_prefix}rl:q:{org_id}:{today}")
            counts = pipe.execute()
    except (redis.RedisError, OSError):
        return {}
    # A set holds its sentinel besides the emails; no set: nothing known today (the page shows sent_today).
    return {org_id: int(n) - 1 for org_id, n in zip(org_ids, counts, strict=True) if n}


def suspend(conn: db.Conn, org_id: int, reason: str, actor_id: int | None) -> orgs.Org:
    """Suspend an organization (its mail waits with ``reason``), with its audit line;
    ``NotFound`` if there is none."""
    reason = reason.strip()
    if len(reason) > MAX_REASON or any(ord(c) < 32 for c in reason):
        raise errors.ValidationError(f"reason: at most {MAX_REASON} printable characters", field="reason")
    with conn.transaction():
        org = orgs.suspend(conn, org_id, reason)
        audit.record(conn, org_id, actor_id, "org.suspend", org.name, {"reason": org.suspended_reason})
    return org


def resume(conn: db.Conn, org_id: int, actor_id: int | None) -> orgs.Org:
    """Resume a suspended organization, with its audit line; the mail it held is due at once."""
    with conn.transaction():
        before = db.one(conn, "lock_org", id=org_id)
        org = orgs.resume(conn, org_id)
        held = delivery_orgs.suspended_reason(before) if before else None
        # Due once every worker's cached view of the organization has seen the resumption.
        woken = jobs.wake_held(conn, org_id, held, after=2 * delivery_orgs.CACHE_SECONDS) if held else 0
        audit.record(conn, org_id, actor_id, "org.resume", org.name, {"emails_due_now": woken})
    return org
