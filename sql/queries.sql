-- Named queries, loaded once by tasks/db.py. Parameters are %(name)s only.
-- Every query a user can reach is scoped: (%(any_owner)s OR owner_id = %(owner_id)s),
-- where any_owner is true only for operators (the CLI).

-- upsert_user --
-- Create the user on first sight, refresh the name on later ones.
INSERT INTO users (email, name)
     VALUES (%(email)s, %(name)s)
ON CONFLICT ((lower(email))) DO UPDATE
        SET name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE users.name END,
            updated_at = now()
  RETURNING *;

-- get_user --
SELECT * FROM users WHERE id = %(id)s;

-- insert_email --
-- A repeated idempotency key inserts nothing and returns no row.
INSERT INTO emails (id, owner_id, from_addr, reply_to, to_addrs, cc_addrs, bcc_addrs,
                    subject, body_text, body_html, send_at, send_tz, next_attempt_at,
                    message_id, idempotency_key, request_hash, job_id)
     VALUES (%(id)s, %(owner_id)s, %(from_addr)s, %(reply_to)s, %(to_addrs)s, %(cc_addrs)s,
             %(bcc_addrs)s, %(subject)s, %(body_text)s, %(body_html)s, %(send_at)s,
             %(send_tz)s, %(send_at)s, %(message_id)s, %(idempotency_key)s,
             %(request_hash)s, %(job_id)s)
ON CONFLICT (owner_id, idempotency_key) DO NOTHING
  RETURNING *;

-- email_by_idempotency_key --
SELECT * FROM emails WHERE owner_id = %(owner_id)s AND idempotency_key = %(idempotency_key)s;

-- insert_event --
INSERT INTO email_events (email_id, kind, job_id, detail)
     VALUES (%(email_id)s, %(kind)s, %(job_id)s, %(detail)s);

-- get_email --
SELECT * FROM emails
 WHERE id = %(id)s AND (%(any_owner)s OR owner_id = %(owner_id)s);

-- lock_email --
SELECT * FROM emails
 WHERE id = %(id)s AND (%(any_owner)s OR owner_id = %(owner_id)s)
   FOR UPDATE;

-- email_events --
SELECT id, at, kind, job_id, detail FROM email_events WHERE email_id = %(id)s ORDER BY id;

-- set_cancelled --
UPDATE emails SET status = 'cancelled', waiting_reason = NULL
 WHERE id = %(id)s AND status = 'scheduled'
  RETURNING *;

-- set_next_attempt --
-- Reschedule, send now, retry: the email waits again, with a new job (or none
-- while it is beyond the horizon).
UPDATE emails
   SET status = 'scheduled',
       send_at = coalesce(%(send_at)s, send_at),
       send_tz = coalesce(%(send_tz)s, send_tz),
       next_attempt_at = %(next_attempt_at)s,
       waiting_reason = NULL,
       job_id = %(job_id)s
 WHERE id = %(id)s
  RETURNING *;

-- status_counts --
SELECT status, count(*) AS n FROM emails GROUP BY status ORDER BY status;

-- next_due --
SELECT min(next_attempt_at) AS next_due FROM emails WHERE status = 'scheduled';

-- claim_email --
-- The only way into 'sending': the email must still wait for exactly this job.
WITH claimed AS (
    UPDATE emails
       SET status = 'sending', attempts = attempts + 1, waiting_reason = NULL,
           data_started_at = NULL
     WHERE id = %(email_id)s AND status = 'scheduled' AND job_id = %(job_id)s
    RETURNING *
), event AS (
    INSERT INTO email_events (email_id, kind, job_id, detail)
    SELECT id, 'claimed', %(job_id)s,
           jsonb_build_object('attempt', attempts, 'worker', %(worker)s::text,
                              'late_ms', round(extract(epoch FROM clock_timestamp() - next_attempt_at) * 1000))
      FROM claimed
)
SELECT * FROM claimed;

-- start_data --
-- Committed just before SMTP DATA: from here on a crash makes the email uncertain.
WITH started AS (
    UPDATE emails SET data_started_at = clock_timestamp(), transport = %(transport)s
     WHERE id = %(email_id)s AND status = 'sending' AND job_id = %(job_id)s
    RETURNING id, attempts
), event AS (
    INSERT INTO email_events (email_id, kind, job_id, detail)
    SELECT id, 'data_started', %(job_id)s,
           jsonb_build_object('attempt', attempts, 'transport', %(transport)s::text,
                              'refused', %(refused)s::jsonb)
      FROM started
)
-- The worker's connections commit asynchronously (tasks/db.py); this commit is
-- the one that must be on disk before DATA, so it waits for the flush.
SELECT id FROM started WHERE set_config('synchronous_commit', 'on', true) = 'on';

