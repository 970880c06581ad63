"""Live status for the dashboard: the user's Redis channel over Server-Sent Events,
and a snapshot the page polls when the stream is unavailable.

Each stream subscribes to the signed-in user's own channel only, so no one ever
receives another user's changes; a stream asked for one email checks it is theirs.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis
import structlog
from flask import Blueprint, Response, abort, request

from tasks import batches, emails, listing, live
from webapp import ext
from webapp.dashboard import scope

log = structlog.get_logger("webapp.live")
bp = Blueprint("live", __name__, url_prefix="/live")

#: A stream ends after this long and the browser reconnects (frees the thread, re-checks the session).
STREAM_SECONDS = 300.0
KEEPALIVE_SECONDS = 15.0
MAX_IDS = 200
#: Set when the server process is stopping (gunicorn.conf.py), so open streams end at once
#: instead of holding a graceful shutdown until their next keep-alive.
shutting_down = threading.Event()


@bp.before_request
def _signed_in() -> None:
    if ext.user() is None:
        abort(401, "sign in first")


@bp.get("/stream")
def stream() -> Any:
    """Relay the user's status changes as Server-Sent Events (``?email_id=`` for one email)."""
    only: str | None = None
    if request.args.get("email_id"):
        only = str(emails.get(ext.conn(), scope(), request.args["email_id"]).id)  # 404 unless theirs
    resources = ext.resources()
    pubsub = resources.redis.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(live.channel(resources.settings.redis_prefix, scope().owner_id or 0))
    except (redis.RedisError, OSError) as exc:
        pubsub.close()
        log.warning("live stream unavailable", error=str(exc))
        abort(503, "live updates are unavailable; the page polls instead")
    return Response(
        _relay(pubsub, only),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _relay(pubsub: Any, only: str | None) -> Iterator[str]:
    try:
        yield "retry: 2000\n: connected\n\n"
        now = time.monotonic()
        deadline, quiet_since = now + STREAM_SECONDS, now
        while time.monotonic() < deadline and not shutting_down.is_set():
            message = pubsub.get_message(timeout=1.0)
            if message is None:
                if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                continue
            data = message["data"]
            text = data.decode() if isinstance(data, bytes) else str(data)
            if only is not None and json.loads(text).get("email_id") != only:
                continue
            yield f"data: {text}\n\n"
    except (redis.RedisError, OSError) as exc:
        log.warning("live stream lost Redis", error=str(exc))
        yield "event: unavailable\ndata: {}\n\n"
    finally:
        pubsub.close()


def _uuids(raw: str, limit: int = MAX_IDS) -> list[uuid.UUID]:
    out = []
    for part in raw.split(",")[:limit]:
        try:
            out.append(uuid.UUID(part.strip()))
        except ValueError:
            continue
    return out


@bp.get("/snapshot")
def snapshot() -> Any:
    """Return counts, and the status of the emails and batches on screen (the polling fallback)."""
    conn = ext.conn()
    rows = listing.statuses(conn, scope(), _uuids(request.args.get("ids", "")))
    found = batches.get_many(conn, scope(), _uuids(request.args.get("batches", ""), 50))
    return {
        "counts": listing.counts(conn, scope()),
        "emails": [
            {
                "id": str(r["id"]),
                "status": r["status"],
                "next_attempt_at": r["next_attempt_at"].isoformat(),
                "sent_at": r["sent_at"].isoformat() if r["sent_at"] else None,
            }
            for r in rows
        ],
        "batches": [b.as_dict() for b in found],
    }
