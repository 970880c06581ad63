-- The web (issue 3): personal access tokens, batches (send to a list), and the
-- indexes the dashboard's lists, counts and search use.

-- Personal access tokens for the API. Only a SHA-256 of the token is kept: the
-- token itself is shown once, at creation.
CREATE TABLE api_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT '' CHECK (char_length(name) <= 100),
    token_hash   text NOT NULL UNIQUE,
    -- The first characters of the token, so a user can tell their tokens apart.
    prefix       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id, id DESC);

-- One "send to a list" request: its emails carry batch_id.
CREATE TABLE batches (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id          bigint NOT NULL REFERENCES users (id),
    name              text NOT NULL DEFAULT '',
    subject_template  text NOT NULL,
    total             integer NOT NULL CHECK (total > 0),
    start_at          timestamptz NOT NULL,
    send_tz           text NOT NULL DEFAULT 'UTC',
    min_delay_seconds double precision NOT NULL DEFAULT 0 CHECK (min_delay_seconds >= 0),
    hourly_cap        integer CHECK (hourly_cap IS NULL OR hourly_cap > 0),
    idempotency_key   text,
    request_hash      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT batches_idempotency_key UNIQUE (owner_id, idempotency_key)
);
CREATE INDEX batches_owner_created_idx ON batches (owner_id, created_at DESC, id DESC);

ALTER TABLE emails ADD COLUMN batch_id uuid REFERENCES batches (id);
CREATE INDEX emails_batch_idx ON emails (batch_id, status) WHERE batch_id IS NOT NULL;
-- Counts per status on the dashboard.
CREATE INDEX emails_owner_status_idx ON emails (owner_id, status);
