"""The transport chain: which transport sends now, with a circuit breaker on each.

``MAIL_TRANSPORTS`` is tried in order. A transport whose breaker is open is
skipped; the first one closed (or whose cool-down is over, for its one trial
send) is used. Only when every real transport is unavailable does the offline
log (``jsonl://``, last in the chain) take the email. One failure never makes an
attempt fall through: the email retries later with backoff, and the breaker
decides, after BREAKER_THRESHOLD provider failures in a row, that later picks
skip the transport. A permanent refusal (5xx) is the provider answering
properly: it never counts.

The breakers live in PostgreSQL (``transport_breakers``) rather than in each
process, because Redis holds only rate-limit buckets and live status, and
because a shared breaker opens after BREAKER_THRESHOLD failures across the
fleet (not per process), lets exactly one trial run after the cool-down, and is
what ``status``, ``/metrics`` and the dashboard read. The row is written only on
failures and state changes, and read at most once a second per process.

An organization that brings its own transports (tasks/delivery/orgs.py) gets a
chain of its own, built once per change of its providers and kept per process:
its transports first, then the deployment's (mode ``before``) or none of them
(``instead``), the offline log last either way. Each of its transports has its
own breaker (label ``o<org>.<label>``), cached like the deployment's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from typing import Any

import structlog

from tasks.core import db
from tasks.core.config import Settings
from tasks.delivery import orgs, transports
from tasks.delivery.transports import SendError, Transport

log = structlog.get_logger("tasks.delivery.mailer")

#: How long a process trusts its copy of the breakers before reading them again.
CACHE_SECONDS = 1.0
#: While another process runs a half-open breaker's trial, check back this soon.
TRIAL_RECHECK_SECONDS = 5.0


class NoTransport(Exception):
    """Every transport is unavailable now (breakers open, and no offline log to fall back on)."""

    def __init__(self, retry_in: float):
        super().__init__(f"every mail transport's circuit breaker is open; next try in {retry_in:.1f}s")
        self.retry_in = retry_in


@dataclasses.dataclass(frozen=True, kw_only=True)
class Choice:
    """The transport one attempt uses."""

    transport: Transport
    #: Set when this send is the breaker's one trial after its cool-down.
    trial: uuid.UUID | None = None
    #: The chain that picked it (an organization's own, or the deployment's): it learns the outcome.
    chain: Mailer | None = None
    #: The organization's sending identity (None: the deployment's ``MAIL_FROM``).
    identity: orgs.Identity | None = None
    #: The envelope sender when it is not ``MAIL_FROM`` (the organization's own transport).
    sender: str | None = None

    @property
    def offline(self) -> bool:
        return self.transport.offline


@dataclasses.dataclass(frozen=True, kw_only=True)
class Breaker:
    """One transport's breaker as read from PostgreSQL."""

    label: str
    state: str
    failures: int
    opened_count: int
    last_error: str | None
    retry_in: float | None
    trial_age: float | None
    #: ``time.monotonic()`` when it was read, to age ``retry_in`` and ``trial_age``.
    read_at: float

    @classmethod
    def from_row(cls, row: dict[str, Any], read_at: float) -> Breaker:
        return cls(
            label=row["label"],
            state=row["state"],
            failures=row["failures"],
            opened_count=row["opened_count"],
            last_error=row["last_error"],
            retry_in=row["retry_in"],
            trial_age=row["trial_age"],
            read_at=read_at,
        )

    def retry_in_now(self) -> float:
        return (self.retry_in or 0.0) - (time.monotonic() - self.read_at)

    def trial_age_now(self) -> float:
        return (self.trial_age or 0.0) + (time.monotonic() - self.read_at)


def is_provider_fault(error: SendError | None) -> bool:
    """Tell whether an attempt's outcome counts against its transport's breaker."""
    return error is not None and error.provider_fault


