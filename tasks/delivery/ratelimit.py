"""Shared rate limits: one bucket per transport label and per user, in Redis.

Every worker on every host reserves send slots through Lua scripts on Redis's
clock (``lua/``: one per operation, each with a named reply), so they all agree. A bucket holds the
slots reserved in it; a limit ``N/T`` means at most N slots in any window of
T (+ a margin), slots are appended in time order, and an email over the limit
gets the earliest legal future slot, reserved at once: it is re-deferred to
exactly that slot and sends then without asking again (touched twice, never
polled). Over the user's own limit, only the user's slot is reserved: the
provider's capacity is not held meanwhile.

Redis down: ``Unavailable`` (fail closed: the caller sends nothing and waits).
A bucket without its sentinel (Redis restarted empty, FLUSHALL, eviction, or
idle expiry) is rebuilt from PostgreSQL before any slot is reserved in it;
a lock spares the other workers the same queries, and the load only ever adds
(ZADD GT), so racing rebuilds are harmless.

An organization's own transport (``o<org>.<label>``) is a transport like any
other here: its windows come from the organization's settings (``org_limits``,
kept current by tasks/delivery/orgs.py) and its bucket is shared by every member
and every worker. An organization's daily quota is a set per organization and
UTC day (``lua/quota.lua``): each email counts once that day, and a missing set
is rebuilt from the emails whose DATA began that day before it answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import pathlib
import uuid
from typing import Any

import redis
import redis.asyncio
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from tasks.core import db
from tasks.core.config import RateWindow, Settings

log = structlog.get_logger("tasks.delivery.ratelimit")

_LUA = pathlib.Path(__file__).with_name("lua")


def _script(operation: str) -> str:
    """One operation's Lua script, after what every script shares (``lua/buckets.lua``)."""
    shared = (_LUA / "buckets.lua").read_text(encoding="utf-8")
    return shared + "\n" + (_LUA / f"{operation}.lua").read_text(encoding="utf-8")


class Kind(enum.StrEnum):
    """The limiter's answer for one attempt (``kind`` in ``lua/acquire.lua``'s reply)."""

    #: Send now.
    GO = "go"
    #: A slot is reserved in the future: wait for it.
    WAIT = "wait"
    #: A slot this attempt holds is still ahead.
    EARLY = "early"


GO, WAIT, EARLY = Kind.GO, Kind.WAIT, Kind.EARLY
#: How long a rebuild may hold its lock, and how long others wait for it.
REBUILD_LOCK_MS = 30_000
REBUILD_WAIT = 5.0


class Unavailable(Exception):
    """Redis did not answer: no slot can be reserved (fail closed)."""


@dataclasses.dataclass(frozen=True)
class Decision:
    """What the limiter answered for one email."""

    kind: Kind
    slot: dt.datetime
    #: Redis's clock when it answered.
    now: dt.datetime
    #: The label whose bucket holds the slot; None when only the user's bucket does.
    transport: str | None
    #: The window that made it wait, for people ("20/10s").
    limit: str | None = None
    #: Whether the slot is reserved (False: the provider's windows free up then, first come first served).
    reserved: bool = True

    @property
    def wait_seconds(self) -> float:
        return (self.slot - self.now).total_seconds()


def _named(reply: list[Any]) -> dict[str, Any]:
    """A script's named reply (``[name, value, name, value, ...]``) as a dict, bytes decoded."""

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode()
        return [plain(v) for v in value] if isinstance(value, list) else value

    return {plain(name): plain(value) for name, value in zip(reply[::2], reply[1::2], strict=True)}


def _window_args(windows: list[tuple[int, int, float]]) -> list[int]:
    """A bucket's windows as the scripts read them: n, then (count, span_us) n times."""
    args = [len(windows)]
    for count, span, _ in windows:
        args += [count, span]
    return args


