-- Uncertain emails: the connection failed after DATA began, so the provider may
-- or may not have them. Check the provider's logs for the Message-ID, then
-- `python -m tasks retry ID` (send again) or leave it.
--   psql "$DATABASE_URL" -f sql/ops/uncertain.sql
SELECT e.id,
       u.email AS owner,
       e.message_id,
       coalesce(e.transport, '') AS transport,
       e.data_started_at,
       e.attempts,
       e.last_error
  FROM emails e
  JOIN users u ON u.id = e.owner_id
 WHERE e.status = 'uncertain'
 ORDER BY e.data_started_at DESC
 LIMIT 500;
