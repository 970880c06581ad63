-- Emails waiting for a rate-limit slot now (the limiter re-defers each to its
-- reserved slot), soonest first.
--   psql "$DATABASE_URL" -f sql/ops/rate_limit_waits.sql
SELECT e.id,
       u.email AS owner,
       e.next_attempt_at AS slot,
       round(extract(epoch FROM e.next_attempt_at - now()))::int AS in_seconds,
       e.attempts,
       e.waiting_reason
  FROM emails e
  JOIN users u ON u.id = e.owner_id
 WHERE e.status = 'scheduled' AND e.waiting_reason ILIKE '%rate%limit%'
   AND e.next_attempt_at IS NOT NULL  -- (always true) read in order through emails_due_idx
 ORDER BY e.next_attempt_at, e.id
 LIMIT 500;
