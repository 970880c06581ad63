"""The shared buckets, driven directly: slots, windows, reservations and rebuilds."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis

from tasks.core import config
from tasks.delivery import ratelimit


@pytest.fixture
def limits(env: dict[str, str]) -> Iterator[Any]:
    """Build a Limiter for some RATE_LIMITS / USER_RATE_LIMIT; delete its keys afterwards."""

    def make(**extra: str) -> ratelimit.Limiter:
        return ratelimit.Limiter(config.load(env | extra))

    yield make
    client = redis.Redis.from_url(env["REDIS_URL"])
    for key in client.scan_iter(f"{env['REDIS_PREFIX']}*"):
        client.delete(key)


async def _acquire(limiter: ratelimit.Limiter, database_url: str, owner: int, members: list[str]) -> list[Any]:
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=psycopg.rows.dict_row
    ) as conn:
        out = [await limiter.acquire(conn, "smtp", owner, m) for m in members]
    await limiter.close()
    return out


def acquire(limiter: ratelimit.Limiter, database_url: str, members: list[str], owner: int = 1) -> list[Any]:
    return asyncio.run(_acquire(limiter, database_url, owner, members))


@pytest.mark.parametrize(
    ("fair", "transport", "limit"), [("1", None, "smtp: 20/10s (your share)"), ("0", "smtp", "smtp: 20/10s")]
)
def test_a_burst_gets_the_window_then_slots_one_window_later(
    limits: Any, database_url: str, env: dict[str, str], fair: str, transport: str | None, limit: str
) -> None:
    """20/10s: twenty go now, the next five get slots ten seconds (+ margin) after the first five.

    With fair share (the default) the five hold their slots in the user's own lane only."""
    members = [f"{uuid.uuid4()}:1" for _ in range(25)]
    limiter = limits(RATE_LIMITS="smtp=20/10s", RATE_LIMIT_FAIR_SHARE=fair)

    decisions = acquire(limiter, database_url, members)

    assert [d.kind for d in decisions] == [ratelimit.GO] * 20 + [ratelimit.WAIT] * 5
    for early, late in zip(decisions[:5], decisions[20:], strict=True):
        gap = (late.slot - early.slot).total_seconds()
        assert gap == pytest.approx(10.2, abs=0.001)
    assert decisions[-1].limit == limit and decisions[-1].transport == transport
    held = redis.Redis.from_url(env["REDIS_URL"]).zscore(f"{limiter.settings.redis_prefix}rl:t:smtp", members[-1])
    assert (held is None) == (fair == "1")


