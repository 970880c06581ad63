-- Failed emails grouped by reason (the provider's reply or our own), most common
-- first, with one example id per reason for `python -m tasks inspect ID`.
--   psql "$DATABASE_URL" -f sql/ops/failures_by_reason.sql
SELECT coalesce(transport, '-') AS transport,
       coalesce(last_error, '') AS reason,
       count(*) AS emails,
       min(updated_at) AS first_seen,
       max(updated_at) AS last_seen,
       (array_agg(id ORDER BY updated_at DESC))[1] AS example_id
  FROM emails
 WHERE status = 'failed'
 GROUP BY 1, 2
 ORDER BY emails DESC, last_seen DESC
 LIMIT 100;
