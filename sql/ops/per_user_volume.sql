-- Volume per user: created and sent in the last 24 hours, waiting now, and the
-- problems; the busiest first.
--   psql "$DATABASE_URL" -f sql/ops/per_user_volume.sql
SELECT u.id AS user_id,
       u.email,
       count(*) FILTER (WHERE e.created_at > now() - interval '24 hours') AS created_24h,
       count(*) FILTER (WHERE e.sent_at > now() - interval '24 hours') AS sent_24h,
       count(*) FILTER (WHERE e.status = 'scheduled') AS scheduled,
       count(*) FILTER (WHERE e.status = 'failed') AS failed,
       count(*) FILTER (WHERE e.status = 'uncertain') AS uncertain,
       count(*) FILTER (WHERE e.status = 'offline') AS offline,
       count(*) AS total
  FROM users u
  JOIN emails e ON e.owner_id = u.id
 GROUP BY u.id, u.email
 ORDER BY sent_24h DESC, total DESC, u.id
 LIMIT 100;