@pytest.mark.parametrize(("fair", "behind"), [("1", 0), ("0", 80)])
def test_another_users_email_waits_one_window_not_the_burst(
    limits: Any, database_url: str, fair: str, behind: int
) -> None:
    """User 1 asks for 100 slots at 20/10s, then user 2 for one: with fair share it goes as soon as
    the provider's window frees up; without, it queues behind user 1's eighty waiting emails."""
    settings = {"RATE_LIMITS": "smtp=20/10s", "RATE_LIMIT_FAIR_SHARE": fair}
    burst = acquire(limits(**settings), database_url, [f"a{i}:1" for i in range(100)], owner=1)
    [other] = acquire(limits(**settings), database_url, ["b:1"], owner=2)

    # Fair share: nothing is reserved ahead on the provider, it goes when its window frees up.
    assert other.kind == ratelimit.WAIT and other.reserved == (fair == "0")
    ahead = sum(1 for d in burst[20:] if d.slot < other.slot)
    assert ahead == behind
    assert (other.slot - burst[0].slot).total_seconds() == pytest.approx(10.2 * (1 + behind // 20), abs=0.01)


def test_every_window_of_a_transport_holds(limits: Any, database_url: str) -> None:
    """5/second and 8/minute together: the minute limit takes over after eight."""
    decisions = acquire(limits(RATE_LIMITS="smtp=5/second,8/minute"), database_url, [f"m{i}:1" for i in range(10)])

    slots = [d.slot for d in decisions]
    assert [d.kind for d in decisions][:5] == [ratelimit.GO] * 5
    assert (slots[5] - slots[0]).total_seconds() == pytest.approx(1.05, abs=0.001)
    assert (slots[8] - slots[0]).total_seconds() == pytest.approx(60.2, abs=0.001)


def test_a_held_reservation_is_found_again_not_doubled(limits: Any, database_url: str) -> None:
    """The job that runs at the slot asks again under the same name and gets the same slot."""
    limiter_settings = {"RATE_LIMITS": "smtp=1/10s"}
    first, second = acquire(limits(**limiter_settings), database_url, ["a:1", "b:1"])
    [again] = acquire(limits(**limiter_settings), database_url, ["b:1"])

    assert first.kind == ratelimit.GO and second.kind == ratelimit.WAIT
    assert again.kind == ratelimit.EARLY and again.slot == second.slot


def test_over_the_users_limit_only_the_users_slot_is_held(limits: Any, database_url: str, env: dict[str, str]) -> None:
    """The third email of a user allowed 2/10s waits; the provider's bucket keeps its capacity."""
    limiter = limits(RATE_LIMITS="smtp=100/10s", USER_RATE_LIMIT="2/10s")
    prefix = limiter.settings.redis_prefix

    decisions = acquire(limiter, database_url, ["a:1", "b:1", "c:1"], owner=7)
    [other_user] = acquire(limits(RATE_LIMITS="smtp=100/10s", USER_RATE_LIMIT="2/10s"), database_url, ["d:1"], owner=8)

    assert [d.kind for d in decisions] == [ratelimit.GO, ratelimit.GO, ratelimit.WAIT]
    assert decisions[2].transport is None and decisions[2].limit == "user: 2/10s"
    assert other_user.kind == ratelimit.GO
    client = redis.Redis.from_url(env["REDIS_URL"])
    assert client.zscore(f"{prefix}rl:t:smtp", "c:1") is None
    assert client.zscore(f"{prefix}rl:u:7", "c:1") is not None


def test_an_emptied_bucket_is_rebuilt_from_the_sends_in_the_database(
    limits: Any, database_url: str, conn: psycopg.Connection[Any], owner: Any, env: dict[str, str]
) -> None:
    """Two DATA-started sends recorded in PostgreSQL fill a 2/10s window: the next email waits."""
    now = dt.datetime.now(dt.UTC)
    for i in range(2):
        conn.execute(
            """INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at,
                                   next_attempt_at, message_id, status, transport, data_started_at, sent_at, attempts)
               VALUES ((SELECT org_id FROM memberships WHERE user_id = %s), %s, 'a@example.com',
                       '{b@example.com}', 's', 'b', %s, %s, %s, 'sent', 'smtp', %s, %s, 1)""",
            (owner.id, owner.id, now, now, f"<{i}@x>", now - dt.timedelta(seconds=i), now),
        )
    limiter = limits(RATE_LIMITS="smtp=2/10s")

    [decision] = acquire(limiter, database_url, ["new:1"], owner=owner.id)

    assert decision.kind == ratelimit.WAIT
    assert (decision.slot - now).total_seconds() == pytest.approx(10.2 - 1, abs=0.05)
    client = redis.Redis.from_url(env["REDIS_URL"])
    # The transport bucket: 2 sends + sentinel; the new slot is held in the user's lane (fair share).
    assert client.zcard(f"{limiter.settings.redis_prefix}rl:t:smtp") == 3
    assert client.zcard(f"{limiter.settings.redis_prefix}rl:u:{owner.id}") == 4


def test_redis_unreachable_raises_unavailable(limits: Any, database_url: str) -> None:
    """Fail closed: no answer from Redis is never taken as permission."""
    from tests.support.smtp_sink import free_port

    limiter = limits(RATE_LIMITS="smtp=2/10s", REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    with pytest.raises(ratelimit.Unavailable):
        acquire(limiter, database_url, ["a:1"])


def test_an_idle_bucket_is_rebuilt_without_counting_attempts_in_flight_but_an_emptied_redis_counts_them(
    limits: Any, database_url: str, conn: psycopg.Connection[Any], owner: Any, env: dict[str, str]
) -> None:
    """An email claimed but not yet at DATA may be past the gate: after a FLUSHALL it counts as a send,
    after a bucket merely expired (Redis kept its data, the "alive" marker says so) it does not."""
    now = dt.datetime.now(dt.UTC)
    conn.execute(
        """INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at,
                               next_attempt_at, message_id, status, transport, attempts, job_id)
           VALUES ((SELECT org_id FROM memberships WHERE user_id = %s), %s, 'a@example.com',
                   '{b@example.com}', 's', 'b', %s, %s, '<f@x>', 'sending', 'smtp', 1, 1)""",
        (owner.id, owner.id, now, now),
    )
    settings = {"RATE_LIMITS": "smtp=1/10s", "RATE_LIMIT_FAIR_SHARE": "0"}
    client = redis.Redis.from_url(env["REDIS_URL"])
    prefix = env["REDIS_PREFIX"]

    [emptied] = acquire(limits(**settings), database_url, ["after-flush:1"], owner=owner.id)
    client.delete(f"{prefix}rl:t:smtp")  # as if it had expired, idle
    [expired] = acquire(limits(**settings), database_url, ["after-expiry:1"], owner=owner.id)

    assert emptied.kind == ratelimit.WAIT  # the attempt in flight took the window
    assert expired.kind == ratelimit.GO


async def _confirm(limiter: ratelimit.Limiter, member: str, owner: int = 1) -> float:
    wait = await limiter.confirm("smtp", owner, member)
    await limiter.close()
    return wait


def test_the_check_before_data_counts_sends_from_when_they_happened(limits: Any, database_url: str) -> None:
    """2/10s: two go; a third that the gate let through (a rebuilt, emptied bucket) must wait at DATA
    for the first send to leave the window, and sends that ended later are counted from their end."""
    settings = {"RATE_LIMITS": "smtp=2/10s"}
    first, second = acquire(limits(**settings), database_url, ["a:1", "b:1"])
    assert asyncio.run(_confirm(limits(**settings), "a:1")) == 0  # a's DATA begins: its entry moves to now
    assert asyncio.run(_confirm(limits(**settings), "b:1")) == 0

    wait = asyncio.run(_confirm(limits(**settings), "c:1"))

    assert first.kind == second.kind == ratelimit.GO
    assert wait == pytest.approx(10.2, abs=0.2)


def test_a_late_email_whose_turn_has_come_goes_when_the_provider_allows_not_to_the_end_of_its_lane(
    limits: Any, database_url: str, env: dict[str, str]
) -> None:
    """Fair share: an email whose turn in the lane passed long ago (a busy worker) is not sent back
    behind its own backlog: the provider's windows allow it now, so it goes now."""
    settings = {"RATE_LIMITS": "smtp=2/10s"}
    client = redis.Redis.from_url(env["REDIS_URL"])
    prefix = env["REDIS_PREFIX"]
    acquire(limits(**settings), database_url, ["warm:1"])  # builds both buckets
    lane, provider = f"{prefix}rl:u:1", f"{prefix}rl:t:smtp"
    client.zrem(provider, "warm:1")
    now_us = int(client.time()[0]) * 1_000_000
    client.zadd(lane, {"late:1": now_us - 60_000_000, "backlog:1": now_us + 30_000_000})

    [late] = acquire(limits(**settings), database_url, ["late:1"])

    assert late.kind == ratelimit.GO
    assert client.zscore(provider, "late:1") is not None
