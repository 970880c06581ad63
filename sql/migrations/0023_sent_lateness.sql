-- Sent lateness in the charts (tasks/ops/charts.py, docs/operators-charts.md): how long
-- after its scheduled time each email was sent, the time of its 'sent' event minus the
-- email's send_at (an email sent after retries counts all of it), per minute of sending.
-- Exact percentiles do not add up across minutes, owners or organizations, so each
-- scope the charts draw has its own rows, counted once a minute by the rollup.

-- The operators' series: over every organization.
ALTER TABLE chart_minutes
    ADD COLUMN sent_late_p50_ms float8,
    ADD COLUMN sent_late_p95_ms float8,
    ADD COLUMN sent_late_p99_ms float8,
    -- Emails sent more than 60 s after their time.
    ADD COLUMN sent_late_over_1m integer NOT NULL DEFAULT 0;

-- The same per organization (owner_id 0: every member's emails, the "Everyone's" view)
-- and per owner within it (the "Mine" view). User ids start at 1.
CREATE TABLE chart_lateness_minutes (
    org_id    bigint NOT NULL,
    owner_id  bigint NOT NULL CHECK (owner_id >= 0),
    minute    timestamptz NOT NULL,
    sent      integer NOT NULL,
    p50_ms    float8 NOT NULL,
    p95_ms    float8 NOT NULL,
    p99_ms    float8 NOT NULL,
    over_1m   integer NOT NULL,
    PRIMARY KEY (org_id, owner_id, minute)
);
-- The rollup clears and prunes by minute, across organizations.
CREATE INDEX chart_lateness_minutes_minute_idx ON chart_lateness_minutes (minute);

ALTER TABLE chart_lateness_minutes ENABLE ROW LEVEL SECURITY;
CREATE POLICY chart_lateness_minutes_org ON chart_lateness_minutes TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());

-- The minutes already rolled up get their lateness from the events still kept (the
-- rollup only recounts the minutes after its watermark).
WITH late AS (
    SELECT date_trunc('minute', ev.at) AS minute, e.org_id, e.owner_id,
           (extract(epoch FROM ev.at - e.send_at) * 1000)::float8 AS late_ms
      FROM email_events ev
      JOIN emails e ON e.id = ev.email_id
     WHERE ev.kind = 'sent' AND ev.at >= now() - interval '8 days'
       AND ev.at < (SELECT coalesce(rolled_until, '-infinity') FROM chart_rollup)
), grouped AS (
    SELECT minute, org_id, owner_id, grouping(org_id, owner_id) AS level, count(*) AS sent,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY late_ms) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY late_ms) AS p95,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY late_ms) AS p99,
           count(*) FILTER (WHERE late_ms > 60000) AS over_1m
      FROM late
     GROUP BY GROUPING SETS ((minute), (minute, org_id), (minute, org_id, owner_id))
), scoped AS (
    INSERT INTO chart_lateness_minutes (org_id, owner_id, minute, sent, p50_ms, p95_ms, p99_ms, over_1m)
    SELECT org_id, coalesce(owner_id, 0), minute, sent, p50, p95, p99, over_1m FROM grouped WHERE level < 3
)
UPDATE chart_minutes c
   SET sent_late_p50_ms = g.p50, sent_late_p95_ms = g.p95, sent_late_p99_ms = g.p99, sent_late_over_1m = g.over_1m
  FROM grouped g
 WHERE g.level = 3 AND c.minute = g.minute;
