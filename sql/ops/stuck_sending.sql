-- Emails in 'sending' for over a minute, with their job and worker. The
-- reconciler recovers those whose worker stopped heart-beating (back to
-- 'scheduled' before DATA, 'uncertain' after); anything listed for long is worth a look.
--   psql "$DATABASE_URL" -f sql/ops/stuck_sending.sql
SELECT e.id,
       e.attempts,
       claimed.at AS claimed_at,
       round(extract(epoch FROM now() - claimed.at))::int AS sending_for_seconds,
       e.data_started_at IS NOT NULL AS data_started,
       coalesce(e.transport, '') AS transport,
       coalesce(j.status::text, 'missing') AS job,
       j.worker_id,
       round(extract(epoch FROM now() - w.last_heartbeat))::int AS heartbeat_age_seconds
  FROM emails e
 CROSS JOIN LATERAL (SELECT max(at) AS at FROM email_events WHERE email_id = e.id AND kind = 'claimed') claimed
  LEFT JOIN procrastinate_jobs j ON j.id = e.job_id
  LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
 WHERE e.status = 'sending' AND coalesce(claimed.at, e.updated_at) < now() - interval '1 minute'
 ORDER BY claimed.at;
