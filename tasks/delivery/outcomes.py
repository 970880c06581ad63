"""What one send attempt ended with: a typed outcome, written by one writer (``send.record``).

Each outcome is a frozen dataclass; ``Outcome`` is their union, matched
exhaustively by ``tasks.delivery.send.record``, the one place that writes an
attempt's outcome (its status, its event, the job of its next attempt).
``Recorded`` is what that write did, for the live status and the log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from tasks.domain.models import Status


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Attempted:
    """What the log line of an attempt says about it (``transport``, ``code``, ``error``)."""

    #: The label of the transport the attempt used (None: none could be chosen).
    transport: str | None = None
    #: The provider's reply code, when it refused.
    code: int | None = None
    error: str | None = None


# --- final: the email's attempt is over (finish_emails).


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sent(_Attempted):
    """The provider took the message."""

    reply: str
    refused: dict[str, str]
    #: The provider's own id of the message (an HTTP API's), recorded on the email.
    provider_message_id: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Offline(_Attempted):
    """The offline log took it (written down, not sent)."""

    reply: str
    refused: dict[str, str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Failed(_Attempted):
    """The provider refused it for good (5xx), or every recipient was refused."""

    refused: dict[str, str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Uncertain(_Attempted):
    """DATA began and the reply was lost: the provider may or may not have it (``uncertain``)."""

    refused: dict[str, str]


# --- waiting: back to ``scheduled`` with the job of the next attempt.


@dataclasses.dataclass(frozen=True, kw_only=True)
class Retry(_Attempted):
    """A temporary error at the provider: again after a backoff (an attempt spent; failed once
    MAX_ATTEMPTS are)."""

    #: Seconds the provider asked to wait (``Retry-After``): the backoff is at least that.
    retry_after: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class BreakersOpen(_Attempted):
    """Every transport's circuit breaker is open: wait for one, no attempt spent."""

    at: dt.datetime


@dataclasses.dataclass(frozen=True, kw_only=True)
class RateLimited(_Attempted):
    """Over a rate limit: wait for the slot the limiter gave, no attempt spent."""

    at: dt.datetime
    #: The slot reserved for the next attempt (None: nothing reserved, the provider frees up then).
    slot: dt.datetime | None
    #: The label whose bucket holds the slot; None when only the user's lane does.
    rate_transport: str | None
    #: The window that made it wait, for people ("smtp: 20/10s").
    limit: str | None
    #: The user's own lane is full: the rest of the user's burst is queued at its turns too.
    lane_full: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class LimiterDown(_Attempted):
    """Redis did not answer: nothing sent (fail closed); again after a backoff, no attempt spent."""

    at: dt.datetime


@dataclasses.dataclass(frozen=True, kw_only=True)
class Held(_Attempted):
    """The email's organization holds it (suspended, or its daily quota spent): wait, no attempt spent."""

    at: dt.datetime
    #: The event's kind: ``org_suspended`` or ``over_quota``.
    kind: str
    #: Why it waits, for people.
    reason: str


# --- nothing to write.


@dataclasses.dataclass(frozen=True, kw_only=True)
class Aborted(_Attempted):
    """The email changed before DATA (cancelled, recovered): nothing was sent, nothing is written."""


Outcome = Sent | Offline | Failed | Uncertain | Retry | BreakersOpen | RateLimited | LimiterDown | Held | Aborted
#: What the rate-limit gate answers when the email may not go now.
Wait = RateLimited | LimiterDown | Held


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recorded:
    """What writing an outcome did."""

    #: The outcome as the attempt's log line and the job's result name it: a status
    #: (``sent``, ``scheduled``, ``failed``…), a wait's event kind (``rate_limited``,
    #: ``limiter_unavailable``, ``no_transport``, ``org_suspended``, ``over_quota``), ``moved`` or ``aborted``.
    name: str
    #: The email's status to publish live; None when there is nothing to say (the
    #: email was no longer this job's, or nothing was written).
    status: Status | None = None
    next_attempt_at: dt.datetime | None = None
    waiting_reason: str | None = None
    #: The statement that wrote it also ended this job (see ``Runtime.ended_jobs``).
    ended_job: bool = False


#: What a write finds when the email was no longer this job's (cancelled, recovered): nothing written.
MOVED = Recorded(name="moved")
