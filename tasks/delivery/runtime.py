"""What a worker process holds while it runs: settings, its pool, its transports and their chain."""

from __future__ import annotations

import dataclasses
from typing import Any

from tasks.core import db, live
from tasks.core.config import Settings
from tasks.delivery import groupcommit, mailer, orgs, ratelimit, transports
from tasks.domain.unsubscribe import Links


@dataclasses.dataclass(kw_only=True)
class Runtime:
    settings: Settings
    pool: db.AsyncPool
    transports: list[transports.Transport]
    #: Picks the transport of each attempt (the chain and its circuit breakers).
    mailer: mailer.Mailer
    live: live.Publisher
    #: A label for this process in events and logs (host:pid).
    worker_name: str
    #: The shared rate-limit buckets (Redis).
    limiter: ratelimit.Limiter
    #: Each organization's state (suspended, quota, identity, own transports), cached per process.
    orgs: orgs.OrgStates
    #: Jobs the send task ended itself, in the statement that recorded the outcome
    #: (tasks/queue/worker.py then skips Procrastinate's own finish round trip).
    ended_jobs: set[int] = dataclasses.field(default_factory=set)
    #: Emails claimed in the statement that fetched their jobs, by job id: the send
    #: task takes its email from here (tasks/queue/procrastinate_boundary.py, BatchingJobManager).
    claimed: dict[int, db.Row] = dataclasses.field(default_factory=dict)
    #: The send task's group commits by name (tasks/delivery/send.py creates them on first use).
    groups: dict[str, groupcommit.Group[Any, Any]] = dataclasses.field(default_factory=dict)
    #: The one-click unsubscribe links its messages carry (None: no PUBLIC_URL).
    unsubscribe: Links | None = None
    #: The webhook sender (tasks/webhooks/deliver.py creates it on first use).
    webhooks: Any = None

    @classmethod
    def create(cls, settings: Settings, pool: db.AsyncPool, worker_name: str) -> Runtime:
        chain = [transports.build(spec, settings) for spec in settings.mail_transports]
        org_states = orgs.OrgStates(settings)
        limiter = ratelimit.Limiter(settings)
        # The organizations' transports are limited by their own windows, as the states say.
        limiter.org_limits = org_states.limits
        return cls(
            settings=settings,
            pool=pool,
            transports=chain,
            mailer=mailer.Mailer(chain, settings, worker_name, org_states),
            live=live.Publisher(settings.redis_url, settings.redis_prefix),
            worker_name=worker_name,
            limiter=limiter,
            orgs=org_states,
            unsubscribe=Links(settings.public_url, settings.secret_key) if settings.public_url else None,
        )

    async def close(self) -> None:
        for group in self.groups.values():
            await group.close()
        await self.mailer.close_org_chains()
        for transport in self.transports:
            await transport.close()
        await self.live.close()
        await self.limiter.close()
        if self.webhooks is not None:
            await self.webhooks.aclose()


def of(context: Any) -> Runtime:
    """Return the runtime a Procrastinate job context carries."""
    runtime = context.additional_context.get("runtime")
    if not isinstance(runtime, Runtime):
        raise RuntimeError("run this task with `python -m tasks worker`, which provides its runtime")
    return runtime
