-- Queue overview: emails by status and by the transport that carried them last,
-- with subtotals per status ("(all)") and a grand total.
--   psql "$DATABASE_URL" -f sql/ops/queue_overview.sql
SELECT CASE WHEN grouping(status) = 1 THEN '(all)' ELSE status END AS status,
       CASE WHEN grouping(transport) = 1 THEN '(all)' ELSE coalesce(transport, '-') END AS transport,
       count(*) AS emails,
       min(next_attempt_at) FILTER (WHERE status = 'scheduled') AS next_due
  FROM emails
 GROUP BY GROUPING SETS ((status, transport), (status), ())
 ORDER BY grouping(status),
          array_position(ARRAY['scheduled', 'sending', 'sent', 'failed', 'uncertain', 'offline', 'cancelled'], status),
          grouping(transport), transport NULLS FIRST;
