-- The operator's surface: what `prune` removes is kept as totals, so Prometheus
-- counters computed from email_events never go down.
CREATE TABLE email_event_totals (
    kind      text NOT NULL,
    -- The transport the event names ('' when none).
    transport text NOT NULL DEFAULT '',
    -- For 'claimed' events: the lateness bucket's upper bound in seconds; else +Infinity.
    late_le   float8 NOT NULL DEFAULT 'Infinity',
    n         bigint NOT NULL DEFAULT 0,
    late_sum  float8 NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, transport, late_le)
);

-- /metrics counts events by kind at every scrape.
CREATE INDEX email_events_kind_idx ON email_events (kind);
