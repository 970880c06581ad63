-- Live send jobs whose email does not exist. MUST BE EMPTY: a job is only the
-- trigger of an email row, created in the same transaction.
--   psql "$DATABASE_URL" -f sql/ops/jobs_without_email.sql
SELECT j.id AS job_id, j.status, j.scheduled_at, j.args->>'email_id' AS email_id
  FROM procrastinate_jobs j
 WHERE j.task_name = 'send_email' AND j.status IN ('todo', 'doing')
   AND NOT EXISTS (SELECT 1 FROM emails e WHERE e.id = (j.args->>'email_id')::uuid)
 ORDER BY j.id;
