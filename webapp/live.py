"""Live status for the dashboard: the user's Redis channel over Server-Sent Events,
and a snapshot the page polls when the stream is unavailable.

Each stream subscribes to the signed-in user's own channel only, so no one ever
receives another user's changes; a stream asked for one email checks it is theirs.
Both take the session cookie alone (a personal access token opens only ``/api/v1``),
and a stream re-checks that session every few seconds: once its user has signed out
(here or in another browser) it ends, rather than relaying until its deadline.
"""

from __future__ import annotations

import collections
import json
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import redis
import structlog
from flask import Blueprint, Response, abort, request

from tasks.core import live
from tasks.domain import batches, emails, listing, present
from webapp import ext, security
from webapp.auth import current_user, scope, signed_in_user
from webapp.errors import error_response

log = structlog.get_logger("webapp.live")
bp = Blueprint("live", __name__, url_prefix="/live")

#: A stream ends after this long and the browser reconnects (frees the thread, opens afresh).
STREAM_SECONDS = 300.0
KEEPALIVE_SECONDS = 15.0
#: How often an open stream re-checks its session (one indexed read): a stream outlives a
#: sign-out by at most this (plus a second's wait for a message).
CREDENTIAL_CHECK_SECONDS = 2.0
MAX_IDS = 200
#: Streams one user may hold open in one web process: each holds a server thread, so
#: without a cap one user (or one script) could take them all. Over it: 429.
MAX_STREAMS_PER_USER = 4
_open: collections.Counter[int] = collections.Counter()
_open_lock = threading.Lock()
#: Set when the server process is stopping (gunicorn.conf.py), so open streams end at once
#: instead of holding a graceful shutdown until their next keep-alive.
shutting_down = threading.Event()


@bp.before_request
def _signed_in() -> None:
    if current_user() is None:
        abort(401, "sign in first")


@bp.get("/stream")
def stream() -> Any:
    """Relay the user's status changes as Server-Sent Events (``?email_id=`` for one email)."""
    only: str | None = None
    if request.args.get("email_id"):
        only = str(emails.get(ext.conn(), scope(), request.args["email_id"]).id)  # 404 unless theirs
    resources = ext.resources()
    user_id = signed_in_user().id
    org_id = scope().org_id or 0
    with _open_lock:
        if _open[user_id] >= MAX_STREAMS_PER_USER:
            too_many = True
        else:
            too_many, _open[user_id] = False, _open[user_id] + 1
    if too_many:
        response = error_response(429, "rate_limited", "too many live streams open; close a tab (the page polls)")
        response.headers["Retry-After"] = str(int(KEEPALIVE_SECONDS))
        return response
    release = _holding(user_id)
    pubsub = resources.redis.pubsub(ignore_subscribe_messages=True)
    try:
        pubsub.subscribe(live.channel(resources.settings.redis_prefix, org_id))
    except (redis.RedisError, OSError) as exc:
        pubsub.close()
        release()
        log.warning("live stream unavailable", error=str(exc))
        abort(503, "live updates are unavailable; the page polls instead")
    still_signed_in = security.session_check(timeout=CREDENTIAL_CHECK_SECONDS)
    response = Response(
        _relay(pubsub, only, request.environ.get("gunicorn.socket"), still_signed_in),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    # The server closes the response however the stream ends (even one never started).
    response.call_on_close(release)
    return response


def _holding(user_id: int) -> Callable[[], None]:
    """Return the one-shot release of the stream slot ``user_id`` just took."""
    done = False

    def release() -> None:
        nonlocal done
        with _open_lock:
            if done:
                return
            done = True
            _open[user_id] -= 1
            if _open[user_id] <= 0:
                del _open[user_id]

    return release


def _gone(sock: socket.socket | None) -> bool:
    """Tell whether the browser closed the connection (it left the page), without writing to it."""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _relay(
    pubsub: Any, only: str | None, sock: socket.socket | None, still_signed_in: Callable[[], bool]
) -> Iterator[str]:
    try:
        yield "retry: 2000\n: connected\n\n"
        now = time.monotonic()
        deadline, quiet_since, checked = now + STREAM_SECONDS, now, now
        # Checked every second, so a page left frees its thread at once, not at the next keep-alive.
        while time.monotonic() < deadline and not shutting_down.is_set() and not _gone(sock):
            if time.monotonic() - checked >= CREDENTIAL_CHECK_SECONDS:
                if not still_signed_in():
                    log.info("live stream ended: signed out")
                    return
                checked = time.monotonic()
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
        "emails": [present.status_json(r) for r in rows],
        "batches": [b.as_dict() for b in found],
    }
