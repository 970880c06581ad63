-- Circuit breakers of the transports: closed (in use), open (skipped until
-- retry_at, then one trial send), half_open (that trial is in flight).
--   psql "$DATABASE_URL" -f sql/ops/breakers.sql
SELECT label AS transport,
       state,
       failures AS failures_in_a_row,
       opened_count AS times_opened,
       CASE WHEN state = 'open' THEN retry_at END AS trial_at,
       trial_by,
       changed_at,
       coalesce(last_error, '') AS last_error
  FROM transport_breakers
 ORDER BY label;
