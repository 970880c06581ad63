-- Emails written to the offline log while every real transport was down, oldest
-- first. `python -m tasks replay-offline` sends them once the providers are back.
--   psql "$DATABASE_URL" -f sql/ops/offline.sql
SELECT e.id, u.email AS owner, e.offline_at, e.message_id, e.provider_reply AS logged
  FROM emails e
  JOIN users u ON u.id = e.owner_id
 WHERE e.status = 'offline'
 ORDER BY e.offline_at, e.id;
