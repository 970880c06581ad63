-- Delivery feedback and the suppression list (docs/feedback-and-suppression.md).

-- Where an email stands after its provider took it, from the provider's events: next to
-- its status, never instead of it. NULL: nothing heard. A state only ever moves up the
-- ranks deferred < delivered < bounced (soft < hard) < complained (tasks/domain/feedback.py),
-- so a late "delivered" never hides a bounce.
ALTER TABLE emails
    ADD COLUMN delivery text CHECK (delivery IN ('deferred', 'delivered', 'bounced', 'complained')),
    ADD COLUMN delivery_at timestamptz,
    ADD COLUMN bounce_type text CHECK (bounce_type IN ('hard', 'soft')),
    -- The provider's diagnostic (a bounce's SMTP reply, a complaint's feedback type).
    ADD COLUMN delivery_detail text CHECK (char_length(delivery_detail) <= 1000),
    -- A one-off email that asked for List-Unsubscribe (a batch's and a recurrence's always carry it).
    ADD COLUMN list_unsubscribe boolean NOT NULL DEFAULT false;

-- The dashboard's filter by delivery state.
CREATE INDEX emails_org_delivery_idx ON emails (org_id, delivery, created_at DESC) WHERE delivery IS NOT NULL;

-- Addresses nothing is sent to any more: per organization, or for every one (org_id NULL,
-- kept by operators). Addresses are stored lower-cased; one row per address and list.
CREATE TABLE suppressions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id bigint REFERENCES organizations ON DELETE CASCADE,
    address text NOT NULL
        CHECK (address = lower(address) AND address ~ '^[^@\s]+@[^@\s]+$' AND char_length(address) <= 320),
    reason text NOT NULL CHECK (reason IN ('hard_bounce', 'complaint', 'unsubscribe', 'manual', 'import')),
    detail text NOT NULL DEFAULT '' CHECK (char_length(detail) <= 500),
    -- The email whose bounce, complaint or unsubscribe link put it here, if any.
    email_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The send path's lookup (address = ANY(recipients) AND org_id in (its own, NULL)) and
    -- the one row per address and list.
    CONSTRAINT suppressions_key UNIQUE NULLS NOT DISTINCT (address, org_id)
);
CREATE INDEX suppressions_org_idx ON suppressions (org_id, id DESC);

-- Provider events already taken (each provider's own event id): a redelivery changes nothing.
CREATE TABLE feedback_seen (
    source text NOT NULL CHECK (source IN ('sendgrid', 'ses', 'webhook')),
    event_id text NOT NULL CHECK (char_length(event_id) <= 300),
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, event_id)
);
CREATE INDEX feedback_seen_at_idx ON feedback_seen (at);

-- The web role: its organization's list, and the operators' global one to read. Events
-- and unsubscribe links arrive without an organization: they are written by the owner
-- of the tables (a verified signature first), never by reach_web.
ALTER TABLE suppressions ENABLE ROW LEVEL SECURITY;
CREATE POLICY suppressions_read ON suppressions FOR SELECT TO reach_web
    USING (org_id = current_org_id() OR org_id IS NULL);
CREATE POLICY suppressions_insert ON suppressions FOR INSERT TO reach_web
    WITH CHECK (org_id = current_org_id());
CREATE POLICY suppressions_delete ON suppressions FOR DELETE TO reach_web
    USING (org_id = current_org_id());
ALTER TABLE feedback_seen ENABLE ROW LEVEL SECURITY;
