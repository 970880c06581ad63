-- The charts of the operators' page and of each user's dashboard (tasks/ops/charts.py).
-- A periodic task rolls email_events up into per-minute rows and samples the
-- queue's depth once a minute, so drawing 24 hours reads about a thousand small
-- rows instead of aggregating every event (docs/operators-charts.md).

-- The operators' charts, one row per minute that had any of their events:
-- attempts ended sent or failed, attempts put back to wait (a temporary error,
-- a stopped worker), and the exact p50 and p99 of the minute's claim lateness.
CREATE TABLE chart_minutes (
    minute      timestamptz PRIMARY KEY,
    sent        integer NOT NULL,
    failed      integer NOT NULL,
    retried     integer NOT NULL,
    claims      integer NOT NULL,
    late_p50_ms float8,
    late_p99_ms float8
);

-- Rate-limit waits per minute and transport.
CREATE TABLE chart_transport_minutes (
    minute       timestamptz NOT NULL,
    transport    text NOT NULL,
    rate_limited integer NOT NULL,
    PRIMARY KEY (minute, transport)
);

-- The same per owner, for each user's own chart ('sent' and 'failed' only).
CREATE TABLE chart_owner_minutes (
    minute   timestamptz NOT NULL,
    owner_id bigint NOT NULL,
    kind     text NOT NULL,
    n        integer NOT NULL,
    PRIMARY KEY (minute, owner_id, kind)
);
-- A user's chart reads only their own rows.
CREATE INDEX chart_owner_minutes_owner_idx ON chart_owner_minutes (owner_id, minute);

-- The queue's depth, sampled once a minute: it cannot be rebuilt from events.
CREATE TABLE queue_depth_samples (
    minute  timestamptz PRIMARY KEY,
    -- Scheduled and due, not yet claimed: waiting only for a worker.
    due     integer NOT NULL,
    -- Scheduled and due within the next hour (sends, retries, rate-limit slots).
    waiting integer NOT NULL,
    sending integer NOT NULL
);

-- One row: the rollups hold every minute before rolled_until; later events are
-- read from email_events directly.
CREATE TABLE chart_rollup (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    rolled_until timestamptz
);
INSERT INTO chart_rollup DEFAULT VALUES;
