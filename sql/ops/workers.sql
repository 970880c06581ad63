-- Procrastinate workers, their heartbeat, and the jobs each is running.
-- A worker silent for longer than WORKER_STALLED_AFTER is presumed dead.
--   psql "$DATABASE_URL" -f sql/ops/workers.sql
SELECT w.id AS worker_id,
       w.last_heartbeat,
       round(extract(epoch FROM now() - w.last_heartbeat))::int AS heartbeat_age_seconds,
       count(j.id) AS running_jobs
  FROM procrastinate_workers w
  LEFT JOIN procrastinate_jobs j ON j.worker_id = w.id AND j.status = 'doing'
 GROUP BY w.id
 ORDER BY w.id;
