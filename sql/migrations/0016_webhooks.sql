-- Webhooks (docs/webhooks.md): an organization's endpoints, the events owed to each
-- (one delivery per event and endpoint, its id the `webhook-id` of every attempt), and
-- each attempt's log. A delivery is written, with its Procrastinate job, by the same
-- statement as the status change it reports (a transactional outbox). Every table leads
-- with org_id and is under the same row-level security as the other tenant tables.

CREATE TABLE webhook_endpoints (
    org_id bigint NOT NULL REFERENCES organizations ON DELETE CASCADE,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    created_by bigint REFERENCES users,
    url text NOT NULL CHECK (url ~ '^https?://' AND char_length(url) <= 2000),
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 200),
    event_types text[] NOT NULL CHECK (
        cardinality(event_types) >= 1
        AND event_types <@ ARRAY['email.sent', 'email.failed', 'email.uncertain', 'email.offline',
                                 'email.cancelled', 'batch.completed', 'recurrence.paused']),
    enabled boolean NOT NULL DEFAULT true,
    -- The signing secret (whsec_...) as a Fernet token (tasks/core/crypto.py): never the text.
    secret text NOT NULL,
    -- After a rotation, the previous secret also signs until previous_secret_until.
    previous_secret text,
    previous_secret_until timestamptz,
    -- When the attempts began failing without a success since (NULL: the last one succeeded).
    failing_since timestamptz,
    disabled_reason text CHECK (char_length(disabled_reason) <= 500),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CHECK ((previous_secret IS NULL) = (previous_secret_until IS NULL))
);
-- The delivery task finds an endpoint by its id alone.
CREATE UNIQUE INDEX webhook_endpoints_id_idx ON webhook_endpoints (id);

CREATE TABLE webhook_deliveries (
    org_id bigint NOT NULL REFERENCES organizations ON DELETE CASCADE,
    -- The webhook-id of every attempt: msg_ and this id's hex.
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    endpoint_id uuid NOT NULL,
    event_type text NOT NULL CHECK (event_type ~ '^[a-z]+\.[a-z_]+$'),
    -- The body sent: {"type", "timestamp", "data"}; never an email's body.
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    -- The job of the next attempt (Procrastinate's), while pending.
    job_id bigint,
    -- Since when it has been retried (a redelivery starts it again).
    retrying_since timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, endpoint_id) REFERENCES webhook_endpoints ON DELETE CASCADE
);
CREATE UNIQUE INDEX webhook_deliveries_id_idx ON webhook_deliveries (id);
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (org_id, endpoint_id, created_at DESC, id DESC);
-- The reconciler's look for pending deliveries whose job was lost (a worker killed).
CREATE INDEX webhook_deliveries_pending_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    org_id bigint NOT NULL REFERENCES organizations ON DELETE CASCADE,
    id bigint GENERATED ALWAYS AS IDENTITY,
    delivery_id uuid NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    -- NULL: no answer (refused address, connection error, timeout).
    status_code integer,
    latency_ms integer NOT NULL,
    -- The first 1 KB of the answer's body.
    response text NOT NULL DEFAULT '' CHECK (octet_length(response) <= 1024),
    error text CHECK (char_length(error) <= 500),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, delivery_id) REFERENCES webhook_deliveries ON DELETE CASCADE
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (org_id, delivery_id, id);

-- batch.completed: set once the batch has no email waiting or sending (the reconciler).
ALTER TABLE batches ADD COLUMN completed_at timestamptz;
UPDATE batches b SET completed_at = now()
 WHERE NOT EXISTS (SELECT 1 FROM emails e WHERE e.batch_id = b.id AND e.status IN ('scheduled', 'sending'));
CREATE INDEX batches_open_idx ON batches (created_at) WHERE completed_at IS NULL;

CREATE TRIGGER webhook_endpoints_org_fixed BEFORE UPDATE OF org_id ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION org_id_fixed();

-- The web role: the current organization's rows only (see 0012).
ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY webhook_endpoints_org ON webhook_endpoints TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY webhook_deliveries_org ON webhook_deliveries TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY webhook_attempts_org ON webhook_attempts TO reach_web
    USING (org_id = current_org_id()) WITH CHECK (org_id = current_org_id());
