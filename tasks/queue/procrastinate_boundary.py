"""The one place this project goes past Procrastinate's public API.

Everything here relies on something Procrastinate does not promise: a private
method or attribute of its worker or connector, or the layout of its tables.
Each use says what it does and why the public API does not serve;
docs/procrastinate.md lists them with the small public hook that would remove
each (the change we would propose upstream). The version pin in requirements.txt
is not the only guard: tests/unit/test_procrastinate_boundary.py checks every
assumption below against the installed Procrastinate (its names, signatures,
the attributes its ``__init__`` sets, the tables, columns and functions of its
``sql/schema.sql``) and fails naming the one that broke.

What is here:

1. ``HookedWorker``: Procrastinate's worker with the hooks this project needs
   (wake the fetch loop, add a side task, a job its task ended itself, a side
   task that failed), built on its private methods. ``tasks.queue.worker``
   subclasses it and uses only those hooks.
2. ``BatchingJobManager``: one round trip fetches a job for every free slot
   and claims the due emails of those that are send jobs; ``forget_pool``:
   drop the external pool a closed App keeps.
3. ``STATEMENTS``: every statement of ours on Procrastinate's tables (or calling
   its SQL functions). They are named queries of ``tasks.core.db`` like those of
   ``sql/queries.sql`` (the scheduler, the send task and the reconciler run them
   by name); importing ``tasks.queue`` registers them. The read-outs other
   packages need have a function here.
4. ``OPERATOR_QUERIES`` and ``ELSEWHERE``: what names Procrastinate's tables
   outside this module (read-only operator queries, committed migrations, the
   migration runner), listed so that the test checks them too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, LiteralString

import procrastinate
from procrastinate import job_context, manager, retry
from procrastinate import jobs as procrastinate_jobs
from procrastinate import worker as procrastinate_worker

from tasks.core import db

# --------------------------------------------------------------------------
# 1. The worker
# --------------------------------------------------------------------------


class HookedWorker(procrastinate_worker.Worker):
    """Procrastinate's worker with four hooks and two actions it lacks publicly.

    Hooks a subclass overrides: ``extra_side_tasks``, ``job_inserted``,
    ``job_ended_by_task``, ``side_task_failed``. Actions it may take: ``wake``
    and ``has_room``. It also tells a stop it asked for (``stop_requested``) from
    one it made itself after a side task failed (``crash``).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: Set when a side task (LISTEN, heartbeat...) failed: the worker stopped by itself.
        self.crash: BaseException | None = None
        #: Set when someone asked it to stop (SIGTERM/SIGINT).
        self.stop_requested = False

    # --- hooks, for a subclass to override -----------------------------------

    def extra_side_tasks(self) -> dict[str, Coroutine[Any, Any, None]]:
        """Side tasks to run next to Procrastinate's own (heartbeat, LISTEN...), by name."""
        return {}

    def job_inserted(self) -> None:
        """A ``job_inserted`` notification arrived (Procrastinate has already woken its fetch loop)."""

    def job_ended_by_task(self, job_id: int) -> bool:
        """Tell whether the task itself already ended job ``job_id``: then the worker does not."""
        return False

    def side_task_failed(self, name: str, error: BaseException) -> None:
        """A side task failed: the worker is about to stop by itself (``crash`` is set)."""

    # --- actions -----------------------------------------------------------

    def stop(self) -> None:
        """Stop on request (a signal, ``run``'s caller): ``stop_requested`` says so afterwards."""
        self.stop_requested = True
        procrastinate_worker.Worker.stop(self)

    def wake(self) -> None:
        """Make the fetch loop look for a job now rather than at its next poll."""
        # Private: _new_job_event is the event the fetch loop (_run_loop) waits on
        # between polls; a job_inserted notification sets it. Nothing public wakes
        # the loop: Procrastinate is notified when a job is inserted, not when a
        # job inserted earlier becomes due.
        self._new_job_event.set()

    def has_room(self) -> bool:
        """Tell whether fewer jobs run than the worker's concurrency allows."""
        return self.free_slots() > 0

    def free_slots(self) -> int:
        """How many more jobs the worker may run now."""
        # Private: _running_jobs maps each running job's asyncio task to its context;
        # no public count of running jobs exists.
        return self.concurrency - len(self._running_jobs)

    # --- the private methods the hooks are made of ----------------------------

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        # Private override: Procrastinate starts its side tasks here and offers no way to
        # add one that lives and dies with the worker (and whose failure stops it).
        side_tasks = super()._start_side_tasks()
        side_tasks.extend(asyncio.create_task(coro, name=name) for name, coro in self.extra_side_tasks().items())
        return side_tasks

    async def _monitor_side_tasks(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        # Private override: Procrastinate's monitor stops the worker when a side task
        # fails exactly as if asked to, so run() returns normally and the caller cannot
        # tell a lost database from a SIGTERM. Ours records the failure (crash) and
        # stops without marking it requested. (A cancelled side task is not a failure:
        # Procrastinate's own task.exception() would raise on it.)
        done, _ = await asyncio.wait(side_tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                self.crash = exc
                self.side_task_failed(task.get_name(), exc)
                procrastinate_worker.Worker.stop(self)
                return

    async def _handle_notification(self, *, channel: str, notification: procrastinate_jobs.Notification) -> None:
        # Private override: the LISTEN callback is the only place notifications arrive;
        # no public hook tells a worker that a job was inserted.
        await super()._handle_notification(channel=channel, notification=notification)
        if notification["type"] == "job_inserted":
            self.job_inserted()

    async def _persist_job_status(
        self,
        job: procrastinate_jobs.Job,
        status: procrastinate_jobs.Status,
        retry_decision: retry.RetryDecision | None,
        context: job_context.JobContext,
        job_result: job_context.JobResult | None,
    ) -> None:
        # Private override: after every job the worker finishes it (one more round trip);
        # our send task already deleted its job in the statement that recorded the
        # email's outcome (STATEMENTS, "_END_RUNNING_JOB"), and no public option lets a
        # task say "already finished". _job_ids_to_abort is cleared as the original does.
        if job.id is not None and self.job_ended_by_task(job.id):
            self._job_ids_to_abort.pop(job.id, None)
            return
        await super()._persist_job_status(job, status, retry_decision, context, job_result)


# --------------------------------------------------------------------------
# 2. The job manager and the connector
# --------------------------------------------------------------------------


class BatchingJobManager(manager.JobManager):
    """Procrastinate's job manager, fetching a job for every free slot in one round trip.

    The worker's fetch loop asks for one job per free slot, one round trip each
    (``procrastinate_fetch_job_v2``, LIMIT 1). This manager answers the first ask
    with one statement (``fetch_jobs``) that takes up to ``free_slots()`` jobs
    (``reach_fetch_jobs``, migration 0015: the same selection with a LIMIT) and,
    for each send job whose email is due, claims the email in the same statement
    (what ``claim_email`` does: ``sending``, one attempt more, the ``claimed``
    event); the loop's next asks, made at once for the other free slots, are
    answered from what it kept. Jobs kept when the worker stops between two asks
    are given back (``release_kept``).
    A claimed email is handed to ``on_claimed`` before its job is returned, so the
    send task finds it claimed. A send job fetched
    before its instant (jobs come due ``jobs.LEAD`` early) is not claimed: its
    task waits for the instant and claims it then, so cancelling works until the
    instant itself.

    Why not the public API: ``fetch_job`` is the only way the worker gets a job
    and it fetches one. Overriding this public method of a public class keeps
    Procrastinate's fetch loop (heartbeats, shutdown, abort) as it is; the
    statement relies on its tables (STATEMENTS, ``fetch_jobs``).
    """

    def __init__(
        self,
        connector: procrastinate.BaseConnector,
        *,
        pool: db.AsyncPool,
        worker_name: str,
        send_task: str,
        lead: Any,
        free_slots: Callable[[], int],
        on_claimed: Callable[[int, db.Row], None],
    ) -> None:
        super().__init__(connector)
        self.pool = pool
        self.worker_name = worker_name
        self.send_task = send_task
        self.lead = lead
        self.free_slots = free_slots
        self.on_claimed = on_claimed
        self.fetched_jobs: collections.deque[procrastinate_jobs.Job] = collections.deque()
        #: Round trips and jobs fetched (bench/ and the tests read them).
        self.fetches = 0
        self.fetched = 0

    async def fetch_job(self, queues: Iterable[str] | None, worker_id: int) -> procrastinate_jobs.Job | None:
        if not self.fetched_jobs:
            await self.fetch_many(queues, worker_id, max(self.free_slots(), 1))
        return self.fetched_jobs.popleft() if self.fetched_jobs else None

    async def fetch_many(self, queues: Iterable[str] | None, worker_id: int, limit: int) -> None:
        async with self.pool.connection() as conn:
            rows = await db.all_async(
                conn,
                "fetch_jobs",
                queues=list(queues) if queues is not None else None,
                worker_id=worker_id,
                limit=limit,
                send_task=self.send_task,
                lead=self.lead,
                worker=self.worker_name,
            )
        self.fetches += 1
        self.fetched += len(rows)
        for row in rows:
            # The job's columns are prefixed; the claimed email's (NULL if none) are not.
            job = procrastinate_jobs.Job.from_row({k[5:]: v for k, v in row.items() if k.startswith("job__")})
            if row["id"] is not None and job.id is not None:
                self.on_claimed(job.id, {k: v for k, v in row.items() if not k.startswith("job__")})
            self.fetched_jobs.append(job)

    def kept(self) -> list[int]:
        """The ids of jobs fetched and not yet handed to the worker (it stopped meanwhile)."""
        return [job.id for job in self.fetched_jobs if job.id is not None]

    async def release_kept(self) -> int:
        """Give back jobs fetched but never started (the worker stopped between two asks):
        each job waits again and its email, if claimed, is unclaimed (the attempt given back)."""
        ids = self.kept()
        self.fetched_jobs.clear()
        if not ids:
            return 0
        async with self.pool.connection() as conn:
            row = await db.one_async(conn, "release_fetched_jobs", ids=ids)
        return int(row["n"]) if row else 0


@contextlib.contextmanager
def job_manager(app: procrastinate.App, manager_: manager.JobManager) -> Iterator[None]:
    """Make ``app`` (and a worker given it) use ``manager_`` for the duration of the block."""
    # Public attribute: App.job_manager is what the worker calls for every fetch, heartbeat
    # and finish; the tasks keep the manager they were defined with (they only defer).
    previous, app.job_manager = app.job_manager, manager_
    try:
        yield
    finally:
        app.job_manager = previous


def forget_pool(app: procrastinate.App, pool: object) -> None:
    """Make ``app`` forget ``pool``, an external pool it was opened on and has been closed with.

    Procrastinate (3.10) keeps an external pool after ``close_async`` (it closes
    only a pool of its own), so the next ``open_async(new_pool)`` would return at
    once and keep using the old, closed one.
    """
    connector = app.connector
    if isinstance(connector, procrastinate.PsycopgConnector):
        # Private: _async_pool is the pool the connector runs every query on; neither
        # close_async nor any public method unsets an external one.
        kept: object = connector._async_pool  # typed for tuple rows; ours returns dicts
        if kept is pool:
            connector._async_pool = None


# --------------------------------------------------------------------------
# 3. Our statements on Procrastinate's tables
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Statement:
    """A named statement on Procrastinate's tables, and what of their layout it relies on."""

    sql: LiteralString
    #: Procrastinate's columns it names, as ``table.column``.
    columns: tuple[str, ...]
    #: The values of ``procrastinate_job_status`` it names.
    job_statuses: tuple[str, ...] = ()
    #: Whether it writes Procrastinate's rows (else it only reads them).
    writes: bool = False
    #: Procrastinate's SQL functions it calls, as ``name(argument types)``.
    functions: tuple[str, ...] = ()
    #: Procrastinate's composite types it builds, as ``name(field type, ...)`` (a ROW
    #: constructor relies on the fields' order and types).
    types: tuple[str, ...] = ()
    #: Our own SQL functions (from sql/migrations/) it calls that work on Procrastinate's tables.
    own_functions: tuple[str, ...] = ()


# Ends the running job in the statement that records the email's outcome, when
# %(end_job)s: one round trip instead of two per attempt. It is what
# procrastinate_finish_job_v1(id, ..., delete_job => true) does (a DELETE of the
# row, its events going by ON DELETE CASCADE). The public finish_job runs on
# Procrastinate's own connection, in a statement of its own: it cannot join the
# statement (nor the transaction) that writes the email. HookedWorker then skips
# its own finish for this job (job_ended_by_task).
_END_RUNNING_JOB: LiteralString = """job AS (
    DELETE FROM procrastinate_jobs WHERE %(end_job)s AND id = %(job_id)s AND status = 'doing'
)"""


# Webhooks' transactional outbox (tasks/webhooks/): in the statement that changes what an
# event reports, one delivery per subscribed, enabled endpoint of the organization, with its
# job, deferred through Procrastinate's own procrastinate_defer_jobs_v1 (what its public
# batch_defer_jobs calls): the change and its deliveries commit together or not at all.
# Why not batch_defer_jobs(connection=conn): a statement and a round trip of its own, on
# the send path's hot statement, even for the organizations that have no endpoint; joined
# here, an organization without one costs an index probe of an empty relation.
def _defer_delivery(id_: LiteralString, at: LiteralString) -> LiteralString:
    return (
        """(procrastinate_defer_jobs_v1(ARRAY[ROW(
               'webhooks'::varchar, 'deliver_webhook'::varchar, 0, NULL::text, NULL::text,
               jsonb_build_object('delivery_id', """
        + id_
        + """::text), """
        + at
        + """::timestamptz
           )::procrastinate_job_to_defer_v1]))[1]"""
    )


#: An instant as the payloads write it: UTC, ISO 8601, microseconds, Z.
def _instant(expr: LiteralString) -> LiteralString:
    return "to_char(" + expr + """ AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


# The deliveries of emails' events: {source} names a relation of the emails whose status
# changed, with their new status (docs/webhooks.md, "Payloads": the same shape from every
# statement that writes one; never the email's body).
_EMAIL_HOOKS: LiteralString = (
    """
    INSERT INTO webhook_deliveries (org_id, id, endpoint_id, event_type, payload, job_id)
    SELECT ev.org_id, ev.delivery_id, ev.endpoint_id, ev.event_type,
           jsonb_build_object(
               'type', ev.event_type, 'timestamp', """
    + _instant("clock_timestamp()")
    + """,
               'data', jsonb_build_object(
                   'email_id', ev.id, 'status', ev.status, 'owner_id', ev.owner_id, 'batch_id', ev.batch_id,
                   'recurrence_id', ev.recurrence_id, 'to', to_jsonb(ev.to_addrs), 'subject', ev.subject,
                   'attempts', ev.attempts, 'transport', ev.transport, 'reply', ev.reply, 'error', ev.error,
                   'sent_at', """
    + _instant("ev.sent_at")
    + """)),
           """
    + _defer_delivery("ev.delivery_id", "NULL")
    + """
      FROM (SELECT s.*, 'email.' || s.status AS event_type, w.id AS endpoint_id, gen_random_uuid() AS delivery_id
              FROM {source} s
              JOIN webhook_endpoints w
                ON w.org_id = s.org_id AND w.enabled AND ('email.' || s.status) = ANY(w.event_types)) ev"""
)

# Emails whose status a statement of sql/queries.sql changed (a cancel: set_cancelled,
# cancel_batch_rest, cancel_recurrence_pending), read again in the same transaction.
_EMAIL_EVENTS: LiteralString = (
    """WITH changed AS (
    SELECT id, org_id, owner_id, batch_id, recurrence_id, to_addrs, subject, sent_at, attempts, transport,
           status, provider_reply AS reply, last_error AS error
      FROM emails WHERE id = ANY(%(ids)s::uuid[])
), hook AS ("""
    + _EMAIL_HOOKS.replace("{source}", "changed")
    + """
    RETURNING id
)
SELECT count(*) AS n FROM hook;"""
)

# Other events (batch.completed, recurrence.paused; and a test event, to one endpoint
# whatever it subscribed to): one row of the arrays per event, with its data.
_WEBHOOK_EVENTS: LiteralString = (
    """WITH input AS (
    SELECT * FROM unnest(%(org_ids)s::bigint[], %(endpoint_ids)s::uuid[], %(types)s::text[], %(datas)s::jsonb[])
        AS t(org_id, endpoint_id, event_type, data)
), ev AS (
    SELECT i.org_id, i.event_type, i.data, w.id AS endpoint_id, gen_random_uuid() AS delivery_id
      FROM input i
      JOIN webhook_endpoints w
        ON w.org_id = i.org_id
       AND CASE WHEN i.endpoint_id IS NULL THEN w.enabled AND i.event_type = ANY(w.event_types)
                ELSE w.id = i.endpoint_id END
)
INSERT INTO webhook_deliveries (org_id, id, endpoint_id, event_type, payload, job_id)
SELECT org_id, delivery_id, endpoint_id, event_type,
       jsonb_build_object('type', event_type, 'timestamp', """
    + _instant("clock_timestamp()")
    + """, 'data', data),
       """
    + _defer_delivery("delivery_id", "NULL")
    + """
  FROM ev
RETURNING id, endpoint_id;"""
)

# An attempt's outcome, in one statement: its line in the log, the delivery (delivered,
# failed, or pending with the job of its next attempt at %(next_at)s), the endpoint's run
# of failures (disabled when it has lasted %(disable_after)s), and the end of the running
# job (as _END_RUNNING_JOB: one round trip less per delivery). Guarded by the job: a
# delivery redelivered meanwhile keeps its new job. Returns whether the endpoint was
# enabled before and after (the FROM row is the one before the update).
_WEBHOOK_ATTEMPTED: LiteralString = (
    """WITH attempt AS (
    INSERT INTO webhook_attempts (org_id, delivery_id, status_code, latency_ms, response, error)
    VALUES (%(org_id)s, %(id)s, %(status_code)s, %(latency_ms)s, %(response)s, %(error)s)
), delivery AS (
    UPDATE webhook_deliveries
       SET attempts = attempts + 1, status = %(status)s,
           next_attempt_at = CASE WHEN %(status)s = 'pending' THEN %(next_at)s::timestamptz END,
           finished_at = CASE WHEN %(status)s <> 'pending' THEN now() END,
           job_id = CASE WHEN %(status)s = 'pending' THEN """
    + _defer_delivery("%(id)s", "%(next_at)s")
    + """ END
     WHERE org_id = %(org_id)s AND id = %(id)s AND status = 'pending' AND job_id = %(job_id)s
    RETURNING id, job_id
), endpoint AS (
    UPDATE webhook_endpoints w
       SET failing_since = CASE WHEN %(ok)s THEN NULL ELSE coalesce(w.failing_since, now()) END,
           enabled = w.enabled AND (%(ok)s OR w.failing_since IS NULL
                                    OR w.failing_since > now() - %(disable_after)s::interval),
           disabled_reason = CASE
               WHEN w.enabled AND NOT %(ok)s AND w.failing_since <= now() - %(disable_after)s::interval
               THEN 'disabled after failing since ' || """
    + _instant("w.failing_since")
    + """
               ELSE w.disabled_reason END
      FROM webhook_endpoints old
     WHERE w.org_id = %(org_id)s AND w.id = %(endpoint_id)s AND old.org_id = w.org_id AND old.id = w.id
       AND %(counts)s
    RETURNING old.enabled AS was_enabled, w.enabled
), job AS (
    DELETE FROM procrastinate_jobs WHERE id = %(job_id)s AND status = 'doing'
)
SELECT (SELECT job_id FROM delivery) AS job_id, (SELECT count(*) FROM delivery) AS updated,
       (SELECT was_enabled AND NOT enabled FROM endpoint) AS disabled;"""
)

# Deliver again (the dashboard's and the API's "redeliver"): the same delivery (the same
# webhook-id), pending again with a new job and a new day of retries.
_WEBHOOK_REDELIVER: LiteralString = (
    """UPDATE webhook_deliveries
   SET status = 'pending', next_attempt_at = now(), finished_at = NULL, retrying_since = now(),
       job_id = """
    + _defer_delivery("id", "NULL")
    + """
 WHERE org_id = %(org_id)s AND id = %(id)s
RETURNING *;"""
)

# Pending deliveries whose job is gone or ended (a worker killed during the attempt: the
# reconciler failed its job), given a new job; locked so two reconcilers never race.
_WEBHOOK_LOST: LiteralString = (
    """WITH lost AS (
    SELECT d.org_id, d.id
      FROM webhook_deliveries d
      LEFT JOIN procrastinate_jobs j ON j.id = d.job_id
     WHERE d.status = 'pending' AND (j.id IS NULL OR j.status NOT IN ('todo', 'doing'))
     LIMIT %(limit)s
       FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
   SET next_attempt_at = now(), job_id = """
    + _defer_delivery("d.id", "NULL")
    + """
  FROM lost l
 WHERE d.org_id = l.org_id AND d.id = l.id
RETURNING d.id;"""
)


# End attempts with their final status (sent, failed, uncertain, offline), one row of
# the arrays per attempt: the send task's outcomes, gathered by a group commit
# (tasks/delivery/groupcommit.py), and the reconciler's one by one. When %(end_job)s,
# the running jobs are deleted as _END_RUNNING_JOB does, whether or not the email had
# moved. Returns the emails finished.
# (e.id = ANY(ids) as well as the join: emails are read by primary key whatever the plan
# thought of unnest's size; tests/integration/test_plans.py.)
_FINISH_EMAILS: LiteralString = (
    """WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(job_ids)s::bigint[], %(statuses)s::text[], %(replies)s::text[],
                         %(errors)s::text[], %(transports)s::text[], %(refused)s::jsonb[],
                         %(provider_ids)s::text[])
        AS t(id, job_id, status, reply, error, transport, refused, provider_id)
), done AS (
    UPDATE emails e
       SET status = i.status,
           sent_at = CASE WHEN i.status = 'sent' THEN clock_timestamp() END,
           offline_at = CASE WHEN i.status = 'offline' THEN clock_timestamp() ELSE e.offline_at END,
           provider_reply = i.reply,
           last_error = i.error,
           transport = coalesce(i.transport, e.transport),
           -- none given (the reconciler's outcomes): the ones recorded when DATA began
           refused_recipients = coalesce(nullif(i.refused, '{}'::jsonb), e.refused_recipients),
           -- the provider's id of the message (an HTTP API's), when it gave one
           provider_message_id = coalesce(i.provider_id, e.provider_message_id),
           waiting_reason = NULL
      FROM input i
     WHERE e.id = ANY(%(ids)s::uuid[]) AND e.id = i.id AND e.status = 'sending' AND e.job_id = i.job_id
    RETURNING e.id, e.org_id, e.owner_id, e.batch_id, e.recurrence_id, e.to_addrs, e.subject, e.sent_at,
              e.attempts, e.transport, e.data_started_at, e.refused_recipients, i.job_id, i.status,
              i.reply, i.error, i.provider_id
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, status, job_id,
           jsonb_strip_nulls(jsonb_build_object(
               'attempt', attempts, 'transport', transport, 'reply', reply,
               'error', error, 'refused', refused_recipients, 'data_started_at', data_started_at,
               'provider_message_id', provider_id))
      FROM done
), job AS (
    DELETE FROM procrastinate_jobs WHERE %(end_job)s AND id = ANY(%(job_ids)s::bigint[]) AND status = 'doing'
), hook AS ("""
    + _EMAIL_HOOKS.replace("{source}", "done")
    + """
)
SELECT id FROM done;"""
)

_REQUEUE_EMAIL: LiteralString = (
    """WITH moved AS (
    UPDATE emails
       SET status = 'scheduled', next_attempt_at = %(at)s, waiting_reason = %(reason)s,
           last_error = %(error)s, job_id = %(new_job_id)s, data_started_at = NULL
     WHERE id = %(email_id)s AND status = 'sending' AND job_id = %(job_id)s
    RETURNING id, org_id, attempts
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, %(kind)s, %(job_id)s,
           jsonb_strip_nulls(jsonb_build_object(
               'attempt', attempts, 'next_attempt_at', %(at)s::timestamptz, 'transport', %(transport)s::text,
               'reason', %(reason)s::text, 'error', %(error)s::text))
      FROM moved
), """
    + _END_RUNNING_JOB
    + """
SELECT id FROM moved;"""
)

_WAIT_WITHOUT_ATTEMPT: LiteralString = (
    """WITH moved AS (
    UPDATE emails
       SET status = 'scheduled', attempts = attempts - 1, next_attempt_at = %(at)s,
           waiting_reason = %(reason)s, job_id = %(new_job_id)s,
           rate_slot = %(slot)s, rate_transport = %(rate_transport)s
     WHERE id = %(email_id)s AND status = 'sending' AND job_id = %(job_id)s
       AND data_started_at IS NULL
    RETURNING id, org_id, attempts
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, %(kind)s, %(job_id)s,
           jsonb_strip_nulls(jsonb_build_object(
               'slot', %(slot)s::timestamptz, 'next_attempt_at', %(at)s::timestamptz,
               'transport', %(transport)s::text, 'limit', %(limit)s::text,
               'reason', %(reason)s::text, 'error', %(error)s::text))
      FROM moved
), """
    + _END_RUNNING_JOB
    + """
SELECT id FROM moved;"""
)

_ENDS_THE_JOB = ("procrastinate_jobs.id", "procrastinate_jobs.status")

_SCHEDULE_EMAIL: LiteralString = """WITH blocked AS (
    SELECT address, reason FROM suppressions
     WHERE address = ANY(%(recipients)s::text[]) AND (org_id = %(org_id)s OR org_id IS NULL)
), job AS (
    SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(
               %(job_queue)s::varchar, %(job_task)s::varchar, 0, NULL::text, NULL::text,
               jsonb_build_object('email_id', %(id)s::text), %(job_at)s::timestamptz
           )::procrastinate_job_to_defer_v1]))[1] AS id
     WHERE %(job_at)s::timestamptz IS NOT NULL AND NOT EXISTS (SELECT FROM blocked)
), inserted AS (
    INSERT INTO emails (id, org_id, owner_id, from_addr, reply_to, to_addrs, cc_addrs, bcc_addrs,
                        subject, body_text, body_html, send_at, send_tz, next_attempt_at,
                        message_id, idempotency_key, request_hash, job_id, list_unsubscribe)
    SELECT %(id)s, %(org_id)s, %(owner_id)s, %(from_addr)s, %(reply_to)s, %(to_addrs)s, %(cc_addrs)s,
           %(bcc_addrs)s, %(subject)s, %(body_text)s, %(body_html)s, %(send_at)s,
           %(send_tz)s, %(send_at)s, %(message_id)s, %(idempotency_key)s,
           %(request_hash)s, (SELECT id FROM job), %(list_unsubscribe)s
     WHERE NOT EXISTS (SELECT FROM blocked)
    RETURNING *
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, 'scheduled', job_id, %(detail)s FROM inserted
)
SELECT i.*, (SELECT jsonb_object_agg(address, reason) FROM blocked) AS blocked
  FROM (SELECT) one LEFT JOIN inserted i ON true;"""

_FETCH_JOBS: LiteralString = """WITH fetched AS (
    SELECT * FROM reach_fetch_jobs(%(queues)s::varchar[], %(worker_id)s, %(limit)s)
), due AS (
    SELECT e.id, f.id AS job_id
      FROM fetched f JOIN emails e ON e.id = (f.args->>'email_id')::uuid
     WHERE f.task_name = %(send_task)s AND e.status = 'scheduled' AND e.job_id = f.id
       AND (f.scheduled_at IS NULL OR f.scheduled_at + %(lead)s <= clock_timestamp())
       FOR UPDATE OF e SKIP LOCKED
), claimed AS (
    UPDATE emails e
       SET status = 'sending', attempts = e.attempts + 1, waiting_reason = NULL, data_started_at = NULL
      FROM due d
     WHERE e.id = d.id AND e.status = 'scheduled' AND e.job_id = d.job_id
    RETURNING e.*,
           (SELECT array_agg(s.address || ' (' || s.reason || ')' ORDER BY s.address)
                   FROM suppressions s
                  WHERE s.address = ANY(SELECT lower(r) FROM unnest(e.to_addrs || e.cc_addrs || e.bcc_addrs) r)
                    AND (s.org_id = e.org_id OR s.org_id IS NULL)) AS suppressed
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, 'claimed', job_id,
           jsonb_build_object('attempt', attempts, 'worker', %(worker)s::text,
                              'late_ms', round(extract(epoch FROM clock_timestamp() - next_attempt_at) * 1000))
      FROM claimed
)
SELECT f.id AS job__id, f.status AS job__status, f.task_name AS job__task_name,
       f.priority AS job__priority, f.lock AS job__lock, f.queueing_lock AS job__queueing_lock,
       f.args AS job__args, f.scheduled_at AS job__scheduled_at, f.queue_name AS job__queue_name,
       f.attempts AS job__attempts, f.worker_id AS job__worker_id, f.abort_requested AS job__abort_requested,
       c.*
  FROM fetched f LEFT JOIN claimed c ON c.job_id = f.id
 ORDER BY f.priority DESC, f.id;"""

_RELEASE_FETCHED_JOBS: LiteralString = """WITH job AS (
    UPDATE procrastinate_jobs SET status = 'todo', worker_id = NULL
     WHERE id = ANY(%(ids)s::bigint[]) AND status = 'doing'
    RETURNING id
), unclaimed AS (
    UPDATE emails
       SET status = 'scheduled', attempts = attempts - 1
     WHERE job_id IN (SELECT id FROM job) AND status = 'sending' AND data_started_at IS NULL
    RETURNING id, org_id, job_id, attempts
), event AS (
    INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
    SELECT org_id, id, 'released', job_id, jsonb_build_object('reason', 'the worker stopped before starting its job')
      FROM unclaimed
)
SELECT count(*) AS n FROM job;"""

_WAKE_HELD: LiteralString = """WITH woken AS (
    UPDATE emails SET next_attempt_at = now() + %(after)s, waiting_reason = NULL
     WHERE org_id = %(org_id)s AND status = 'scheduled' AND waiting_reason = %(reason)s
       AND next_attempt_at > now()
    RETURNING id, org_id, job_id
), job AS (
    UPDATE procrastinate_jobs j SET scheduled_at = now() + %(after)s - %(lead)s
      FROM woken w WHERE j.id = w.job_id AND j.status = 'todo'
), event AS (
    INSERT INTO email_events (email_id, org_id, kind, job_id, detail)
    SELECT id, org_id, 'org_resumed', job_id, jsonb_build_object('reason', %(reason)s::text) FROM woken
)
SELECT count(*) AS n FROM woken;"""

_DEFERS = ("procrastinate_defer_jobs_v1(procrastinate_job_to_defer_v1[])",)
_JOB_TYPE = (
    "procrastinate_job_to_defer_v1(character varying, character varying, integer, text, text, jsonb,"
    " timestamp with time zone)",
)

#: Every statement of ours on Procrastinate's tables or functions, by the name callers run it by.
STATEMENTS: dict[str, Statement] = {
    # Fetch a job for each free slot of the worker in one round trip, and claim the
    # email of each send job whose instant has come (BatchingJobManager). The jobs
    # are taken by reach_fetch_jobs (migration 0015), procrastinate_fetch_job_v2
    # with a LIMIT; the claim is claim_email's (sql/queries.sql) for many rows,
    # joined by the job's email_id argument and id, and is due when the job's
    # scheduled_at plus the lead has passed (a send job is due jobs.LEAD before
    # its email; tested on the job, so the planner can only look emails up by
    # primary key: see 0011). An email locked meanwhile (a cancel, an edit: they
    # lock the email, then its job) is skipped, not waited for: this statement
    # holds the jobs, and waiting would deadlock; its task claims it afterwards
    # (claim_email), and finds it cancelled or changed. Each row is a job (its columns prefixed job__) and its
    # claimed email's columns, NULL when it was not claimed, with ``suppressed``: its recipients on a
    # suppression list (one probe of suppressions_key each, 0.04 ms at 100,000 addresses).
    # Why not fetch_job: it takes one job per round trip and cannot join a claim.
    "fetch_jobs": Statement(
        _FETCH_JOBS,
        (
            "procrastinate_jobs.id",
            "procrastinate_jobs.status",
            "procrastinate_jobs.task_name",
            "procrastinate_jobs.priority",
            "procrastinate_jobs.lock",
            "procrastinate_jobs.queueing_lock",
            "procrastinate_jobs.args",
            "procrastinate_jobs.scheduled_at",
            "procrastinate_jobs.queue_name",
            "procrastinate_jobs.attempts",
            "procrastinate_jobs.worker_id",
            "procrastinate_jobs.abort_requested",
        ),
        writes=True,
        own_functions=("reach_fetch_jobs(character varying[], bigint, integer)",),
    ),
    # Give back jobs a stopping worker fetched but never started: each waits again
    # ('doing' back to 'todo', as procrastinate_retry_job_v1 does, which would also
    # count an attempt and needs a time), and its email, if claimed, is unclaimed
    # with its attempt given back. Why not retry_job: one round trip per job, and
    # it cannot join the unclaim.
    "release_fetched_jobs": Statement(
        _RELEASE_FETCHED_JOBS,
        ("procrastinate_jobs.id", "procrastinate_jobs.status", "procrastinate_jobs.worker_id"),
        ("todo", "doing"),
        writes=True,
    ),
    # Schedule one email in one statement, atomic on its own and one round trip
    # (tasks/domain/emails.py, schedule): the row, its 'scheduled' event and, when
    # job_at is given (the email is due within the horizon), its send job, through
    # Procrastinate's own procrastinate_defer_jobs_v1 (the function its public
    # batch_defer_jobs calls) with what tasks/queue/jobs.py gives every send job
    # (queue, task, email_id, due LEAD early). An idempotency key the owner already
    # used makes the whole statement fail on emails_idempotency_key, the job included:
    # the caller then reads the first email (email_by_idempotency_key). No lookup runs
    # beforehand: a prepared lookup by (org_id, owner_id, idempotency_key) was planned once, on
    # a small table, and then read every email of the owner through
    # emails_owner_status_idx. Why not batch_defer_jobs(connection=conn): a statement
    # of its own, before the row that must hold the job's id: two round trips at least
    # (eight, with the event and the lookup), where this is one.
    # A recipient on a suppression list (the organization's or the global one) stops it all in the
    # same statement: nothing written, the job not deferred, and ``blocked`` names the addresses.
    "schedule_email": Statement(
        _SCHEDULE_EMAIL,
        (),
        writes=True,
        functions=("procrastinate_defer_jobs_v1(procrastinate_job_to_defer_v1[])",),
        types=(
            "procrastinate_job_to_defer_v1(character varying, character varying, integer, text, text, jsonb,"
            " timestamp with time zone)",
        ),
    ),
    # End attempts: sent, failed, uncertain or offline (tasks/delivery/send.py). Each
    # event's kind is the new status and names the transport the row records (the one
    # DATA started on). Ends the running jobs too: see _END_RUNNING_JOB.
    # And, in the same statement, each subscribed webhook endpoint's delivery of the
    # change with its job (_EMAIL_HOOKS).
    "finish_emails": Statement(
        _FINISH_EMAILS, _ENDS_THE_JOB, ("doing",), writes=True, functions=_DEFERS, types=_JOB_TYPE
    ),
    # Webhooks (tasks/webhooks/): the transactional outbox's statements besides
    # finish_emails' (see _EMAIL_HOOKS), an attempt's outcome with the job of the next one,
    # a redelivery, and the reconciler's look for deliveries whose job was lost. Why not
    # defer_job: a statement of its own before the row that must hold the job's id, and
    # no join to the endpoints subscribed.
    "webhook_email_events": Statement(_EMAIL_EVENTS, (), writes=True, functions=_DEFERS, types=_JOB_TYPE),
    "webhook_events": Statement(_WEBHOOK_EVENTS, (), writes=True, functions=_DEFERS, types=_JOB_TYPE),
    "webhook_attempted": Statement(
        _WEBHOOK_ATTEMPTED, _ENDS_THE_JOB, ("doing",), writes=True, functions=_DEFERS, types=_JOB_TYPE
    ),
    "webhook_redeliver": Statement(_WEBHOOK_REDELIVER, (), writes=True, functions=_DEFERS, types=_JOB_TYPE),
    "webhook_lost_jobs": Statement(
        _WEBHOOK_LOST,
        ("procrastinate_jobs.id", "procrastinate_jobs.status"),
        ("todo", "doing"),
        writes=True,
        functions=_DEFERS,
        types=_JOB_TYPE,
    ),
    # Back to 'scheduled' after a transient failure, with the job of the next attempt
    # (deferred through the public API in the same transaction, tasks/queue/jobs.py);
    # ends the running job: see _END_RUNNING_JOB.
    "requeue_email": Statement(_REQUEUE_EMAIL, _ENDS_THE_JOB, ("doing",), writes=True),
    # Back to 'scheduled' without having contacted the provider: a rate-limit slot was
    # reserved (slot), the limiter was unavailable, or every transport's breaker is open
    # (no slot). The claim's attempt is given back: waiting is not an attempt
    # (MAX_ATTEMPTS counts tries at a provider). Ends the running job: see _END_RUNNING_JOB.
    "wait_without_attempt": Statement(_WAIT_WITHOUT_ATTEMPT, _ENDS_THE_JOB, ("doing",), writes=True),
    # Emails left 'sending' by a job that is no longer running, or by a worker whose
    # heartbeat stopped (the reconciler recovers them). Why not get_stalled_jobs: it
    # returns jobs, on Procrastinate's connection, and misses what we need most: an
    # email whose job is gone or already finished. This is one join with our table.
    "stalled_sending": Statement(
        """SELECT e.id, e.org_id, e.owner_id, e.job_id, e.attempts, e.data_started_at
  FROM emails e
  LEFT JOIN procrastinate_jobs j ON j.id = e.job_id
  LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
 WHERE e.status = 'sending'
   AND (j.id IS NULL OR j.status <> 'doing' OR w.id IS NULL
        OR w.last_heartbeat < now() - make_interval(secs => %(stalled_after)s))
 LIMIT %(limit)s;""",
        (
            "procrastinate_jobs.id",
            "procrastinate_jobs.status",
            "procrastinate_jobs.worker_id",
            "procrastinate_workers.id",
            "procrastinate_workers.last_heartbeat",
        ),
        ("doing",),
    ),
    # Scheduled emails inside the horizon with no live job: far-future ones being
    # promoted, and any whose job was lost; locked so two reconcilers never race. Why
    # not get_job_status: one round trip per email, and no join to lock our rows by.
    "due_without_job": Statement(
        """SELECT e.id, e.next_attempt_at, e.job_id
  FROM emails e
  LEFT JOIN procrastinate_jobs j ON j.id = e.job_id
 WHERE e.status = 'scheduled'
   AND e.next_attempt_at <= now() + make_interval(secs => %(horizon)s)
   AND (j.id IS NULL OR j.status NOT IN ('todo', 'doing'))
 ORDER BY e.next_attempt_at
 LIMIT %(limit)s
   FOR UPDATE OF e SKIP LOCKED;""",
        ("procrastinate_jobs.id", "procrastinate_jobs.status"),
        ("todo", "doing"),
    ),
    # The same test as due_without_job on rows the reconciler now holds locked, with a
    # fresh snapshot (same reason). (next_attempt_at IS NOT NULL is always true; with
    # it, a plan made on a small table may still read emails_due_idx rather than the
    # whole of emails.)
    "recheck_due_without_job": Statement(
        """SELECT e.id, e.next_attempt_at, e.job_id
  FROM emails e
  LEFT JOIN procrastinate_jobs j ON j.id = e.job_id
 WHERE e.id = ANY(%(ids)s::uuid[])
   AND e.status = 'scheduled' AND e.next_attempt_at IS NOT NULL
   AND (j.id IS NULL OR j.status NOT IN ('todo', 'doing'));""",
        ("procrastinate_jobs.id", "procrastinate_jobs.status"),
        ("todo", "doing"),
    ),
    # For the worker's wake-up timer: how long until the earliest scheduled job is due
    # (negative: one is due and not yet fetched), and until the earliest one not yet due
    # (the timer must wake for it even while an overdue job waits: a backlog being
    # drained, or a job no worker can take). Two walks of index reach_jobs_future_idx
    # (a migration), each stopping at its first row. Procrastinate has no query for the
    # earliest scheduled_at: it polls.
    "seconds_to_next_job": Statement(
        """SELECT extract(epoch FROM (SELECT min(scheduled_at) FROM procrastinate_jobs
                               WHERE status = 'todo' AND scheduled_at IS NOT NULL)
                      - clock_timestamp())::float8 AS seconds,
       extract(epoch FROM (SELECT min(scheduled_at) FROM procrastinate_jobs
                            WHERE status = 'todo' AND scheduled_at > statement_timestamp())
                      - clock_timestamp())::float8 AS future_seconds;""",
        ("procrastinate_jobs.scheduled_at", "procrastinate_jobs.status"),
        ("todo",),
    ),
    # Procrastinate workers whose heartbeat is recent (status, /ops/status, /metrics).
    # The JobManager lists jobs, queues, tasks and locks, not workers.
    "workers_alive": Statement(
        """SELECT id, last_heartbeat, extract(epoch FROM now() - last_heartbeat)::float8 AS age_seconds
  FROM procrastinate_workers
 WHERE last_heartbeat > now() - make_interval(secs => %(stalled_after)s)
 ORDER BY id;""",
        ("procrastinate_workers.id", "procrastinate_workers.last_heartbeat"),
    ),
    # The workers alive, and the last heartbeat any worker sent (the monitor's "no worker
    # alive" alert says since when): the JobManager lists jobs, queues, tasks and locks, not workers.
    "workers_heartbeat": Statement(
        """SELECT count(*) FILTER (WHERE last_heartbeat > now() - make_interval(secs => %(stalled_after)s)) AS alive,
       max(last_heartbeat) AS last_heartbeat
  FROM procrastinate_workers;""",
        ("procrastinate_workers.last_heartbeat",),
    ),
    # Jobs in a final state (``prune`` counts them before and after). Why not
    # list_queues (counts by queue and status): it runs on Procrastinate's own
    # connector, which the CLI has not opened (it works on its own connection).
    "count_finished_jobs": Statement(
        """SELECT count(*) AS n FROM procrastinate_jobs
 WHERE status IN ('succeeded', 'failed', 'cancelled', 'aborted');""",
        ("procrastinate_jobs.status",),
        ("succeeded", "failed", "cancelled", "aborted"),
    ),
    # Jobs waiting or running by queue, and how many of the waiting ones are due
    # (/metrics). list_queues has the counts but not "due", nor a connection parameter.
    "metrics_jobs": Statement(
        """SELECT queue_name, status::text AS status, count(*) AS n,
       count(*) FILTER (WHERE scheduled_at IS NULL OR scheduled_at <= now()) AS due
  FROM procrastinate_jobs
 WHERE status IN ('todo', 'doing')
 GROUP BY 1, 2;""",
        ("procrastinate_jobs.queue_name", "procrastinate_jobs.status", "procrastinate_jobs.scheduled_at"),
        ("todo", "doing"),
    ),
    # A user's other emails due now that have no rate-limit slot yet, and their jobs,
    # locked (a worker fetching one skips it: procrastinate_fetch_job_v2 takes its job
    # FOR UPDATE SKIP LOCKED; and we skip those it holds): a burst's rest, to be queued
    # at their turns in the user's lane in bulk (tasks/delivery/gate.py, spread). Read
    # through emails_due_idx: only emails due now are looked at, however many the user
    # has scheduled for later (no index of its own: one more index on emails would cost
    # every send a write, for a query that runs once per 500). No public API locks a
    # job against the fetch.
    "spread_candidates": Statement(
        """SELECT e.id, e.attempts, e.job_id
  FROM emails e
  JOIN procrastinate_jobs j ON j.id = e.job_id
 WHERE e.owner_id = %(owner_id)s AND e.status = 'scheduled' AND e.rate_slot IS NULL
   AND e.next_attempt_at <= now() + make_interval(secs => %(ahead)s)
   AND j.status = 'todo'
 ORDER BY e.next_attempt_at, e.id
 LIMIT %(limit)s
   FOR UPDATE OF e, j SKIP LOCKED;""",
        ("procrastinate_jobs.id", "procrastinate_jobs.status"),
        ("todo",),
    ),
    # Cancel many waiting jobs in one round trip (a bulk action's chunk, tasks/domain/bulk.py):
    # what the public cancel_job_by_id does, through the same function
    # (procrastinate_cancel_job_v1: a 'todo' job becomes 'cancelled'), once per job of the
    # array. Why not cancel_job_by_id: a round trip per job, 10,000 for a bulk cancel of 10,000.
    "cancel_jobs": Statement(
        """SELECT count(procrastinate_cancel_job_v1(t.id, false, false)) AS n
  FROM unnest(%(job_ids)s::bigint[]) AS t(id) WHERE t.id IS NOT NULL""",
        (),
        writes=True,
        functions=("procrastinate_cancel_job_v1(bigint, boolean, boolean)",),
    ),
    # Bulk actions whose job was lost (tasks/queue/bulk.py): unfinished, and no job of theirs
    # waiting or running, because a worker was killed during it and the reconciler failed the
    # job it left 'doing' (finish_stalled_jobs). Each gets a new job, which goes on where the
    # lost one stopped (tasks/domain/bulk.py, run). A bulk action's jobs share the lock
    # 'bulk:<id>', so two never run at once. Why not defer_job: one statement for all of them,
    # under the rows' locks, with no window where another reconciler sees them jobless.
    "bulk_lost_jobs": Statement(
        """WITH lost AS (
    SELECT b.id FROM bulk_actions b
     WHERE b.state IN ('pending', 'running')
       AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                        WHERE j.queue_name = 'bulk' AND j.lock = 'bulk:' || b.id
                          AND j.status IN ('todo', 'doing'))
     ORDER BY b.created_at
     LIMIT %(limit)s
       FOR UPDATE OF b SKIP LOCKED
)
SELECT l.id, (procrastinate_defer_jobs_v1(ARRAY[ROW(
           'bulk'::varchar, 'bulk_action'::varchar, 0, ('bulk:' || l.id)::text, NULL::text,
           jsonb_build_object('bulk_id', l.id::text), NULL::timestamptz
       )::procrastinate_job_to_defer_v1]))[1] AS job_id
  FROM lost l;""",
        ("procrastinate_jobs.queue_name", "procrastinate_jobs.lock", "procrastinate_jobs.status"),
        ("todo", "doing"),
        writes=True,
        functions=_DEFERS,
        types=_JOB_TYPE,
    ),
    # An organization resumed: its mail held by the suspension (waiting with the
    # suspension's reason) is due now, its jobs too (they stay the same jobs; an email
    # beyond the horizon has none and the reconciler gives it one). Without it the mail
    # would wait for the hold's next look (ORG_HOLD_RECHECK, up to 15 minutes). No
    # public API changes a waiting job's time (as spread_move).
    "wake_held": Statement(
        _WAKE_HELD,
        ("procrastinate_jobs.id", "procrastinate_jobs.status", "procrastinate_jobs.scheduled_at"),
        ("todo",),
        writes=True,
    ),
    # Move each email's job to its slot in the lane (it stays the same job: it will be
    # claimed once, at its turn) and record the slot and the reason. The moved jobs go
    # one priority below the rest: when the workers fall behind, another user's email
    # due meanwhile is fetched before the backlog of a burst (procrastinate_fetch_job_v2
    # takes the highest priority first, then the lowest id). No public API changes a
    # waiting job's time or priority: cancelling and deferring anew would cost a job
    # per email and lose the job id the email row holds.
    "spread_move": Statement(
        """WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(job_ids)s::bigint[], %(slots)s::timestamptz[]) AS t(id, job_id, slot)
), job AS (
    UPDATE procrastinate_jobs j SET scheduled_at = i.slot - %(lead)s, priority = -1
      FROM input i WHERE j.id = i.job_id AND j.status = 'todo'
), moved AS (
    UPDATE emails e
       SET next_attempt_at = i.slot, rate_slot = i.slot, rate_transport = NULL, waiting_reason = %(reason)s
      FROM input i
     WHERE e.id = i.id AND e.status = 'scheduled' AND e.job_id = i.job_id
    RETURNING e.id, e.org_id, i.job_id, i.slot
)
INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
SELECT org_id, id, 'rate_limited', job_id,
       jsonb_build_object('slot', slot, 'next_attempt_at', slot, 'transport', %(transport)s::text,
                          'limit', %(limit)s::text, 'reason', %(reason)s::text, 'spread', true)
  FROM moved;""",
        (
            "procrastinate_jobs.id",
            "procrastinate_jobs.status",
            "procrastinate_jobs.scheduled_at",
            "procrastinate_jobs.priority",
        ),
        ("todo",),
        writes=True,
    ),
}

db.register({name: statement.sql for name, statement in STATEMENTS.items()})


async def seconds_to_next_job(conn: db.AsyncConn) -> tuple[float | None, float | None]:
    """Seconds until the earliest scheduled job is due (negative: overdue), and until the
    earliest one not yet due; None where there is none."""
    row = await db.one_async(conn, "seconds_to_next_job")
    return (row["seconds"], row["future_seconds"]) if row else (None, None)


def workers_alive(conn: db.Conn, *, stalled_after: float) -> list[db.Row]:
    """The workers whose heartbeat is more recent than ``stalled_after`` seconds (id, last_heartbeat, age_seconds)."""
    return db.all_rows(conn, "workers_alive", stalled_after=stalled_after)


def workers_heartbeat(conn: db.Conn, *, stalled_after: float) -> db.Row:
    """How many workers are alive (``alive``), and the last heartbeat of any worker (``last_heartbeat``, or None)."""
    row = db.one(conn, "workers_heartbeat", stalled_after=stalled_after)
    assert row is not None
    return row


def count_finished_jobs(conn: db.Conn) -> int:
    """Count the jobs that reached a final state."""
    row = db.one(conn, "count_finished_jobs")
    return row["n"] if row else 0


def job_counts(conn: db.Conn) -> list[db.Row]:
    """Jobs waiting or running by queue and status, and how many of each are due (queue_name, status, n, due)."""
    return db.all_rows(conn, "metrics_jobs")


# --------------------------------------------------------------------------
# 4. Elsewhere
# --------------------------------------------------------------------------

#: The operator's queries (run with psql, read-only) that read Procrastinate's
#: tables, and the columns they read. They stay in sql/ops/ as files an operator
#: runs; the test checks that they only read, and that these columns exist.
OPERATOR_QUERIES: dict[str, tuple[str, ...]] = {
    "sql/ops/due_next_hour.sql": ("procrastinate_jobs.id", "procrastinate_jobs.status"),
    "sql/ops/emails_without_job.sql": ("procrastinate_jobs.id", "procrastinate_jobs.status"),
    "sql/ops/jobs_without_email.sql": (
        "procrastinate_jobs.id",
        "procrastinate_jobs.status",
        "procrastinate_jobs.scheduled_at",
        "procrastinate_jobs.args",
        "procrastinate_jobs.task_name",
    ),
    "sql/ops/stuck_sending.sql": (
        "procrastinate_jobs.id",
        "procrastinate_jobs.status",
        "procrastinate_jobs.worker_id",
        "procrastinate_workers.id",
        "procrastinate_workers.last_heartbeat",
    ),
    "sql/ops/workers.sql": (
        "procrastinate_workers.id",
        "procrastinate_workers.last_heartbeat",
        "procrastinate_jobs.id",
        "procrastinate_jobs.worker_id",
        "procrastinate_jobs.status",
    ),
}

#: Other files that name Procrastinate's database objects, and why they may.
ELSEWHERE: dict[str, str] = {
    "tasks/core/migrate.py": "installs Procrastinate's schema with its public SchemaManager, and asks"
    " to_regclass('procrastinate_jobs') whether it is there; reads no row",
    "sql/migrations/0001_core.sql": "committed (never edited): an index on procrastinate_jobs (scheduled_at),"
    " replaced by 0006",
    "sql/migrations/0006_fetch_plan.sql": "committed (never edited): planner settings on procrastinate_fetch_job_v2"
    " and reach_jobs_future_idx, the wake-up timer's index on procrastinate_jobs (scheduled_at)",
    "sql/migrations/0015_fetch_jobs_in_batches.sql": "committed (never edited): reach_fetch_jobs, the selection"
    " and update of procrastinate_fetch_job_v2 for several jobs (fetch_jobs calls it); the test checks it still"
    " selects as Procrastinate's function does",
    "sql/schema.sql": "the generated dump of the whole schema, Procrastinate's included",
}

#: The columns ELSEWHERE's migrations rely on, and the function 0006 alters (with its argument types).
MIGRATION_COLUMNS: tuple[str, ...] = (
    "procrastinate_jobs.scheduled_at",
    "procrastinate_jobs.status",
    # 0015's reach_fetch_jobs
    "procrastinate_jobs.id",
    "procrastinate_jobs.lock",
    "procrastinate_jobs.priority",
    "procrastinate_jobs.queue_name",
    "procrastinate_jobs.worker_id",
)
#: The migration whose function copies procrastinate_fetch_job_v2's selection for several jobs.
FETCH_COPY = "sql/migrations/0015_fetch_jobs_in_batches.sql"
ALTERED_FUNCTION = ("procrastinate_fetch_job_v2", ("character varying[]", "bigint"))