def _time(us: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(us / 1_000_000, dt.UTC)


def _us(at: dt.datetime) -> int:
    return round(at.timestamp() * 1_000_000)


class Limiter:
    """A worker process's handle on the shared buckets."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.prefix = f"{settings.redis_prefix}rl:"
        self._client = redis.asyncio.Redis.from_url(
            settings.redis_url,
            socket_timeout=2,
            socket_connect_timeout=2,
            # One quick retry covers a pooled connection that a Redis restart closed.
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        )
        self._acquire = self._client.register_script(_script("acquire"))
        self._confirm = self._client.register_script(_script("confirm"))
        self._sent = self._client.register_script(_script("sent"))
        self._spread = self._client.register_script(_script("spread"))
        self._load = self._client.register_script(_script("load"))
        self._quota = self._client.register_script(_script("quota"))
        #: The windows of organizations' own transports by label (tasks/delivery/orgs.py fills it).
        self.org_limits: dict[str, tuple[RateWindow, ...]] = {}
        #: Consecutive failures to reach Redis, for the backoff of the emails that wait.
        self.failures = 0

    def transport_limits(self, label: str) -> tuple[RateWindow, ...]:
        """The windows of a transport: the deployment's (RATE_LIMITS) or an organization's own."""
        return self.org_limits.get(label) or self.settings.transport_limits(label)

    def enabled(self, label: str) -> bool:
        """Tell whether a send on this transport is limited at all (if not, Redis is not asked)."""
        return bool(self.transport_limits(label) or self.settings.user_rate_limit)

    def user_limits(self, label: str) -> tuple[RateWindow, ...]:
        """The windows of a user's own lane for a send on ``label``.

        The user's own limit, plus (fair share) the transport's: a user's mail is
        paced in its own lane at the provider's rate and takes a provider slot
        only when its turn comes, so one user's burst never holds the provider's
        future slots and another user's email waits one slot, not the burst.
        """
        own = self.settings.user_rate_limit
        if not self.settings.rate_limit_fair_share:
            return own
        return own + tuple(w for w in self.transport_limits(label) if w not in own)

    def _keys(self, label: str, owner_id: int) -> list[str]:
        return [self.transport_key(label), self.user_key(owner_id), self.alive_key]

    def _args(self, label: str, tw: list[tuple[int, int, float]], uw: list[tuple[int, int, float]]) -> list[Any]:
        """ARGV's common part: each bucket's windows, whether the lane is soft."""
        return [*_window_args(tw), *_window_args(uw), 1 if self.soft_lane(label) else 0]

    def soft_lane(self, label: str) -> bool:
        """Tell whether the user's lane on ``label`` only paces a fair share (no limit of the user's own).

        Such a lane may be overrun a little: an email late for its turn still
        takes the provider's next slot instead of going to the end of its lane.
        """
        return self.settings.rate_limit_fair_share and not self.settings.user_rate_limit

    async def spread(self, label: str, owner_id: int, members: list[str]) -> list[dt.datetime]:
        """Give each of ``members`` (the owner's other due emails) its next slot in the owner's lane.

        For a burst: one call queues hundreds of emails at their turns, instead
        of each being claimed only to learn that it must wait. Stops at the
        first member the lane has room for now (it goes by itself); an empty
        answer when the lane is not built. Raises ``Unavailable``.
        """
        args: list[int | str] = [*_window_args(self._windows(self.user_limits(label))), *members]
        try:
            reply = _named(await self._spread(keys=[self.user_key(owner_id)], args=args))
        except (redis.RedisError, OSError) as exc:
            raise Unavailable(f"rate limiter unavailable: {exc}") from exc
        return [_time(int(x)) for x in reply["slots"]]

    async def confirm(self, label: str, owner_id: int, member: str) -> float:
        """The last word before DATA: 0 means go (the attempt's entries now say "sent now"),
        else the seconds to wait until every limit allows it.

        The gate's slot is a plan; a worker may take a while from the gate to
        DATA, and meanwhile an earlier email that was slow too may have moved
        into the window. Checked here, the provider never sees more than the
        limit. Redis unreachable: 0 (the gate's reservation stands).
        """
        tw = self._windows(self.transport_limits(label))
        uw = self._windows(self.user_limits(label))
        args = [member, *self._args(label, tw, uw)]
        try:
            reply = _named(await self._confirm(keys=self._keys(label, owner_id)[:2], args=args))
        except (redis.RedisError, OSError) as exc:
            log.warning("rate limiter: could not confirm a send before DATA", error=str(exc))
            return 0.0
        return int(reply["wait_us"]) / 1_000_000

    async def sent(self, label: str, owner_id: int, member: str) -> None:
        """Say that this attempt's DATA has ended: its entries move up to now (best effort).

        The provider counts a message when it takes it; a DATA that took a
        while is then counted from its end by every later check.
        """
        try:
            await self._sent(keys=self._keys(label, owner_id)[:2], args=[member])
        except (redis.RedisError, OSError) as exc:
            log.warning("rate limiter: could not record the end of a send", error=str(exc))

    async def give_back(self, owner_id: int, members: list[str]) -> None:
        """Remove reservations that were never used (best effort: they would only expire later)."""
        try:
            await self._client.zrem(self.user_key(owner_id), *members)
        except (redis.RedisError, OSError) as exc:
            log.warning("rate limiter: could not give back unused slots", error=str(exc), count=len(members))

    def _windows(self, windows: tuple[RateWindow, ...]) -> list[tuple[int, int, float]]:
        """(count, span in µs, margin in s) per window: span = window + min(margin, 5% of it)."""
        out = []
        for w in windows:
            margin = min(self.settings.rate_limit_margin, w.seconds / 20)
            out.append((w.count, round((w.seconds + margin) * 1_000_000), margin))
        return out

    @property
    def alive_key(self) -> str:
        """A key set by every rebuild and never expired: its absence means Redis was emptied."""
        return f"{self.prefix}alive"

    def transport_key(self, label: str) -> str:
        return f"{self.prefix}t:{label}"

    def user_key(self, owner_id: int) -> str:
        return f"{self.prefix}u:{owner_id}"

    async def acquire(self, conn: db.AsyncConn, label: str, owner_id: int, member: str) -> Decision:
        """Reserve (or find) this attempt's slot on ``label`` and in the owner's bucket.

        ``member`` names the attempt (``<email id>:<attempt>``): the job that runs
        at the slot finds the reservation under the same name. Rebuilds missing
        buckets from PostgreSQL (on ``conn``) first. Raises ``Unavailable``.
        """
        tw = self._windows(self.transport_limits(label))
        uw = self._windows(self.user_limits(label))
        margins = [m for _, _, m in tw + uw]
        # A held slot is honoured only if used within 3/4 of the margin (a job a
        # little late); the last quarter absorbs the delay between this check and
        # the provider's clock (MAIL, RCPT, DATA: milliseconds).
        validity = round(min(margins) * 0.75 * 1_000_000)
        keys = self._keys(label, owner_id)
        args = [member, validity, *self._args(label, tw, uw)]
        for _ in range(3):
            try:
                reply = _named(await self._acquire(keys=keys, args=args))
            except (redis.RedisError, OSError) as exc:
                self.failures += 1
                raise Unavailable(f"rate limiter unavailable: {exc}") from exc
            self.failures = 0
            if reply["kind"] != "missing":
                kind, held = Kind(reply["kind"]), reply["held"]
                # "all": every bucket holds the slot; "lane": only the user's; "none": nothing is reserved.
                transport = label if held == "all" and tw else None
                waited = _limit_name(self.settings, label, self.transport_limits(label), own=held == "lane" or not tw)
                slot, now = _time(int(reply["slot"])), _time(int(reply["now"]))
                return Decision(kind, slot, now, transport, waited if kind != GO else None, held != "none")
            emptied = reply["emptied"] == 1
            for bucket in reply["rebuild"]:
                if bucket == "transport":
                    await self.rebuild(conn, keys[0], tw, "rate_entries_transport", emptied, label=label)
                else:
                    await self.rebuild(conn, keys[1], uw, "rate_entries_user", emptied, owner_id=owner_id)
        raise Unavailable("rate limiter unavailable: its buckets keep disappearing")

    async def rebuild(
        self,
        conn: db.AsyncConn,
        key: str,
        windows: list[tuple[int, int, float]],
        query: str,
        emptied: bool,
        **params: Any,
    ) -> None:
        """Refill a missing bucket from the sends PostgreSQL recorded, before anyone reserves in it.

        ``emptied``: Redis lost its data, so attempts that had passed the gate
        may be in flight; they count as sent now (those known to be waiting at
        the gate excepted). A bucket that merely expired or is new has none.
        """
        span_us = max(span for _, span, _ in windows)
        lock = f"{key}:rebuilding"
        token = uuid.uuid4().hex
        try:
            if not await self._client.set(lock, token, nx=True, px=REBUILD_LOCK_MS):
                # Another worker is rebuilding it: wait for its sentinel (a bounded wait).
                for _ in range(int(REBUILD_WAIT / 0.02)):
                    await asyncio.sleep(0.02)
                    if await self._client.zscore(key, "!built") is not None:
                        return
                return
            rows = await db.all_async(conn, query, span=span_us / 1_000_000, in_flight=emptied, **params)
            args: list[Any] = [span_us]
            for row in rows:
                args += [_us(row["at"]), row["member"]]
            await self._load(keys=[key, lock, f"{key}:blocked", self.alive_key], args=args)
        except (redis.RedisError, OSError) as exc:
            self.failures += 1
            raise Unavailable(f"rate limiter unavailable: {exc}") from exc
        log.info("rate-limit bucket rebuilt from the database", bucket=key, entries=len(rows), emptied=emptied)

    async def prepare(self, pool: db.AsyncPool) -> None:
        """Make sure every limited transport's bucket exists before this worker takes any job.

        Created here, a bucket starts with no attempt of ours in flight; created
        at the first send of a fresh deployment, every email claimed at that
        moment would count as a send in flight and could cost a window.
        """
        try:
            emptied = not await self._client.exists(self.alive_key)
            async with pool.connection() as conn:
                for label, windows in self.settings.rate_limits:
                    key = self.transport_key(label)
                    if await self._client.zscore(key, "!built") is None:
                        await self.rebuild(
                            conn, key, self._windows(windows), "rate_entries_transport", emptied, label=label
                        )
        except (redis.RedisError, OSError, Unavailable) as exc:
            log.warning("rate limiter unavailable at start; sends will wait for it", error=str(exc))

    def quota_key(self, org_id: int, day: dt.date) -> str:
        return f"{self.prefix}q:{org_id}:{day.isoformat()}"

    async def count_quota(self, conn: db.AsyncConn, org_id: int, email_id: str, quota: int, day: dt.date) -> bool:
        """Count this email against its organization's quota for ``day`` (UTC); False: the day's quota is spent.

        An email counts once a day, however many attempts it takes. Raises ``Unavailable``.
        """
        key = self.quota_key(org_id, day)
        start = dt.datetime.combine(day, dt.time(), dt.UTC)
        for _ in range(3):
            try:
                reply = _named(await self._quota(keys=[key], args=[email_id, quota]))
                if reply["kind"] != "missing":
                    self.failures = 0
                    return bool(reply["kind"] == "ok")
                rows = await db.all_async(conn, "quota_entries", org_id=org_id, day_start=start)
                # Kept a day past its own, so a late rebuild never finds it missing and counts again.
                expire_at = start + dt.timedelta(days=2)
                async with self._client.pipeline(transaction=True) as pipe:
                    members: dict[str, float] = {row["member"]: _us(row["at"]) for row in rows}
                    members["!built"] = float("-inf")
                    pipe.zadd(key, members, nx=True)
                    pipe.expireat(key, expire_at)
                    await pipe.execute()
            except (redis.RedisError, OSError) as exc:
                self.failures += 1
                raise Unavailable(f"rate limiter unavailable: {exc}") from exc
        raise Unavailable("rate limiter unavailable: the quota's set keeps disappearing")

    async def quota_used(self, org_id: int, day: dt.date) -> int | None:
        """How many emails counted against the organization's quota on ``day`` (None: not known to Redis)."""
        try:
            count = await self._client.zcard(self.quota_key(org_id, day))
        except (redis.RedisError, OSError):
            return None
        return max(int(count) - 1, 0) if count else None

    async def close(self) -> None:
        await self._client.aclose()


def _limit_name(settings: Settings, label: str, windows: tuple[RateWindow, ...], *, own: bool) -> str:
    """Name the limit that holds a slot, for people: ``smtp: 50/3600s``, ``user: 500/86400s``
    or, for a user's lane paced at the provider's rate, ``smtp: 50/3600s (your share)``."""
    if own and settings.user_rate_limit:
        return "user: " + ",".join(str(w) for w in settings.user_rate_limit)
    name = f"{label}: " + ",".join(str(w) for w in windows)
    return f"{name} (your share)" if own else name
