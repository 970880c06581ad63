"""What a worker knows of each organization: suspended or not, its quota, identity and own transports.

One statement reads an organization's state (``org_state``), at most once per
CACHE_SECONDS per process and organization, like the breakers
(tasks/delivery/mailer.py): the gate and the mailer ask for every email, the
database is asked once a second at most, never once per email. The state's
provider URLs are decrypted here (``tasks.core.crypto``), into transports the
mailer builds once per change of the organization's providers.

An organization's transport is known in the chain, the breakers, the rate
limits and the metrics by a label of its own, ``o<org id>.<label>``, so its
breaker and its bucket are its own, shared by every member and every worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import time
from typing import Any

import structlog

from tasks.core import crypto, db, errors
from tasks.core.config import RateWindow, Settings, parse_windows
from tasks.delivery import transports

log = structlog.get_logger("tasks.delivery.orgs")

#: How long a process trusts its copy of an organization's state before reading it again.
CACHE_SECONDS = 1.0
#: How an organization's transports join the deployment's: tried first, or used alone.
MODES = ("before", "instead")
#: The schemes an organization may use: SMTP only (the console and the offline log write on
#: the deployment's machines, and the dev mailbox is the deployment's).
ORG_SCHEMES = ("smtp", "smtps")


def runtime_label(org_id: int, label: str) -> str:
    """The label of an organization's transport in breakers, buckets and metrics."""
    return f"o{org_id}.{label}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Identity:
    """An organization's sending identity (each part optional)."""

    from_name: str | None = None
    from_address: str | None = None
    reply_to: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class OrgTransport:
    """One of an organization's own transports, decrypted."""

    #: Its label in the chain (``o<org>.<label>``).
    label: str
    spec: transports.TransportSpec = dataclasses.field(repr=False)
    windows: tuple[RateWindow, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class OrgState:
    """One organization as a worker holds it."""

    org_id: int
    #: Why its mail waits (None: not suspended), and since when.
    suspended_reason: str | None
    suspended_at: dt.datetime | None = None
    daily_quota: int | None
    identity: Identity
    mode: str
    transports: tuple[OrgTransport, ...]
    #: How many transports it has stored (some may be unusable: a key removed too early).
    configured: int
    #: Changes when its transports change (the mailer rebuilds their connections then).
    fingerprint: str
    #: ``time.monotonic()`` when it was read.
    read_at: float

    @property
    def suspended(self) -> bool:
        return self.suspended_reason is not None


def suspended_reason(row: dict[str, Any]) -> str | None:
    """Why an organization's mail waits, for people (None: it does not)."""
    if row.get("suspended_at") is None:
        return None
    reason = (row.get("suspended_reason") or "").strip()
    if not reason or reason.lower().startswith("suspended"):
        return f"organization {reason or 'suspended by an operator'}"
    return f"organization suspended: {reason}"


def fingerprint(row: dict[str, Any]) -> str:
    """What identifies an organization's transports as stored (their secrets included, encrypted)."""
    digest = hashlib.sha256(str(row["providers_mode"]).encode())
    for entry in row["transports"]:
        digest.update(f"{entry['label']}\0{entry['secret']}\0{entry['rate_limit']}\0".encode())
    return digest.hexdigest()


def build_transports(org_id: int, entries: list[dict[str, Any]], box: crypto.Box) -> tuple[OrgTransport, ...]:
    """Decrypt and parse an organization's transports (one that cannot be read is left out, loudly)."""
    built: list[OrgTransport] = []
    for entry in entries:
        label = runtime_label(org_id, entry["label"])
        try:
            spec = transports.parse_transport(box.decrypt(entry["secret"].encode("ascii")))
            windows = parse_windows("rate_limit", entry["rate_limit"]) if entry["rate_limit"] else ()
        except (errors.ReachError, ValueError) as exc:
            # Never the parser's own words: they may quote the decrypted URL, password and all.
            why = exc.message if isinstance(exc, crypto.Undecryptable) else "its stored URL no longer parses"
            log.error("an organization's transport cannot be used", org_id=org_id, transport=label, error=why)
            continue
        built.append(OrgTransport(label=label, spec=dataclasses.replace(spec, label=label), windows=windows))
    return tuple(built)


def state_from_row(row: dict[str, Any], box: crypto.Box, read_at: float, previous: OrgState | None = None) -> OrgState:
    """One ``org_state`` row as a state; its transports are decrypted again only when they changed."""
    org_id = int(row["id"])
    stored = fingerprint(row)
    if previous is not None and previous.fingerprint == stored:
        built = previous.transports
    else:
        built = build_transports(org_id, row["transports"], box)
    return OrgState(
        org_id=org_id,
        suspended_reason=suspended_reason(row),
        suspended_at=row["suspended_at"],
        daily_quota=row["daily_quota"],
        identity=Identity(from_name=row["from_name"], from_address=row["from_address"], reply_to=row["reply_to"]),
        mode=row["providers_mode"],
        transports=built,
        configured=len(row["transports"]),
        fingerprint=stored,
        read_at=read_at,
    )


class OrgStates:
    """Every organization this process has sent for, each read at most once per CACHE_SECONDS."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.box = crypto.Box(settings)
        self._states: dict[int, OrgState | None] = {}
        self._read_at: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        #: The rate-limit windows of every organization's transport seen so far, by label.
        self.limits: dict[str, tuple[RateWindow, ...]] = {}

    async def get(self, conn: db.AsyncConn, org_id: int | None) -> OrgState | None:
        """Return the organization's state (None: no organization, or no such row)."""
        if org_id is None:
            return None
        if time.monotonic() - self._read_at.get(org_id, float("-inf")) <= CACHE_SECONDS:
            return self._states[org_id]
        lock = self._locks.setdefault(org_id, asyncio.Lock())
        async with lock:
            if time.monotonic() - self._read_at.get(org_id, float("-inf")) > CACHE_SECONDS:
                row = await db.one_async(conn, "org_state", org_id=org_id)
                now = time.monotonic()
                previous = self._states.get(org_id)
                state = None if row is None else state_from_row(row, self.box, now, previous)
                if state is not None:
                    for transport in state.transports:
                        self.limits[transport.label] = transport.windows
                    if previous is not None and previous.suspended != state.suspended:
                        log.info("organization state changed", org_id=org_id, suspended=state.suspended)
                self._states[org_id] = state
                self._read_at[org_id] = now
        return self._states[org_id]

    def forget(self, org_id: int) -> None:
        """Read the organization afresh next time (tests, and a worker told of a change)."""
        self._read_at.pop(org_id, None)
