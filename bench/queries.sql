-- Queries of the benchmark harness (loaded like sql/queries.sql). Parameters are %(name)s only.

-- bulk_insert_emails --
-- Many emails at once, each with its job (or none beyond the horizon) and its
-- 'scheduled' event: what tasks.domain.emails.schedule writes, in one statement.
WITH inserted AS (
    INSERT INTO emails (id, org_id, owner_id, from_addr, to_addrs, subject, body_text,
                        send_at, next_attempt_at, message_id, job_id)
    SELECT v.id, (SELECT org_id FROM memberships WHERE user_id = %(owner_id)s ORDER BY created_at LIMIT 1), %(owner_id)s, %(from_addr)s, ARRAY[%(to_addr)s::text], %(subject)s, %(body)s,
           v.at, v.at, '<' || v.id || '@' || %(domain)s::text || '>', v.job_id
      FROM unnest(%(ids)s::uuid[], %(ats)s::timestamptz[], %(job_ids)s::bigint[]) AS v(id, at, job_id)
    RETURNING id, org_id, job_id, send_at
)
INSERT INTO email_events (org_id, email_id, kind, job_id, detail)
SELECT org_id, id, 'scheduled', job_id, jsonb_build_object('send_at', send_at, 'time_zone', 'UTC', 'recipients', 1)
  FROM inserted;

-- insert_backlog --
-- The far-future backlog: emails due next month (no job: beyond the horizon), with their events.
WITH inserted AS (
    INSERT INTO emails (org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                        message_id)
    SELECT (SELECT org_id FROM memberships WHERE user_id = %(owner_id)s ORDER BY created_at LIMIT 1), %(owner_id)s, %(from_addr)s, ARRAY['later@example.com'], 'backlog ' || n, 'a far-future email',
           now() + interval '30 days' + n * interval '1 second',
           now() + interval '30 days' + n * interval '1 second',
           '<backlog-' || n || '-' || %(tag)s::text || '@bench.localhost>'
      FROM generate_series(1, %(count)s) AS n
    RETURNING id, org_id, send_at
)
INSERT INTO email_events (org_id, email_id, kind, detail)
SELECT org_id, id, 'scheduled', jsonb_build_object('send_at', send_at, 'time_zone', 'UTC', 'recipients', 1)
  FROM inserted;

-- send_times --
-- Message-ID -> when it was due, and how the email ended.
SELECT message_id, send_at, status FROM emails WHERE message_id = ANY(%(message_ids)s);

-- bench_status_counts --
SELECT status, count(*) AS n FROM emails WHERE subject LIKE %(pattern)s GROUP BY status;

-- first_recovery --
SELECT min(at) AS at FROM email_events WHERE kind IN ('recovered', 'uncertain');

-- registered_workers --
-- Workers registered after the one with id %(after)s (ids only grow): a stalled worker
-- pruned meanwhile does not hide a new one.
SELECT count(*) AS n FROM procrastinate_workers WHERE id > %(after)s;

-- last_worker_id --
SELECT coalesce(max(id), 0) AS id FROM procrastinate_workers;

-- doing_jobs --
SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'doing';

-- bulk_insert_recurrences --
-- Active recurrences, many per statement (bench/recurrences.py): the cursor is each one's next occurrence.
INSERT INTO recurrences (org_id, owner_id, to_addrs, subject, body_text, cron, time_zone, starts_at, next_at)
SELECT (SELECT m.org_id FROM memberships m WHERE m.user_id = %(owner_id)s AND m.role = 'owner'
         ORDER BY m.created_at, m.org_id LIMIT 1),
       %(owner_id)s, ARRAY['rcpt@example.com'], 'recurring {{occurrence_time}}', 'A recurring benchmark email.',
       v.cron, v.tz, now(), v.next_at
  FROM unnest(%(crons)s::text[], %(tzs)s::text[], %(next_ats)s::timestamptz[]) AS v(cron, tz, next_at);

-- occurrence_send_times --
-- Message-ID -> when each occurrence was due (their lateness at the sink).
SELECT message_id, send_at FROM emails WHERE recurrence_id IS NOT NULL;

-- subject_send_times --
-- Message-ID -> when each email of a subject was due (bench/recurrences.py's one-off stand-ins).
SELECT message_id, send_at FROM emails WHERE subject = %(subject)s;

-- bench_sent --
SELECT count(*) AS n FROM emails WHERE subject = 'bench' AND status IN ('sent', 'failed', 'uncertain');

-- insert_sent_emails --
-- Sent emails for the feedback benchmark (bench/feedback.py): one recipient each, our Message-IDs.
INSERT INTO emails (id, org_id, owner_id, from_addr, to_addrs, subject, body_text, send_at, next_attempt_at,
                    message_id, status, sent_at, data_started_at)
SELECT v.id, (SELECT org_id FROM memberships WHERE user_id = %(owner_id)s ORDER BY created_at LIMIT 1),
       %(owner_id)s, 'bench@example.com', ARRAY['r-' || v.id || '@example.com'], 'feedback', 'x',
       now(), now(), '<' || v.id || '@' || %(domain)s::text || '>', 'sent', now(), now()
  FROM unnest(%(ids)s::uuid[]) AS v(id);

-- webhooks_delivered --
-- bench/webhooks.py: the deliveries recorded as delivered.
SELECT count(*) AS n FROM webhook_deliveries WHERE status = 'delivered';
