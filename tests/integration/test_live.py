"""Live status: the worker publishes each change on the owner's Redis channel."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tasks.core import live
from tasks.core.config import Settings
from tasks.core.db import Conn
from tasks.domain import emails, models, orgs
from tasks.domain.models import User
from tests.support.procs import wait_until
from tests.support.smtp_sink import Sink, free_port

pytestmark = pytest.mark.slow


def test_each_status_change_reaches_the_owners_channel(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(live.channel(settings.redis_prefix, orgs.personal_org_id(conn, owner.id)))
    pubsub.get_message(timeout=5)  # the subscribe confirmation
    workers()

    email = emails.schedule(conn, owner=owner, draft=make_draft(send_at=dt.datetime.now(dt.UTC)), settings=settings)[0]
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15
    while len(seen) < 2 and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=1)
        if msg and msg["type"] == "message":
            seen.append(json.loads(msg["data"]))

    assert [(m["email_id"], m["status"]) for m in seen] == [(str(email.id), "sending"), (str(email.id), "sent")]
    pubsub.close()


def test_sending_goes_on_when_redis_is_unreachable(
    conn: Conn, owner: User, settings: Settings, make_draft: Callable[..., Any], sink: Sink, workers: Any
) -> None:
    """Live status is best effort: PostgreSQL and the sink are the truth."""
    workers(extra_env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})

    email = emails.schedule(conn, owner=owner, draft=make_draft(send_at=dt.datetime.now(dt.UTC)), settings=settings)[0]

    [received] = sink.wait_for(1, timeout=15)
    assert received.message_id == email.message_id
    wait_until(lambda: emails.get(conn, models.OPERATOR, email.id).status == "sent", timeout=10, what="sent")
