-- Scheduled emails due within the next hour (overdue ones first), and whether a
-- queue job is waiting for each. Far-future emails hold no job until the
-- reconciler promotes them (SCHEDULE_HORIZON), so "job" may be empty for them.
--   psql "$DATABASE_URL" -f sql/ops/due_next_hour.sql
SELECT e.id,
       u.email AS owner,
       e.next_attempt_at AS due,
       round(extract(epoch FROM e.next_attempt_at - now()))::int AS in_seconds,
       e.attempts,
       coalesce(e.waiting_reason, '') AS waiting_reason,
       coalesce(j.status::text, '') AS job
  FROM emails e
  JOIN users u ON u.id = e.owner_id
  LEFT JOIN procrastinate_jobs j ON j.id = e.job_id
 WHERE e.status = 'scheduled' AND e.next_attempt_at < now() + interval '1 hour'
 ORDER BY e.next_attempt_at, e.id
 LIMIT 500;