class Mailer:
    """Pick a transport for each attempt and keep the breakers up to date."""

    def __init__(
        self, chain: list[Transport], settings: Settings, worker_name: str, org_states: orgs.OrgStates | None = None
    ):
        self.chain = chain
        self.real = [t for t in chain if not t.offline]
        self.offline = next((t for t in chain if t.offline), None)
        self.settings = settings
        self.worker_name = worker_name
        # A trial older than this was abandoned (its worker died): another may start.
        self.trial_stale_after = max(settings.breaker_cooldown, 4 * settings.smtp_timeout)
        self._breakers: dict[str, Breaker] = {}
        self._read_at = float("-inf")
        self._ensured = False
        self._lock = asyncio.Lock()
        #: Where organizations' states come from (None: this is an organization's own chain).
        self.org_states = org_states
        #: Each organization's own chain: (its providers' fingerprint, the chain, the transports it built).
        self._org_chains: dict[int, tuple[str, Mailer, list[Transport]]] = {}

    async def _org_chain(self, state: orgs.OrgState) -> Mailer:
        """Return the organization's own chain, built again only when its providers changed."""
        held = self._org_chains.get(state.org_id)
        if held is not None and held[0] == state.fingerprint:
            return held[1]
        own: list[Transport] = [transports.build(t.spec, self.settings) for t in state.transports]
        chain = own + (self.real if state.mode == "before" else [])
        if self.offline is not None:
            chain.append(self.offline)
        sub = Mailer(chain, self.settings, self.worker_name)
        self._org_chains[state.org_id] = (state.fingerprint, sub, own)
        if held is not None:
            log.info("an organization's transports changed", org_id=state.org_id)
            for transport in held[2]:
                await transport.close()
        return sub

    async def close_org_chains(self) -> None:
        """Close the connections of every organization's own transports."""
        for _, _, own in self._org_chains.values():
            for transport in own:
                await transport.close()
        self._org_chains.clear()

    async def breakers(self, conn: db.AsyncConn, *, fresh: bool = False) -> dict[str, Breaker]:
        """Return every real transport's breaker, read at most once per CACHE_SECONDS."""
        if fresh or time.monotonic() - self._read_at > CACHE_SECONDS:
            async with self._lock:
                if fresh or time.monotonic() - self._read_at > CACHE_SECONDS:
                    labels = [t.label for t in self.real]
                    if not self._ensured:
                        await db.run_async(conn, "ensure_breakers", labels=labels)
                        self._ensured = True
                    now = time.monotonic()
                    rows = await db.all_async(conn, "breaker_states", labels=labels)
                    self._breakers = {r["label"]: Breaker.from_row(r, now) for r in rows}
                    self._read_at = now
        return self._breakers

    def _remember(self, row: dict[str, Any] | None) -> Breaker | None:
        if row is None:
            return None
        breaker = Breaker.from_row(row, time.monotonic())
        self._breakers[breaker.label] = breaker
        return breaker

    async def pick(self, conn: db.AsyncConn, *, offline_ok: bool = True, org_id: int | None = None) -> Choice:
        """Return the transport to use now; raise ``NoTransport`` if none may be used.

        ``offline_ok=False`` for an email that was already logged offline once:
        it waits for a real transport instead of being logged again. Before it is
        told to wait, the breakers are read afresh: the copy may be up to
        CACHE_SECONDS old, and a replay (``trial_now``) may have just made a trial due.
        ``org_id``: the email's organization, whose own chain (if it has one) and
        sending identity apply.
        """
        if self.org_states is not None and org_id is not None:
            state = await self.org_states.get(conn, org_id)
            if state is not None:
                # Stored transports of its own, even unusable ones (a key removed too early): its own
                # chain, so that mode "instead" never sends through the deployment's meanwhile.
                chain = await self._org_chain(state) if state.configured else self
                choice = await chain._pick_in_chain(conn, offline_ok=offline_ok)
                own = choice.transport.label in {t.label for t in state.transports}
                sender = state.identity.from_address if own else None
                identity = state.identity if state.identity != orgs.Identity() else None
                return dataclasses.replace(choice, identity=identity, sender=sender)
        return await self._pick_in_chain(conn, offline_ok=offline_ok)

    async def _pick_in_chain(self, conn: db.AsyncConn, *, offline_ok: bool) -> Choice:
        """``pick`` in this chain."""
        waits: list[float] = []
        for fresh in (False, True):
            choice, waits = await self._pick(conn, fresh=fresh)
            if choice is not None:
                return choice
            if self.offline is not None and offline_ok:
                return Choice(transport=self.offline, chain=self)
        raise NoTransport(max(min(waits, default=self.settings.breaker_cooldown), 0.0))

    async def _pick(self, conn: db.AsyncConn, *, fresh: bool) -> tuple[Choice | None, list[float]]:
        """Return the first real transport allowed now, else how long each one is not."""
        breakers = await self.breakers(conn, fresh=fresh)
        waits: list[float] = []
        for transport in self.real:
            breaker = breakers.get(transport.label)
            if breaker is None or breaker.state == "closed":
                return Choice(transport=transport, chain=self), waits
            if breaker.state == "open" and breaker.retry_in_now() > 0:
                waits.append(breaker.retry_in_now())
                continue
            if breaker.state == "half_open" and breaker.trial_age_now() < self.trial_stale_after:
                waits.append(TRIAL_RECHECK_SECONDS)
                continue
            token = uuid.uuid4()
            row = await db.one_async(
                conn,
                "breaker_trial",
                label=transport.label,
                token=token,
                worker=self.worker_name,
                stale_after=self.trial_stale_after,
            )
            if self._remember(row) is not None:
                log.info("circuit breaker trial", transport=transport.label)
                return Choice(transport=transport, trial=token, chain=self), waits
            # Another process took the trial (or the breaker closed meanwhile): look again soon.
            self._read_at = float("-inf")
            waits.append(min(TRIAL_RECHECK_SECONDS, self.settings.breaker_cooldown))
        return None, waits

    async def record(self, conn: db.AsyncConn, choice: Choice, error: SendError | None) -> None:
        """Record how an attempt went: a provider fault counts, anything else resets the count."""
        if choice.chain is not None and choice.chain is not self:
            return await choice.chain.record(conn, choice, error)
        if choice.offline:
            return
        label = choice.transport.label
        await self.breakers(conn)  # makes sure the rows exist; usually cached
        if is_provider_fault(error):
            assert error is not None
            row = await db.one_async(
                conn,
                "breaker_failure",
                label=label,
                trial=choice.trial,
                threshold=self.settings.breaker_threshold,
                cooldown=self.settings.breaker_cooldown,
                error=error.message[:500],
            )
            breaker = self._remember(row)
            if row is not None and breaker is not None and breaker.state == "open" and row["previous_state"] != "open":
                log.warning(
                    "circuit breaker opened",
                    transport=label,
                    failures=breaker.failures,
                    retry_in=round(breaker.retry_in or 0, 1),
                    error=error.message,
                )
            return
        cached = self._breakers.get(label)
        if choice.trial is None and cached is not None and cached.state == "closed" and cached.failures == 0:
            return  # the common case: healthy, nothing to write
        row = await db.one_async(conn, "breaker_success", label=label)
        if self._remember(row) is not None and row is not None and row["previous_state"] != "closed":
            log.info("circuit breaker closed", transport=label)

    async def release(self, conn: db.AsyncConn, choice: Choice) -> None:
        """Give back a trial that was picked but not used, so the next send can take it."""
        if choice.chain is not None and choice.chain is not self:
            return await choice.chain.release(conn, choice)
        if choice.trial is not None:
            self._remember(
                await db.one_async(conn, "breaker_release", label=choice.transport.label, trial=choice.trial)
            )


def trial_now(conn: db.Conn, labels: list[str]) -> list[str]:
    """End the cool-down of these transports' open breakers: each one's next send is its trial.

    For an operator who knows a provider is back (``replay-offline``); returns the
    labels whose breaker was open, in the given order.
    """
    due = {row["label"] for row in db.all_rows(conn, "breaker_trial_now", labels=labels)}
    return [label for label in labels if label in due]
