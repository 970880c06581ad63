-- Rate limits: a reserved slot on the email, and what a rebuild of the Redis
-- buckets reads (tasks/ratelimit.py, README "Rate limits").

-- The rate-limit slot this email holds: when it may be sent (next_attempt_at
-- equals it while it waits) and the transport label it was reserved on (NULL
-- when only the user's own limit was reserved). Kept after the send, for the record.
ALTER TABLE emails ADD COLUMN rate_slot timestamptz;
ALTER TABLE emails ADD COLUMN rate_transport text;

-- A rebuild counts, per transport label and per user, the emails whose DATA
-- began inside the longest window...
CREATE INDEX emails_transport_started_idx ON emails (transport, data_started_at)
    WHERE data_started_at IS NOT NULL;
CREATE INDEX emails_owner_started_idx ON emails (owner_id, data_started_at)
    WHERE data_started_at IS NOT NULL;
-- ...and the slots reserved by emails still waiting for them.
CREATE INDEX emails_rate_wait_idx ON emails (owner_id, rate_transport)
    WHERE status = 'scheduled' AND rate_slot IS NOT NULL;
