-- How late attempts were claimed after they were due, over the last hour, in
-- milliseconds: first attempts (the user's chosen time), retries, and all.
--   psql "$DATABASE_URL" -f sql/ops/lateness_last_hour.sql
SELECT CASE WHEN grouping(first_attempt) = 1 THEN 'all'
            WHEN first_attempt THEN 'first attempts' ELSE 'retries' END AS attempts,
       count(*) AS claims,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY late_ms)) AS p50_ms,
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY late_ms)) AS p90_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY late_ms)) AS p99_ms,
       max(late_ms) AS max_ms,
       count(*) FILTER (WHERE late_ms > 1000) AS over_1s
  FROM (SELECT (detail->>'late_ms')::float8 AS late_ms, (detail->>'attempt')::int = 1 AS first_attempt
          FROM email_events
         WHERE kind = 'claimed' AND at > now() - interval '1 hour') claims
 GROUP BY ROLLUP (first_attempt)
 ORDER BY grouping(first_attempt), first_attempt DESC;
