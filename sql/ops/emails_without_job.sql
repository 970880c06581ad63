-- Scheduled emails that should hold a live queue job and do not. MUST BE EMPTY.
-- Emails due beyond SCHEDULE_HORIZON legitimately have no job (the reconciler
-- promotes them as they come near, every 5 s; hence 30 s of grace). Pass your
-- horizon if it is not the default: psql -v horizon=600 ...
--   psql "$DATABASE_URL" -f sql/ops/emails_without_job.sql
\if :{?horizon}
\else
\set horizon 600
\endif
SELECT e.id, e.next_attempt_at AS due, e.job_id, coalesce(j.status::text, 'missing') AS job
  FROM emails e
  LEFT JOIN procrastinate_jobs j ON j.id = e.job_id
 WHERE e.status = 'scheduled'
   AND e.next_attempt_at <= now() + make_interval(secs => :horizon) - interval '30 seconds'
   AND (j.id IS NULL OR j.status NOT IN ('todo', 'doing'))
 ORDER BY e.next_attempt_at;