-- finish_email --
-- End an attempt: sent, failed or uncertain. The event's kind is the new status.
WITH done AS (
    UPDATE emails
       SET status = %(status)s,
           sent_at = CASE WHEN %(status)s = 'sent' THEN clock_timestamp() END,
           provider_reply = %(reply)s,
           last_error = %(error)s,
           transport = coalesce(%(transport)s, transport),
           refused_recipients = %(refused)s,
           waiting_reason = NULL
     WHERE id = %(email_id)s AND status = 'sending' AND job_id = %(job_id)s
    RETURNING id, attempts
), event AS (
    INSERT INTO email_events (email_id, kind, job_id, detail)
    SELECT id, %(status)s, %(job_id)s,
           jsonb_strip_nulls(jsonb_build_object(
               'attempt', attempts, 'transport', %(transport)s::text, 'reply', %(reply)s::text,
               'error', %(error)s::text, 'refused', %(refused)s::jsonb))
      FROM done
), job AS (
    -- The send task ends its own Procrastinate job here, saving a round trip
    -- (tasks/worker.py skips Procrastinate's own finish for it).
    DELETE FROM procrastinate_jobs WHERE %(end_job)s AND id = %(job_id)s AND status = 'doing'
)
SELECT id FROM done;

-- requeue_email --
-- Back to 'scheduled' after a transient failure, with the job of the next attempt.
WITH moved AS (
    UPDATE emails
       SET status = 'scheduled', next_attempt_at = %(at)s, waiting_reason = %(reason)s,
           last_error = %(error)s, job_id = %(new_job_id)s, data_started_at = NULL
     WHERE id = %(email_id)s AND status = 'sending' AND job_id = %(job_id)s
    RETURNING id, attempts
), event AS (
    INSERT INTO email_events (email_id, kind, job_id, detail)
    SELECT id, %(kind)s, %(job_id)s,
           jsonb_strip_nulls(jsonb_build_object(
               'attempt', attempts, 'next_attempt_at', %(at)s::timestamptz,
               'reason', %(reason)s::text, 'error', %(error)s::text))
      FROM moved
), job AS (
    DELETE FROM procrastinate_jobs WHERE %(end_job)s AND id = %(job_id)s AND status = 'doing'
)
SELECT id FROM moved;

-- stalled_sending --
-- Emails left 'sending' by a job that is no longer running, or by a worker
-- whose heartbeat stopped.
SELECT e.id, e.owner_id, e.job_id, e.attempts, e.data_started_at
  FROM emails e
  LEFT JOIN procrastinate_jobs j ON j.id = e.job_id
  LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
 WHERE e.status = 'sending'
   AND (j.id IS NULL OR j.status <> 'doing' OR w.id IS NULL
        OR w.last_heartbeat < now() - make_interval(secs => %(stalled_after)s))
 LIMIT %(limit)s;

-- due_without_job --
-- Scheduled emails inside the horizon with no live job: far-future ones being
-- promoted, and any whose job was lost. Locked so two reconcilers never race.
SELECT e.id, e.next_attempt_at, e.job_id
  FROM emails e
  LEFT JOIN procrastinate_jobs j ON j.id = e.job_id
 WHERE e.status = 'scheduled'
   AND e.next_attempt_at <= now() + make_interval(secs => %(horizon)s)
   AND (j.id IS NULL OR j.status NOT IN ('todo', 'doing'))
 ORDER BY e.next_attempt_at
 LIMIT %(limit)s
   FOR UPDATE OF e SKIP LOCKED;

-- recheck_due_without_job --
-- The same test as above on rows we now hold locked, with a fresh snapshot.
SELECT e.id, e.next_attempt_at, e.job_id
  FROM emails e
  LEFT JOIN procrastinate_jobs j ON j.id = e.job_id
 WHERE e.id = ANY(%(ids)s::uuid[])
   AND e.status = 'scheduled'
   AND (j.id IS NULL OR j.status NOT IN ('todo', 'doing'));

-- attach_jobs --
-- Record the jobs the promoter deferred, and say so on each timeline.
WITH attached AS (
    UPDATE emails e SET job_id = v.job_id
      FROM unnest(%(ids)s::uuid[], %(job_ids)s::bigint[]) AS v(id, job_id)
     WHERE e.id = v.id
    RETURNING e.id, e.job_id, e.next_attempt_at
)
INSERT INTO email_events (email_id, kind, job_id, detail)
SELECT id, 'queued', job_id, jsonb_build_object('due_at', next_attempt_at) FROM attached;

-- seconds_to_next_job --
-- How long until the next scheduled job is due (negative: one is due and not
-- yet fetched), for the worker's wake-up timer (index reach_jobs_future_idx).
SELECT extract(epoch FROM min(scheduled_at) - clock_timestamp())::float8 AS seconds
  FROM procrastinate_jobs
 WHERE status = 'todo' AND scheduled_at IS NOT NULL;

-- insert_devmail --
INSERT INTO devmail_messages (mail_from, rcpt_tos, message_id, subject, raw)
     VALUES (%(mail_from)s, %(rcpt_tos)s, %(message_id)s, %(subject)s, %(raw)s)
  RETURNING id;

-- rate_wait_email --
-- Back to 'scheduled' without having contacted the provider: a rate-limit slot
-- was reserved (slot) or the limiter was unavailable (no slot). The claim's
-- attempt is given back: waiting is not an attempt (MAX_ATTEMPTS counts sends).
WITH moved AS (
    UPDATE emails
       SET status = 'scheduled', attempts = attempts - 1, next_attempt_at = %(at)s,
           waiting_reason = %(reason)s, job_id = %(new_job_id)s,
           rate_slot = %(slot)s, rate_transport = %(rate_transport)s
     WHERE id = %(email_id)s AND status = 'sending' AND job_id = %(job_id)s
       AND data_started_at IS NULL
    RETURNING id, attempts
), event AS (
    INSERT INTO email_events (email_id, kind, job_id, detail)
    SELECT id, %(kind)s, %(job_id)s,
           jsonb_strip_nulls(jsonb_build_object(
               'slot', %(slot)s::timestamptz, 'next_attempt_at', %(at)s::timestamptz,
               'transport', %(transport)s::text, 'limit', %(limit)s::text,
               'reason', %(reason)s::text, 'error', %(error)s::text))
      FROM moved
), job AS (
    DELETE FROM procrastinate_jobs WHERE %(end_job)s AND id = %(job_id)s AND status = 'doing'
)
SELECT id FROM moved;

-- rate_entries_transport --
-- What a transport's bucket held, rebuilt from the truth: each email whose DATA
-- began within the window on this transport, each slot still reserved on it,
-- and, if Redis was emptied (in_flight), every attempt in flight that has not reached DATA
-- (as "<id>:<attempt>:flight": one still waiting at the gate drops its own).
-- Members are "<email id>:<attempt>", as the live bucket names them.
SELECT id::text || ':' || attempts AS member, data_started_at AS at
  FROM emails
 WHERE transport = %(label)s AND data_started_at > now() - make_interval(secs => %(span)s)
UNION ALL
SELECT id::text || ':' || (attempts + 1), rate_slot
  FROM emails
 WHERE status = 'scheduled' AND rate_slot IS NOT NULL AND rate_slot = next_attempt_at
   AND rate_transport = %(label)s
UNION ALL
SELECT id::text || ':' || attempts || ':flight', clock_timestamp()
  FROM emails
 WHERE %(in_flight)s AND status = 'sending' AND data_started_at IS NULL;

-- rate_entries_user --
-- The same for one user's own bucket (every transport together).
SELECT id::text || ':' || attempts AS member, data_started_at AS at
  FROM emails
 WHERE owner_id = %(owner_id)s AND data_started_at > now() - make_interval(secs => %(span)s)
UNION ALL
SELECT id::text || ':' || (attempts + 1), rate_slot
  FROM emails
 WHERE owner_id = %(owner_id)s AND status = 'scheduled' AND rate_slot IS NOT NULL
   AND rate_slot = next_attempt_at
UNION ALL
SELECT id::text || ':' || attempts || ':flight', clock_timestamp()
  FROM emails
 WHERE %(in_flight)s AND owner_id = %(owner_id)s AND status = 'sending' AND data_started_at IS NULL;
